"""Wires the stages: load models once, start publishers, run the source to its end.

Tasks run under one ``asyncio.TaskGroup`` with names; an error in any of them
stops the run and is reported, never swallowed. At the end of the input the
publishers are drained (MQTT up to ``DRAIN_TIMEOUT_S``) before shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import torch

from models.encoders.whisper import load_whisper
from models.errors import ModelError
from models.inference import EmotionModel
from streamer.asr import AsrEngine
from streamer.bus import EventBus
from streamer.config import AppConfig
from streamer.dashboard import add_dashboard
from streamer.errors import ModelLoadError
from streamer.mqtt_publisher import MqttPublisher
from streamer.recognizer import Recognizer
from streamer.sinks import JsonlSink, StdoutSink
from streamer.sources import AudioSource
from streamer.ws_server import WebSocketServer

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Models:
    """Loaded once per process and shared by every stream."""

    whisper: Any  # faster_whisper.WhisperModel
    asr: AsrEngine
    emotion: EmotionModel


def load_models(config: AppConfig) -> Models:
    torch.set_num_threads(config.emotion.torch_threads)
    try:
        whisper = load_whisper(config.asr.model, device=config.asr.device,
                               compute_type=config.asr.compute_type,
                               cpu_threads=config.asr.cpu_threads,
                               num_workers=config.asr.workers)
        emotion = EmotionModel.load(config.emotion.bundle, device=config.emotion.device,
                                    whisper_model=whisper,
                                    text_encoder=config.emotion.text_encoder)
    except ModelError as exc:
        raise ModelLoadError(str(exc)) from exc
    return Models(whisper=whisper, asr=AsrEngine(config.asr, whisper), emotion=emotion)


@dataclass(frozen=True)
class RunSummary:
    utterances: int
    events_published: int
    mqtt_dropped: int


@dataclass
class Publishers:
    """Everything that delivers events from the bus: WebSocket subscribers, MQTT, files.

    Shared by ``run_pipeline`` (one source) and ``streamer.service`` (many calls).
    """

    server: WebSocketServer | None
    mqtt: MqttPublisher | None
    sinks: list[tuple[str, JsonlSink | StdoutSink]]

    def start(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Start the background delivery tasks in ``tg``; cancel them when done."""
        tasks = []
        if self.mqtt is not None:
            tasks.append(tg.create_task(self.mqtt.run(), name="mqtt"))
        for name, sink in self.sinks:
            tasks.append(tg.create_task(sink.run(), name=name))
        return tasks

    async def drain(self) -> None:
        """Give MQTT up to ``DRAIN_TIMEOUT_S`` to deliver what is buffered."""
        if self.mqtt is not None and not await self.mqtt.drain(DRAIN_TIMEOUT_S):
            log.error("MQTT: %d events not delivered before shutdown (broker unreachable)",
                      self.mqtt.pending)


async def open_publishers(config: AppConfig, bus: EventBus,
                          stack: contextlib.AsyncExitStack) -> Publishers:
    """Create the configured publishers; the WebSocket server listens until ``stack`` closes."""
    mqtt = MqttPublisher(config.mqtt, bus) if config.mqtt.enabled else None
    sinks: list[tuple[str, JsonlSink | StdoutSink]] = []
    if config.jsonl.path:
        sinks.append(("jsonl", JsonlSink(config.jsonl.path, bus)))
    if config.stdout.enabled:
        sinks.append(("stdout", StdoutSink(bus, pretty=config.stdout.format == "pretty",
                                           include_partials=config.stdout.include_partials)))
    server = None
    if config.websocket.enabled:
        server = await stack.enter_async_context(WebSocketServer(config.websocket, bus))
        if config.websocket.dashboard:
            add_dashboard(server)
    return Publishers(server=server, mqtt=mqtt, sinks=sinks)


async def run_pipeline(config: AppConfig, source: AudioSource, models: Models,
                       on_ready: Callable[[EventBus, WebSocketServer | None], Awaitable[None]]
                       | None = None) -> RunSummary:
    """Run ``source`` through the pipeline to its end and publish every event.

    ``on_ready`` is awaited once the publishers listen and before audio flows (tests and
    embedding applications use it to attach subscribers).
    """
    bus = EventBus(config.bus.subscriber_queue)
    recognizer = Recognizer(config, models.asr, models.emotion, bus)
    async with contextlib.AsyncExitStack() as stack:
        publishers = await open_publishers(config, bus, stack)
        if on_ready is not None:
            await on_ready(bus, publishers.server)
        async with asyncio.TaskGroup() as tg:
            background = [tg.create_task(recognizer.run_workers(), name="workers")]
            background += publishers.start(tg)
            utterances = await recognizer.run_channel(
                source.chunks(), source.stream_id, source.channel, source.describe())
            await publishers.drain()
            for task in background:
                task.cancel()
    mqtt = publishers.mqtt
    return RunSummary(utterances=utterances, events_published=bus.published,
                      mqtt_dropped=mqtt.dropped if mqtt else 0)
