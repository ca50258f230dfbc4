"""The one runtime of ``run`` and ``serve``: models, bus, recognizer, publishers, drain.

``streamer/engine/loading.py`` loads the models once per process. ``Runtime`` is an async
context manager that wires everything between the channels and the subscribers
once: the event bus, the ``Recognizer`` with its shared ASR and fusion workers,
and the configured publishers (WebSocket subscribers and dashboard, MQTT, JSONL,
stdout). Inside it, ``run`` feeds one source and ``serve`` runs the ingest server;
both hand channels to ``runtime.recognizer.run_channel``. Tasks run under one
``asyncio.TaskGroup`` with names; an error in any of them ends the runtime and is
reported, never swallowed. On a normal exit MQTT is drained (up to
``DRAIN_TIMEOUT_S``) before the background tasks stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from streamer.core.config import AppConfig
from streamer.core.errors import ConfigError
from streamer.engine.adaptation import AdaptationStore, open_store
from streamer.engine.loading import Models, load_speakers
from streamer.engine.recognizer import Inference, LocalInference, Recognizer
from streamer.publish.bus import EventBus
from streamer.publish.http_edge import token_guard
from streamer.publish.mqtt_publisher import MqttPublisher
from streamer.publish.sinks import JsonlSink, StdoutSink
from streamer.publish.ws_server import WebSocketServer
from streamer.supervise.alert_feed import AlertFeed
from streamer.supervise.alert_store import store_path
from streamer.supervise.dashboard import add_dashboard
from streamer.supervise.supervisor import Supervisor, install_sighup
from streamer.supervise.webhooks import WebhookSender

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 2.0


@dataclass
class Publishers:
    """Everything that delivers events from the bus: WebSocket subscribers, MQTT, files."""

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

    async def drain(self) -> int:
        """Give MQTT up to ``DRAIN_TIMEOUT_S`` to deliver what is buffered; return how many
        events MQTT did not deliver (still buffered, dropped on overflow, dead-lettered)."""
        if self.mqtt is None:
            return 0
        if not await self.mqtt.drain(DRAIN_TIMEOUT_S):
            log.error("MQTT: %d events not delivered before shutdown (%s)", self.mqtt.pending,
                      self.mqtt.last_error or "broker unreachable")
        lost = self.mqtt.undelivered
        if lost:
            log.error("MQTT: %d events lost in all: %d not delivered, %d dropped on buffer "
                      "overflow, %d dead-lettered", lost, self.mqtt.pending, self.mqtt.dropped,
                      self.mqtt.dead_lettered)
        return lost


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


class Runtime:
    """Bus, recognizer, workers and publishers for the time of an ``async with``."""

    def __init__(self, config: AppConfig, models: Models | Inference,
                 persist_adaptation: bool = False) -> None:
        """``persist_adaptation``: keep the emotion model's deployment statistics in the
        user state directory when ``emotion.adaptation_state`` is "auto" (``serve``)."""
        self.config = config
        self.bus = EventBus(config.bus.subscriber_queue, config.bus.redact_digit_runs,
                            config.bus.replay_events)
        # The models loaded here, or remote stages (streamer.scale: Ray Serve deployments).
        inference = (LocalInference(config, models.asr, models.emotion, models.asr_8k)
                     if isinstance(models, Models) else models)
        speakers = models.speakers if isinstance(models, Models) else load_speakers(config)
        self.recognizer = Recognizer(config, inference, self.bus, speakers)
        # Alerts and call summaries (streamer/supervise/supervisor.py), fed from the bus; rules on
        # labels the model does not have are refused here, at start.
        self.supervisor = Supervisor(config.alerts, self.bus, self.recognizer.facts.labels) \
            if config.alerts.enabled else None
        # The deployment statistics' file (Ray fusion replicas keep theirs in memory).
        self.adaptation: AdaptationStore | None = open_store(
            config, models.emotion, persist_adaptation) \
            if isinstance(models, Models) else None
        self._persist = persist_adaptation  # also: alerts.store "auto" is a file of its own
        self._stack = contextlib.AsyncExitStack()
        self._background: list[asyncio.Task[None]] = []
        self.publishers: Publishers | None = None
        self.feed: AlertFeed | None = None  # with alerts: history, acks, webhooks
        self.undelivered = 0  # MQTT events lost, known after the drain at exit

    async def __aenter__(self) -> Runtime:
        try:
            self.publishers = await open_publishers(self.config, self.bus, self._stack)
            if self.supervisor is not None:
                # Closed after the task group ends (the stack unwinds in reverse).
                self.feed = open_feed(self.config, self.bus, self._persist, self._stack,
                                      self.publishers.server)
            tg = await self._stack.enter_async_context(asyncio.TaskGroup())
            self._background = [tg.create_task(self.recognizer.run_workers(), name="workers")]
            self._background += self.publishers.start(tg)
            if self.adaptation is not None:
                self._background.append(tg.create_task(self.adaptation.run(),
                                                       name="adaptation"))
            if self.supervisor is None and self.publishers.server is not None:
                # alerts.enabled=false: no summaries, but the dashboard still asks for them
                # on connect; it gets none, not an error.
                self.publishers.server.add_request("summary.request", lambda message: [])
            if self.supervisor is not None:
                if self.publishers.server is not None:
                    self.publishers.server.add_request("summary.request",
                                                       self.supervisor.summary_request)
                self._background.append(tg.create_task(self.supervisor.run(),
                                                       name="supervisor"))
                if self.config.alerts.rules_file is not None:
                    self._stack.callback(install_sighup(self.supervisor))
            if self.feed is not None:
                self._background.append(tg.create_task(self.feed.run(), name="alert-feed"))
                if self.feed.webhooks is not None:
                    self._background.append(tg.create_task(self.feed.webhooks.run(),
                                                           name="webhooks"))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        try:
            if exc is None and self.supervisor is not None:
                await self.supervisor.settle(SETTLE_TIMEOUT_S)  # the calls' last alerts
            if exc is None and self.feed is not None:
                await settle_feed(self.feed, SETTLE_TIMEOUT_S)  # and their rows
            if exc is None and self.publishers is not None:
                self.undelivered = await self.publishers.drain()
        finally:
            for task in self._background:
                task.cancel()
            if self.adaptation is not None:
                self.adaptation.keep()
        return await self._stack.__aexit__(exc_type, exc, tb)

    @property
    def server(self) -> WebSocketServer | None:
        """The subscriber WebSocket server (None when disabled)."""
        return self.publishers.server if self.publishers is not None else None

    @property
    def mqtt(self) -> MqttPublisher | None:
        return self.publishers.mqtt if self.publishers is not None else None


def open_feed(config: AppConfig, bus: EventBus, persist: bool,
              stack: contextlib.AsyncExitStack, server: WebSocketServer | None) -> AlertFeed:
    """The alert feed with its store (``alerts.store``; "auto": the user state directory
    when ``persist``, else a temporary directory removed at exit) and webhooks, its API
    routes on the subscriber server; closed when ``stack`` closes."""
    temp_dir = None
    if config.alerts.store == "auto" and not persist:
        temp_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="emotion-alerts-"))
    path = store_path(config.alerts.store, persist, Path(temp_dir or "."))
    hooks = WebhookSender(config.alerts.webhooks) if config.alerts.webhooks.urls else None
    try:
        feed = AlertFeed(config.alerts, bus, path, hooks)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"alerts.store '{path}' cannot be opened as the alert store "
                          f"({exc}); fix its directory's permissions, give another path, or "
                          "delete a damaged file") from exc
    stack.callback(feed.close)
    if server is not None:
        guard = token_guard(server.config.token)
        server.add_http("/api/alerts", feed.list_handler, guard)
        server.add_http("/api/alerts/ack", feed.ack_handler, guard)
        server.add_http("/api/alerts/snooze", feed.snooze_handler, guard)
        server.add_request("alert.ack", feed.ack_request)
        server.add_request("call.snooze", feed.snooze_request)
    return feed


async def settle_feed(feed: AlertFeed, timeout_s: float) -> bool:
    """Wait until the feed has taken every event published so far; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while not feed.settled():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True
