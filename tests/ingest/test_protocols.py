"""The sans-I/O parsers, fed bytes and dicts: handshakes, tracks, decoding, errors."""

from __future__ import annotations

import base64
import json

import numpy as np

from streamer.audio.telephony import ulaw_decode
from streamer.ingest.audiohook import NULL_UUID, AudioHookProtocol
from streamer.ingest.clients import client_ids
from streamer.ingest.protocol import (
    CLOSE_INVALID,
    CLOSE_POLICY,
    CLOSE_UNSUPPORTED,
    ROUTES,
    CallEnd,
    CallStart,
    ChannelAudio,
    Failure,
    Limits,
    Pause,
    Reply,
    published_stream_id,
    split_stream_id,
)
from streamer.ingest.raw_pcm import RawPcmProtocol
from streamer.ingest.twilio import TwilioProtocol, signature_ok, twilio_signature

LIMITS = Limits()
CODES = bytes([0x00, 0x80, 0x70, 0xF0, 0xFF, 0x0F])  # known PCM: -32124 32124 -120 120 0 -16764
PCM = [-32124, 32124, -120, 120, 0, -16764]


def kinds(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


# ------------------------------------------------------------------- Twilio
def twilio_start(tracks: list[str] | None = None, **fmt: object) -> str:
    media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **fmt}
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
                       "start": {"streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1",
                                 "tracks": tracks or ["inbound", "outbound"],
                                 "customParameters": {}, "mediaFormat": media_format}})


def twilio_media(track: str, payload: bytes, timestamp: int = 0) -> str:
    return json.dumps({"event": "media", "sequenceNumber": "3", "streamSid": "MZ1",
                       "media": {"track": track, "chunk": "1", "timestamp": str(timestamp),
                                 "payload": base64.b64encode(payload).decode()}})


def test_twilio_tracks_become_customer_and_agent_with_known_pcm() -> None:
    p = TwilioProtocol(LIMITS)
    p.receive_text(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    p.receive_text(twilio_start())
    (start,) = p.poll()
    assert start == CallStart("twilio:CA1", ("customer", "agent"), 8000,
                              "twilio:MZ1 tracks inbound,outbound")
    p.receive_text(twilio_media("inbound", CODES))
    p.receive_text(twilio_media("outbound", CODES[::-1]))
    a, b = p.poll()
    assert isinstance(a, ChannelAudio) and a.channel == "customer"
    assert isinstance(b, ChannelAudio) and b.channel == "agent"
    assert np.round(a.samples * 32768).astype(int).tolist() == PCM
    assert np.round(b.samples * 32768).astype(int).tolist() == PCM[::-1]
    p.receive_text(json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}}))
    p.receive_text(json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {}}))
    assert p.poll() == [CallEnd("stop")] and p.marks == ["m1"]


def test_twilio_fills_a_timestamp_gap_with_silence() -> None:
    p = TwilioProtocol(LIMITS)
    p.receive_text(twilio_start(["inbound"]))
    p.receive_text(twilio_media("inbound", bytes([0xFF]) * 160, timestamp=0))
    p.receive_text(twilio_media("inbound", bytes([0xFF]) * 160, timestamp=1020))
    audio = [e for e in p.poll() if isinstance(e, ChannelAudio)]
    assert [len(a.samples) for a in audio] == [160, 8000, 160]


def test_twilio_errors_close_with_codes_and_no_error_message() -> None:
    cases = [
        ("not json", CLOSE_INVALID),
        (twilio_media("inbound", b"x"), CLOSE_POLICY),  # media before start
        (twilio_start(encoding="audio/l16"), CLOSE_UNSUPPORTED),
    ]
    for text, code in cases:
        p = TwilioProtocol(LIMITS)
        p.receive_text(text)
        (failure,) = p.poll()
        assert isinstance(failure, Failure) and failure.close_code == code, text
    p = TwilioProtocol(LIMITS)
    p.receive_text(twilio_start(["inbound"]))
    p.poll()
    p.receive_text(twilio_media("outbound", b"\xff"))  # track not announced
    p.receive_text(twilio_media("inbound", b"\xff"))  # ignored after the failure
    (failure,) = p.poll()
    assert "not announced" in failure.message
    p = TwilioProtocol(LIMITS)
    p.receive_text(twilio_start(["inbound"]))
    p.poll()
    p.receive_text(json.dumps({"event": "media", "streamSid": "MZ1",
                               "media": {"track": "inbound", "payload": "%%%"}}))
    assert p.poll()[0].close_code == CLOSE_INVALID


def test_twilio_limits_audio_per_message() -> None:
    p = TwilioProtocol(Limits(max_audio_ms_per_message=100))
    p.receive_text(twilio_start(["inbound"]))
    p.poll()
    p.receive_text(twilio_media("inbound", b"\xff" * 8001))
    (failure,) = p.poll()
    assert "ms of audio" in failure.message


def test_twilio_signature() -> None:
    url = "wss://calls.example.com/ingest/twilio"
    sig = twilio_signature("secret", url)
    assert signature_ok("secret", url, sig)
    assert not signature_ok("other", url, sig)
    assert not signature_ok("secret", url + "x", sig)
    assert not signature_ok("secret", url, None)


# ---------------------------------------------------------------- AudioHook
class Client:
    def __init__(self) -> None:
        self.seq = 0
        self.p = AudioHookProtocol(LIMITS)

    def send(self, kind: str, parameters: dict, **override: object) -> list:
        self.seq += 1
        message = {"version": "2", "id": "sess-1", "type": kind, "seq": self.seq,
                   "serverseq": self.p.seq, "position": "PT0S", "parameters": parameters,
                   **override}
        self.p.receive_text(json.dumps(message))
        return self.p.poll()


def open_params(conversation: str = "conv-1", media: list | None = None) -> dict:
    return {"organizationId": "org", "conversationId": conversation,
            "participant": {"id": "p", "ani": "+1555", "aniName": "", "dnis": ""},
            "media": media if media is not None else [
                {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000},
                {"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
                 "rate": 8000}]}


def replies(events: list) -> list[dict]:
    return [json.loads(e.text) for e in events if isinstance(e, Reply)]


def test_audiohook_open_selects_stereo_pcmu_and_splits_channels() -> None:
    c = Client()
    events = c.send("open", open_params())
    (opened,) = replies(events)
    assert opened["type"] == "opened" and opened["seq"] == 1 and opened["clientseq"] == 1
    assert opened["id"] == "sess-1"
    assert opened["parameters"]["media"] == [
        {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}]
    starts = [e for e in events if isinstance(e, CallStart)]
    assert starts[0].stream_id == "audiohook:conv-1" and starts[0].channels == ("customer", "agent")
    interleaved = bytes(b for pair in zip(CODES, CODES[::-1], strict=True) for b in pair)
    c.p.receive_bytes(interleaved)
    ext, internal = c.p.poll()
    assert ext.channel == "customer" and internal.channel == "agent"
    assert np.round(ext.samples * 32768).astype(int).tolist() == PCM
    assert np.round(internal.samples * 32768).astype(int).tolist() == PCM[::-1]


def test_audiohook_ping_pause_resume_close() -> None:
    c = Client()
    c.send("open", open_params())
    assert replies(c.send("ping", {"rtt": "PT0.05S"}))[0]["type"] == "pong"
    assert kinds(c.send("paused", {})) == ["Pause"]
    c.p.receive_bytes(b"\xff\xff")  # audio while paused is a protocol error
    failure = c.p.poll()
    assert replies(failure)[0]["type"] == "disconnect"
    assert isinstance(failure[-1], Failure)
    c = Client()
    c.send("open", open_params())
    c.send("paused", {})
    assert c.send("resumed", {"start": "PT1S", "discarded": "PT0.5S"}) == []
    events = c.send("close", {"reason": "end"})
    assert replies(events)[0]["type"] == "closed" and isinstance(events[-1], CallEnd)
    assert not any(isinstance(e, Pause) for e in events)


def test_audiohook_probe_opens_without_a_call() -> None:
    c = Client()
    events = c.send("open", open_params(NULL_UUID))
    assert kinds(events) == ["Reply"] and c.p.state == "probe"
    assert kinds(c.send("close", {"reason": "end"})) == ["Reply"]


def test_audiohook_violations_disconnect_then_answer_close() -> None:
    c = Client()
    events = c.send("open", open_params(), seq=5)  # seq must be 1
    (disconnect,) = replies(events)
    assert disconnect["type"] == "disconnect"
    assert disconnect["parameters"]["reason"] == "error"
    assert "seq 5" in disconnect["parameters"]["info"]
    assert events[-1].linger_s > 0
    c.p.receive_text(json.dumps({"version": "2", "id": "sess-1", "type": "close", "seq": 6,
                                 "serverseq": 1, "position": "PT0S",
                                 "parameters": {"reason": "error"}}))
    assert replies(c.p.poll())[0]["type"] == "closed"

    c = Client()
    events = c.send("open", open_params(media=[{"type": "audio", "format": "L16",
                                                 "channels": ["external"], "rate": 16000}]))
    assert "none of the offered media" in replies(events)[0]["parameters"]["info"]

    c = Client()
    c.send("open", open_params())
    c.p.receive_bytes(b"\xff\xff\xff")  # odd byte count for stereo
    assert "not a whole number" in replies(c.p.poll())[0]["parameters"]["info"]

    c = Client()
    c.p.receive_text("{broken")
    assert replies(c.p.poll())[0]["type"] == "disconnect"


# ----------------------------------------------------------------- raw PCM
def test_raw_pcm_start_message_and_interleaved_frames() -> None:
    p = RawPcmProtocol(LIMITS)
    p.receive_text(json.dumps({"type": "start", "stream_id": "call-1", "sample_rate": 8000,
                               "channels": 2}))
    started, start = p.poll()
    assert json.loads(started.text)["channels"] == ["customer", "agent"]
    assert json.loads(started.text)["stream_id"] == "call-1"
    assert json.loads(started.text)["published_stream_id"] == "pcm:call-1"
    assert start == CallStart("pcm:call-1", ("customer", "agent"), 8000, "pcm:pcm16le/8000Hz/2ch")
    frames = np.array([[1000, -1000], [2000, -2000]], dtype="<i2")
    p.receive_bytes(frames.tobytes())
    a, b = p.poll()
    assert np.round(a.samples * 32768).tolist() == [1000, 2000]
    assert np.round(b.samples * 32768).tolist() == [-1000, -2000]
    p.receive_text('{"type": "stop"}')
    assert kinds(p.poll()) == ["Reply", "CallEnd"]


def test_raw_pcm_from_query_string_with_mulaw() -> None:
    p = RawPcmProtocol(LIMITS, {"stream_id": "q1", "sample_rate": "8000", "channels": "1",
                                "encoding": "mulaw", "roles": "caller"})
    assert kinds(p.poll()) == ["Reply", "CallStart"]
    p.receive_bytes(CODES)
    (audio,) = p.poll()
    assert audio.channel == "caller"
    assert np.array_equal(np.round(audio.samples * 32768), ulaw_decode(CODES))


def test_raw_pcm_errors_reply_then_fail() -> None:
    cases = [
        ('{"type": "start", "stream_id": "a/b"}', "stream id"),
        ('{"type": "start", "stream_id": "a", "sample_rate": 1}', "sample_rate"),
        ('{"type": "start", "stream_id": "a", "encoding": "opus"}', "encoding"),
        ('{"type": "hello"}', "unknown message type"),
    ]
    for text, words in cases:
        p = RawPcmProtocol(LIMITS)
        p.receive_text(text)
        reply, failure = p.poll()
        assert json.loads(reply.text)["type"] == "error" and words in failure.message, text
    p = RawPcmProtocol(LIMITS)
    p.receive_bytes(b"\x00\x00")
    assert "before 'start'" in p.poll()[-1].message
    p = RawPcmProtocol(LIMITS, {"stream_id": "x", "channels": "2"})
    p.poll()
    p.receive_bytes(b"\x00\x00\x00")
    assert p.poll()[-1].close_code == CLOSE_INVALID


# --------------------------------------------------------- stream id namespaces
def test_stream_ids_carry_their_route_unless_namespacing_is_off() -> None:
    """The published id is <route>:<client id> (round 3, item 2); the client's id is kept
    short enough that the published one passes the edge identifier rule (128 chars)."""
    for namespaced, want in ((True, ["pcm:CA1", "twilio:CA1", "audiohook:CA1"]),
                             (False, ["CA1", "CA1", "CA1"])):
        limits = Limits(namespace_stream_ids=namespaced)
        pcm = RawPcmProtocol(limits, {"stream_id": "CA1"})
        twilio = TwilioProtocol(limits)
        twilio.receive_text(twilio_start())
        audiohook = AudioHookProtocol(limits)
        audiohook.receive_text(json.dumps({
            "version": "2", "id": "sess-1", "type": "open", "seq": 1, "serverseq": 0,
            "position": "PT0S", "parameters": open_params("CA1")}))
        got = [next(e for e in p.poll() if isinstance(e, CallStart)).stream_id
               for p in (pcm, twilio, audiohook)]
        assert got == want
    assert RawPcmProtocol(LIMITS, {"stream_id": "a" * 124}).poll()[-1].stream_id == \
        "pcm:" + "a" * 124
    failed = RawPcmProtocol(LIMITS, {"stream_id": "a" * 125}).poll()[-1]
    assert isinstance(failed, Failure) and failed.close_code == CLOSE_INVALID
    assert "at most 124" in failed.message
    assert RawPcmProtocol(Limits(namespace_stream_ids=False),
                          {"stream_id": "a" * 128}).poll()[-1].stream_id == "a" * 128
    assert ROUTES == tuple(p.name for p in (RawPcmProtocol, TwilioProtocol, AudioHookProtocol))
    assert split_stream_id("twilio:CA1") == ("twilio", "CA1")
    assert split_stream_id("pcm:a:b") == ("pcm", "a:b")
    assert split_stream_id("CA1") == (None, "CA1")
    assert split_stream_id("sales:1") == (None, "sales:1")  # not a route: an id of its own
    assert published_stream_id("audiohook", "c-1") == "audiohook:c-1"
    assert published_stream_id("audiohook", "c-1", namespaced=False) == "c-1"
    # What the load generator and the soak match events by, under either setting.
    assert client_ids("pcm", ["a", "b"]) == {"a": "a", "b": "b", "pcm:a": "a", "pcm:b": "b"}
