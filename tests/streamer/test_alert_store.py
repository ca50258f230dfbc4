"""The alert store on a real SQLite file: alerts, clears, acks, snoozes and summaries
survive a reopen (a restart), pages come newest first with filters and a cursor, the
retention deletes by age and by rows, and the writer thread drops (and counts) what does
not fit its queue instead of blocking."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from streamer.supervise.alert_store import (
    AlertQuery,
    AlertStore,
    Retention,
    StoreWriter,
    Write,
    connect,
    parse_query,
    store_path,
)


def alert(n: int, stream: str = "call-1", channel: str = "customer", rule: str = "angry",
          at: float = 1000.0) -> dict[str, Any]:
    return {"schema": "emotion-stream/4", "type": "alert", "stream_id": stream,
            "channel": channel, "wall_time": at + n, "alert_id": f"{rule}/{stream}/{channel}/{n}",
            "rule_id": rule, "kind": "label_count", "severity": "critical",
            "message": f"alert {n}", "value": 2.0, "utterance_ids": [f"{stream}/{channel}/{n}"],
            "t_start": 1.0, "t_end": 2.0, "trigger_wall_time": at + n}


def test_rows_survive_a_reopen_with_clear_ack_and_snooze(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite3"
    store = AlertStore(connect(path))
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.record(alert(1))
    store.record(alert(2), snoozed=True)
    store.record({"type": "alert.cleared", "alert_id": "angry/call-1/customer/1",
                  "wall_time": 1010.0, "reason": "condition_ended"})
    store.record({"type": "alert.ack", "alert_id": "angry/call-1/customer/1",
                  "wall_time": 1020.0, "by": "sam", "note": "called back"})
    store.record({"type": "call.snoozed", "stream_id": "call-1", "wall_time": 1030.0,
                  "until": 5000.0, "by": "sam", "note": ""})
    store.record({"type": "call.summary", "stream_id": "call-1", "wall_time": 1040.0,
                  "active": False, "reason": "ended"})
    store.close()

    again = AlertStore(connect(path))
    first = again.get("angry/call-1/customer/1")
    assert first is not None
    assert first["state"] == "cleared" and first["clear_reason"] == "condition_ended"
    assert first["ack"] == {"by": "sam", "at": 1020.0, "note": "called back"}
    assert first["utterance_ids"] == ["call-1/customer/1"] and first["message"] == "alert 1"
    second = again.get("angry/call-1/customer/2")
    assert second is not None and second["state"] == "active" and second["snoozed"]
    assert second["ack"] is None
    assert set(again.snoozes(2000.0)) == {"call-1"} and again.snoozes(6000.0) == {}
    summary = again.summary("call-1")
    assert summary is not None and summary["reason"] == "ended"


def test_pages_newest_first_with_filters_and_cursor(tmp_path: Path) -> None:
    store = AlertStore(connect(tmp_path / "a.sqlite3"))
    for n in range(7):
        store.record(alert(n, stream=f"call-{n % 2}", channel=("agent", "customer")[n % 2],
                           rule=("angry", "silence")[n % 3 == 0]))
    store.record({"type": "alert.cleared", "alert_id": "angry/call-1/customer/1",
                  "wall_time": 2000.0, "reason": "stream_ended"})

    page = store.query(AlertQuery(limit=3))
    assert [a["fired_at"] for a in page.alerts] == [1006.0, 1005.0, 1004.0]
    assert page.next_cursor is not None
    rest = store.query(parse_query({"cursor": [page.next_cursor], "limit": ["10"]}))
    assert [a["fired_at"] for a in rest.alerts] == [1003.0, 1002.0, 1001.0, 1000.0]
    assert rest.next_cursor is None

    assert {a["rule_id"] for a in store.query(AlertQuery(rule="silence")).alerts} == {"silence"}
    assert [a["fired_at"] for a in store.query(AlertQuery(rule="silence")).alerts] == \
        [1006.0, 1003.0, 1000.0]
    assert all(a["channel"] == "agent" for a in store.query(AlertQuery(party="agent")).alerts)
    assert all(a["stream_id"] == "call-1" for a in store.query(AlertQuery(call="call-1")).alerts)
    cleared = store.query(AlertQuery(state="cleared")).alerts
    assert [a["alert_id"] for a in cleared] == ["angry/call-1/customer/1"]
    assert len(store.query(AlertQuery(state="active")).alerts) == 6


@pytest.mark.parametrize("params, problem", [
    ({"state": ["open"]}, "'state' must be one of"),
    ({"limit": ["0"]}, "'limit' must be 1..200"),
    ({"limit": ["ten"]}, "'limit' must be a whole number"),
    ({"cursor": ["nonsense"]}, "'cursor' must be the 'next'"),
    ({"rule": ["a/b"]}, "'rule'"),
    ({"colour": ["red"]}, "unknown parameter 'colour'"),
    ({"rule": ["a", "b"]}, "'rule' given 2 times"),
])
def test_bad_queries_say_what_is_wrong(params: dict[str, list[str]], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_query(params)


def test_retention_by_age_and_by_rows(tmp_path: Path) -> None:
    store = AlertStore(connect(tmp_path / "a.sqlite3"))
    day = 86400.0
    for n in range(5):
        store.record(alert(n, at=0.0))  # fired at 0..4 s
    for n in range(5, 10):
        store.record(alert(n, at=10 * day))
    assert store.prune(10 * day + 100, Retention(days=5, rows=1000)) == 5
    assert len(store.query(AlertQuery(limit=200)).alerts) == 5
    store.prune(10 * day + 100, Retention(days=5, rows=2))
    assert [a["alert_id"] for a in store.query(AlertQuery()).alerts] == \
        ["angry/call-1/customer/9", "angry/call-1/customer/8"]


async def test_writer_thread_writes_and_drops_on_overflow(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    writer = StoreWriter(path, Retention(30, 1000), maxsize=2)
    # Not started: nothing drains the queue, so the third write overflows at once.
    now = time.time()  # the writer prunes by the retention as it starts: recent alerts
    writer._queue.put_nowait(Write(alert(0, at=now)))  # noqa: SLF001 (fill it deterministically)
    writer._queue.put_nowait(Write(alert(1, at=now)))  # noqa: SLF001
    started = time.monotonic()
    assert writer.offer(Write(alert(2, at=now))) is False
    assert time.monotonic() - started < 0.05 and writer.dropped == 1
    writer.start()
    writer.stop()
    assert writer.written == 2
    rows = AlertStore(connect(path)).query(AlertQuery()).alerts
    assert [a["alert_id"] for a in rows] == ["angry/call-1/customer/1", "angry/call-1/customer/0"]


def test_auto_path_is_in_the_state_directory_only_for_serve(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert store_path("auto", True, tmp_path / "tmp") == \
        tmp_path / "state" / "emotion-stream" / "alerts.sqlite3"
    assert store_path("auto", False, tmp_path / "tmp") == tmp_path / "tmp" / "alerts.sqlite3"
    assert store_path("~/x.db", True, tmp_path) == Path("~/x.db").expanduser()


OLD_SCHEMA = """
CREATE TABLE alerts (alert_id TEXT PRIMARY KEY, stream_id TEXT NOT NULL, channel TEXT NOT NULL,
    rule_id TEXT NOT NULL, severity TEXT NOT NULL, fired_at REAL NOT NULL, cleared_at REAL,
    clear_reason TEXT, snoozed INTEGER NOT NULL DEFAULT 0, acked_by TEXT, acked_at REAL,
    ack_note TEXT, event TEXT NOT NULL);
"""  # the first version's alerts table: no utterances column


def test_triggering_utterances_are_kept_and_an_old_file_is_upgraded(tmp_path: Path) -> None:
    import json
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(str(path))
    old.executescript(OLD_SCHEMA)
    old.execute("INSERT INTO alerts (alert_id, stream_id, channel, rule_id, severity, fired_at,"
                " event) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("angry/call-1/customer/0", "call-1", "customer", "angry", "critical", 1000.0,
                 json.dumps(alert(0))))
    old.commit()
    old.close()

    store = AlertStore(connect(path))  # the upgrade: a column added, the old row kept
    connect(path).close()  # a second open finds the column in place
    old_row = store.get("angry/call-1/customer/0")
    assert old_row is not None and old_row["utterances"] == []
    said = {"utterance_id": "call-1/customer/1", "channel": "customer",
            "text": "this is outrageous", "label": "angry", "confidence": 0.93,
            "t_start": 1.0, "t_end": 2.0}
    store.record(alert(1), utterances=(said,))
    store.record(alert(2))  # fired with none known
    store.close()

    again = AlertStore(connect(path))
    row = again.get("angry/call-1/customer/1")
    assert row is not None and row["utterances"] == [said]
    assert row["utterance_ids"] == ["call-1/customer/1"]
    assert (again.get("angry/call-1/customer/2") or {})["utterances"] == []
    assert [r["alert_id"] for r in again.query(AlertQuery()).alerts] == [
        "angry/call-1/customer/2", "angry/call-1/customer/1", "angry/call-1/customer/0"]
    # What an older version reads (its SELECT * ignores the extra column) still works.
    columns = [row[1] for row in again.conn.execute("PRAGMA table_info(alerts)")]
    assert columns[:13] == ["alert_id", "stream_id", "channel", "rule_id", "severity",
                            "fired_at", "cleared_at", "clear_reason", "snoozed", "acked_by",
                            "acked_at", "ack_note", "event"] and columns[13] == "utterances"


async def test_writer_files_the_utterances_of_a_write(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    writer = StoreWriter(path, Retention(30, 1000), maxsize=10)
    writer.start()
    said = {"utterance_id": "call-1/customer/0", "channel": "customer", "text": "no",
            "label": "angry", "confidence": 0.8, "t_start": 0.0, "t_end": 1.0}
    assert writer.offer(Write(alert(0, at=time.time()), utterances=(said,)))
    writer.stop()
    rows = AlertStore(connect(path)).query(AlertQuery()).alerts
    assert rows[0]["utterances"] == [said]
