"""The supervisor wall in headless Chromium: 500 synthetic calls published on a real bus,
alerts raised by the real rule engine (``streamer.supervise.supervisor``), summaries requested
by the page. Checks the order by severity, the badge of a new alert (within 1 s), clearing, the
queue and party filters and the way into the detailed view; records the render figures
(test-output/dashboard/wall.json; docs/alerts.md) and the screenshot
(test-output/dashboard/wall.png; docs/img/wall.png too with EMOTION_STREAM_DOC_SCREENSHOTS=1).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from playwright.async_api import Page, expect

from harness import conversation as conv
from harness.wall import QUEUES, RULES, call_events, call_id
from streamer.core.config import AlertsConfig
from streamer.supervise.supervisor import Supervisor
from tests.dashboard.conftest import REPO, screenshot_path

pytestmark = pytest.mark.slow

CALLS = 500


async def severities(page: Page) -> list[str]:
    return list(await page.locator("#wall-tiles .tile").evaluate_all(
        "tiles => tiles.map(t => t.dataset.severity)"))


def ranked(values: list[str]) -> bool:
    order = {"critical": 3, "warning": 2, "info": 1, "none": 0}
    return all(order[a] >= order[b] for a, b in zip(values, values[1:], strict=False))


async def test_wall_of_500_calls_sorts_by_severity_and_shows_alerts(make_server, page) -> None:  # type: ignore[no-untyped-def]
    server = await make_server()
    supervisor = Supervisor(AlertsConfig(rules=RULES, summary_interval_s=0,
                                         queue_pattern=r"^(?P<queue>[a-z]+)-"), server.bus)
    assert server._server is not None
    server._server.add_request("summary.request", supervisor.summary_request)
    task = asyncio.create_task(supervisor.run())
    try:
        for i in range(CALLS):
            server.publish(*call_events(i))
        assert await supervisor.settle(30)
        warnings = len(range(0, CALLS, 25))
        assert len(supervisor.engine.active) == warnings + 1  # + the agent of call 13

        started = time.monotonic()
        await page.goto(server.url("/wall"))
        await expect(page.locator("#status")).to_have_attribute("data-state", "open")
        tiles = page.locator("#wall-tiles .tile")
        await expect(tiles).to_have_count(CALLS, timeout=20000)
        # Filled from summaries (requested on connect): labels and sparklines everywhere.
        await expect(page.locator("#wall-tiles .party .label-chip")).to_have_count(2 * CALLS)
        load_s = time.monotonic() - started
        await expect(page.locator("#wall-count")).to_have_text(
            f"{CALLS} active calls · {warnings + 1} alerting · {CALLS} shown")
        order = await severities(page)
        assert ranked(order) and order[:warnings] == ["warning"] * warnings
        assert order[warnings] == "info" and set(order[warnings + 1:]) == {"none"}
        stats_load = await page.evaluate("() => ({...window.wallStats})")

        # A new alert: the customer of sales-0421 turns angry.
        target = call_id(421)
        tile = page.locator(f'#wall-tiles .tile[data-stream-id="{target}"]')
        await expect(tile.locator(".alert-badge")).to_have_count(0)
        server.publish(conv.emotion(target, "customer", 3, 30.0, 32.0, "this is outrageous",
                                    "angry", 0.93, valence=-0.8, arousal=0.9))
        await expect(tile.locator(".alert-badge")).to_have_text("customer-angry")
        await expect(tile.locator(".alert-badge")).to_have_attribute("data-severity", "critical")
        await expect(tiles.first).to_have_attribute("data-stream-id", target)
        assert ranked(await severities(page))
        # From the alert event (its wall_time) to its badge painted, by the page's clock.
        # Recorded, not asserted: the 1 s budget is a benchmark figure (bench/wall_render.py,
        # docs/alerts.md); a wall-clock bound here fails on a loaded shared machine.
        alert_paint_ms = (await page.evaluate("() => window.wallStats.alertToPaintMs"))[-1]
        assert alert_paint_ms >= 0
        stats_alert = await page.evaluate("() => ({...window.wallStats})")

        await page.screenshot(path=screenshot_path("wall.png"))
        if os.environ.get("EMOTION_STREAM_DOC_SCREENSHOTS"):  # retake the docs' copy on request
            await page.screenshot(path=REPO / "docs" / "img" / "wall.png")

        # Its customer calms down: the alert clears and the tile loses its badge and rank.
        server.publish(conv.emotion(target, "customer", 4, 34.0, 36.0, "okay thanks",
                                    "neutral", 0.9, valence=0.3, arousal=0.3))
        await expect(tile.locator(".alert-badge")).to_have_count(0)
        await expect(tiles.first).not_to_have_attribute("data-stream-id", target)

        # Filters: one queue; then the agent side only (customer alerts no longer rank).
        await page.select_option("#wall-queue", "sales")
        shown = len([i for i in range(CALLS) if QUEUES[i % 3] == "sales"])
        await expect(tiles).to_have_count(shown)
        assert set(await page.locator("#wall-tiles .tile-queue").all_text_contents()) == {"sales"}
        await page.select_option("#wall-queue", "*")
        await page.select_option("#wall-role", "agent")
        await expect(page.locator('#wall-tiles .party[data-role="customer"]')).to_have_count(0)
        await expect(tiles.first).to_have_attribute("data-stream-id", call_id(13))
        assert await severities(page) == ["info"] + ["none"] * (CALLS - 1)
        await page.select_option("#wall-role", "*")
        await page.check("#wall-alerting")
        await expect(tiles).to_have_count(warnings + 1)
        await page.uncheck("#wall-alerting")

        # A call that ends drops to the end, greyed.
        server.publish(conv.ended(call_id(0), "customer"), conv.ended(call_id(0), "agent"))
        await expect(tiles.last).to_have_attribute("data-stream-id", call_id(0))
        await expect(tiles.last).to_have_attribute("data-state", "ended")

        # Clicking a tile opens today's detailed view of that call.
        await tile.click()
        await expect(page.locator("#wall")).to_be_hidden()
        await expect(page.locator("#stream-title")).to_have_text(target)
        # The page saw two of its utterances live (the others were published before it opened).
        await expect(page.locator("#timeline .utt")).to_have_count(2)
        assert page.url.endswith(f"#stream={target}")
        await page.locator("#view-wall").click()
        await expect(tiles).to_have_count(CALLS)
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        task.cancel()

    figures = {
        "calls": CALLS, "page_load_to_all_tiles_s": round(load_s, 2),
        "first_full_paint_ms": round(stats_load["maxMs"], 1),
        "paints_until_filled": stats_load["renders"],
        "alert_event_to_badge_painted_ms": alert_paint_ms,
        "paint_after_alert_ms": round(stats_alert["lastMs"], 1),
    }
    print("wall figures:", json.dumps(figures))
    screenshot_path("wall.json").write_text(json.dumps(figures, indent=1))
