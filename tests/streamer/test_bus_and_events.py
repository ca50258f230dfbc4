from __future__ import annotations

import jsonschema
import pytest

from models.asr import Transcript, Word
from streamer.core import events
from streamer.core.messages import EmotionResult
from streamer.publish.bus import EventBus


def sample_emotion(stream: str = "s1", channel: str = "mono", index: int = 0) -> dict:
    transcript = Transcript("hello there", (Word("hello", 0.0, 0.4, 0.9),
                                            Word("there", 0.4, 0.8, 0.8)), "en")
    result = EmotionResult("happy", {"happy": 0.7, "sad": 0.1, "angry": 0.1, "neutral": 0.1},
                           0.7, "test-model")
    latency = events.Latency(300.0, 1.0, 120.0, 5.0, 430.0)
    return events.utterance_emotion(stream, channel, index, 1.0, 2.0, "pause", transcript,
                                    result, latency)


def test_every_builder_matches_the_schema() -> None:
    for event in [
        events.stream_started("s1", "mono", "file:x.wav", "m", ("a", "b")),
        events.stream_ended("s1", "mono", 12.5, 3, "end_of_input"),
        events.utterance_partial("s1", "mono", 0, 0.5, 1.5, "hello th", "hello"),
        sample_emotion(),
        events.control("hello", server="emotion-stream", streams=[]),
        events.control("subscribed", streams="*", channels=["agent"]),
        events.control("subscriber.lagged", dropped=3),
        events.control("error", message="bad request"),
    ]:
        events.validate_event(event)


def test_schema_rejects_broken_events() -> None:
    event = sample_emotion()
    del event["latency"]
    with pytest.raises(jsonschema.ValidationError):
        events.validate_event(event)
    event = sample_emotion()
    event["confidence"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        events.validate_event(event)


async def test_slow_subscriber_loses_oldest_and_is_told() -> None:
    bus = EventBus(default_queue_size=3)
    slow = bus.subscribe("slow")
    for i in range(5):
        bus.publish(sample_emotion(index=i))
    assert slow.dropped == 2 and slow.take_dropped() == 2 and slow.take_dropped() == 0
    got = [(await slow.get())["utterance_id"] for _ in range(3)]
    assert got == ["s1/mono/2", "s1/mono/3", "s1/mono/4"]


async def test_filters_and_stream_directory() -> None:
    bus = EventBus()
    agent = bus.subscribe("agent", accept=lambda e: e.get("channel") == "agent")
    everyone = bus.subscribe("all")
    bus.publish(events.stream_started("call", "agent", "x", "m", ("a", "b")))
    bus.publish(events.stream_started("call", "customer", "x", "m", ("a", "b")))
    assert bus.streams.as_list() == [{"stream_id": "call", "channels": ["agent", "customer"]}]
    assert agent.qsize() == 1 and everyone.qsize() == 2
    bus.publish(events.stream_ended("call", "agent", 1.0, 0, "end_of_input"))
    bus.publish(events.stream_ended("call", "customer", 1.0, 0, "end_of_input"))
    assert bus.streams.as_list() == []
    agent.close()
    assert bus.subscriber_count == 1
