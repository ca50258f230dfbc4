"""Issue 13, row 9: a subscriber that stops reading (small socket buffers, real clients).

- It stalls, then reads again: it gets ``subscriber.lagged`` with the number of events
  it lost before the next event, and received + lost = published.
- It never reads: it is closed with 1008 after ``websocket.send_timeout_s`` and counted,
  instead of hanging until the keepalive gives up; other subscribers are unaffected.
"""

from __future__ import annotations

import asyncio
import json
import socket

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streamer.core.config import WebSocketConfig
from streamer.publish.bus import EventBus
from streamer.publish.ws_server import WebSocketServer
from tests.streamer.test_bus_and_events import sample_emotion

TIMEOUT_S = 30.0
QUEUE = 20


def big_event(index: int) -> dict:
    event = sample_emotion("s1", "mono", index)
    event["text"] = "x" * 16000  # fills the socket buffers (megabytes on loopback) quickly
    return event


async def small_buffer_client(port: int) -> ClientConnection:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    ws = await connect(f"ws://127.0.0.1:{port}/events", sock=sock, max_queue=1,
                       open_timeout=TIMEOUT_S)
    assert json.loads(await ws.recv())["type"] == "hello"
    return ws


async def publish_until_dropping(bus: EventBus, start: int = 0) -> int:
    """Publish big events until the slow subscriber's (the first one's) bus queue
    overflows; return how many."""
    n = start
    slow = bus.subscriptions[0]
    async with asyncio.timeout(TIMEOUT_S):
        while not slow.dropped:
            for _ in range(10):
                bus.publish(big_event(n))
                n += 1
            await asyncio.sleep(0.01)
    for _ in range(3 * QUEUE):  # well past the queue: many are lost
        bus.publish(big_event(n))
        n += 1
    return n


async def test_stalled_subscriber_is_told_what_it_lost() -> None:
    bus = EventBus(default_queue_size=QUEUE)
    async with WebSocketServer(WebSocketConfig(port=0, send_timeout_s=60), bus) as server:
        ws = await small_buffer_client(server.port)
        async with asyncio.timeout(TIMEOUT_S):
            while bus.subscriber_count == 0:
                await asyncio.sleep(0.01)
        published = await publish_until_dropping(bus)
        bus.publish(sample_emotion("s1", "mono", published))  # the marker
        received, lost, lagged_before_marker = [], 0, False
        async with asyncio.timeout(TIMEOUT_S):
            while not received or received[-1] != f"s1/mono/{published}":
                message = json.loads(await ws.recv())
                if message["type"] == "subscriber.lagged":
                    lost += message["dropped"]
                    lagged_before_marker = True
                else:
                    received.append(message["utterance_id"])
        await ws.close()
    assert lagged_before_marker and lost > 0
    assert len(received) + lost == published + 1
    assert server.lagged_notices >= 1 and server.dropped_subscribers == 0


async def test_never_reading_subscriber_is_closed_and_counted() -> None:
    bus = EventBus(default_queue_size=QUEUE)
    async with WebSocketServer(WebSocketConfig(port=0, send_timeout_s=1.0), bus) as server:
        stuck = await small_buffer_client(server.port)
        async with connect(f"ws://127.0.0.1:{server.port}/events") as healthy:
            await healthy.recv()
            async with asyncio.timeout(TIMEOUT_S):
                while bus.subscriber_count < 2:
                    await asyncio.sleep(0.01)
            healthy_seen: list[str] = []
            reader = asyncio.create_task(collect_ids(healthy, healthy_seen))
            published = await publish_until_dropping(bus)
            async with asyncio.timeout(TIMEOUT_S):
                while server.dropped_subscribers == 0:
                    for _ in range(10):  # keeps the buffers full and the stuck send waiting
                        bus.publish(big_event(published))
                        published += 1
                    await asyncio.sleep(0.01)
            try:  # now read what was buffered, then the close frame
                async with asyncio.timeout(TIMEOUT_S):
                    async for _ in stuck:
                        pass
            except ConnectionClosed:
                pass
            bus.publish(sample_emotion("s1", "mono", -1))
            async with asyncio.timeout(TIMEOUT_S):
                while healthy_seen[-1:] != ["s1/mono/-1"]:
                    await asyncio.sleep(0.02)
            reader.cancel()
    assert stuck.close_code == 1008 and "too slow" in (stuck.close_reason or "")
    assert server.dropped_subscribers == 1 and server.events_dropped > 0
    assert healthy_seen[-1] == "s1/mono/-1"  # the other subscriber kept receiving



async def collect_ids(ws: ClientConnection, seen: list[str]) -> None:
    async for raw in ws:
        message = json.loads(raw)
        if "utterance_id" in message:
            seen.append(message["utterance_id"])
