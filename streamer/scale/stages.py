"""Remote inference stages: the ``Stage`` seam of ``streamer.engine.recognizer`` over a Ray Serve
deployment handle, and the batch side that runs in the ASR and fusion deployments.

``RemoteStage.submit`` sends one request to the deployment (Ray Serve routes it to a
replica, where ``@serve.batch`` joins it with requests from every ingest replica) and
returns the ``Timed`` result the deployment measured; the time not spent running the batch
(queueing, routing, serialisation) is ``queued_ms``. ``idle``: no request of this ingest
replica is in flight (the policy's "speculate/partial only on an idle ASR" then looks at
this replica's own load, not the shared deployment's).

``BatchRunner`` is the deployment side: it runs ``fn(batch)`` on a thread (inference never
blocks the replica's event loop) and says when each request arrived and when its batch
started. Nothing here imports Ray: the deployments in ``streamer.scale.ray_app`` wrap it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from streamer.engine.batcher import Timed

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Arrived(Generic[In]):
    """A request as the deployment's batcher sees it: with its arrival time there."""

    item: In
    at: float  # time.monotonic() on the deployment's replica


class BatchRunner(Generic[In, Out]):
    """Runs batches of a blocking ``fn`` on ``concurrency`` threads, timing each batch."""

    def __init__(self, name: str, fn: Callable[[Sequence[In]], list[Out]],
                 concurrency: int = 1) -> None:
        self.name = name
        self._fn = fn
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)
        self.batches = 0
        self.items = 0

    async def run(self, batch: Sequence[Arrived[In]]) -> list[Timed[Out]]:
        started = time.monotonic()
        results = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._fn, [a.item for a in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"{self.name}: {len(batch)} inputs gave {len(results)} outputs")
        run_ms = (time.monotonic() - started) * 1000
        self.batches += 1
        self.items += len(batch)
        return [Timed(value, (started - a.at) * 1000, run_ms, len(batch))
                for a, value in zip(batch, results, strict=True)]


class RemoteStage(Generic[In, Out]):
    """``streamer.engine.recognizer.Stage`` over ``call``: one request to a deployment, awaited."""

    def __init__(self, name: str, call: Callable[[In], Awaitable[Timed[Out]]]) -> None:
        self.name = name
        self._call = call
        self.in_flight = 0
        self.items = 0

    @property
    def idle(self) -> bool:
        return self.in_flight == 0

    @property
    def queued(self) -> int:
        """Requests of this replica not yet answered (the metrics' queue depth)."""
        return self.in_flight

    async def submit(self, item: In) -> Timed[Out]:
        sent = time.monotonic()
        self.in_flight += 1
        try:
            timed = await self._call(item)
        finally:
            self.in_flight -= 1
        self.items += 1
        total_ms = (time.monotonic() - sent) * 1000
        return Timed(timed.value, max(0.0, total_ms - timed.run_ms), timed.run_ms,
                     timed.batch_size)


def handle_call(method: Any, *extra: Any) -> Callable[[Any], Awaitable[Any]]:
    """``await method.remote(item, *extra)`` of a Ray Serve handle method, as a plain
    coroutine."""

    async def call(item: Any) -> Any:
        return await method.remote(item, *extra)

    return call


__all__ = ["Arrived", "BatchRunner", "RemoteStage", "handle_call"]
