"""MQTT publisher against a real Mosquitto broker, with a real aiomqtt subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aiomqtt

from harness.broker import Broker
from harness.mqtt import subscribe_forever
from streamer.core import events
from streamer.core.config import MqttConfig
from streamer.publish.bus import EventBus
from streamer.publish.mqtt_publisher import MqttPublisher, event_topic, topic_part
from tests.streamer.test_bus_and_events import sample_emotion


def test_topics_are_one_level_per_part() -> None:
    assert topic_part("call/1+#x y") == "call%2F1%2B%23x%20y"
    event = sample_emotion("call-7", "customer")
    assert event_topic("emo", event) == "emo/call-7/customer/utterance.emotion"


class Collector:
    """A persistent-session subscriber that records every message it gets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[aiomqtt.Message] = []
        self.subscribed = asyncio.Event()  # set once the broker has its subscription
        self.subscriptions = 0  # (re)subscriptions so far: one per connection

    async def run(self) -> None:
        await subscribe_forever(self.port, "collector", "emo/#", self.messages.append,
                                self._on_subscribed)

    def _on_subscribed(self) -> None:
        self.subscriptions += 1
        self.subscribed.set()

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait for the subscription: the broker does not keep what is published before
        it for a session it does not know yet (a fixed sleep lost that race under load)."""
        await asyncio.wait_for(self.subscribed.wait(), timeout)

    def payloads(self, kind: str) -> list[dict]:
        return [json.loads(m.payload) for m in self.messages
                if str(m.topic).endswith("/" + kind)]

    async def wait_for(self, kind: str, n: int, timeout: float = 30.0) -> list[dict]:
        async with asyncio.timeout(timeout):
            while len(self.payloads(kind)) < n:
                await asyncio.sleep(0.05)
        return self.payloads(kind)


async def create_subscriber_session(broker: Broker) -> None:
    """Register the collector's persistent session, then leave the broker down."""
    broker.start()
    collector = Collector(broker.port)
    async with running(collector.run()):
        await collector.ready()
    broker.stop()


@contextlib.asynccontextmanager
async def running(*coros) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def config(port: int) -> MqttConfig:
    return MqttConfig(enabled=True, port=port, prefix="emo", reconnect_min_s=0.2,
                      reconnect_max_s=1.0)


async def test_events_arrive_with_qos1_and_retained_status(broker: Broker) -> None:
    bus = EventBus()
    publisher = MqttPublisher(config(broker.port), bus)
    collector = Collector(broker.port)
    async with running(collector.run(), publisher.run()):
        await collector.ready()
        bus.publish(events.stream_started("s1", "mono", "x", "m", ("a", "b")))
        for i in range(5):
            bus.publish(sample_emotion(index=i))
        got = await collector.wait_for("utterance.emotion", 5)
        assert [e["utterance_id"] for e in got] == [f"s1/mono/{i}" for i in range(5)]
        for message in collector.messages:
            if not str(message.topic).endswith("status"):
                events.validate_event(json.loads(message.payload))
                assert message.qos == 1
        assert await publisher.drain(5.0)
    # A fresh subscriber sees the retained status.
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe("emo/status")
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain
                assert json.loads(message.payload)["state"] in ("online", "offline")
                break


async def test_broker_down_at_start_then_up_loses_nothing(make_broker) -> None:  # type: ignore[no-untyped-def]
    broker = make_broker()
    await create_subscriber_session(broker)
    bus = EventBus()
    publisher = MqttPublisher(config(broker.port), bus)
    async with running(publisher.run()):
        for i in range(10):
            bus.publish(sample_emotion(index=i))
        await asyncio.sleep(1.0)  # several failed connection attempts
        assert not publisher.connected
        broker.start()
        collector = Collector(broker.port)
        async with running(collector.run()):
            got = await collector.wait_for("utterance.emotion", 10)
    assert sorted(e["utterance_id"] for e in got) == sorted(f"s1/mono/{i}" for i in range(10))
    assert publisher.dropped == 0


async def test_broker_restart_mid_stream_loses_nothing(make_broker) -> None:  # type: ignore[no-untyped-def]
    broker = make_broker().start()
    bus = EventBus()
    publisher = MqttPublisher(config(broker.port), bus)
    collector = Collector(broker.port)
    async with running(collector.run(), publisher.run()):
        await collector.ready()
        for i in range(5):
            bus.publish(sample_emotion(index=i))
        await collector.wait_for("utterance.emotion", 5)
        broker.stop()
        for i in range(5, 15):
            bus.publish(sample_emotion(index=i))
        await asyncio.sleep(0.5)
        broker.start()
        got = await collector.wait_for("utterance.emotion", 15)
    ids = {e["utterance_id"] for e in got}
    assert ids == {f"s1/mono/{i}" for i in range(15)}  # at least once: duplicates allowed


async def test_buffer_overflow_drops_oldest_and_counts(make_broker) -> None:  # type: ignore[no-untyped-def]
    broker = make_broker()
    await create_subscriber_session(broker)
    bus = EventBus()
    publisher = MqttPublisher(
        MqttConfig(enabled=True, port=broker.port, prefix="emo", buffer_size=4,
                   reconnect_min_s=0.2, reconnect_max_s=0.5), bus)
    async with running(publisher.run()):
        for i in range(10):
            bus.publish(sample_emotion(index=i))
        await asyncio.sleep(0.3)
        broker.start()
        collector = Collector(broker.port)
        async with running(collector.run()):
            assert await publisher.drain(20.0)
            await asyncio.sleep(0.5)
    got = {e["utterance_id"] for e in collector.payloads("utterance.emotion")}
    # The first event was taken in flight before the overflow; the newest ones survive.
    assert publisher.dropped >= 5
    assert {f"s1/mono/{i}" for i in range(6, 10)} <= got
