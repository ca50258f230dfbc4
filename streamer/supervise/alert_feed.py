"""The alert feed: alerts kept with their history, acknowledged and snoozed by people,
sent on to webhooks (docs/alerts.md, "Alert feed").

``AlertFeed`` subscribes to the bus for ``alert``, ``alert.cleared``, ``call.summary`` and
its own ``alert.ack`` / ``call.snoozed``; it files each in the SQLite store
(``streamer.supervise.alert_store``, written on the store's thread), counts alerts per rule for
``/metrics`` and hands alerts and acknowledgements to the webhooks
(``streamer.supervise.webhooks``). An acknowledgement or a snooze, from the HTTP API or a WebSocket
subscriber, is published on the bus as an event, so every open wall, MQTT and JSONL see it,
and the feed files it from there like any other event.

Snooze: while a call is snoozed its alerts still fire and are published and kept (marked
``snoozed``), but no webhook is sent for them.

Triggering utterances: an ``alert`` event cites the utterances that made its condition hold
(``utterances``: id, party, text, label, confidence, times; the rule engine keeps them, so
the feed keeps no history of its own); they are filed with the alert's row and listed by
``/api/alerts`` as ``utterances``.

Overflow policy: the feed's bus queue holds ``QUEUE_SIZE`` events; beyond that the oldest
are dropped and counted (``dropped``), as for any subscriber: their rows and webhooks are
then missing, never the recognition.

HTTP API on the subscriber port (guarded by ``websocket.token`` like ``/events``):
``GET /api/alerts`` (``rule``, ``party``, ``call``, ``state``, ``limit``, ``cursor``;
the answer also lists the calls snoozed now, ``snoozes``),
``POST /api/alerts/ack?alert_id=..&by=..&note=..`` and
``POST /api/alerts/snooze?call=..&minutes=..&by=..&note=..``; the parameters are in the
query string because the listener (websockets) takes no request bodies. WebSocket
subscribers send ``{"type": "alert.ack", ...}`` / ``{"type": "call.snooze", ...}``
with the same fields.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request, Response

from streamer.core.config import AlertsConfig
from streamer.core.events import SCHEMA_VERSION, Event
from streamer.core.faults import FaultLog
from streamer.core.validation import check_identifier, check_text, shown
from streamer.publish.bus import EventBus
from streamer.publish.http_edge import error_response, json_response
from streamer.supervise.alert_store import (
    STORED_TYPES,
    AlertStore,
    Retention,
    Snooze,
    StoreWriter,
    Write,
    connect,
    parse_query,
)
from streamer.supervise.webhooks import WebhookSender

log = logging.getLogger(__name__)

QUEUE_SIZE = 20000
RECENT_ALERTS = 10000  # alerts remembered in memory for acks before their row is written
MAX_NOTE_CHARS = 500
MAX_SNOOZE_MIN = 24 * 60.0
CALL_CHANNEL = "call"
@dataclass(frozen=True)
class AlertRef:
    """What an acknowledgement needs of its alert."""

    alert_id: str
    stream_id: str
    channel: str
    rule_id: str
    severity: str


class RuleCounts:
    """Alerts fired, cleared and acknowledged per rule, for ``/metrics``."""

    def __init__(self) -> None:
        self.fired: collections.Counter[str] = collections.Counter()
        self.cleared: collections.Counter[str] = collections.Counter()
        self.acked: collections.Counter[str] = collections.Counter()


class AlertFeed:
    def __init__(self, config: AlertsConfig, bus: EventBus, path: Path,
                 webhooks: WebhookSender | None = None) -> None:
        self.config = config
        self.bus = bus
        self.path = path
        self.writer = StoreWriter(path, Retention(config.retention_days,
                                                  config.retention_rows),
                                  config.store_queue)
        self.writer.start()  # creates the file and its schema before the reader opens it
        self.reader = AlertStore(connect(path))
        self.webhooks = webhooks
        self.snoozes: dict[str, Snooze] = self.reader.snoozes(time.time())
        self._recent: collections.OrderedDict[str, AlertRef] = collections.OrderedDict()
        self.counts = RuleCounts()
        self.faults = FaultLog("alert feed")
        self._sub = bus.subscribe("alert-feed", lambda e: e.get("type") in STORED_TYPES,
                                  maxsize=QUEUE_SIZE)
        log.info("alert feed: kept in %s (%d calls snoozed)", path, len(self.snoozes))

    @property
    def dropped(self) -> int:
        return self._sub.dropped

    def close(self) -> None:
        """Unsubscribe, write what is queued, close the files."""
        self._sub.close()
        self.writer.stop()
        self.reader.close()

    # -- the loop

    async def run(self) -> None:
        """File and forward events until cancelled."""
        while True:
            event = await self._sub.get()
            try:
                self.handle(event, time.time())
            except Exception as exc:  # the bulkhead: a bad event never stops the others
                self.faults.record(event, exc, "not filed or sent")

    def settled(self) -> bool:
        return self._sub.qsize() == 0

    def handle(self, event: Event, now: float) -> None:
        kind = event.get("type")
        snoozed = False
        utterances = None
        if kind == "alert":
            self._remember(AlertRef(str(event["alert_id"]), str(event["stream_id"]),
                                    str(event["channel"]), str(event["rule_id"]),
                                    str(event["severity"])))
            self.counts.fired[str(event["rule_id"])] += 1
            snoozed = self.is_snoozed(str(event["stream_id"]), now)
            cited = event.get("utterances")
            utterances = tuple(u for u in cited if isinstance(u, dict)) \
                if isinstance(cited, list) else ()
        elif kind == "alert.cleared":
            self.counts.cleared[str(event["rule_id"])] += 1
            snoozed = self.is_snoozed(str(event["stream_id"]), now)
        elif kind == "alert.ack":
            self.counts.acked[str(event["rule_id"])] += 1
        self.writer.offer(Write(event, snoozed, utterances))
        if self.webhooks is not None and not snoozed:
            self.webhooks.offer(event)

    def _remember(self, ref: AlertRef) -> None:
        self._recent[ref.alert_id] = ref
        while len(self._recent) > RECENT_ALERTS:
            self._recent.popitem(last=False)

    def is_snoozed(self, stream_id: str, now: float) -> bool:
        snooze = self.snoozes.get(stream_id)
        return snooze is not None and snooze.until > now

    # -- actions (the API and WebSocket requests)

    def find(self, alert_id: str) -> AlertRef | None:
        ref = self._recent.get(alert_id)
        if ref is not None:
            return ref
        row = self.reader.get(alert_id)
        if row is None:
            return None
        return AlertRef(row["alert_id"], row["stream_id"], row["channel"], row["rule_id"],
                        row["severity"])

    def acknowledge(self, alert_id: str, by: str, note: str, now: float) -> Event:
        """Publish the ``alert.ack`` of ``alert_id``; LookupError when no such alert is
        known. Acknowledging again replaces the earlier acknowledgement."""
        ref = self.find(alert_id)
        if ref is None:
            raise LookupError(f"no alert {shown(alert_id)}: it never fired or the retention "
                              "deleted it")
        event = {"schema": SCHEMA_VERSION, "type": "alert.ack", "stream_id": ref.stream_id,
                 "channel": ref.channel, "wall_time": now, "alert_id": ref.alert_id,
                 "rule_id": ref.rule_id, "severity": ref.severity, "by": by, "note": note}
        self.bus.publish(event)
        return event

    def snooze(self, stream_id: str, minutes: float, by: str, note: str, now: float) -> Event:
        """Snooze ``stream_id`` for ``minutes`` (0 ends a snooze) and publish
        ``call.snoozed``."""
        snooze = Snooze(stream_id, now + minutes * 60.0, by, note, now)
        self.snoozes[stream_id] = snooze
        event = {"schema": SCHEMA_VERSION, "type": "call.snoozed", "stream_id": stream_id,
                 "channel": CALL_CHANNEL, "wall_time": now, "until": snooze.until, "by": by,
                 "note": note}
        self.bus.publish(event)
        return event

    # -- WebSocket requests (WebSocketServer.add_request): a ValueError is sent back

    def ack_request(self, message: dict[str, Any]) -> list[Event]:
        alert_id = check_text(message.get("alert_id"), "'alert_id'", 300)
        by, note = who_and_note(message.get("by"), message.get("note", ""))
        try:
            self.acknowledge(alert_id, by, note, time.time())
        except LookupError as exc:
            raise ValueError(str(exc)) from exc
        return []  # the event reaches the subscriber through the bus, like every wall

    def snooze_request(self, message: dict[str, Any]) -> list[Event]:
        stream_id = check_identifier(message.get("call"), "'call'")
        by, note = who_and_note(message.get("by"), message.get("note", ""))
        self.snooze(stream_id, snooze_minutes(message.get("minutes")), by, note, time.time())
        return []

    # -- HTTP routes

    def list_handler(self, request: Request) -> Response:
        try:
            query = parse_query(parse_qs(urlsplit(request.path).query,
                                         keep_blank_values=True))
        except ValueError as exc:
            return error_response(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
        page = self.reader.query(query).as_dict()
        now = time.time()
        page["snoozes"] = [s.as_dict() for s in self.snoozes.values() if s.until > now]
        return json_response(HTTPStatus.OK, page, [("Cache-Control", "no-store")])

    def ack_handler(self, request: Request) -> Response:
        if request.method != "POST":
            return method_not_allowed()
        params = single_params(request)
        try:
            alert_id = check_text(params.get("alert_id"), "'alert_id'", 300)
            by, note = who_and_note(params.get("by"), params.get("note", ""))
        except ValueError as exc:
            return error_response(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
        try:
            event = self.acknowledge(alert_id, by, note, time.time())
        except LookupError as exc:
            return error_response(HTTPStatus.NOT_FOUND, str(exc))
        return json_response(HTTPStatus.OK, event)

    def snooze_handler(self, request: Request) -> Response:
        if request.method != "POST":
            return method_not_allowed()
        params = single_params(request)
        try:
            stream_id = check_identifier(params.get("call"), "'call'")
            minutes = snooze_minutes(params.get("minutes"))
            by, note = who_and_note(params.get("by"), params.get("note", ""))
        except ValueError as exc:
            return error_response(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
        return json_response(HTTPStatus.OK, self.snooze(stream_id, minutes, by, note,
                                                        time.time()))


def single_params(request: Request) -> dict[str, str]:
    """The query string's parameters, the first value of each."""
    parsed = parse_qs(urlsplit(request.path).query, keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def who_and_note(by: object, note: object) -> tuple[str, str]:
    """Who acts (a name, required: the audit trail) and their note (may be empty)."""
    return (check_identifier(by, "'by' (who acknowledges: a name)"),
            check_text(note, "'note'", MAX_NOTE_CHARS) if note != "" else "")


def snooze_minutes(value: object) -> float:
    try:
        minutes = float(value) if isinstance(value, str | int | float) \
            and not isinstance(value, bool) else math.nan
    except ValueError:
        minutes = math.nan
    if not 0 <= minutes <= MAX_SNOOZE_MIN:
        raise ValueError(f"'minutes' must be a number 0..{MAX_SNOOZE_MIN:g} (0 ends a "
                         f"snooze), got {shown(value)}")
    return minutes


def method_not_allowed() -> Response:
    return error_response(HTTPStatus.METHOD_NOT_ALLOWED, "use POST (query-string parameters, "
                          "no body)", [("Allow", "POST")])


__all__ = ["AlertFeed", "AlertRef", "RuleCounts"]
