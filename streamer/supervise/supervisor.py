"""The async shell around the alert engine and the call summaries (docs/alerts.md).

``Supervisor`` subscribes to the bus like any publisher, feeds every event to
``streamer.supervise.alerts.AlertEngine`` and ``streamer.supervise.summary.CallSummaries``
and publishes what they return (``alert``, ``alert.cleared``, ``call.summary``) back on the
bus, so those events reach WebSocket subscribers, MQTT
(``<prefix>/<stream_id>/<channel>/alert``), JSONL and stdout like every other event. Its own
subscription takes only the input types, so its output never loops back.

Overflow policy: its bus queue holds ``QUEUE_SIZE`` events; beyond that the oldest are
dropped and counted (``dropped``), as for any subscriber; alerts may then be late or
missed, never the recognition. An event it cannot handle (malformed) is logged and
counted in ``faults`` and skipped.

Reload: with ``alerts.rules_file`` set, the file is re-read when its modification time
changes (checked every ``alerts.reload_check_s``) and at once on ``request_reload()`` (SIGHUP
in ``run``/``serve``). A file that does not parse is logged and the running rules stay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from streamer.core.alert_rules import load_rules
from streamer.core.config import AlertsConfig
from streamer.core.errors import ConfigError
from streamer.core.events import Event
from streamer.core.faults import FaultLog
from streamer.core.validation import check_identifier, shown
from streamer.publish.bus import EventBus
from streamer.supervise.alerts import AlertEngine
from streamer.supervise.summary import CallSummaries

log = logging.getLogger(__name__)

QUEUE_SIZE = 20000
MAX_REQUESTED = 1000  # stream ids in one summary.request
INPUT_TYPES = frozenset({"stream.started", "stream.ended", "utterance.partial",
                         "utterance.emotion"})


class Supervisor:
    def __init__(self, config: AlertsConfig, bus: EventBus,
                 labels: tuple[str, ...] | None = None) -> None:
        """``labels``: the emotion model's; rules on other labels are refused."""
        self.config = config
        self.bus = bus
        self.labels = labels
        # Alert ids carry the start time (hex ms): unique across restarts, as the alert
        # store keeps them.
        self.engine = AlertEngine(load_rules(config.rules, config.rules_file, labels),
                                  run_id=format(int(time.time() * 1000), "x"))
        self.summaries = CallSummaries(config.summary_interval_s,
                                       queue_pattern=config.queue_pattern)
        self._sub = bus.subscribe("supervisor", lambda e: e.get("type") in INPUT_TYPES,
                                  maxsize=QUEUE_SIZE)
        self._rules_mtime = self._mtime()
        self._reload_now = asyncio.Event()
        self.reloads = 0
        self.reload_errors = 0
        self.faults = FaultLog("supervisor")

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def close(self) -> None:
        self._sub.close()

    # -- the loop

    async def run(self) -> None:
        """Consume, tick and watch the rules file until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(), name="supervisor-consume")
            tg.create_task(self._tick(), name="supervisor-tick")
            if self.config.rules_file is not None:
                tg.create_task(self._watch(), name="supervisor-watch")

    async def _consume(self) -> None:
        while True:
            event = await self._sub.get()
            try:
                self.handle(event, time.time())
            except Exception as exc:  # the bulkhead: a bad event never stops recognition
                self.faults.record(event, exc, "no alerts or summary from it")

    def handle(self, event: Event, now: float) -> None:
        """Feed one bus event; publish what it causes."""
        for out in self.engine.feed(event, now):
            self.summaries.feed(out, now)
            self.bus.publish(out)
        for out in self.summaries.feed(event, now):
            self.bus.publish(out)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            now = time.time()
            for out in self.engine.tick(now):
                self.summaries.feed(out, now)
                self.bus.publish(out)
            for out in self.summaries.due(now):
                self.bus.publish(out)

    # -- reloads

    def request_reload(self) -> None:
        """Re-read the rules file now (the SIGHUP handler)."""
        self._reload_now.set()

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._reload_now.wait(), self.config.reload_check_s)
            except TimeoutError:
                pass
            forced = self._reload_now.is_set()
            self._reload_now.clear()
            mtime = self._mtime()
            if forced or mtime != self._rules_mtime:
                self._rules_mtime = mtime
                self.reload(time.time())

    def _mtime(self) -> float | None:
        if self.config.rules_file is None:
            return None
        try:
            return os.stat(os.path.expanduser(self.config.rules_file)).st_mtime
        except OSError:
            return None

    def reload(self, now: float) -> bool:
        """Load the rules file again; False (logged, old rules kept) when it is bad."""
        try:
            rules = load_rules(None, self.config.rules_file, self.labels)
        except ConfigError as exc:
            self.reload_errors += 1
            log.error("alerts: not reloaded, the %d running rules stay: %s",
                      len(self.engine.rules), exc)
            return False
        for out in self.engine.set_rules(rules, now):
            self.summaries.feed(out, now)
            self.bus.publish(out)
        self.reloads += 1
        log.info("alerts: reloaded %d rules from %s (%s)", len(rules), self.config.rules_file,
                 ", ".join(r.id for r in rules) or "none")
        return True

    # -- requests from WebSocket subscribers

    def summary_request(self, message: dict[str, Any]) -> list[Event]:
        """``{"type": "summary.request", "streams": "*" | [...]}``: the calls' summaries.
        A ValueError says what is wrong with the request."""
        streams = message.get("streams", "*")
        if streams == "*":
            return self.summaries.summaries()
        if not isinstance(streams, list) or len(streams) > MAX_REQUESTED:
            raise ValueError(f"'streams' must be \"*\" or a list of at most {MAX_REQUESTED} "
                             f"stream ids, got {shown(streams)}")
        return self.summaries.summaries({check_identifier(s, "'streams' entry")
                                         for s in streams})

    async def settle(self, timeout_s: float) -> bool:
        """Wait until every event published so far is handled (at shutdown, so the calls'
        last alerts and summaries are published before MQTT drains); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._sub.qsize() > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def install_sighup(supervisor: Supervisor) -> Callable[[], None]:
    """Reload the rules on SIGHUP; returns the function that removes the handler. Where
    signals cannot be handled (not the main thread, Windows) the file watch still runs."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, supervisor.request_reload)
    except (NotImplementedError, RuntimeError, AttributeError) as exc:
        log.info("alerts: no SIGHUP reload here (%s); changes to alerts.rules_file are still "
                 "picked up within alerts.reload_check_s", exc)
        return lambda: None
    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove
