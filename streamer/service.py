"""``emotion-stream serve``: the call-center service.

Models are loaded once; one ``Recognizer`` (shared ASR and fusion workers, batching
across all calls) serves every call the ingest server accepts; events go to the
configured publishers (WebSocket subscribers, MQTT, JSONL, stdout). Runs until
``stop`` is set (SIGINT/SIGTERM in the CLI): then the ingest server stops accepting,
calls in progress are given ``SHUTDOWN_GRACE_S`` to end, MQTT is drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from models.inference import EmotionInput, WordSpan
from streamer.bus import EventBus
from streamer.config import AppConfig
from streamer.ingest.server import IngestServer
from streamer.pipeline import Models, open_publishers
from streamer.recognizer import Recognizer
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


def warm_up(models: Models) -> float:
    """Run one utterance through ASR and fusion so the first call does not pay for it."""
    started = time.monotonic()
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    transcript = models.asr.transcribe(audio, final=True)
    models.emotion.predict([EmotionInput(
        audio=audio, text=transcript.text or "hello",
        words=tuple(WordSpan(w.word, w.start, w.end) for w in transcript.words),
        whisper_frames=transcript.encoder_frames if models.emotion.uses_whisper_frames
        else None)])
    return time.monotonic() - started


def pause_silence_s(config: AppConfig) -> float:
    """Silence that certainly ends an open utterance (hangover plus two VAD frames)."""
    return (config.segmenter.hangover_ms + 2 * config.segmenter.frame_ms) / 1000


async def run_service(config: AppConfig, models: Models, stop: asyncio.Event | None = None,
                      on_ready: Callable[[Service], Awaitable[None]] | None = None) -> None:
    """Serve calls until ``stop`` is set (or the task is cancelled)."""
    if config.ingest.warmup:
        log.info("warming up the models ...")
        log.info("warm-up took %.1f s", await asyncio.to_thread(warm_up, models))
    bus = EventBus(config.bus.subscriber_queue)
    recognizer = Recognizer(config, models.asr, models.emotion, bus)
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        publishers = await open_publishers(config, bus, stack)
        async with asyncio.TaskGroup() as tg:
            background = [tg.create_task(recognizer.run_workers(), name="workers")]
            background += publishers.start(tg)
            async with IngestServer(config.ingest, recognizer,
                                    pause_silence_s(config)) as ingest:
                if on_ready is not None:
                    await on_ready(Service(bus, recognizer, ingest, publishers.server))
                await stop.wait()
                log.info("stopping: %d calls in progress get %.0f s to end",
                         len(ingest.calls), SHUTDOWN_GRACE_S)
                deadline = time.monotonic() + SHUTDOWN_GRACE_S
                while ingest.calls and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
            await publishers.drain()
            for task in background:
                task.cancel()
