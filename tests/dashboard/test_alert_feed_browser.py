"""The alert feed in headless Chromium, against the real server with the real rule engine
(``streamer.supervise.supervisor``) and the real alert feed on a SQLite file in tmp_path
(wired as the runtime wires it, ``streamer.runtime.open_feed``): an alert raised and cleared
while the page is open stays listed with its triggering utterance; an acknowledgement (and a
snooze) made on one wall shows on a second open wall (the time is printed; budget 1 s); a
reload keeps the alert, its state and the acknowledgement (on /wall and on /alerts); the
filters; and the 500-call wall with the feed open and 200+ alerts in it, measured (not
asserted: a benchmark figure) beside the same wall without the feed
(test-output/dashboard/wall_feed.json, wall_feed.png).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from harness import conversation as conv
from harness.dashboard import DashboardServer
from streamer.core.config import AlertsConfig, AppConfig, WebSocketConfig
from streamer.publish.ws_server import WebSocketServer
from streamer.runtime import open_feed, settle_feed
from streamer.supervise.alert_feed import AlertFeed
from streamer.supervise.alert_store import AlertQuery
from streamer.supervise.dashboard import add_dashboard
from streamer.supervise.supervisor import Supervisor
from tests.dashboard import test_wall
from tests.dashboard.conftest import new_page, screenshot_path

pytestmark = pytest.mark.slow

RULES = [
    {"id": "customer-angry", "kind": "label_count", "channels": ["customer"], "label": "angry",
     "min_confidence": 0.7, "k": 1, "n": 1, "severity": "critical", "cooldown_s": 0},
    {"id": "agent-angry", "kind": "label_count", "channels": ["agent"], "label": "angry",
     "min_confidence": 0.6, "k": 1, "n": 1, "severity": "info", "cooldown_s": 0},
]
# From the click on one wall to the change painted on another: the 1 s budget is measured
# and printed (a wall-clock assert fails on a loaded shared machine); this bounds the wait.
SPREAD_TIMEOUT_MS = 10_000


class FeedServer(DashboardServer):
    """The dashboard server with the supervisor (rules, summaries) and the alert feed (its
    SQLite store, /api/alerts, acknowledge and snooze over the WebSocket)."""

    def __init__(self, store: Path, rules: list[dict[str, Any]],
                 queue_pattern: str | None = None) -> None:
        super().__init__()
        self.config = AppConfig(
            alerts=AlertsConfig(rules=rules, store=str(store),
                                summary_interval_s=0, queue_pattern=queue_pattern),
            websocket=WebSocketConfig(port=self.port))
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.supervisor: Supervisor | None = None
        self.feed: AlertFeed | None = None

    async def start(self) -> FeedServer:
        stack = self._stack = contextlib.AsyncExitStack()
        server = await stack.enter_async_context(WebSocketServer(self.config.websocket,
                                                                 self.bus))
        add_dashboard(server)
        self.supervisor = Supervisor(self.config.alerts, self.bus)
        stack.callback(self.supervisor.close)
        server.add_request("summary.request", self.supervisor.summary_request)
        self.feed = open_feed(self.config, self.bus, True, stack, server)
        self._tasks = [asyncio.create_task(self.supervisor.run()),
                       asyncio.create_task(self.feed.run())]
        self._server = server
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self._server = None

    async def settle(self, timeout_s: float = 30.0) -> None:
        """Every event published so far alerted on, filed and written."""
        assert self.supervisor is not None and self.feed is not None
        feed = self.feed
        assert await self.supervisor.settle(timeout_s)
        assert await settle_feed(feed, timeout_s)
        deadline = time.monotonic() + timeout_s
        while feed.writer.pending:
            assert time.monotonic() < deadline, "the alert store did not catch up"
            await asyncio.sleep(0.01)


@pytest.fixture
async def feed_server(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[FeedServer]]]:
    made: list[FeedServer] = []

    async def make(rules: list[dict[str, Any]] = RULES, queue_pattern: str | None = None
                   ) -> FeedServer:
        server = await FeedServer(tmp_path / "state" / "alerts.sqlite3", rules,
                                  queue_pattern).start()
        made.append(server)
        return server

    yield make
    for server in made:
        await server.stop()


@pytest.fixture
async def second_page(browser):  # type: ignore[no-untyped-def]
    """Another wall: its own browser context (storage, socket), like another supervisor."""
    page = await new_page(browser, console_errors=False)
    yield page
    await page.context.close()


def feed_row(page: Page, rule: str, call: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#feed-list .feed-row[data-rule="{rule}"][data-stream-id="{call}"]')


async def open_wall_with_feed(page: Page, url: str) -> None:
    await page.goto(url)
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    await page.locator("#wall-feed").click()
    await expect(page.locator("#feed")).to_be_visible()
    await expect(page.locator("#wall-feed")).to_have_attribute("aria-pressed", "true")


def start_call(server: DashboardServer, call: str) -> None:
    server.publish(conv.started(call, "customer"), conv.started(call, "agent"))


async def test_alert_raised_and_cleared_stays_with_its_utterance(feed_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await feed_server()
    start_call(server, "call-billing")
    await open_wall_with_feed(page, server.url("/wall"))
    await expect(page.locator("#feed-empty")).to_have_text("No alerts yet.")

    server.publish(conv.emotion("call-billing", "customer", 0, 0.4, 3.9, "this is outrageous",
                                "angry", 0.93))
    row = feed_row(page, "customer-angry", "call-billing")
    await expect(row).to_have_attribute("data-state", "active")
    await expect(row.locator(".feed-end")).to_have_text("active")
    await expect(row.locator(".feed-party")).to_have_text("customer")
    await expect(row.locator(".feed-sev")).to_have_text("critical")
    utterance = row.locator(".feed-utt")
    await expect(utterance.locator(".feed-utt-text")).to_have_text("this is outrageous")
    await expect(utterance.locator(".label-chip")).to_have_text("angry")
    await expect(utterance.locator(".feed-utt-conf")).to_have_text("93%")
    await expect(row.locator(".feed-peak")).to_contain_text("93%")
    # The header counts agree: the wall's "N alerting" and the feed's.
    await expect(page.locator("#wall-count")).to_contain_text("1 alerting")
    await expect(page.locator("#feed-alerting")).to_have_text("1 alerting")

    server.publish(conv.emotion("call-billing", "customer", 1, 4.5, 6.0, "okay fine",
                                "neutral", 0.9))
    await expect(row).to_have_attribute("data-state", "cleared")
    await expect(row.locator(".feed-end")).to_contain_text("end ")
    await expect(row.locator(".feed-utt-text")).to_have_text("this is outrageous")
    await expect(page.locator("#feed-list .feed-row")).to_have_count(1)
    await expect(page.locator("#wall-count")).to_contain_text("0 alerting")
    await expect(page.locator("#feed-alerting")).to_have_text("0 alerting")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_ack_and_snooze_reach_another_wall_within_a_second_and_survive_reload(  # type: ignore[no-untyped-def]
        feed_server, page, second_page) -> None:
    server = await feed_server()
    start_call(server, "call-billing")
    await open_wall_with_feed(page, server.url("/wall"))
    await open_wall_with_feed(second_page, server.url("/wall"))
    server.publish(conv.emotion("call-billing", "customer", 0, 0.4, 3.9, "I was charged twice",
                                "angry", 0.88))
    mine, theirs = (feed_row(p, "customer-angry", "call-billing") for p in (page, second_page))
    for row in (mine, theirs):
        await expect(row).to_have_attribute("data-acked", "false")
        await expect(row.locator(".feed-utt-text")).to_have_text("I was charged twice")

    # Acknowledge on the first wall: who, note; the second wall shows it within 1 s.
    await page.fill("#feed-who", "sam")
    await mine.locator(".feed-ack-button").click()
    await mine.locator(".feed-action input").fill("calling back")
    clicked = time.monotonic()
    await mine.locator(".feed-action .feed-confirm").click()
    await expect(theirs).to_have_attribute("data-acked", "true", timeout=SPREAD_TIMEOUT_MS)
    ack_ms = (time.monotonic() - clicked) * 1000
    await expect(theirs.locator(".feed-ack")).to_contain_text("Acknowledged by sam at ")
    await expect(theirs.locator(".feed-ack-note")).to_have_text(": calling back")
    await expect(mine).to_have_attribute("data-acked", "true")
    await expect(mine.locator(".feed-action")).to_have_count(0)  # closed once it came back

    # Snooze the call from the second wall; the first shows it within 1 s.
    await second_page.fill("#feed-who", "kim")
    await theirs.locator(".feed-snooze-button").click()
    await theirs.locator(".feed-action select").select_option("30")
    await theirs.locator(".feed-action input").fill("known outage")
    clicked = time.monotonic()
    await theirs.locator(".feed-action .feed-confirm").click()
    await expect(mine).to_have_attribute("data-snoozed", "true", timeout=SPREAD_TIMEOUT_MS)
    snooze_ms = (time.monotonic() - clicked) * 1000
    await expect(mine.locator(".feed-snooze")).to_contain_text("Call snoozed by kim until ")
    await expect(mine.locator(".feed-snooze")).to_contain_text("known outage")

    # The alert clears; then a reload (and the /alerts page) keeps it all, from the store.
    server.publish(conv.emotion("call-billing", "customer", 1, 4.5, 6.0, "fine", "neutral", 0.9))
    await expect(mine).to_have_attribute("data-state", "cleared")
    await server.settle()
    for target, url in ((second_page, None), (page, server.url("/alerts"))):
        if url is None:
            await target.reload()
        else:
            await target.goto(url)
        await expect(target.locator("#status")).to_have_attribute("data-state", "open")
        await expect(target.locator("#feed")).to_be_visible()  # the panel stays open
        row = feed_row(target, "customer-angry", "call-billing")
        await expect(row).to_have_attribute("data-state", "cleared")
        await expect(row).to_have_attribute("data-acked", "true")
        await expect(row).to_have_attribute("data-snoozed", "true")
        await expect(row.locator(".feed-ack")).to_contain_text("Acknowledged by sam")
        await expect(row.locator(".feed-ack-note")).to_have_text(": calling back")
        await expect(row.locator(".feed-utt-text")).to_have_text("I was charged twice")
        await expect(row.locator(".feed-utt .label-chip")).to_have_text("angry")
    await expect(page.locator("#wall")).to_be_hidden()  # /alerts: the feed alone
    await expect(page.locator("#view-alerts")).to_have_attribute("aria-pressed", "true")
    print(f"ack to the other wall: {ack_ms:.0f} ms, snooze: {snooze_ms:.0f} ms")
    assert page.errors == [] and second_page.errors == []  # type: ignore[attr-defined]


async def test_filters_by_rule_party_and_state(feed_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await feed_server()
    for call in ("call-a", "call-b", "call-c"):
        start_call(server, call)
    server.publish(
        conv.emotion("call-a", "customer", 0, 0.0, 2.0, "unacceptable", "angry", 0.9),
        conv.emotion("call-b", "agent", 0, 0.0, 2.0, "calm down", "angry", 0.8),
        conv.emotion("call-b", "agent", 1, 3.0, 5.0, "sorry", "neutral", 0.8),
        conv.emotion("call-c", "customer", 0, 0.0, 2.0, "ridiculous", "angry", 0.95),
    )
    await server.settle()
    assert server.feed is not None
    [acked] = [a for a in server.feed.reader.query(AlertQuery()).alerts
               if a["stream_id"] == "call-c"]
    server.feed.acknowledge(acked["alert_id"], "sam", "", time.time())
    server.feed.snooze("call-a", 15, "kim", "", time.time())
    await server.settle()

    await page.goto(server.url("/alerts"))  # the feed's own page, filled from the API
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    rows = page.locator("#feed-list .feed-row")
    await expect(rows).to_have_count(3)

    async def shown() -> list[str]:
        return sorted(await rows.evaluate_all("rows => rows.map(r => r.dataset.streamId)"))

    async def check(select: str, value: str, calls: list[str]) -> None:
        await page.select_option(select, value)
        # The exact calls, not only their number: two filters may show as many rows.
        await page.wait_for_function(
            """want => JSON.stringify([...document.querySelectorAll('#feed-list .feed-row')]
                .map(r => r.dataset.streamId).sort()) === JSON.stringify(want)""",
            arg=calls, timeout=5000)
        assert await shown() == calls, (select, value)

    await check("#feed-rule", "agent-angry", ["call-b"])
    await check("#feed-rule", "customer-angry", ["call-a", "call-c"])
    await check("#feed-rule", "*", ["call-a", "call-b", "call-c"])
    await check("#feed-party", "agent", ["call-b"])
    await check("#feed-party", "customer", ["call-a", "call-c"])
    await check("#feed-party", "*", ["call-a", "call-b", "call-c"])
    await check("#feed-state", "active", ["call-a", "call-c"])
    await check("#feed-state", "cleared", ["call-b"])
    await check("#feed-state", "acked", ["call-c"])
    await check("#feed-state", "unacked", ["call-a", "call-b"])
    await check("#feed-state", "snoozed", ["call-a"])
    await check("#feed-party", "customer", ["call-a"])  # filters combine
    await page.select_option("#feed-party", "*")

    # A live change moves a row into or out of the filtered list.
    await page.select_option("#feed-state", "active")
    server.publish(conv.emotion("call-a", "customer", 1, 3.0, 5.0, "thanks", "neutral", 0.9))
    await expect(rows).to_have_count(1)
    await page.select_option("#feed-state", "*")
    await expect(rows).to_have_count(3)
    await expect(page.locator("#feed-alerting")).to_have_text("1 alerting")  # call-c
    await page.screenshot(path=screenshot_path("alerts_page.png"))
    assert page.errors == []  # type: ignore[attr-defined]


# ---------------------------------------------------------------- 500 calls, 200+ alerts

FEED_ALERTS = 200  # raised and cleared before the page opens (the feed holds 200 + active)
SHOWN_STEP = 50  # rows the feed paints at first (alerts.js FEED_SHOWN_STEP); "Show more"


def extra_alert_calls() -> list[int]:
    """Calls whose customer gets angry and then calms down: not the warning calls (every
    25th) nor call 13 (agent), so the wall's ranks are those of test_wall.py."""
    return [i for i in range(test_wall.CALLS) if i % 25 != 0 and i != 13][:FEED_ALERTS]


@pytest.mark.parametrize("with_feed", [False, True], ids=["feed-closed", "feed-open"])
async def test_wall_of_500_calls_with_the_feed_open_keeps_the_budget(  # type: ignore[no-untyped-def]
        feed_server, page, with_feed: bool) -> None:
    rules = test_wall.RULES
    server = await feed_server(rules, queue_pattern=r"^(?P<queue>[a-z]+)-")
    for i in range(test_wall.CALLS):
        server.publish(*test_wall.call_events(i))
    for i in extra_alert_calls():
        sid = test_wall.call_id(i)
        server.publish(
            conv.emotion(sid, "customer", 3, 20.0, 22.0, f"angry words {i}", "angry", 0.9),
            conv.emotion(sid, "customer", 4, 23.0, 25.0, "calm words", "neutral", 0.9))
    await server.settle()
    warnings = len(range(0, test_wall.CALLS, 25))
    active = warnings + 1
    if with_feed:
        await page.add_init_script("localStorage.setItem('emotion-stream.feed-open', '1')")

    started = time.monotonic()
    await page.goto(server.url("/wall"))
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    tiles = page.locator("#wall-tiles .tile")
    await expect(tiles).to_have_count(test_wall.CALLS, timeout=20000)
    await expect(page.locator("#wall-tiles .party .label-chip")).to_have_count(
        2 * test_wall.CALLS)
    rows = page.locator("#feed-list .feed-row")
    if with_feed:
        await expect(page.locator("#feed-count")).to_contain_text(
            f"{SHOWN_STEP} of {FEED_ALERTS + active} shown", timeout=20000)
        await expect(rows).to_have_count(SHOWN_STEP)
    load_s = time.monotonic() - started
    await expect(page.locator("#wall-count")).to_have_text(
        f"{test_wall.CALLS} active calls · {active} alerting · {test_wall.CALLS} shown")
    if with_feed:
        await expect(page.locator("#feed-alerting")).to_have_text(f"{active} alerting")
        await expect(page.locator("#feed-list .feed-utt-text")).to_have_count(SHOWN_STEP)
    stats_load = await page.evaluate("() => ({...window.wallStats})")
    feed_load = await page.evaluate("() => ({...window.feedStats})")

    target = test_wall.call_id(421)
    tile = page.locator(f'#wall-tiles .tile[data-stream-id="{target}"]')
    await expect(tile.locator(".alert-badge")).to_have_count(0)
    server.publish(conv.emotion(target, "customer", 3, 30.0, 32.0, "this is outrageous",
                                "angry", 0.93, valence=-0.8, arousal=0.9))
    await expect(tile.locator(".alert-badge")).to_have_text("customer-angry")
    await expect(tiles.first).to_have_attribute("data-stream-id", target)
    # Recorded in the figures below, not asserted: the 1 s budget is a benchmark figure
    # (bench/wall_render.py); a wall-clock bound here fails on a loaded shared machine.
    alert_paint_ms = (await page.evaluate("() => window.wallStats.alertToPaintMs"))[-1]
    assert alert_paint_ms >= 0
    stats_alert = await page.evaluate("() => ({...window.wallStats})")
    figures: dict[str, Any] = {
        "calls": test_wall.CALLS, "feed_open": with_feed,
        "page_load_to_all_tiles_s": round(load_s, 2),
        "first_full_paint_ms": round(stats_load["maxMs"], 1),
        "paints_until_filled": stats_load["renders"],
        "alert_event_to_badge_painted_ms": alert_paint_ms,
        "paint_after_alert_ms": round(stats_alert["lastMs"], 1),
    }
    if with_feed:
        row = rows.first
        await expect(row).to_have_attribute("data-stream-id", target)
        await expect(row.locator(".feed-utt-text")).to_have_text("this is outrageous")
        await expect(page.locator("#feed-alerting")).to_have_text(f"{active + 1} alerting")
        await expect(page.locator("#wall-count")).to_contain_text(f"· {active + 1} alerting ·")
        feed_stats = await page.evaluate("() => ({...window.feedStats})")
        figures |= {"feed_alerts": FEED_ALERTS + active + 1, "feed_rows_painted": SHOWN_STEP,
                    "feed_first_fill_paint_ms": round(feed_load["maxMs"], 1),
                    "alert_event_to_feed_row_painted_ms": feed_stats["alertToRowMs"][-1]}
        await page.screenshot(path=screenshot_path("wall_feed.png"))

        # Every alert painted ("Show more" until none is left), then one more alert.
        total = FEED_ALERTS + active + 1
        for painted in range(2 * SHOWN_STEP, total + SHOWN_STEP, SHOWN_STEP):
            # The click event itself, not a mouse click at the button's position: on a
            # loaded CI machine the 500-tile wall's paints shift the layout, and a positioned
            # click was lost twice (the rows stayed at 50 for 20 s). What is checked here is
            # the paging; its speed is bench/wall_render.py's figure.
            await page.locator("#feed-more").dispatch_event("click")
            await expect(rows).to_have_count(min(painted, total), timeout=20_000)
        await expect(page.locator("#feed-more")).to_be_hidden()
        # One utterance per customer-angry alert, two per warning (sad twice), one for
        # the agent of call 13.
        await expect(page.locator("#feed-list .feed-utt-text")).to_have_count(
            FEED_ALERTS + 1 + 2 * warnings + 1)
        second = test_wall.call_id(422)
        server.publish(conv.emotion(second, "customer", 3, 30.0, 32.0, "unbelievable",
                                    "angry", 0.91))
        await expect(rows.first).to_have_attribute("data-stream-id", second)
        await expect(page.locator(f'#wall-tiles .tile[data-stream-id="{second}"] .alert-badge')
                     ).to_have_text("customer-angry")
        all_stats = await page.evaluate("() => [window.wallStats, window.feedStats]")
        figures |= {"all_rows_painted": total + 1,
                    "all_rows_alert_event_to_badge_painted_ms": all_stats[0]["alertToPaintMs"][-1],
                    "all_rows_alert_event_to_feed_row_painted_ms":
                        all_stats[1]["alertToRowMs"][-1],
                    "feed_longest_paint_ms": round(all_stats[1]["maxMs"], 1)}
    else:
        await expect(page.locator("#feed")).to_be_hidden()
    assert page.errors == []  # type: ignore[attr-defined]
    print("wall figures:", json.dumps(figures))
    out = screenshot_path("wall_feed.json")
    runs = json.loads(out.read_text()) if out.exists() else {}
    runs["feed_open" if with_feed else "feed_closed"] = figures
    out.write_text(json.dumps(runs, indent=1))
