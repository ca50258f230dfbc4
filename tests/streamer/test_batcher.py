"""Micro-batching: the sans-I/O policy and the worker that applies it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from streamer.engine.batcher import BatchPolicy, BatchWorker


def test_policy_ready_on_size_or_deadline() -> None:
    policy: BatchPolicy[int] = BatchPolicy(max_batch=3, max_wait_s=0.010)
    assert not policy.ready(0.0) and policy.deadline() is None
    policy.add(1, now=100.0)
    policy.add(2, now=100.004)
    assert not policy.ready(100.005)
    assert policy.ready(100.010)  # the first request waited max_wait
    policy.add(3, now=100.006)
    assert policy.ready(100.006)  # full
    assert policy.take() == [1, 2, 3] and len(policy) == 0 and policy.deadline() is None


async def run_worker(worker: BatchWorker) -> asyncio.Task[None]:  # type: ignore[type-arg]
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0)
    return task


async def test_requests_from_many_callers_share_batches() -> None:
    sizes: list[int] = []

    def double(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        return [2 * i for i in items]

    # All 8 are queued before the worker starts, and the deadline is far: on a loaded
    # machine the callers' submits can be more than a short max_wait apart, and then a
    # batch would rightly leave early (a timing flake, not a batching fault).
    worker: BatchWorker[int, int] = BatchWorker("t", double, max_batch=4, max_wait_ms=2000)
    calls = asyncio.gather(*(worker.submit(i) for i in range(8)))
    while worker.queued < 8:
        await asyncio.sleep(0.001)
    task = await run_worker(worker)
    results = await calls
    task.cancel()
    assert [r.value for r in results] == [2 * i for i in range(8)]
    assert sizes == [4, 4] and all(r.batch_size == 4 for r in results)


async def test_errors_reach_every_caller_of_the_batch() -> None:
    def fail(items: Sequence[int]) -> list[int]:
        raise ValueError("model exploded")

    worker: BatchWorker[int, int] = BatchWorker("t", fail, max_batch=2, max_wait_ms=20)
    task = await run_worker(worker)
    outcomes = await asyncio.gather(worker.submit(1), worker.submit(2), return_exceptions=True)
    task.cancel()
    assert all(isinstance(o, ValueError) for o in outcomes)


async def test_concurrency_runs_batches_in_parallel_threads() -> None:
    # Two calls that can only finish together: each waits for the other to have started.
    barrier = threading.Barrier(2, timeout=5)

    def meet(items: Sequence[int]) -> list[int]:
        barrier.wait()
        return list(items)

    worker: BatchWorker[int, int] = BatchWorker("t", meet, max_batch=1, max_wait_ms=0,
                                                concurrency=2)
    task = await run_worker(worker)
    assert worker.idle
    results = await asyncio.wait_for(asyncio.gather(worker.submit(1), worker.submit(2)), 10)
    task.cancel()
    assert sorted(r.value for r in results) == [1, 2]


async def test_single_thread_worker_is_busy_while_running() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(items: Sequence[int]) -> list[int]:
        started.set()
        release.wait(5)
        return list(items)

    worker: BatchWorker[int, int] = BatchWorker("t", slow, max_batch=1, max_wait_ms=0)
    task = await run_worker(worker)
    pending = asyncio.create_task(worker.submit(7))
    await asyncio.to_thread(started.wait, 5)
    assert not worker.idle  # a droppable request (a partial) would not start now
    release.set()
    assert (await pending).value == 7
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_wait_batches_what_queued_behind_the_running_batch() -> None:
    # max_wait_ms 0 (the ASR worker): a lone request runs at once, alone; those that arrive
    # while it runs form the next batch, up to max_batch, without waiting for more.
    started, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def slow(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        started.set()
        release.wait(5)
        return list(items)

    worker: BatchWorker[int, int] = BatchWorker("t", slow, max_batch=3, max_wait_ms=0)
    task = await run_worker(worker)
    first = asyncio.create_task(worker.submit(0))
    await asyncio.to_thread(started.wait, 5)
    rest = asyncio.gather(*(worker.submit(i) for i in range(1, 5)))
    while worker.queued < 4:
        await asyncio.sleep(0.001)
    release.set()
    results = [await first, *(await asyncio.wait_for(rest, 10))]
    task.cancel()
    assert [r.value for r in results] == [0, 1, 2, 3, 4]
    assert sizes == [1, 3, 1]
    assert [r.batch_size for r in results] == [1, 3, 3, 3, 1]
