"""The real ``serve`` service in the test's event loop, and a real WebSocket subscriber of
its events: shared by the end-to-end tests of calls, channels, telephone audio and
operations."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import connect

from streamer.apps.service import Service, run_service
from streamer.core.config import AppConfig
from streamer.core.events import validate_event
from streamer.engine.loading import Models


class Subscriber:
    """Every message of ``/events``, in order."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def run(self, port: int, ready: asyncio.Event) -> None:
        async with connect(f"ws://127.0.0.1:{port}/events", max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            ready.set()
            async for raw in ws:
                self.messages.append(json.loads(raw))

    def of(self, kind: str, stream_id: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind
                and (stream_id is None or m["stream_id"] == stream_id)]

    async def emotions_when_ended(self, stream_id: str, timeout: float = 120.0
                                  ) -> list[dict[str, Any]]:
        """Once ``stream_id`` has ended (every channel that started has its
        ``stream.ended``: a call's parties end one by one): every message so far checked
        against the event schema, and the stream's ``utterance.emotion`` events."""

        def ended() -> bool:
            started = {m["channel"] for m in self.of("stream.started", stream_id)}
            finished = {m["channel"] for m in self.of("stream.ended", stream_id)}
            return bool(finished) and started <= finished

        async with asyncio.timeout(timeout):
            while not ended():
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the subscriber's last messages
        for message in self.messages:
            validate_event(message)
        return self.of("utterance.emotion", stream_id)


@contextlib.asynccontextmanager
async def running_service(config: AppConfig, models: Models | Callable[[], Models],
                          started: float = 120.0) -> AsyncIterator[
                              tuple[Service, asyncio.Event, asyncio.Task[int]]]:
    """``run_service`` in a task: (the service once ready, its stop event, the task)."""
    ready: asyncio.Queue[Service] = asyncio.Queue(maxsize=1)
    stop = asyncio.Event()

    async def on_ready(svc: Service) -> None:
        await ready.put(svc)

    task = asyncio.create_task(run_service(config, models, stop, on_ready))
    try:
        getter = asyncio.ensure_future(ready.get())
        done, _ = await asyncio.wait({getter, task}, timeout=started,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            getter.cancel()
            task.result()  # raises what stopped the service
            raise AssertionError("the service returned before it was ready")
        assert getter in done, f"the service was not ready after {started} s"
        yield getter.result(), stop, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


@contextlib.asynccontextmanager
async def subscribed_service(config: AppConfig, models: Models
                             ) -> AsyncIterator[tuple[Service, Subscriber]]:
    """The running service with a subscriber connected to its ``/events`` before any call."""
    async with running_service(config, models) as (svc, _, _):
        sub = Subscriber()
        subscribed = asyncio.Event()
        assert svc.subscribers is not None
        reader = asyncio.create_task(sub.run(svc.subscribers.port, subscribed))
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
            yield svc, sub
        finally:
            reader.cancel()
