"""The supervisor shell on a real bus and WebSocket server: alerts and summaries published
like every event, the bounded replay for a new subscriber, summary requests, reloads of the
rules file (watched and on SIGHUP) that keep the old rules when the new file is bad."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from harness import conversation as conv
from streamer.core import events
from streamer.core.config import AlertsConfig, WebSocketConfig
from streamer.publish.bus import EventBus
from streamer.publish.ws_server import WebSocketServer
from streamer.supervise.supervisor import Supervisor, install_sighup
from tests.waiting import wait_until

ANGRY_RULE = ("- {id: customer-angry, kind: label_count, channels: [customer], label: angry,"
              " min_confidence: 0.6, k: 2, n: 3, severity: critical}\n")


async def recv(ws: ClientConnection) -> dict:  # type: ignore[type-arg]
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
    events.validate_event(message)
    return message  # type: ignore[no-any-return]


async def recv_until(ws: ClientConnection, kind: str) -> dict:  # type: ignore[type-arg]
    while (message := await recv(ws))["type"] != kind:
        pass
    return message


async def test_alerts_replay_requests_and_reloads(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(ANGRY_RULE)
    config = AlertsConfig(rules_file=str(rules), reload_check_s=0.1, tick_s=0.05,
                          summary_interval_s=0.2)
    bus = EventBus(replay_events=4)
    supervisor = Supervisor(config, bus)
    seen = bus.subscribe("test")
    async with WebSocketServer(WebSocketConfig(port=0), bus) as server:
        server.add_request("summary.request", supervisor.summary_request)
        task = asyncio.create_task(supervisor.run())
        remove_sighup = install_sighup(supervisor)
        try:
            url = f"ws://127.0.0.1:{server.port}/events"
            bus.publish(conv.started("call-billing", "customer"))
            bus.publish(conv.started("call-billing", "agent"))
            async with connect(url) as live:
                assert (await recv(live))["type"] == "hello"
                [replay] = [await recv(live)]
                assert replay == {**replay, "type": "replay", "events": 2}
                assert [(await recv(live))["channel"] for _ in range(2)] == ["customer", "agent"]
                for row in conv.BILLING_CALL[:3]:  # customer angry, agent, customer angry
                    bus.publish(conv.emotion_from_row(row))
                alert = await recv_until(live, "alert")
                assert alert["rule_id"] == "customer-angry" and alert["channel"] == "customer"
                assert alert["utterance_ids"] == ["call-billing/customer/0",
                                                  "call-billing/customer/1"]
                summary = await recv_until(live, "call.summary")
                assert summary["reason"] == "interval" and summary["severity"] == "critical"

                # A new subscriber gets the last 4 events, then asks for the summaries.
                async with connect(url) as late:
                    await recv(late)
                    replay = await recv(late)
                    assert replay["events"] == 4
                    history = [await recv(late) for _ in range(4)]
                    assert "alert" in [e["type"] for e in history]
                    await late.send(json.dumps({"type": "summary.request", "streams": "*"}))
                    answer = await recv_until(late, "call.summary")
                    assert answer["reason"] == "request" and answer["stream_id"] == "call-billing"
                    assert answer["alerts"][0]["alert_id"] == alert["alert_id"]
                    await late.send(json.dumps({"type": "summary.request", "streams": 3}))
                    error = await recv_until(late, "error")
                    assert "'streams' must be" in error["message"]

                # A bad rules file: logged, the running rule stays (its alert too).
                rules.write_text("- {id: customer-angry, kind: label_count, k: 9, n: 3}\n")
                await wait_until(lambda: supervisor.reload_errors == 1)
                assert [r.id for r in supervisor.engine.rules] == ["customer-angry"]
                # The rule removed: its alert clears, on every subscriber.
                rules.write_text("- {id: dead-air, kind: silence, min_s: 600}\n")
                cleared = await recv_until(live, "alert.cleared")
                assert cleared["alert_id"] == alert["alert_id"]
                assert cleared["reason"] == "rule_removed"
                assert [r.id for r in supervisor.engine.rules] == ["dead-air"]
                # SIGHUP re-reads the file at once, changed or not.
                reloads = supervisor.reloads
                os.kill(os.getpid(), signal.SIGHUP)
                await wait_until(lambda: supervisor.reloads == reloads + 1)

                bus.publish(conv.ended("call-billing", "customer"))
                bus.publish(conv.ended("call-billing", "agent"))
                final = await recv_until(live, "call.summary")
                while final["reason"] != "ended":
                    final = await recv_until(live, "call.summary")
                assert final["active"] is False and supervisor.summaries.calls == {}
        finally:
            remove_sighup()
            task.cancel()
    kinds = []
    while (event := seen.get_nowait()) is not None:
        kinds.append(event["type"])
    assert kinds.count("alert") == 1 and kinds.count("alert.cleared") == 1
    assert supervisor.dropped == 0


async def test_a_malformed_event_is_counted_and_skipped() -> None:
    bus = EventBus()
    supervisor = Supervisor(AlertsConfig(rules=[{"id": "a", "kind": "label_count", "k": 1,
                                                 "n": 1}], tick_s=0.05), bus)
    task = asyncio.create_task(supervisor.run())
    try:
        bad = {**conv.emotion("call-1", "customer", 0, 1.0, 2.0, "hi", "angry", 0.9),
               "confidence": "high"}
        bus.publish(bad)
        bus.publish(conv.emotion("call-1", "customer", 1, 3.0, 4.0, "hi", "angry", 0.9))
        await wait_until(lambda: len(supervisor.engine.active) == 1)
        assert supervisor.faults.count == 1 and not task.done()
    finally:
        task.cancel()
