"""Call-center ingest: telephony audio over WebSocket, one stream per call, one channel per
party. Protocol parsers are sans-I/O (``raw_pcm``, ``twilio``, ``audiohook``); ``server``
moves bytes between connections, parsers and ``session.CallSession``."""
