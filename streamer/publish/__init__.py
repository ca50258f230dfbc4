"""Where events go: the event bus, WebSocket subscribers, MQTT, file and stdout sinks, and the
HTTP edge (routes, tokens, limits) they share."""
