"""The subscriber WebSocket server with real websockets clients."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamer.core import events
from streamer.core.config import WebSocketConfig
from streamer.publish.bus import EventBus
from streamer.publish.ws_server import WebSocketServer
from tests.streamer.test_bus_and_events import sample_emotion


async def recv_json(ws) -> dict:  # type: ignore[no-untyped-def]
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
    events.validate_event(message)
    return message


async def test_hello_then_events_then_filter() -> None:
    bus = EventBus()
    bus.publish(events.stream_started("call-1", "agent", "x", "m", ("a", "b")))
    async with WebSocketServer(WebSocketConfig(port=0), bus) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/events") as ws:
            hello = await recv_json(ws)
            assert hello["type"] == "hello"
            assert hello["streams"] == [{"stream_id": "call-1", "channels": ["agent"]}]
            bus.publish(sample_emotion("call-1", "agent", 0))
            assert (await recv_json(ws))["utterance_id"] == "call-1/agent/0"

            await ws.send(json.dumps({"type": "subscribe", "streams": ["call-2"]}))
            ack = await recv_json(ws)
            assert ack == {**ack, "type": "subscribed", "streams": ["call-2"], "channels": "*"}
            bus.publish(sample_emotion("call-1", "agent", 1))
            bus.publish(sample_emotion("call-2", "customer", 0))
            assert (await recv_json(ws))["utterance_id"] == "call-2/customer/0"


async def test_query_string_filter_and_bad_requests() -> None:
    bus = EventBus()
    async with WebSocketServer(WebSocketConfig(port=0), bus) as server:
        url = f"ws://127.0.0.1:{server.port}/events?channels=customer"
        async with connect(url) as ws:
            await recv_json(ws)
            bus.publish(sample_emotion("c", "agent", 0))
            bus.publish(sample_emotion("c", "customer", 1))
            assert (await recv_json(ws))["channel"] == "customer"
            await ws.send("not json")
            err = await recv_json(ws)
            assert err["type"] == "error" and "bad request" in err["message"]
            await ws.send(json.dumps({"type": "subscribe", "streams": "everything"}))
            assert (await recv_json(ws))["type"] == "error"
            # A request this server has no handler for is named, with what it takes.
            await ws.send(json.dumps({"type": "summary.request", "streams": "*"}))
            err = await recv_json(ws)
            assert err["type"] == "error"
            assert err["message"] == ("bad request: unknown type 'summary.request'; this "
                                      "server takes subscribe")


async def test_token_is_required_when_configured() -> None:
    bus = EventBus()
    async with WebSocketServer(WebSocketConfig(port=0, token="s3cret"), bus) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{server.port}/events"):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://127.0.0.1:{server.port}/events?token=wrong"):
                pass
        async with connect(f"ws://127.0.0.1:{server.port}/events",
                           additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            assert (await recv_json(ws))["type"] == "hello"
        async with connect(f"ws://127.0.0.1:{server.port}/events?token=s3cret") as ws:
            assert (await recv_json(ws))["type"] == "hello"


async def test_unknown_path_is_404() -> None:
    async with WebSocketServer(WebSocketConfig(port=0), EventBus()) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{server.port}/nowhere"):
                pass
        assert refused.value.response.status_code == 404


async def test_slow_client_is_told_how_many_events_it_lost() -> None:
    bus = EventBus(default_queue_size=5)
    async with WebSocketServer(WebSocketConfig(port=0), bus) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/events") as ws:
            await recv_json(ws)
            while bus.subscriber_count == 0:
                await asyncio.sleep(0.01)
            # Publish a burst without yielding: the subscriber's queue overflows.
            for i in range(50):
                bus.publish(sample_emotion(index=i))
            received, dropped = [], 0
            while not received or received[-1] != "s1/mono/49":
                message = await recv_json(ws)
                if message["type"] == "subscriber.lagged":
                    dropped += message["dropped"]
                else:
                    received.append(message["utterance_id"])
            assert dropped > 0 and len(received) + dropped == 50
