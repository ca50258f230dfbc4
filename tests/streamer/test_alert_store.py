"""The alert store on a real SQLite file: alerts, clears, acks, snoozes and summaries
survive a reopen (a restart), pages come newest first with filters and a cursor, the
retention deletes by age and by rows, and the writer thread drops (and counts) what does
not fit its queue instead of blocking."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from streamer.alert_store import (
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
