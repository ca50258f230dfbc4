"""``emotion-stream serve``: the call-center service.

The ``streamer.runtime.Runtime`` (shared ASR and fusion workers batching across all
calls, publishers) serves every call the ingest server accepts; each party of a call
is a channel of the one recognizer. Runs until ``stop`` is set (SIGINT/SIGTERM in the
CLI): then the ingest server drains (``IngestServer.drain``: ``/readyz`` 503 and new calls
refused at once, calls in progress get ``operations.drain_timeout_s`` to end, the rest are
cut with reason "shutdown", logged and counted), then MQTT is flushed.

``/healthz``, ``/readyz`` and ``/metrics`` (``streamer.ops.health``) are served on the
listener(s) ``operations.endpoints`` names. Given a model loader instead of loaded models,
the ingest port listens while they load: probes answer (``/readyz`` 503 "models loading")
and calls are refused (503) until the models are loaded and warmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from streamer.core.config import AppConfig
from streamer.engine.loading import Models, warm_up
from streamer.engine.recognizer import Recognizer
from streamer.ingest.server import IngestServer
from streamer.ops.health import Health
from streamer.publish.bus import EventBus
from streamer.publish.ws_server import WebSocketServer
from streamer.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """What a running service exposes to tests and embedding applications."""

    bus: EventBus
    recognizer: Recognizer
    ingest: IngestServer
    subscribers: WebSocketServer | None
    health: Health | None = None


async def run_service(config: AppConfig, models: Models | Callable[[], Models],
                      stop: asyncio.Event | None = None,
                      on_ready: Callable[[Service], Awaitable[None]] | None = None) -> int:
    """Serve calls until ``stop`` is set (or the task is cancelled); return the number of
    events MQTT did not deliver (0 when all were delivered or MQTT is off).

    ``models``: loaded models (the ingest port opens once they are warmed), or a loader
    run on a thread while the ingest port already answers probes."""
    stop = stop or asyncio.Event()
    ingest = IngestServer(config.ingest, None)  # refuses calls until it has a recognizer
    health = Health(ingest, mqtt_enabled=config.mqtt.enabled)
    if config.operations.endpoints in ("ingest", "both"):
        health.add_routes(ingest.edge)
    async with contextlib.AsyncExitStack() as stack:
        if not isinstance(models, Models):
            await stack.enter_async_context(ingest)
            log.info("loading models (probes answer on the ingest port meanwhile) ...")
            models = await asyncio.to_thread(models)
            if stop.is_set():
                log.info("stopped while the models loaded")
                return 0
        health.set_models("warming")
        if config.ingest.warmup:
            log.info("warming up the models ...")
            log.info("warm-up took %.1f s", await asyncio.to_thread(warm_up, models))
        runtime = await stack.enter_async_context(Runtime(config, models,
                                                          persist_adaptation=True))
        health.attach(runtime)
        if runtime.server is not None and config.operations.endpoints in ("websocket", "both"):
            health.add_routes(runtime.server.edge)
        ingest.recognizer = runtime.recognizer
        health.set_models("ready", model_id=models.emotion.model_id,
                          asr_model=config.asr.model)
        if ingest.edge.listening:
            ingest.log_listening()
        else:
            await stack.enter_async_context(ingest)
        if on_ready is not None:
            await on_ready(Service(runtime.bus, runtime.recognizer, ingest, runtime.server,
                                   health))
        await stop.wait()
        drain_s = config.operations.drain_timeout_s
        log.info("stopping: draining; %d calls in progress get %.0f s to end", len(ingest.calls),
                 drain_s)
        cut = await ingest.drain(drain_s)  # the ingest port closes; then MQTT is flushed
        health.metrics.drain_cut.inc(len(cut))
    return runtime.undelivered
