"""Micro-batching of blocking inference across streams.

``BatchPolicy`` is the sans-I/O rule: the first request opens a batch, which
is ready when it holds ``max_batch`` requests or ``max_wait_s`` has passed
since it opened; requests already queued join it at once (with ``max_wait_s`` 0 a
batch is exactly what queued while the previous one ran). ``BatchWorker`` applies
it: requests from any stream are queued, batched, and run on the worker's own thread
so inference never blocks the event loop.

Overflow policy: the request queue is bounded (``queue_size``); ``submit``
waits when it is full, which pushes back on the stages (and sources)
feeding it instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class BatchPolicy(Generic[In]):
    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._items: list[In] = []
        self._opened_at: float | None = None

    def add(self, item: In, now: float) -> None:
        if self._opened_at is None:
            self._opened_at = now
        self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    def deadline(self) -> float | None:
        return None if self._opened_at is None else self._opened_at + self.max_wait_s

    def ready(self, now: float) -> bool:
        if not self._items:
            return False
        deadline = self.deadline()
        return len(self._items) >= self.max_batch or (deadline is not None and now >= deadline)

    def take(self) -> list[In]:
        items, self._items, self._opened_at = self._items, [], None
        return items


@dataclass(frozen=True)
class Timed(Generic[Out]):
    """A result with where its time went (milliseconds)."""

    value: Out
    queued_ms: float
    run_ms: float
    batch_size: int


@dataclass
class _Request(Generic[In, Out]):
    item: In
    future: asyncio.Future[Timed[Out]]
    submitted: float


class BatchWorker(Generic[In, Out]):
    """Runs ``fn(batch) -> results`` on its own threads. ``run()`` loops until cancelled.

    ``concurrency`` batches may run at once, each on its own thread (``fn`` must then be
    thread-safe: CTranslate2 models loaded with ``num_workers >= concurrency`` are).
    """

    def __init__(self, name: str, fn: Callable[[Sequence[In]], list[Out]], max_batch: int,
                 max_wait_ms: float, queue_size: int = 256, concurrency: int = 1) -> None:
        self.name = name
        self._fn = fn
        self._policy: BatchPolicy[_Request[In, Out]] = BatchPolicy(max_batch, max_wait_ms / 1000)
        self._queue: asyncio.Queue[_Request[In, Out]] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._running = 0
        self.batches = 0
        self.items = 0

    @property
    def idle(self) -> bool:
        """A free thread and nothing queued: a droppable request would start at once."""
        return (self._running < self.concurrency and self._queue.empty()
                and len(self._policy) == 0)

    @property
    def queued(self) -> int:
        """Requests waiting: queued, or in the batch being filled (a metrics gauge)."""
        return self._queue.qsize() + len(self._policy)

    async def submit(self, item: In) -> Timed[Out]:
        future: asyncio.Future[Timed[Out]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(item, future, time.monotonic()))
        return await future

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            try:
                while True:
                    await self._slots.acquire()  # a free thread first, then fill its batch
                    await self._fill()
                    tg.create_task(self._run_batch(self._policy.take()))
            finally:
                self._shutdown()

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for request in self._policy.take():
            request.future.cancel()

    async def _fill(self) -> None:
        first = await self._queue.get()
        self._policy.add(first, time.monotonic())
        # What is already waiting joins the batch even with no wait (max_wait_ms 0): a
        # batch is never held open for requests that have not come, only filled by those
        # that queued behind the running one.
        while len(self._policy) < self._policy.max_batch and not self._queue.empty():
            self._policy.add(self._queue.get_nowait(), time.monotonic())
        while not self._policy.ready(time.monotonic()):
            deadline = self._policy.deadline()
            timeout = max(0.0, (deadline or 0.0) - time.monotonic())
            try:
                request = await asyncio.wait_for(self._queue.get(), timeout=timeout)
            except TimeoutError:
                break
            self._policy.add(request, time.monotonic())

    async def _run_batch(self, batch: list[_Request[In, Out]]) -> None:
        try:
            await self._run_live([r for r in batch if not r.future.cancelled()])
        finally:
            self._slots.release()

    async def _run_live(self, live: list[_Request[In, Out]]) -> None:
        if not live:
            return
        started = time.monotonic()
        self._running += 1
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._fn, [r.item for r in live])
        except Exception as exc:  # noqa: BLE001 - delivered to every waiting caller, not swallowed
            for r in live:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        finally:
            self._running -= 1
        run_ms = (time.monotonic() - started) * 1000
        if len(results) != len(live):
            error = RuntimeError(f"{self.name}: {len(live)} inputs gave {len(results)} outputs")
            for r in live:
                r.future.set_exception(error)
            return
        self.batches += 1
        self.items += len(live)
        for r, value in zip(live, results, strict=True):
            if not r.future.done():
                r.future.set_result(
                    Timed(value, (started - r.submitted) * 1000, run_ms, len(live)))
