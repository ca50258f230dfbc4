"""The supervisor wall under load in headless Chromium: 500 calls, then live traffic.

Starts the subscriber server with the dashboard and the supervisor (real alert engine,
summaries) on a real bus, publishes ``--calls`` synthetic two-party calls, opens
``/wall`` and measures how long until every tile is filled (from the summaries the page
requests) and the paint time of that first full frame. Then, for ``--seconds``, every
party of every call speaks every ``--turn-s`` seconds (``utterance.emotion`` events;
some customers turn angry and raise alerts, then calm down) and it reports the wall's
paint times per frame (mean, max), frames painted, and from each alert event to its
badge painted. Chromium: /usr/bin/chromium (or EMOTION_STREAM_CHROMIUM).

Usage::

    .venv/bin/python bench/wall_render.py --calls 500 --seconds 20 \
        --out bench/results/wall_render.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import async_playwright  # noqa: E402

from harness import conversation as conv  # noqa: E402
from harness.dashboard import CHROMIUM, CHROMIUM_ARGS, DashboardServer  # noqa: E402
from harness.wall import RULES, call_events, call_id  # noqa: E402
from streamer.core.config import AlertsConfig  # noqa: E402
from streamer.supervise.supervisor import Supervisor  # noqa: E402

STATS = "() => ({...window.wallStats, alertToPaintMs: [...window.wallStats.alertToPaintMs]})"


async def run(calls: int, seconds: float, turn_s: float) -> dict[str, object]:
    server = await DashboardServer().start()
    supervisor = Supervisor(AlertsConfig(rules=RULES, summary_interval_s=5.0,
                                         queue_pattern=r"^(?P<queue>[a-z]+)-"), server.bus)
    assert server._server is not None
    server._server.add_request("summary.request", supervisor.summary_request)
    task = asyncio.create_task(supervisor.run())
    for i in range(calls):
        server.publish(*call_events(i))
    await supervisor.settle(60)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        started = time.monotonic()
        await page.goto(server.url("/wall"))
        await page.locator("#wall-tiles .party .label-chip").nth(2 * calls - 1).wait_for()
        load_s = time.monotonic() - started
        filled = await page.evaluate(STATS)

        rng = random.Random(0)
        index = {(call_id(i), p): 3 for i in range(calls) for p in ("customer", "agent")}
        per_tick, tick_s = max(1, round(2 * calls * 0.1 / turn_s)), 0.1
        published = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(per_tick):
                sid, party = call_id(rng.randrange(calls)), rng.choice(("customer", "agent"))
                k = index[(sid, party)]
                index[(sid, party)] = k + 1
                label = rng.choices(("neutral", "happy", "sad", "angry"), (70, 15, 10, 5))[0]
                server.publish(conv.emotion(sid, party, k, 6.0 * k, 6.0 * k + 2.5, "words",
                                            label, 0.8, valence=rng.uniform(-1, 1)))
                published += 1
            await asyncio.sleep(tick_s)
        await asyncio.sleep(1.0)
        live = await page.evaluate(STATS)
        await browser.close()
    task.cancel()
    await server.stop()
    frames = live["renders"] - filled["renders"]
    alerts = live["alertToPaintMs"][len(filled["alertToPaintMs"]):]
    return {
        "calls": calls, "page_load_to_all_tiles_filled_s": round(load_s, 2),
        "first_fill_max_paint_ms": round(filled["maxMs"], 1),
        "live_seconds": seconds, "live_events_published": published,
        "live_events_per_s": round(published / seconds, 1),
        "live_frames_painted": frames,
        "live_mean_paint_ms": round((live["totalMs"] - filled["totalMs"]) / max(1, frames), 1),
        "live_max_paint_ms": round(live["maxMs"], 1),
        "alerts_painted": len(alerts),
        "alert_event_to_badge_ms_median": statistics.median(alerts) if alerts else None,
        "alert_event_to_badge_ms_max": max(alerts) if alerts else None,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}; shared with "
                   "other processes (publisher, server and Chromium on one machine)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--turn-s", type=float, default=6.0,
                        help="each party speaks about this often")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.seconds, args.turn_s))
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
