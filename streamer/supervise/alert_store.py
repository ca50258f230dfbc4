"""The alert feed's SQLite store: alerts, acknowledgements, snoozes and the calls' latest
summaries, so a restart or a browser reload loses none of them (docs/alerts.md).

Two layers:

- ``AlertStore``: the rules of the store over one ``sqlite3.Connection``, synchronous and
  without threads or asyncio: ``record(event)`` files an ``alert``, ``alert.cleared``,
  ``alert.ack``, ``call.snoozed`` or ``call.summary`` event; ``query(AlertQuery)`` pages
  the alerts newest first; ``prune(now)`` applies the retention. Tests drive it directly.
- ``StoreWriter``: the shell that keeps writes off the event loop. One thread owns the
  writing connection and takes ``Write`` items from a bounded queue. Overflow policy: when
  ``alerts.store_queue`` writes are waiting, a new one is dropped, counted (``dropped``)
  and logged; the alert itself is still published on the bus, only its row is missing.
  A write that fails (disk full, a locked file) is logged and counted (``faults``) and the
  thread goes on with the next one.

Reads (the ``/api/alerts`` page) use their own connection on the event loop: the file is
in WAL mode, so a reader never waits for the writer, and a page is at most
``MAX_PAGE`` rows through an index.

Migrations: a file written by an older version is upgraded in place when it is opened,
only by adding what is missing (``MIGRATIONS``: the ``alerts.utterances`` column, the
triggering utterances as JSON; NULL in older rows, which the API shows as ``[]``). Nothing
is dropped or rewritten, so an older version still reads the file (it ignores the column).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streamer.core.events import Event
from streamer.core.faults import FaultLog
from streamer.core.validation import check_identifier, shown

log = logging.getLogger(__name__)

MAX_PAGE = 200  # rows of one /api/alerts page, at most
DEFAULT_PAGE = 50
PRUNE_EVERY_S = 600.0  # the writer applies the retention this often (and at start)
BUSY_TIMEOUT_S = 5.0  # a connection waits this long for a lock before an error
STORED_TYPES = frozenset({"alert", "alert.cleared", "alert.ack", "call.snoozed",
                          "call.summary"})
State = Literal["active", "cleared", "acked", "unacked", "snoozed"]
STATES: tuple[str, ...] = ("active", "cleared", "acked", "unacked", "snoozed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    fired_at REAL NOT NULL,
    cleared_at REAL,
    clear_reason TEXT,
    snoozed INTEGER NOT NULL DEFAULT 0,
    acked_by TEXT,
    acked_at REAL,
    ack_note TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_newest ON alerts (fired_at DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS alerts_by_call ON alerts (stream_id, fired_at DESC);
CREATE TABLE IF NOT EXISTS snoozes (
    stream_id TEXT PRIMARY KEY,
    until REAL NOT NULL,
    snoozed_by TEXT NOT NULL,
    note TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS summaries (
    stream_id TEXT PRIMARY KEY,
    wall_time REAL NOT NULL,
    active INTEGER NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS summaries_newest ON summaries (wall_time DESC);
"""
# Columns added since the first schema: (table, column, declaration), applied by
# ``migrate`` to files that lack them. Only ever append here; never drop or rename.
MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    # The utterances that made the alert fire: a JSON list of {utterance_id, channel,
    # text, label, confidence, t_start, t_end} (streamer.supervise.alert_feed keeps them).
    ("alerts", "utterances", "TEXT"),
)


@dataclass(frozen=True)
class Retention:
    days: float
    rows: int


@dataclass(frozen=True)
class Snooze:
    stream_id: str
    until: float
    by: str
    note: str
    at: float

    def as_dict(self) -> dict[str, object]:
        return {"stream_id": self.stream_id, "until": self.until, "by": self.by,
                "note": self.note, "at": self.at}


@dataclass(frozen=True)
class AlertQuery:
    """One page request: filters (None: any), the page size and where the page starts."""

    rule: str | None = None
    party: str | None = None
    call: str | None = None
    state: State | None = None
    limit: int = DEFAULT_PAGE
    cursor: tuple[float, str] | None = None  # (fired_at, alert_id) of the previous page's last


@dataclass(frozen=True)
class AlertPage:
    alerts: tuple[dict[str, Any], ...]
    next_cursor: str | None  # pass as ?cursor= for the next page; None: this was the last

    def as_dict(self) -> dict[str, Any]:
        return {"alerts": list(self.alerts), "next": self.next_cursor}


def parse_query(params: dict[str, list[str]]) -> AlertQuery:
    """An ``AlertQuery`` from a query string (``urllib.parse.parse_qs``); a ValueError says
    what is wrong."""
    allowed = {"rule", "party", "call", "state", "limit", "cursor", "token"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter {shown(unknown[0])}; use rule, party, call, "
                         "state, limit, cursor")

    def one(key: str) -> str | None:
        values = params.get(key)
        if not values:
            return None
        if len(values) > 1:
            raise ValueError(f"'{key}' given {len(values)} times; give it once")
        return values[0]

    state = one("state")
    if state is not None and state not in STATES:
        raise ValueError(f"'state' must be one of {', '.join(STATES)}, got {shown(state)}")
    limit_text = one("limit")
    try:
        limit = int(limit_text) if limit_text is not None else DEFAULT_PAGE
    except ValueError:
        raise ValueError(f"'limit' must be a whole number 1..{MAX_PAGE}, got "
                         f"{shown(limit_text)}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"'limit' must be 1..{MAX_PAGE}, got {limit}")
    names = {key: check_identifier(value, f"'{key}'") if value is not None else None
             for key in ("rule", "party", "call") for value in (one(key),)}
    return AlertQuery(rule=names["rule"], party=names["party"], call=names["call"],
                      state=state, limit=limit,  # type: ignore[arg-type]
                      cursor=parse_cursor(one("cursor")))


def parse_cursor(text: str | None) -> tuple[float, str] | None:
    if text is None:
        return None
    fired, sep, alert_id = text.partition(":")
    try:
        if not sep or not alert_id:
            raise ValueError
        return float(fired), alert_id
    except ValueError:
        raise ValueError(f"'cursor' must be the 'next' of the previous page, got "
                         f"{shown(text)}") from None


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with the schema in place (created on first use)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
    conn.executescript(SCHEMA)
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Add the ``MIGRATIONS`` columns a file lacks (an older version wrote it). Safe when
    two connections race (the writer's and the reader's): a column the other one added
    first is taken as done."""
    for table, column, declaration in MIGRATIONS:
        if column in table_columns(conn, table):
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            log.info("alert store: added the column %s.%s (a file of an older version)",
                     table, column)
        except sqlite3.OperationalError:
            if column not in table_columns(conn, table):  # not the race: a real failure
                raise


def table_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}


class AlertStore:
    """The store's rules over one connection (no threads, no event loop)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    # -- writes

    def record(self, event: Event, snoozed: bool = False,
               utterances: tuple[dict[str, Any], ...] | None = None) -> None:
        """File one event (other types are ignored). ``snoozed``: the alert fired while its
        call was snoozed; ``utterances``: an alert's triggering utterances (None: not
        known)."""
        kind = event.get("type")
        with self.conn:
            if kind == "alert":
                self.conn.execute(
                    "INSERT INTO alerts (alert_id, stream_id, channel, rule_id, severity, "
                    "fired_at, snoozed, event, utterances) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (alert_id) DO NOTHING",
                    (event["alert_id"], event["stream_id"], event["channel"], event["rule_id"],
                     event["severity"], float(event["wall_time"]), int(snoozed),
                     json.dumps(event),
                     json.dumps(list(utterances)) if utterances is not None else None))
            elif kind == "alert.cleared":
                self.conn.execute(
                    "UPDATE alerts SET cleared_at = ?, clear_reason = ? WHERE alert_id = ?",
                    (float(event["wall_time"]), event["reason"], event["alert_id"]))
            elif kind == "alert.ack":
                self.conn.execute(
                    "UPDATE alerts SET acked_by = ?, acked_at = ?, ack_note = ? "
                    "WHERE alert_id = ?",
                    (event["by"], float(event["wall_time"]), event["note"], event["alert_id"]))
            elif kind == "call.snoozed":
                self.conn.execute(
                    "INSERT INTO snoozes (stream_id, until, snoozed_by, note, at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET "
                    "until = excluded.until, snoozed_by = excluded.snoozed_by, "
                    "note = excluded.note, at = excluded.at",
                    (event["stream_id"], float(event["until"]), event["by"], event["note"],
                     float(event["wall_time"])))
            elif kind == "call.summary":
                self.conn.execute(
                    "INSERT INTO summaries (stream_id, wall_time, active, event) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (stream_id) DO UPDATE SET "
                    "wall_time = excluded.wall_time, active = excluded.active, "
                    "event = excluded.event",
                    (event["stream_id"], float(event["wall_time"]), int(bool(event["active"])),
                     json.dumps(event)))

    def prune(self, now: float, retention: Retention) -> int:
        """Delete what the retention does not keep; the number of alert rows deleted."""
        horizon = now - retention.days * 86400.0
        with self.conn:
            deleted = self.conn.execute("DELETE FROM alerts WHERE fired_at < ?",
                                        (horizon,)).rowcount
            deleted += self.conn.execute(
                "DELETE FROM alerts WHERE alert_id IN (SELECT alert_id FROM alerts "
                "ORDER BY fired_at DESC, alert_id DESC LIMIT -1 OFFSET ?)",
                (retention.rows,)).rowcount
            self.conn.execute("DELETE FROM summaries WHERE wall_time < ?", (horizon,))
            self.conn.execute(
                "DELETE FROM summaries WHERE stream_id IN (SELECT stream_id FROM summaries "
                "ORDER BY wall_time DESC LIMIT -1 OFFSET ?)", (retention.rows,))
            self.conn.execute("DELETE FROM snoozes WHERE until < ?", (now,))
        return int(deleted)

    # -- reads

    def query(self, q: AlertQuery) -> AlertPage:
        where: list[str] = []
        args: list[str | float] = []
        for column, value in (("rule_id", q.rule), ("channel", q.party),
                              ("stream_id", q.call)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if q.state is not None:
            where.append({"active": "cleared_at IS NULL", "cleared": "cleared_at IS NOT NULL",
                          "acked": "acked_at IS NOT NULL", "unacked": "acked_at IS NULL",
                          "snoozed": "snoozed = 1"}[q.state])
        if q.cursor is not None:
            where.append("(fired_at, alert_id) < (?, ?)")
            args += [q.cursor[0], q.cursor[1]]
        sql = ("SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY fired_at DESC, alert_id DESC LIMIT ?")
        rows = self.conn.execute(sql, [*args, q.limit + 1]).fetchall()
        more = len(rows) > q.limit
        alerts = tuple(row_dict(r) for r in rows[:q.limit])
        last = alerts[-1] if alerts else None
        cursor = f"{last['fired_at']!r}:{last['alert_id']}" if more and last else None
        return AlertPage(alerts, cursor)

    def get(self, alert_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM alerts WHERE alert_id = ?",
                                (alert_id,)).fetchone()
        return row_dict(row) if row is not None else None

    def snoozes(self, now: float) -> dict[str, Snooze]:
        """The calls snoozed beyond ``now``."""
        rows = self.conn.execute("SELECT * FROM snoozes WHERE until > ?", (now,)).fetchall()
        return {r["stream_id"]: Snooze(r["stream_id"], r["until"], r["snoozed_by"], r["note"],
                                       r["at"]) for r in rows}

    def summary(self, stream_id: str) -> Event | None:
        row = self.conn.execute("SELECT event FROM summaries WHERE stream_id = ?",
                                (stream_id,)).fetchone()
        return dict(json.loads(row["event"])) if row is not None else None


def row_dict(row: sqlite3.Row) -> dict[str, Any]:
    """An alert row as the API shows it. ``utterances``: the triggering utterances the feed
    still held when the alert fired (text, label, confidence), in ``utterance_ids`` order;
    [] for rows of older versions and for rules without utterances (silence)."""
    event = json.loads(row["event"])
    kept = row["utterances"] if "utterances" in row.keys() else None  # noqa: SIM118
    ack = ({"by": row["acked_by"], "at": row["acked_at"], "note": row["ack_note"]}
           if row["acked_at"] is not None else None)
    return {"alert_id": row["alert_id"], "stream_id": row["stream_id"],
            "channel": row["channel"], "rule_id": row["rule_id"], "kind": event.get("kind"),
            "severity": row["severity"], "message": event.get("message"),
            "value": event.get("value"), "fired_at": row["fired_at"],
            "state": "active" if row["cleared_at"] is None else "cleared",
            "cleared_at": row["cleared_at"], "clear_reason": row["clear_reason"],
            "snoozed": bool(row["snoozed"]), "ack": ack,
            "utterance_ids": event.get("utterance_ids", []),
            "utterances": json.loads(kept) if kept else [],
            "t_start": event.get("t_start"), "t_end": event.get("t_end")}


# ---------------------------------------------------------------- the writer thread


@dataclass(frozen=True)
class Write:
    event: Event
    snoozed: bool = False
    utterances: tuple[dict[str, Any], ...] | None = None  # an alert's triggering utterances


class StoreWriter:
    """Writes ``Write`` items on its own thread; ``offer`` never blocks."""

    def __init__(self, path: Path, retention: Retention, maxsize: int) -> None:
        self.path = path
        self.retention = retention
        self._queue: queue.Queue[Write | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.pruned = 0
        self.faults = FaultLog("alert store")

    def start(self) -> None:
        """Open (and create) the file at once, so a bad path stops the start here."""
        conn = connect(self.path)
        self._thread = threading.Thread(target=self._run, args=(AlertStore(conn),),
                                        name="alert-store", daemon=True)
        self._thread.start()

    def offer(self, write: Write) -> bool:
        """Queue a write; False (dropped, counted) when the queue is full."""
        try:
            self._queue.put_nowait(write)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("alert store: %d writes dropped so far: the queue of %d is full "
                          "(the disk is slow or stuck at %s); raise alerts.store_queue",
                          self.dropped, self._queue.maxsize, self.path)
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (within ``timeout_s``), then close."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            log.error("alert store: %d writes still queued at shutdown were not written",
                      self._queue.qsize())
        self._thread.join(timeout_s)
        self._thread = None

    def _run(self, store: AlertStore) -> None:
        next_prune = 0.0
        try:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    store.record(item.event, item.snoozed, item.utterances)
                    self.written += 1
                    now = time.time()
                    if now >= next_prune:
                        next_prune = now + PRUNE_EVERY_S
                        self.pruned += store.prune(now, self.retention)
                except sqlite3.Error as exc:  # the bulkhead: one failed write, the rest go on
                    self.faults.record(item.event if item else None, exc,
                                       "its row is missing from the alert store")
                finally:
                    self._queue.task_done()
        finally:
            store.close()


def store_path(setting: str, persist_by_default: bool, temp_dir: Path) -> Path:
    """Where the store lives: ``alerts.store``, with "auto" resolved to the user state
    directory when the caller persists by default (``serve``), else to ``temp_dir``."""
    if setting != "auto":
        return Path(setting).expanduser()
    if not persist_by_default:
        return temp_dir / "alerts.sqlite3"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "emotion-stream" / "alerts.sqlite3"


__all__ = ["AlertStore", "AlertQuery", "AlertPage", "Retention", "Snooze", "StoreWriter",
           "Write", "connect", "migrate", "parse_query", "store_path", "STORED_TYPES"]
