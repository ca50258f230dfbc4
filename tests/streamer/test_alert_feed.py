"""The alert feed wired as the runtime wires it (``open_feed``) on a real bus, WebSocket
server, SQLite file and webhook receiver: an alert is listed by ``/api/alerts``;
acknowledged by one wall (WebSocket) it reaches every wall and the webhook; a snooze
through the HTTP API reaches the walls and keeps the call's next alert from the webhook;
the API refuses bad requests, GET on actions and missing tokens; and a restart on the same
file still lists the alert with its acknowledgement and the snooze."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from harness import conversation as conv
from streamer.core.config import AlertsConfig, AppConfig, WebhooksConfig, WebSocketConfig
from streamer.core.events import validate_event
from streamer.publish.bus import EventBus
from streamer.publish.ws_server import WebSocketServer
from streamer.runtime import open_feed
from streamer.supervise.supervisor import Supervisor
from tests.streamer.test_supervisor import ANGRY_RULE, recv_until, wait_until
from tests.streamer.test_webhooks import SECRET, Receiver

TOKEN = "wall-token-123"


def http(method: str, url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=b"" if method == "POST" else None,
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def call(method: str, url: str) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(http, method, url)


def app_config(store: Path, hook_url: str, rules: Path) -> AppConfig:
    alerts = AlertsConfig(rules_file=str(rules), tick_s=0.05, summary_interval_s=0.2,
                          store=str(store),
                          webhooks=WebhooksConfig(urls=(hook_url,), secret=SECRET,
                                                  backoff_min_s=0.05, backoff_max_s=0.1))
    return AppConfig(alerts=alerts, websocket=WebSocketConfig(port=0, token=TOKEN))


async def test_list_ack_snooze_webhooks_and_restart(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ANGRY_RULE)
    store = tmp_path / "state" / "alerts.sqlite3"
    receiver = Receiver()
    config = app_config(store, receiver.url, rules)
    try:
        bus = EventBus(replay_events=0)
        supervisor = Supervisor(config.alerts, bus)
        async with contextlib.AsyncExitStack() as stack:
            server = await stack.enter_async_context(WebSocketServer(config.websocket, bus))
            feed = open_feed(config, bus, True, stack, server)
            assert feed.webhooks is not None
            tasks = [asyncio.create_task(t) for t in (supervisor.run(), feed.run(),
                                                      feed.webhooks.run())]
            base = f"http://127.0.0.1:{server.port}/api/alerts"
            events_url = f"ws://127.0.0.1:{server.port}/events?token={TOKEN}"
            try:
                async with connect(events_url) as wall_a, connect(events_url) as wall_b:
                    for row in conv.BILLING_CALL[:3]:  # customer angry twice: the alert
                        bus.publish(conv.emotion_from_row(row))
                    alert = await recv_until(wall_a, "alert")
                    await recv_until(wall_b, "alert")

                    # Listed, newest first, once its row is written.
                    await wait_until(lambda: feed.writer.written >= 1)
                    status, page = await call("GET", f"{base}?token={TOKEN}&state=active")
                    assert status == 200 and page["next"] is None
                    [listed] = page["alerts"]
                    assert listed["alert_id"] == alert["alert_id"] and listed["ack"] is None
                    assert listed["rule_id"] == "customer-angry" and listed["channel"] == \
                        "customer"
                    # With the utterances that made it fire (text, label, confidence).
                    assert [(u["text"], u["label"]) for u in listed["utterances"]] == [
                        (conv.BILLING_CALL[0][5], "angry"), (conv.BILLING_CALL[2][5], "angry")]

                    # Acknowledged on one wall: every wall sees it, the webhook gets it.
                    await wall_a.send(json.dumps({"type": "alert.ack",
                                                  "alert_id": alert["alert_id"],
                                                  "by": "sam", "note": "calling back"}))
                    for wall in (wall_a, wall_b):
                        ack = await recv_until(wall, "alert.ack")
                        assert ack["alert_id"] == alert["alert_id"] and ack["by"] == "sam"
                    await wait_until(lambda: [e["type"] for e in receiver.received] ==
                                     ["alert", "alert.ack"])
                    await wait_until(lambda: feed.writer.pending == 0)
                    status, page = await call("GET", f"{base}?token={TOKEN}&state=acked")
                    assert page["alerts"][0]["ack"]["note"] == "calling back"
                    assert feed.counts.fired["customer-angry"] == 1
                    assert feed.counts.acked["customer-angry"] == 1

                    # Snoozed through the HTTP API: shown on the walls; the call's next
                    # alert is kept and published but sent to no webhook.
                    status, snoozed = await call(
                        "POST", f"{base}/snooze?token={TOKEN}&call=call-billing&minutes=10"
                        "&by=sam&note=known%20issue")
                    assert status == 200 and snoozed["type"] == "call.snoozed"
                    assert (await recv_until(wall_b, "call.snoozed"))["by"] == "sam"
                    rules.write_text(ANGRY_RULE.replace("n: 3", "n: 4, cooldown_s: 0"))  # refires
                    supervisor.request_reload()
                    await recv_until(wall_a, "alert.cleared")
                    refired = await recv_until(wall_a, "alert")
                    await wait_until(lambda: feed.writer.pending == 0 and feed.settled())
                    await asyncio.sleep(0.3)  # time for a webhook that should not come
                    assert [e["type"] for e in receiver.received] == ["alert", "alert.ack"]
                    status, page = await call("GET", f"{base}?token={TOKEN}&state=snoozed")
                    assert [a["alert_id"] for a in page["alerts"]] == [refired["alert_id"]]

                    # Refusals.
                    assert (await call("GET", f"{base}"))[0] == 401
                    assert (await call("GET", f"{base}/ack?token={TOKEN}"))[0] == 405
                    status, error = await call("POST", f"{base}/ack?token={TOKEN}"
                                               "&alert_id=nope&by=sam")
                    assert status == 404 and "no alert 'nope'" in error["error"]
                    status, error = await call("POST", f"{base}/ack?token={TOKEN}"
                                               f"&alert_id={alert['alert_id']}")
                    assert status == 400 and "'by'" in error["error"]
                    status, error = await call("GET", f"{base}?token={TOKEN}&limit=0")
                    assert status == 400 and "'limit'" in error["error"]
                    await wall_a.send(json.dumps({"type": "call.snooze", "call": "x",
                                                  "minutes": -1, "by": "sam"}))
                    assert "'minutes'" in (await recv_until(wall_a, "error"))["message"]
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        # A restart on the same file: the history, the acknowledgement and the snooze.
        bus = EventBus()
        async with contextlib.AsyncExitStack() as stack:
            server = await stack.enter_async_context(WebSocketServer(config.websocket, bus))
            feed = open_feed(config, bus, True, stack, server)
            assert feed.is_snoozed("call-billing", now=__import__("time").time())
            status, page = await call("GET", f"http://127.0.0.1:{server.port}/api/alerts"
                                      f"?token={TOKEN}&call=call-billing")
            assert status == 200
            assert [a["alert_id"] for a in page["alerts"]] == [refired["alert_id"],
                                                               alert["alert_id"]]
            first = page["alerts"][1]
            assert first["state"] == "cleared" and first["clear_reason"] == "rule_changed"
            assert first["ack"]["by"] == "sam"
    finally:
        receiver.close()


def test_feed_files_the_triggering_utterances_and_lists_snoozes(tmp_path: Path) -> None:
    """The feed files the utterances an alert cites with its row (it keeps none of its
    own); the list answer carries the calls snoozed now."""
    from streamer.supervise.alert_feed import AlertFeed
    from streamer.supervise.alert_store import AlertQuery
    from streamer.supervise.alerts import Utterance

    now = __import__("time").time()  # the writer prunes older rows (the retention)
    bus = EventBus(replay_events=0)
    feed = AlertFeed(AlertsConfig(store=str(tmp_path / "a.sqlite3")), bus,
                     tmp_path / "a.sqlite3")
    try:
        rows = [conv.emotion_from_row(r) for r in conv.BILLING_CALL[:3]]
        alert = {"schema": "emotion-stream/4", "type": "alert", "stream_id": "call-billing",
                 "channel": "customer", "wall_time": now,
                 "alert_id": "customer-angry/call-billing/customer/1",
                 "rule_id": "customer-angry", "kind": "label_count", "severity": "critical",
                 "message": "m", "value": 2.0,
                 "utterance_ids": [rows[0]["utterance_id"], rows[2]["utterance_id"]],
                 "utterances": [Utterance.of(rows[0]).cited(), Utterance.of(rows[2]).cited()],
                 "t_start": 0.4, "t_end": 10.5, "trigger_wall_time": now}
        validate_event(alert)
        feed.handle(alert, now)
        feed.writer.stop()
        [row] = feed.reader.query(AlertQuery()).alerts
        assert [(u["text"], u["label"], u["confidence"]) for u in row["utterances"]] == [
            (conv.BILLING_CALL[0][5], "angry", 0.72), (conv.BILLING_CALL[2][5], "angry", 0.64)]
        assert row["utterances"][0]["channel"] == "customer"
        assert row["utterance_ids"] == [rows[0]["utterance_id"], rows[2]["utterance_id"]]

        feed.snooze("call-billing", 10, "sam", "known issue", now)
        request = type("R", (), {"path": "/api/alerts?limit=5"})()
        answer = json.loads(feed.list_handler(request).body)  # type: ignore[arg-type]
        assert [s["stream_id"] for s in answer["snoozes"]] == ["call-billing"]
        assert answer["snoozes"][0]["by"] == "sam"
    finally:
        feed.close()
