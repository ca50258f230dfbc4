"""Genesys Cloud AudioHook (protocol version 2), server side.

The client (Genesys Cloud) connects to ``wss://<host>/ingest/audiohook`` with headers
``X-API-KEY``, ``Audiohook-Organization-Id``, ``Audiohook-Session-Id`` and
``Audiohook-Correlation-Id``, then runs transactions of JSON text messages
``{"version": "2", "id": <session uuid>, "type": ..., "seq": n, "serverseq": m,
"position": "PT1.5S", "parameters": {...}}``:

- ``open`` (organizationId, conversationId, participant, offered ``media`` formats)
  -> server ``opened`` with the one format it selected. We take PCMU 8000 Hz, preferring
  stereo ``["external", "internal"]`` (external = customer, internal = agent).
  A null conversationId is a connection probe: answered, but no call starts.
- binary messages: audio frames of the selected format, channels interleaved.
- ``ping`` -> ``pong``; ``paused`` / ``resumed`` (client-initiated pause, e.g. hold);
  ``update`` -> ``updated``; ``discarded`` and ``error`` are noted.
- ``close`` -> server ``closed``; the client then closes the WebSocket.

Client ``seq`` must count up by one; ``serverseq`` must not exceed what the server sent.
On a violation the server sends ``disconnect`` with reason ``error`` and an ``info``,
answers the client's ``close`` with ``closed`` if it comes within ``LINGER_S``, and
closes the connection.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from streamer.audio.telephony import TELEPHONY_RATE, pcm16_to_unit, ulaw_decode
from streamer.core.validation import shown
from streamer.ingest.protocol import (
    CLOSE_INVALID,
    CallEnd,
    CallStart,
    ChannelAudio,
    IngestProtocol,
    Limits,
    Pause,
    ProtocolViolation,
    Reply,
    client_identifier,
    client_text,
    parse_json_object,
    require,
)

VERSION = "2"
NULL_UUID = "00000000-0000-0000-0000-000000000000"
LINGER_S = 2.0
CLIENT_TYPES = ("open", "close", "ping", "paused", "resumed", "update", "discarded", "error")
_DURATION = re.compile(r"^PT(\d+(\.\d+)?)S$")


def duration(seconds: float) -> str:
    """ISO 8601 duration as AudioHook writes it: PT<seconds>S."""
    return f"PT{seconds:.3f}".rstrip("0").rstrip(".") + "S"


class AudioHookProtocol(IngestProtocol):
    name = "audiohook"

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self.state = "preparing"  # -> active <-> paused -> closed; or probe/failed
        self.session_id: str | None = None
        self.seq = 0  # last server message seq
        self.clientseq = 0  # last client message seq
        self.channels: tuple[str, ...] = ()  # AudioHook channel names of the selected media
        self.roles: tuple[str, ...] = ()
        self.samples_received = 0  # per channel

    # ---------------------------------------------------------------- replies
    def _send(self, kind: str, parameters: dict[str, Any]) -> None:
        self.seq += 1
        self._out.append(Reply(json.dumps({
            "version": VERSION, "type": kind, "seq": self.seq, "clientseq": self.clientseq,
            "id": self.session_id or NULL_UUID, "parameters": parameters})))

    def _error_reply(self, message: str) -> str | None:
        self.seq += 1
        return json.dumps({"version": VERSION, "type": "disconnect", "seq": self.seq,
                           "clientseq": self.clientseq, "id": self.session_id or NULL_UUID,
                           "parameters": {"reason": "error", "info": message}})

    def _linger_s(self) -> float:
        return LINGER_S

    @property
    def closing_done(self) -> bool:
        return self.state == "closed"  # the client's 'close' was answered with 'closed'

    def _after_failure(self, payload: Any) -> None:
        """After 'disconnect' the client is expected to 'close'; answer it with 'closed'."""
        if isinstance(payload, str) and self.state != "closed":
            try:
                message = json.loads(payload)
            except (ValueError, RecursionError):
                return  # not the 'close' we wait for
            if isinstance(message, dict) and message.get("type") == "close":
                if isinstance(message.get("seq"), int):
                    self.clientseq = message["seq"]
                self.state = "closed"
                self._send("closed", {})

    # ----------------------------------------------------------------- input
    def _text(self, text: str) -> None:
        message = parse_json_object(text, "AudioHook message")
        if message.get("version") != VERSION:
            raise ProtocolViolation(
                f"unsupported AudioHook version {shown(message.get('version'))}; this server "
                f"speaks version {VERSION}", CLOSE_INVALID)
        session_id = require(message, "id", str, "AudioHook message")
        kind = require(message, "type", str, "AudioHook message")
        seq = require(message, "seq", int, "AudioHook message")
        serverseq = require(message, "serverseq", int, "AudioHook message")
        position = require(message, "position", str, "AudioHook message")
        parameters = require(message, "parameters", dict, "AudioHook message")
        if self.session_id is None:
            self.session_id = client_identifier(session_id, "AudioHook message id")
        elif session_id != self.session_id:
            raise ProtocolViolation(f"session id {shown(session_id)} differs from the session's "
                                    f"{self.session_id!r}")
        if seq != self.clientseq + 1:
            raise ProtocolViolation(f"seq {seq} is not the next client seq "
                                    f"({self.clientseq + 1})")
        self.clientseq = seq
        if serverseq > self.seq:
            raise ProtocolViolation(f"serverseq {serverseq} is higher than the last server "
                                    f"seq {self.seq}")
        if not _DURATION.match(position):
            raise ProtocolViolation(f"position {shown(position)} is not a PT<seconds>S duration",
                                    CLOSE_INVALID)
        if kind not in CLIENT_TYPES:
            raise ProtocolViolation(f"{shown(kind)} is not a client message type; expected one of "
                                    f"{', '.join(CLIENT_TYPES)}", CLOSE_INVALID)
        getattr(self, f"_on_{kind}")(parameters)

    def _on_open(self, parameters: dict[str, Any]) -> None:
        if self.state != "preparing":
            raise ProtocolViolation(f"'open' in state {self.state}; a session opens once")
        conversation = require(parameters, "conversationId", str, "open")
        offered = require(parameters, "media", list, "open")
        selected = self._select_media(offered)
        self.channels = tuple(selected["channels"])
        role_of = {"external": self.limits.customer_role, "internal": self.limits.agent_role}
        self.roles = tuple(role_of[c] for c in self.channels)
        self._send("opened", {"media": [selected], "startPaused": False})
        if conversation == NULL_UUID:
            self.state = "probe"  # connection probe: no call, the client closes next
            return
        stream_id = self._stream_id(conversation, "open.conversationId")
        self.state = "active"
        self._emit(CallStart(stream_id, self.roles, TELEPHONY_RATE,
                             f"audiohook:{self.session_id}{self._caller(parameters)}"))

    def _caller(self, parameters: dict[str, Any]) -> str:
        """' ani=... dnis=...' when ``include_caller_numbers`` is on (personal data), else ''."""
        participant = parameters.get("participant")
        if not self.limits.include_caller_numbers or not isinstance(participant, dict):
            return ""
        parts = [f" {key}={client_text(participant[key], f'open.participant.{key}')}"
                 for key in ("ani", "dnis") if participant.get(key)]
        return "".join(parts)

    def _select_media(self, offered: list[Any]) -> dict[str, Any]:
        usable = [m for m in offered if isinstance(m, dict) and m.get("type") == "audio"
                  and m.get("format") == "PCMU" and m.get("rate") == TELEPHONY_RATE
                  and isinstance(m.get("channels"), list) and 1 <= len(m["channels"]) <= 2
                  and all(isinstance(c, str) and c in ("external", "internal")
                          for c in m["channels"])
                  and len(set(m["channels"])) == len(m["channels"])]
        if not usable:
            raise ProtocolViolation(
                f"none of the offered media {shown(offered)} is supported; offer "
                '{"type": "audio", "format": "PCMU", "rate": 8000, '
                '"channels": ["external", "internal"]}')
        stereo = [m for m in usable if len(m["channels"]) == 2]
        chosen = (stereo or usable)[0]
        return {"type": "audio", "format": "PCMU", "channels": list(chosen["channels"]),
                "rate": TELEPHONY_RATE}

    def _on_close(self, parameters: dict[str, Any]) -> None:
        was = self.state
        self.state = "closed"
        self._send("closed", {})
        if was in ("active", "paused"):
            reason = parameters.get("reason", "end")
            self._emit(CallEnd(f"close:{client_text(reason, 'close reason')}"))

    def _on_ping(self, parameters: dict[str, Any]) -> None:
        self._send("pong", {})

    def _on_paused(self, parameters: dict[str, Any]) -> None:
        if self.state == "active":
            self.state = "paused"
            self._emit(Pause())

    def _on_resumed(self, parameters: dict[str, Any]) -> None:
        if self.state == "paused":
            self.state = "active"

    def _on_update(self, parameters: dict[str, Any]) -> None:
        self._send("updated", {})

    def _on_discarded(self, parameters: dict[str, Any]) -> None:
        """Audio the client could not send; nothing to do (the timeline just continues)."""

    def _on_error(self, parameters: dict[str, Any]) -> None:
        """The client reports an error about our messages; it follows with 'close'."""

    def _bytes(self, data: bytes) -> None:
        if self.state != "active":
            raise ProtocolViolation(f"audio frame received in state {self.state}; audio may "
                                    "only follow 'opened' and not while paused or closed")
        n_channels = len(self.channels)
        if len(data) % n_channels:
            raise ProtocolViolation(
                f"audio frame of {len(data)} bytes is not a whole number of "
                f"{n_channels}-channel PCMU sample frames", CLOSE_INVALID)
        n = len(data) // n_channels
        self._check_audio_ms(n, TELEPHONY_RATE)
        samples = pcm16_to_unit(ulaw_decode(data)).reshape(n, n_channels)
        self.samples_received += n
        for i, role in enumerate(self.roles):
            self._emit(ChannelAudio(role, np.ascontiguousarray(samples[:, i])))
