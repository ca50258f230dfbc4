"""Raw PCM over WebSocket: the simplest way to send a call (our own small protocol).

Connect to ``ws://host:8766/ingest/pcm`` and declare the format either in the query
string (``?stream_id=call-1&sample_rate=8000&channels=2&encoding=pcm16le``) or in a first
text message::

    {"type": "start", "stream_id": "call-1", "sample_rate": 8000, "channels": 2,
     "encoding": "pcm16le", "roles": ["customer", "agent"]}

``encoding`` is ``pcm16le`` (default, 16-bit signed little-endian) or ``mulaw``;
``roles`` names the channels (default: 1 channel = customer, 2 = customer, agent).
The server answers ``{"type": "started", ...}`` with ``published_stream_id``, the id the
call's events carry (``pcm:call-1``; ``call-1`` with ``ingest.namespace_stream_ids`` off).
Then send binary messages of
interleaved samples, each a whole number of frames (a frame = one sample per channel).
End with ``{"type": "stop"}`` (answered ``{"type": "stopped"}``) or just close.
A malformed message is answered ``{"type": "error", "message": ...}`` and the connection
is closed (1007 malformed, 1008 protocol/limits, 1003 unsupported format).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from streamer.audio.telephony import pcm16_to_unit, ulaw_decode
from streamer.core.validation import shown
from streamer.ingest.protocol import (
    CLOSE_INVALID,
    CLOSE_UNSUPPORTED,
    CallEnd,
    CallStart,
    ChannelAudio,
    IngestProtocol,
    Limits,
    ProtocolViolation,
    Reply,
    client_identifier,
    parse_json_object,
)

ENCODINGS = {"pcm16le": 2, "mulaw": 1}  # bytes per sample
MAX_CHANNELS = 8
MAX_RATE = 48000


class RawPcmProtocol(IngestProtocol):
    name = "pcm"

    def __init__(self, limits: Limits, query: dict[str, str] | None = None) -> None:
        super().__init__(limits)
        self.encoding = "pcm16le"
        self.sample_rate = 0
        self.roles: tuple[str, ...] = ()
        if query and "stream_id" in query:
            self._guarded(self._start, self._from_query(query))

    @staticmethod
    def _from_query(query: dict[str, str]) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "start", "stream_id": query["stream_id"]}
        for key in ("sample_rate", "channels"):
            if key in query:
                try:
                    message[key] = int(query[key])
                except ValueError:
                    message[key] = query[key]  # reported as invalid by _start
        if "encoding" in query:
            message["encoding"] = query["encoding"]
        if "roles" in query:
            message["roles"] = [r for r in query["roles"].split(",") if r]
        return message

    def _text(self, text: str) -> None:
        message = parse_json_object(text, "text message")
        kind = message.get("type")
        if kind == "start":
            if self.started:
                raise ProtocolViolation("'start' was already received; one call per connection")
            self._start(message)
        elif kind == "stop":
            if not self.started:
                raise ProtocolViolation("'stop' before 'start'")
            self._emit(Reply(json.dumps({"type": "stopped"})))
            self._emit(CallEnd("stop"))
        else:
            raise ProtocolViolation(
                f"unknown message type {kind!r}; expected 'start' or 'stop' as text and "
                "audio as binary messages", CLOSE_INVALID)

    def _start(self, message: dict[str, Any]) -> None:
        stream_id = message.get("stream_id")
        if not isinstance(stream_id, str):
            raise ProtocolViolation("start: 'stream_id' (a string) is required", CLOSE_INVALID)
        published = self._stream_id(stream_id, "start")
        rate, channels = message.get("sample_rate", 16000), message.get("channels", 1)
        if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= MAX_RATE:
            raise ProtocolViolation(f"start: 'sample_rate' must be an integer 8000..{MAX_RATE}, "
                                    f"got {shown(rate)}", CLOSE_UNSUPPORTED)
        if (not isinstance(channels, int) or isinstance(channels, bool)
                or not 1 <= channels <= MAX_CHANNELS):
            raise ProtocolViolation(f"start: 'channels' must be 1..{MAX_CHANNELS}, got "
                                    f"{shown(channels)}", CLOSE_UNSUPPORTED)
        encoding = message.get("encoding", "pcm16le")
        if not isinstance(encoding, str) or encoding not in ENCODINGS:
            raise ProtocolViolation(f"start: 'encoding' must be one of {sorted(ENCODINGS)}, got "
                                    f"{shown(encoding)}", CLOSE_UNSUPPORTED)
        roles = message.get("roles") or self._default_roles(channels)
        if not isinstance(roles, list) or len(roles) != channels:
            raise ProtocolViolation(
                f"start: 'roles' must be a list of {channels} distinct names, got {shown(roles)}",
                CLOSE_INVALID)
        for role in roles:
            client_identifier(role, "start: role")
        if len(set(roles)) != channels:
            raise ProtocolViolation(f"start: 'roles' must be distinct, got {shown(roles)}",
                                    CLOSE_INVALID)
        self.sample_rate, self.encoding, self.roles = rate, encoding, tuple(roles)
        self._emit(Reply(json.dumps({"type": "started", "stream_id": stream_id,
                                     "published_stream_id": published,
                                     "channels": list(self.roles), "sample_rate": rate,
                                     "encoding": encoding})))
        self._emit(CallStart(published, self.roles, rate,
                             f"pcm:{encoding}/{rate}Hz/{channels}ch"))

    def _default_roles(self, channels: int) -> list[str]:
        if channels == 1:
            return [self.limits.customer_role]
        if channels == 2:
            return [self.limits.customer_role, self.limits.agent_role]
        return [f"ch{i}" for i in range(channels)]

    def _bytes(self, data: bytes) -> None:
        if not self.started:
            raise ProtocolViolation("audio before 'start': send the start message first (or "
                                    "put stream_id, sample_rate, channels in the URL)")
        if self.ended:
            raise ProtocolViolation("audio after 'stop'")
        frame = ENCODINGS[self.encoding] * len(self.roles)
        if len(data) % frame:
            raise ProtocolViolation(
                f"binary message of {len(data)} bytes is not a whole number of {frame}-byte "
                f"frames ({self.encoding}, {len(self.roles)} channels); do not split frames "
                "across messages", CLOSE_INVALID)
        n = len(data) // frame
        self._check_audio_ms(n, self.sample_rate)
        if self.encoding == "pcm16le":
            pcm = np.frombuffer(data, dtype="<i2")
        else:
            pcm = ulaw_decode(data)
        samples = pcm16_to_unit(pcm).reshape(n, len(self.roles))
        for i, role in enumerate(self.roles):
            self._emit(ChannelAudio(role, np.ascontiguousarray(samples[:, i])))

    def _error_reply(self, message: str) -> str | None:
        return json.dumps({"type": "error", "message": message})
