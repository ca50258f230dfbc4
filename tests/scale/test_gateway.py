"""The MQTT-fed gateway and the replica presence, without Ray: real Mosquitto, the real
``MqttPublisher`` of two "replicas", a WebSocket subscriber of the gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest
from websockets.asyncio.client import connect

from harness.broker import Broker
from streamer.apps.gateway import Gateway, run_gateway
from streamer.core import events
from streamer.core.config import AppConfig, load_config
from streamer.publish.bus import EventBus
from streamer.publish.mqtt_publisher import MqttPublisher
from streamer.publish.ws_server import WebSocketServer
from streamer.scale.presence import LostCalls, ReplicaPresence, presence_payload


def started(stream_id: str, channel: str) -> dict[str, Any]:
    return events.stream_started(stream_id, channel, "test", "model", ("happy", "sad"))


def emotion(stream_id: str, channel: str, t_end: float) -> dict[str, Any]:
    return {**events.stream_ended(stream_id, channel, 0, 0, "end_of_input"),
            "type": "utterance.emotion", "t_end": t_end, "speech": True}


def test_lost_calls_ends_the_open_channels_of_a_lost_replica_only() -> None:
    lost = LostCalls()
    for sid in ("a", "b"):
        for ch in ("customer", "agent"):
            lost.on_event(started(sid, ch))
    lost.on_event(emotion("a", "customer", 3.5))
    lost.on_event(events.stream_ended("a", "agent", 4.0, 0, "end_of_input"))
    assert lost.on_presence(presence_payload("r1", "online", {"a": ["customer", "agent"]}).encode()
                            ) == []
    assert lost.on_presence(presence_payload("r2", "online", {"b": ["customer", "agent"]}).encode()
                            ) == []
    ended = lost.on_presence(presence_payload("r1", "offline").encode())
    assert [(e["stream_id"], e["channel"], e["reason"], e["utterances"], e["duration_s"])
            for e in ended] == [("a", "customer", "error", 1, 3.5)]
    assert "r1 was lost mid-call" in ended[0]["error"]
    assert lost.on_presence(b"") == []  # a clean stop deletes the retained state
    assert lost.on_presence(b"not json") == []
    assert list(lost.replicas) == ["r2"]


@pytest.fixture
async def gateway(broker: Broker) -> AsyncIterator[tuple[AppConfig, Gateway, int]]:
    config = load_config(None, ["mqtt.enabled=true", f"mqtt.port={broker.port}",
                                "websocket.port=0"])
    stop = asyncio.Event()
    ready: asyncio.Queue[tuple[Gateway, WebSocketServer]] = asyncio.Queue()

    async def on_ready(gw: Gateway, server: WebSocketServer) -> None:
        await ready.put((gw, server))

    task = asyncio.create_task(run_gateway(config, stop, on_ready))
    gw, server = await asyncio.wait_for(ready.get(), 20)
    yield config, gw, server.port
    stop.set()
    await asyncio.wait_for(task, 20)


async def test_gateway_serves_every_replicas_events_and_ends_a_lost_replicas_calls(
        gateway: tuple[AppConfig, Gateway, int], broker: Broker) -> None:
    config, gw, port = gateway
    received: list[dict[str, Any]] = []
    async with connect(f"ws://127.0.0.1:{port}/events") as ws:
        assert json.loads(await ws.recv())["type"] == "hello"

        async def read() -> None:
            async for raw in ws:
                received.append(json.loads(raw))

        reader = asyncio.create_task(read())
        buses = [EventBus(), EventBus()]
        publishers = [MqttPublisher(config.mqtt, bus) for bus in buses]
        tasks = [asyncio.create_task(p.run()) for p in publishers]
        calls: dict[str, dict[str, list[str]]] = {"r0": {"c0": ["customer"]}, "r1": {}}
        presence = ReplicaPresence(config.mqtt, "r0", lambda: calls["r0"])
        presence_task = asyncio.create_task(presence.run())
        for i, bus in enumerate(buses):
            bus.publish(started(f"c{i}", "customer"))
            bus.publish(emotion(f"c{i}", "customer", 2.0 + i))
        buses[1].publish(events.stream_ended("c1", "customer", 5.0, 1, "end_of_input"))

        def kinds(stream_id: str) -> list[str]:
            return [e["type"] for e in received if e.get("stream_id") == stream_id]

        deadline = time.monotonic() + 20
        while not (len(kinds("c0")) == 2 and len(kinds("c1")) == 3
                   and gw.lost.replicas.get("r0")):
            assert time.monotonic() < deadline, received
            await asyncio.sleep(0.05)
        # Replica r0 dies without a goodbye: the broker publishes its last will.
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(presence.topic, presence_payload("r0", "offline"), qos=1,
                                 retain=True)
        while "stream.ended" not in kinds("c0"):
            assert time.monotonic() < deadline, received
            await asyncio.sleep(0.05)
        ended = [e for e in received if e["type"] == "stream.ended" and e["stream_id"] == "c0"]
        assert ended[0]["reason"] == "error" and ended[0]["utterances"] == 1
        assert gw.stats.lost_calls_ended == 1 and gw.stats.malformed == 0
        for task in [*tasks, presence_task, reader]:
            task.cancel()
        await asyncio.gather(*tasks, presence_task, reader, return_exceptions=True)
