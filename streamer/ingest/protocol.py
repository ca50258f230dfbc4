"""What every ingest protocol parser emits, and the base class they share.

Parsers are sans-I/O: the connection handler feeds them the WebSocket messages it
receives (``receive_text`` / ``receive_bytes``) and then drains ``poll()``, a list of
frozen ``IngestEvent`` dataclasses saying what to do (start the call, route audio to a
party, send a reply, end the call, or close the connection because the client broke
the protocol). Parsers never raise on bad input: a violation becomes the protocol's own
error reply (if it has one) followed by ``Failure``; after that the parser ignores
everything except what the protocol allows to close the session.

Every string a client sends is checked with ``streamer.core.validation`` before it is used
(a bad one closes with 1007).

Stream ids are namespaced by route (``published_stream_id``): the id a call's events carry
is ``<protocol>:<the client's id>`` (``pcm:call-1``, ``twilio:CA...``,
``audiohook:<conversationId>``), so a client of one route cannot take (squat) the id of
another route's call; ``Limits.namespace_stream_ids`` off (``ingest.namespace_stream_ids:
false``) keeps the client's id as it is. A bug in a parser (any other exception) is logged with its
traceback, counted in ``IngestProtocol.internal_errors`` and closes that one connection
with 1011; the fuzz tests (tests/reliability/test_fuzz_protocols.py) assert it never
happens. Close codes a parser may produce: ``PARSER_CLOSE_CODES``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.core.validation import (
    MAX_IDENTIFIER_CHARS,
    InvalidClientString,
    check_identifier,
    check_text,
    shown,
)

log = logging.getLogger(__name__)

# WebSocket close codes (RFC 6455) used on protocol failures.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003  # audio format we cannot decode
CLOSE_INVALID = 1007  # malformed content: bad JSON, bad base64, torn PCM frames
CLOSE_POLICY = 1008  # message out of order, wrong ids, limits exceeded
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011  # a bug in the server: never expected (fuzz-tested)
PARSER_CLOSE_CODES = frozenset({CLOSE_UNSUPPORTED, CLOSE_INVALID, CLOSE_POLICY})

# Between the route and the client's id in a published stream id. Allowed by the edge
# identifier rule, left as it is in MQTT topic levels (``mqtt_publisher.topic_part``), and
# not in any route name, so the first one splits the id; unlike '-' it is rare inside ids
# (call-1, UUIDs), so a queue pattern written for raw ids does not read the route as a queue.
STREAM_ID_SEPARATOR = ":"
ROUTES = ("pcm", "twilio", "audiohook")  # IngestProtocol.name of each route


def published_stream_id(protocol: str, client_id: str, namespaced: bool = True) -> str:
    """The stream id a call's events carry: ``<protocol>:<client_id>`` (``pcm:call-1``,
    ``twilio:CA...``), or ``client_id`` itself when namespacing is off."""
    return f"{protocol}{STREAM_ID_SEPARATOR}{client_id}" if namespaced else client_id


def split_stream_id(stream_id: str) -> tuple[str | None, str]:
    """(route, the client's id) of a namespaced ingest stream id; (None, ``stream_id``) for
    any other id (``run``'s, or ``ingest.namespace_stream_ids: false``)."""
    route, sep, client_id = stream_id.partition(STREAM_ID_SEPARATOR)
    if sep and route in ROUTES and client_id:
        return route, client_id
    return None, stream_id


@dataclass(frozen=True)
class Limits:
    """Per-connection limits and naming every parser applies."""

    max_audio_ms_per_message: int = 1000
    customer_role: str = "customer"
    agent_role: str = "agent"
    # Caller numbers (AudioHook participant ani/dnis) in ``CallStart.source``, which goes
    # into stream.started events and INFO logs; personal data, so off unless turned on.
    include_caller_numbers: bool = False
    # Published stream ids carry the route (``published_stream_id``); off: the client's id.
    namespace_stream_ids: bool = True


@dataclass(frozen=True)
class CallStart:
    """The call's audio format is known: start one recognizer channel per party."""

    stream_id: str  # as published (``published_stream_id``): the key of the live calls
    channels: tuple[str, ...]  # role names, one per party, in the protocol's order
    sample_rate: int  # of the ChannelAudio samples that follow
    source: str  # human-readable origin, e.g. "twilio:MZ123 call CA456 track inbound"


@dataclass(frozen=True)
class ChannelAudio:
    channel: str
    samples: np.ndarray  # (N,) float32 in [-1, 1] at CallStart.sample_rate


@dataclass(frozen=True)
class Reply:
    """A text message to send back to the client."""

    text: str


@dataclass(frozen=True)
class Pause:
    """Audio is paused (e.g. AudioHook hold or secure pause): close open utterances."""


@dataclass(frozen=True)
class CallEnd:
    """The client ended the call in protocol (stop / close); no more audio follows."""

    reason: str


@dataclass(frozen=True)
class Failure:
    """The client broke the protocol: close with ``close_code`` (after ``linger_s``)."""

    close_code: int
    message: str
    linger_s: float = 0.0  # keep reading this long for the protocol's close handshake


IngestEvent = CallStart | ChannelAudio | Reply | Pause | CallEnd | Failure


class ProtocolViolation(Exception):
    """Raised inside a parser; ``receive_*`` turns it into the protocol's error + Failure."""

    def __init__(self, message: str, close_code: int = CLOSE_POLICY) -> None:
        super().__init__(message)
        self.close_code = close_code


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except RecursionError as exc:
        raise ProtocolViolation(f"{what} is nested too deeply to parse", CLOSE_INVALID) from exc
    except ValueError as exc:
        raise ProtocolViolation(f"{what} is not valid JSON ({exc})", CLOSE_INVALID) from exc
    if not isinstance(message, dict):
        raise ProtocolViolation(f"{what} must be a JSON object, got {type(message).__name__}",
                                CLOSE_INVALID)
    return message


def require(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ProtocolViolation(f"{where}: '{key}' must be a {names}, got {shown(value)}",
                                CLOSE_INVALID)
    return value


def stream_id_of(protocol: str, client_id: object, where: str, namespaced: bool) -> str:
    """The published stream id of a call whose client named it ``client_id``: the client's
    id is checked with the edge identifier rule, short enough that the published id still
    fits it (``MAX_IDENTIFIER_CHARS`` less the route's prefix)."""
    prefix = len(published_stream_id(protocol, "", namespaced))
    try:
        check_identifier(client_id, f"{where}: stream id", MAX_IDENTIFIER_CHARS - prefix)
    except InvalidClientString as exc:
        raise ProtocolViolation(str(exc), CLOSE_INVALID) from exc
    assert isinstance(client_id, str)
    return published_stream_id(protocol, client_id, namespaced)


def client_identifier(value: object, what: str) -> str:
    """``validation.check_identifier`` as a protocol violation (close 1007)."""
    try:
        return check_identifier(value, what)
    except InvalidClientString as exc:
        raise ProtocolViolation(str(exc), CLOSE_INVALID) from exc


def client_text(value: object, what: str) -> str:
    """``validation.check_text`` as a protocol violation (close 1007)."""
    try:
        return check_text(value, what)
    except InvalidClientString as exc:
        raise ProtocolViolation(str(exc), CLOSE_INVALID) from exc


class IngestProtocol:
    """Base of the sans-I/O parsers. Subclasses implement ``_text``, ``_bytes`` and
    ``_error_reply`` (the protocol's own error message, or None)."""

    name = "base"

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.failed = False
        self.started = False
        self.ended = False
        self.internal_errors = 0  # parser bugs caught by _guarded (expected: 0)
        self._out: list[IngestEvent] = []

    # ------------------------------------------------------------------ input
    def receive_text(self, text: str) -> None:
        self._guarded(self._text, text)

    def receive_bytes(self, data: bytes) -> None:
        self._guarded(self._bytes, data)

    def poll(self) -> list[IngestEvent]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------ for parsers
    def _emit(self, event: IngestEvent) -> None:
        if isinstance(event, CallStart):
            self.started = True
        elif isinstance(event, CallEnd):
            self.ended = True
        self._out.append(event)

    def _guarded(self, handler: Any, payload: Any) -> None:
        if self.failed:
            self._after_failure(payload)
            return
        try:
            handler(payload)
        except ProtocolViolation as exc:
            self.failed = True
            reply = self._error_reply(str(exc))
            if reply is not None:
                self._out.append(Reply(reply))
            self._out.append(Failure(exc.close_code, str(exc), self._linger_s()))
        except Exception:  # a parser bug: end this connection only, loudly
            self.failed = True
            self.internal_errors += 1
            log.exception("ingest %s: internal error while parsing %s; closing this connection "
                          "(1011). This is a bug: please report it with the message above",
                          self.name, shown(payload))
            self._out.append(Failure(CLOSE_INTERNAL, "internal server error"))

    def _stream_id(self, client_id: object, where: str) -> str:
        """``stream_id_of`` for this route with the server's ``Limits``."""
        return stream_id_of(self.name, client_id, where, self.limits.namespace_stream_ids)

    def _check_audio_ms(self, samples: int, rate: int) -> None:
        ms = samples * 1000 / rate
        if ms > self.limits.max_audio_ms_per_message:
            raise ProtocolViolation(
                f"one message carries {ms:.0f} ms of audio, more than the "
                f"{self.limits.max_audio_ms_per_message} ms allowed; send smaller frames "
                "(telephony platforms send 20-100 ms)")

    def _text(self, text: str) -> None:
        raise ProtocolViolation(f"{self.name} takes no text messages", CLOSE_UNSUPPORTED)

    def _bytes(self, data: bytes) -> None:
        raise ProtocolViolation(f"{self.name} takes no binary messages", CLOSE_UNSUPPORTED)

    def _error_reply(self, message: str) -> str | None:
        return None

    def _linger_s(self) -> float:
        return 0.0

    @property
    def closing_done(self) -> bool:
        """After a failure: the protocol's close handshake is over (or it has none)."""
        return True

    def _after_failure(self, payload: Any) -> None:
        """Input after a failure: ignored unless the protocol has a close handshake."""
