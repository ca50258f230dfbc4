"""Sans-I/O data and rules every room may use: the configuration and its schema, event and
message types, validation, redaction, fault text, the alert rules as configured, reconnect
backoff."""
