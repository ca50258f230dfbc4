"""Issue 13, rows 2, 3 and 8 on MQTT, against a real Mosquitto broker.

- an event the broker rejects (over its ``max_packet_size``: Mosquitto drops the
  connection) is set aside as dead-letter after ``mqtt.max_attempts`` and the next
  events are delivered; an event that cannot be encoded (NaN) is dead-lettered at once;
  a NUL in a channel name never reaches a topic;
- a wrong password is an authentication error, and the events are counted as undelivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import stat
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from harness.broker import Broker
from streamer.core.config import MqttConfig
from streamer.publish.bus import EventBus
from streamer.publish.mqtt_publisher import MqttPublisher
from tests.streamer.test_bus_and_events import sample_emotion
from tests.streamer.test_mqtt_publisher import Collector, running
from tests.waiting import wait_until

TIMEOUT_S = 30.0


async def until(condition: Callable[[], object], timeout: float = TIMEOUT_S) -> None:
    await wait_until(condition, timeout)


async def test_rejected_and_unencodable_events_are_dead_lettered(make_broker,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    broker: Broker = make_broker()
    with broker.conf.open("a") as conf:
        conf.write("max_packet_size 4096\n")
    broker.start()
    dead_path = tmp_path / "dead.jsonl"
    bus = EventBus()
    publisher = MqttPublisher(MqttConfig(
        enabled=True, port=broker.port, prefix="emo", reconnect_min_s=0.1, reconnect_max_s=0.5,
        dead_letter_path=str(dead_path)), bus)
    collector = Collector(broker.port)
    huge = sample_emotion("s1", "mono", 1)
    huge["text"] = "word " * 2000  # ~10 kB: over the broker's max_packet_size
    nan = sample_emotion("s1", "mono", 2)
    nan["confidence"] = math.nan
    nul = sample_emotion("s1", "a\x00b", 3)
    async with running(collector.run()):
        await collector.ready()
        async with running(publisher.run()):
            await until(lambda: publisher.connected)
            for event in (sample_emotion("s1", "mono", 0), huge, nan, nul,
                          sample_emotion("s1", "mono", 4)):
                bus.publish(event)
            got = await collector.wait_for("utterance.emotion", 3, timeout=TIMEOUT_S)
            await until(lambda: publisher.pending == 0)
    ids = [e["utterance_id"] for e in got]
    assert ids == ["s1/mono/0", "s1/a\x00b/3", "s1/mono/4"]
    topics = {str(m.topic) for m in collector.messages}
    assert "emo/s1/a%00b/utterance.emotion" in topics
    assert publisher.dead_lettered == 2 and publisher.sent >= 3
    reasons = {letter.event["utterance_id"]: letter.reason for letter in publisher.dead_letters}
    assert "dropped the connection" in reasons["s1/mono/1"]
    assert "cannot be published" in reasons["s1/mono/2"]
    records = [json.loads(line) for line in dead_path.read_text().splitlines()]
    assert [r["event"]["utterance_id"] for r in records] == ["s1/mono/1", "s1/mono/2"]
    assert records[1]["event"]["confidence"] is None  # NaN never written, even here
    assert stat.S_IMODE(os.stat(dead_path).st_mode) == 0o600
    assert publisher.undelivered == 2
    assert all("NaN" not in m.payload.decode() for m in collector.messages
               if isinstance(m.payload, bytes))


async def test_wrong_password_is_an_authentication_error(password_broker: Broker,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    """Row 8: not "broker unreachable"; the undelivered events are counted (exit 1)."""
    bus = EventBus()
    publisher = MqttPublisher(MqttConfig(
        enabled=True, port=password_broker.port, prefix="emo", username="streamer",
        password="wrong", reconnect_min_s=0.1, reconnect_max_s=0.5), bus)
    with caplog.at_level(logging.ERROR, logger="streamer.publish.mqtt_publisher"):
        async with running(publisher.run()):
            bus.publish(sample_emotion("s1", "mono", 0))
            await until(lambda: publisher.auth_failed)
            assert not await publisher.drain(0.5)
    assert publisher.undelivered == 1 and publisher.sent == 0
    assert "authentication" in (publisher.last_error or "")
    errors = [r.getMessage() for r in caplog.records]
    assert any("refused the credentials" in e and "mqtt.password" in e for e in errors)
    assert len([e for e in errors if "refused the credentials" in e]) == 1  # not per retry

    good = MqttPublisher(MqttConfig(
        enabled=True, port=password_broker.port, prefix="emo", username="streamer",
        password="right", reconnect_min_s=0.1, reconnect_max_s=0.5), bus)
    async with running(good.run()):
        bus.publish(sample_emotion("s1", "mono", 1))
        assert await good.drain(TIMEOUT_S)
    assert good.sent == 1 and not good.auth_failed


async def test_last_will_is_not_older_than_online(broker: Broker, tmp_path: Path) -> None:
    """The broker's 'offline' last will (publisher killed) carries the same time as the
    'online' status it replaces, not an older one."""
    import signal
    import sys

    script = tmp_path / "publisher.py"
    script.write_text(
        "import asyncio\n"
        "from streamer.publish.bus import EventBus\n"
        "from streamer.core.config import MqttConfig\n"
        "from streamer.publish.mqtt_publisher import MqttPublisher\n"
        f"p = MqttPublisher(MqttConfig(enabled=True, port={broker.port}, prefix='emo', "
        "keepalive_s=5), EventBus())\n"
        "asyncio.run(p.run())\n")
    statuses: list[dict] = []

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="status-watch") as c:
            await c.subscribe("emo/status", qos=1)
            async for message in c.messages:
                assert isinstance(message.payload, bytes)
                statuses.append(json.loads(message.payload))

    async with running(watch()):
        await asyncio.sleep(0.3)
        proc = await asyncio.create_subprocess_exec(sys.executable, str(script),
                                                    cwd=Path(__file__).parents[2])
        try:
            await until(lambda: [s["state"] for s in statuses] == ["online"])
            proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
            await proc.wait()
            await until(lambda: len(statuses) == 2)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    online, will = statuses
    assert will["state"] == "offline" and will["wall_time"] >= online["wall_time"]
