"""Property-based fuzzing of the sans-I/O ingest parsers: any input, a documented outcome.

Each parser is fed arbitrary text, arbitrary bytes, arbitrary JSON values and messages
that are valid except for one fuzzed field, in arbitrary order. Whatever comes in:

- ``receive_text`` / ``receive_bytes`` never raise and never hit the parser-bug path
  (close 1011): every ``Failure`` carries one of ``PARSER_CLOSE_CODES`` (1003, 1007, 1008)
  and a reason that encodes as UTF-8;
- every ``Reply`` is JSON that encodes as UTF-8;
- a ``CallStart`` has a stream id and channel names that pass the edge rule
  (``streamer.core.validation``), and a printable source;
- audio goes only to announced channels, as finite float32 samples in [-1, 1].
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from hypothesis import event as label
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.validation import is_identifier
from streamer.ingest.audiohook import AudioHookProtocol
from streamer.ingest.protocol import (
    PARSER_CLOSE_CODES,
    CallStart,
    ChannelAudio,
    Failure,
    IngestProtocol,
    Limits,
    Reply,
)
from streamer.ingest.raw_pcm import RawPcmProtocol
from streamer.ingest.twilio import TwilioProtocol

LIMITS = Limits()

# Strings with everything: lone surrogates, NUL, controls, bidi overrides, long runs.
any_char = st.characters(exclude_categories=())
hostile = st.sampled_from(["\ud800", "a\x00b", "\x1b[31m", "\u202e", "x" * 129, "", " ",
                           "a/b", "+", "#", "\n", "\udfff\ud800", "ok"])
strings = st.one_of(st.text(any_char, max_size=40), hostile)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=12)


def maybe(valid: Any) -> st.SearchStrategy[Any]:
    """Mostly the valid value, sometimes (about 1 in 10) anything."""
    return st.integers(0, 9).flatmap(lambda i: json_values if i == 5 else st.just(valid))


def sessions(first: st.SearchStrategy[str], *rest: st.SearchStrategy[str | bytes]
             ) -> st.SearchStrategy[list[str | bytes]]:
    """A (fuzzed) opening message, then up to 8 messages of the given kinds or anything."""
    later = st.integers(0, 9).flatmap(
        lambda i: raw_messages if i == 5 else st.one_of(*rest))
    return st.tuples(first, st.lists(later, max_size=8)).map(lambda t: [t[0], *t[1]])


def dumps(value: Any) -> str:
    # Python's json writes lone surrogates as \ud800 escapes, exactly what a hostile client
    # would send; allow_nan lets NaN/Infinity through as a client could.
    return json.dumps(value)


def deep(n: int) -> str:
    return "[" * n + "]" * n


class Checked:
    """Feeds a parser and checks every event it emits against the invariants."""

    def __init__(self, protocol: IngestProtocol) -> None:
        self.p = protocol
        self.channels: tuple[str, ...] = ()
        self.failures = 0
        self.check()

    def feed(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.p.receive_text(message)
        else:
            self.p.receive_bytes(message)
        self.check()

    def outcome(self) -> None:
        """Label the example for --hypothesis-show-statistics (how deep fuzzing got)."""
        label(f"started={self.p.started} failed={self.p.failed} ended={self.p.ended}")

    def check(self) -> None:
        for event in self.p.poll():
            if isinstance(event, Failure):
                assert event.close_code in PARSER_CLOSE_CODES, event
                event.message.encode("utf-8")
                self.failures += 1
            elif isinstance(event, Reply):
                event.text.encode("utf-8")
                json.loads(event.text)
            elif isinstance(event, CallStart):
                assert is_identifier(event.stream_id), event
                assert event.channels and all(is_identifier(c) for c in event.channels), event
                assert len(set(event.channels)) == len(event.channels)
                assert event.source.isprintable()
                self.channels = event.channels
            elif isinstance(event, ChannelAudio):
                assert event.channel in self.channels, event
                assert event.samples.dtype == np.float32 and event.samples.ndim == 1
                assert np.all(np.isfinite(event.samples))
                assert np.all(np.abs(event.samples) <= 1.0)
        assert self.p.internal_errors == 0
        assert self.failures <= 1  # one Failure, then the parser only waits for the close


raw_messages = st.one_of(st.text(any_char, max_size=200), st.binary(max_size=400),
                         json_values.map(dumps), st.integers(1, 3000).map(deep))

# ------------------------------------------------------------------ raw PCM
pcm_start = st.fixed_dictionaries({
    "type": maybe("start"), "stream_id": maybe("call-1"), "sample_rate": maybe(8000),
    "channels": maybe(2), "encoding": st.one_of(st.sampled_from(["pcm16le", "mulaw"]),
                                                json_values),
    "roles": maybe(["customer", "agent"])}).map(dumps)
pcm_messages = st.one_of(raw_messages, pcm_start, st.just(dumps({"type": "stop"})),
                         st.binary(max_size=3200))


@given(st.one_of(st.lists(pcm_messages, max_size=8),
                 sessions(pcm_start, st.binary(max_size=3200), st.just(dumps({"type": "stop"})))))
def test_raw_pcm_any_messages(messages: list[str | bytes]) -> None:
    c = Checked(RawPcmProtocol(LIMITS))
    for m in messages:
        c.feed(m)
    c.outcome()


def maybe_str(valid: str) -> st.SearchStrategy[str]:
    return st.integers(0, 9).flatmap(lambda i: strings if i == 5 else st.just(valid))


queries = st.one_of(
    st.dictionaries(st.sampled_from(["stream_id", "sample_rate", "channels", "encoding",
                                     "roles", "token"]) | strings, strings, max_size=6),
    st.fixed_dictionaries({"stream_id": maybe_str("call-1"), "sample_rate": maybe_str("8000"),
                           "channels": maybe_str("2"), "encoding": maybe_str("mulaw"),
                           "roles": maybe_str("customer,agent")}))


@given(queries,
       st.lists(st.binary(max_size=800), max_size=3))
def test_raw_pcm_any_query_string(query: dict[str, str], audio: list[bytes]) -> None:
    c = Checked(RawPcmProtocol(LIMITS, query))
    for m in audio:
        c.feed(m)
    c.outcome()


# ------------------------------------------------------------------- Twilio
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


twilio_start = st.fixed_dictionaries({
    "event": maybe("start"), "streamSid": maybe("MZ1"),
    "start": maybe({"streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound", "outbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                    "channels": 1}}).flatmap(
        lambda start: st.just(start) if not isinstance(start, dict) else st.fixed_dictionaries(
            {k: maybe(v) for k, v in start.items()}))}).map(dumps)
twilio_media = st.fixed_dictionaries({
    "event": maybe("media"), "streamSid": maybe("MZ1"),
    "media": st.fixed_dictionaries({
        "track": st.one_of(st.sampled_from(["inbound", "outbound"]), json_values),
        "timestamp": st.one_of(st.integers(-10, 10**12).map(str), json_values,
                               st.just("1e400"), st.just("nan"), st.just(str(10**400))),
        "payload": st.one_of(st.binary(max_size=1600).map(b64), json_values)})}).map(dumps)
twilio_other = st.fixed_dictionaries({
    "event": st.sampled_from(["connected", "mark", "dtmf", "stop"]) | strings,
    "mark": maybe({"name": "m"}), "dtmf": maybe({"digit": "1"})}).map(dumps)


@given(st.one_of(st.lists(st.one_of(raw_messages, twilio_start, twilio_media, twilio_other),
                          max_size=8),
                 sessions(twilio_start, twilio_media, twilio_media, twilio_other)))
def test_twilio_any_messages(messages: list[str | bytes]) -> None:
    c = Checked(TwilioProtocol(LIMITS))
    for m in messages:
        c.feed(m)
    c.outcome()


# ---------------------------------------------------------------- AudioHook
def audiohook_message(kind: Any, seq: Any, parameters: Any, session: Any, position: Any) -> str:
    return dumps({"version": "2", "id": session, "type": kind, "seq": seq, "serverseq": 0,
                  "position": position, "parameters": parameters})


open_parameters = st.fixed_dictionaries({
    "organizationId": maybe("org"), "conversationId": maybe("conv-1"),
    "participant": maybe({"ani": "+15551234", "dnis": "+15550000"}),
    "media": maybe([{"type": "audio", "format": "PCMU", "channels": ["external", "internal"],
                     "rate": 8000}])})


@st.composite
def audiohook_session(draw: st.DrawFn) -> list[str | bytes]:
    out: list[str | bytes] = []
    session = draw(maybe("sess-1"))
    for seq in range(1, draw(st.integers(1, 8)) + 1):
        choice = draw(st.integers(0, 7)) if seq > 1 else 3
        if choice == 0:
            out.append(draw(raw_messages))
            continue
        if choice in (1, 2):
            out.append(draw(st.binary(max_size=1600)))
            continue
        kind = "open" if seq == 1 else draw(st.sampled_from(
            ["close", "ping", "paused", "resumed", "update", "discarded", "error"]) | strings)
        parameters = draw(open_parameters if kind == "open" else
                          st.dictionaries(strings, json_values, max_size=3))
        out.append(audiohook_message(draw(maybe(kind)), draw(maybe(seq)), parameters, session,
                                     draw(maybe("PT1.5S"))))
    return out


@given(audiohook_session(), st.booleans())
def test_audiohook_any_session(messages: list[str | bytes], caller_numbers: bool) -> None:
    c = Checked(AudioHookProtocol(Limits(include_caller_numbers=caller_numbers)))
    for m in messages:
        c.feed(m)
    c.outcome()


@given(st.sampled_from([RawPcmProtocol, TwilioProtocol, AudioHookProtocol]),
       st.integers(1, 100_000))
def test_deeply_nested_json_is_a_1007(cls: type[IngestProtocol], depth: int) -> None:
    p = cls(LIMITS)
    p.receive_text("[" * depth + "]" * depth)
    failure = [e for e in p.poll() if isinstance(e, Failure)]
    assert failure and failure[0].close_code == 1007
