"""Digit runs in transcripts masked before any publisher sees them (bus.redact_digit_runs)."""

from __future__ import annotations

import io
import json

from models.asr import Transcript, Word
from streamer.core import events
from streamer.core.config import AppConfig, load_config
from streamer.core.messages import EmotionResult
from streamer.core.redaction import redact_digits
from streamer.publish.bus import EventBus
from streamer.publish.sinks import StdoutSink


def test_runs_of_digits_are_masked_keeping_their_shape() -> None:
    assert redact_digits("card 4111 1111 1111 1111 ok", 6) == "card #### #### #### #### ok"
    assert redact_digits("call 555-0100 at 3 pm, room 12", 6) == "call ###-#### at 3 pm, room 12"
    assert redact_digits("account 12.34.56", 6) == "account ##.##.##"
    assert redact_digits("in 2024 we met 3 times", 6) == "in 2024 we met 3 times"


def test_events_leave_the_bus_redacted() -> None:
    words = tuple(Word(w, i * 0.3, i * 0.3 + 0.3, 0.9)
                  for i, w in enumerate([" My", " card", " is", " 4111", " 1111", " 1111",
                                         " 1111."]))
    transcript = Transcript("My card is 4111 1111 1111 1111.", words, "en")
    result = EmotionResult("neutral", {"neutral": 1.0}, 1.0, "m")
    event = events.utterance_emotion("s1", "customer", 0, 0.0, 2.0, "pause", transcript,
                                     result, events.Latency(300, 1, 1, 1, 303))
    partial = events.utterance_partial("s1", "customer", 1, 0.0, 1.0, "it is 555 0100 99",
                                       "it is 555 0100")
    bus = EventBus(redact_digit_runs=6)
    out = io.StringIO()
    sink = StdoutSink(bus, pretty=False, include_partials=True, out=out)
    bus.publish(event)
    bus.publish(partial)
    sink.drain_now()
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert got[0]["text"] == "My card is #### #### #### ####."
    assert [w["word"] for w in got[0]["words"]] == [" My", " card", " is", " ####", " ####",
                                                   " ####", " ####."]
    assert got[1]["text"] == "it is ### #### ##" and got[1]["stable_text"] == "it is ### ####"
    assert event["text"].endswith("1111.")  # the caller's event is not changed
    assert "4111" not in out.getvalue() and "0100" not in out.getvalue()


def test_redaction_is_on_by_default_and_can_be_turned_off() -> None:
    transcript = Transcript("call me on 555 0100 99", (), "en")
    result = EmotionResult("neutral", {"neutral": 1.0}, 1.0, "m")
    event = events.utterance_emotion("s1", "customer", 0, 0.0, 2.0, "pause", transcript,
                                     result, events.Latency(300, 1, 1, 1, 303))
    for config, text in ((AppConfig(), "call me on ### #### ##"),
                         (load_config(overrides=["bus.redact_digit_runs=null"]),
                          "call me on 555 0100 99")):
        bus = EventBus(config.bus.subscriber_queue, config.bus.redact_digit_runs)
        sub = bus.subscribe("test")
        bus.publish(event)
        got = sub.get_nowait()
        assert got is not None and got["text"] == text
