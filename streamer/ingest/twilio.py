"""Twilio Media Streams (``<Start><Stream>`` / ``<Connect><Stream>``), receive side.

Twilio opens ``wss://<your host>/ingest/twilio`` and sends JSON text messages:
``connected`` (protocol "Call"), ``start`` (streamSid, callSid, ``tracks`` such as
["inbound", "outbound"], ``mediaFormat`` audio/x-mulaw 8000 Hz mono), then ``media``
messages (``media.track``, ``media.chunk``, ``media.timestamp`` in ms, base64 mu-law
``media.payload``, about 20 ms each), optional ``mark`` and ``dtmf``, and ``stop``.
Each track is one party: inbound = the caller (customer role), outbound = what the
caller hears (agent role). Use ``<Start><Stream track="both_tracks">`` for both.

Media Streams has no error message towards Twilio: on a malformed message the server
closes the WebSocket with a close code and a reason. Media Streams sends text only: a
binary message closes with 1003.

Authentication: Twilio signs the WebSocket handshake with ``X-Twilio-Signature`` =
base64(HMAC-SHA1(auth token, the URL it dialled)); ``signature_ok`` checks it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
from typing import Any

import numpy as np

from streamer.audio.telephony import TELEPHONY_RATE, pcm16_to_unit, ulaw_decode
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
    client_identifier,
    client_text,
    parse_json_object,
    require,
)

log = logging.getLogger(__name__)

TRACKS = ("inbound", "outbound")
MAX_GAP_FILL_MS = 5000  # silence inserted for a track's missing media, at most per gap
# Silence filled in a call, at most: MAX_GAP_FILL_MS plus the audio the call really sent, so
# timestamps that keep jumping cannot turn a few frames into hours of audio.
GAP_TOLERANCE_MS = 60
MAX_LOGGED_GAPS = 5  # skipped gaps logged per call; the rest are counted (gaps_skipped)
MAX_NOTED = 100  # marks and DTMF digits kept (the latest), so a client cannot grow them


def twilio_signature(auth_token: str, url: str) -> str:
    """X-Twilio-Signature of a request without POST parameters (the WebSocket handshake)."""
    digest = hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_ok(auth_token: str, url: str, signature: str | None) -> bool:
    # With an empty key anyone can compute the signature: it proves nothing.
    if not signature or not auth_token.strip():
        return False
    # Header values arrive surrogate-escaped when they are not ASCII: compare their bytes.
    return hmac.compare_digest(twilio_signature(auth_token, url).encode(),
                               signature.encode("utf-8", "surrogateescape"))


class TwilioProtocol(IngestProtocol):
    name = "twilio"

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self.stream_sid: str | None = None
        self.roles: dict[str, str] = {}  # track -> role
        self._received_ms: dict[str, float] = {}  # per track, audio received so far
        self.sent_ms = 0.0  # audio the client sent (all tracks)
        self.filled_ms = 0.0  # silence inserted for gaps (all tracks)
        self.skipped_ms = 0.0  # gaps not filled (over the caps): the timeline jumps instead
        self.gaps_skipped = 0
        self.marks: list[str] = []
        self.dtmf: list[str] = []
        self._messages = 0

    def _text(self, text: str) -> None:
        message = parse_json_object(text, "Media Streams message")
        event = require(message, "event", str, "Media Streams message")
        self._messages += 1
        if event == "connected":
            if self._messages != 1:
                raise ProtocolViolation("'connected' must be the first message")
        elif event == "start":
            self._start(message)
        elif event == "media":
            self._media(message)
        elif event == "stop":
            self._require_started("stop")
            self._emit(CallEnd("stop"))
        elif event == "mark":
            self._require_started("mark")
            mark = message.get("mark")
            self._note(self.marks, mark.get("name") if isinstance(mark, dict) else None)
        elif event == "dtmf":
            dtmf = message.get("dtmf")
            self._note(self.dtmf, dtmf.get("digit") if isinstance(dtmf, dict) else None)
        else:
            raise ProtocolViolation(
                f"unknown Media Streams event {shown(event)}; expected connected, start, media, "
                "mark, dtmf or stop", CLOSE_INVALID)

    @staticmethod
    def _note(kept: list[str], value: object) -> None:
        """Keep the latest MAX_NOTED marks/digits (free text: DTMF '#' is a digit)."""
        kept.append(client_text(value, "mark name or DTMF digit") if value is not None else "")
        del kept[:-MAX_NOTED]

    def _require_started(self, event: str) -> None:
        if not self.started:
            raise ProtocolViolation(f"'{event}' before 'start'")
        if self.ended:
            raise ProtocolViolation(f"'{event}' after 'stop'")

    def _check_sid(self, message: dict[str, Any]) -> None:
        sid = message.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            raise ProtocolViolation(f"streamSid {shown(sid)} does not match the stream's "
                                    f"{self.stream_sid!r}")

    def _start(self, message: dict[str, Any]) -> None:
        if self.started:
            raise ProtocolViolation("'start' was already received; one stream per connection")
        start = require(message, "start", dict, "start message")
        stream_sid = client_identifier(require(start, "streamSid", str, "start"),
                                       "start.streamSid")
        call_sid = start.get("callSid")
        if call_sid is not None and call_sid != "":
            call_sid = client_identifier(call_sid, "start.callSid")
        tracks = start.get("tracks", ["inbound"])
        if (not isinstance(tracks, list) or not tracks
                or not all(isinstance(t, str) and t in TRACKS for t in tracks)
                or len(set(tracks)) != len(tracks)):
            raise ProtocolViolation(f"start.tracks must be a list of {list(TRACKS)}, got "
                                    f"{shown(tracks)}", CLOSE_INVALID)
        fmt = require(start, "mediaFormat", dict, "start")
        if (fmt.get("encoding") != "audio/x-mulaw" or fmt.get("sampleRate") != TELEPHONY_RATE
                or fmt.get("channels") != 1):
            raise ProtocolViolation(
                f"start.mediaFormat {shown(fmt)} is not supported; Media Streams send "
                "audio/x-mulaw, 8000 Hz, 1 channel", CLOSE_UNSUPPORTED)
        stream_id = self._stream_id(call_sid if call_sid else stream_sid, "start")
        self.stream_sid = stream_sid
        role_of = {"inbound": self.limits.customer_role, "outbound": self.limits.agent_role}
        self.roles = {t: role_of[t] for t in tracks}
        self._received_ms = {t: 0.0 for t in tracks}
        self._emit(CallStart(stream_id, tuple(self.roles.values()), TELEPHONY_RATE,
                             f"twilio:{stream_sid} tracks {','.join(tracks)}"))

    def _media(self, message: dict[str, Any]) -> None:
        self._require_started("media")
        self._check_sid(message)
        media = require(message, "media", dict, "media message")
        track = media.get("track", "inbound")
        if not isinstance(track, str) or track not in self.roles:
            raise ProtocolViolation(f"media.track {shown(track)} was not announced in "
                                    f"start.tracks {list(self.roles)}")
        payload = require(media, "payload", str, "media")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolViolation(f"media.payload is not valid base64 ({exc})",
                                    CLOSE_INVALID) from exc
        self._check_audio_ms(len(data), TELEPHONY_RATE)
        role = self.roles[track]
        gap = self._gap_ms(track, media.get("timestamp"))
        if gap > 0:
            self._fill(track, role, gap)
        samples = pcm16_to_unit(ulaw_decode(data))
        self._received_ms[track] += len(samples) * 1000 / TELEPHONY_RATE
        self.sent_ms += len(samples) * 1000 / TELEPHONY_RATE
        self._emit(ChannelAudio(role, samples))

    def _fill(self, track: str, role: str, gap: float) -> None:
        """Fill ``gap`` ms with silence: at most MAX_GAP_FILL_MS per message (a longer gap
        is caught up over the next messages), and in all at most MAX_GAP_FILL_MS plus the
        audio the call sent. Beyond that the gap is skipped: the track's timeline jumps to
        the timestamp, and the skip is logged and counted (``gaps_skipped``, ``skipped_ms``)."""
        allowed = max(0.0, MAX_GAP_FILL_MS + self.sent_ms - self.filled_ms)
        fill_ms = min(gap, MAX_GAP_FILL_MS, allowed)
        samples = int(fill_ms * TELEPHONY_RATE / 1000)
        if samples > 0:
            self._emit(ChannelAudio(role, np.zeros(samples, dtype=np.float32)))
        filled = samples * 1000 / TELEPHONY_RATE
        self.filled_ms += filled
        self._received_ms[track] += filled
        if allowed >= gap:
            return
        skipped = gap - filled
        self._received_ms[track] += skipped
        self.gaps_skipped += 1
        self.skipped_ms += skipped
        if self.gaps_skipped <= MAX_LOGGED_GAPS:
            log.warning("twilio %s: track %s media timestamp jumped %.0f ms ahead; filled "
                        "%.0f ms of silence and skipped %.0f ms (silence filled in a call is "
                        "at most %d ms more than the audio it sent)%s", self.stream_sid, track,
                        gap, filled, skipped, MAX_GAP_FILL_MS,
                        "; further skips are counted only"
                        if self.gaps_skipped == MAX_LOGGED_GAPS else "")

    def _gap_ms(self, track: str, timestamp: Any) -> float:
        """Twilio may skip media for a silent track; keep the parties' timelines aligned."""
        try:
            at = float(timestamp)
        except (TypeError, ValueError, OverflowError):
            return 0.0
        if not math.isfinite(at):
            return 0.0
        gap = at - self._received_ms[track]
        return gap if gap > GAP_TOLERANCE_MS else 0.0
