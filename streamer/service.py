"""``emotion-stream serve``: the call-center service.

The ``streamer.runtime.Runtime`` (shared ASR and fusion workers batching across all
calls, publishers) serves every call the ingest server accepts; each party of a call
is a channel of the one recognizer. Runs until ``stop`` is set (SIGINT/SIGTERM in the
CLI): then the ingest server stops accepting, calls in progress are given
``SHUTDOWN_GRACE_S`` to end, MQTT is drained.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamer.bus import EventBus
from streamer.config import AppConfig
from streamer.ingest.server import IngestServer
from streamer.recognizer import Recognizer
from streamer.runtime import Models, Runtime, warm_up
from streamer.ws_server import WebSocketServer

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0


@dataclass(frozen=True)
class Service:
    """What a running service exposes to tests and embedding applications."""

    bus: EventBus
    recognizer: Recognizer
    ingest: IngestServer
    subscribers: WebSocketServer | None


async def run_service(config: AppConfig, models: Models, stop: asyncio.Event | None = None,
                      on_ready: Callable[[Service], Awaitable[None]] | None = None) -> int:
    """Serve calls until ``stop`` is set (or the task is cancelled); return the number of
    events MQTT did not deliver (0 when all were delivered or MQTT is off)."""
    if config.ingest.warmup:
        log.info("warming up the models ...")
        log.info("warm-up took %.1f s", await asyncio.to_thread(warm_up, models))
    stop = stop or asyncio.Event()
    async with Runtime(config, models) as runtime, \
            IngestServer(config.ingest, runtime.recognizer) as ingest:
        if on_ready is not None:
            await on_ready(Service(runtime.bus, runtime.recognizer, ingest, runtime.server))
        await stop.wait()
        log.info("stopping: %d calls in progress get %.0f s to end", len(ingest.calls),
                 SHUTDOWN_GRACE_S)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while ingest.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    return runtime.undelivered
