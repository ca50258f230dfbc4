"""Screenshot of the dashboard during a real run (for docs/img/dashboard.png).

Starts ``emotion-stream run`` on the bundled sample (real ASR and the default fusion
bundle), opens http://127.0.0.1:<port>/ in headless Chromium and keeps the last
screenshot taken while the page was live. Not a test; run it by hand:

    .venv/bin/python -m tests.dashboard.real_run_screenshot docs/img/dashboard.png
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from playwright.async_api import async_playwright

from harness.dashboard import CHROMIUM, CHROMIUM_ARGS
from harness.net import wait_for_port
from tests.dashboard.conftest import REPO


async def capture(out: Path, port: int, extra: list[str]) -> int:
    command = [str(REPO / ".venv" / "bin" / "emotion-stream"), "run",
               "--set", f"websocket.port={port}", *extra]
    run = subprocess.Popen(command, cwd=REPO)
    shots = 0
    try:
        await asyncio.to_thread(wait_for_port, port, 120.0)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            await page.goto(f"http://127.0.0.1:{port}/")
            rows = page.locator("#timeline .utt")
            while run.poll() is None:
                live = await page.locator("#status").get_attribute("data-state") == "open"
                if live and await rows.count() > 0:
                    await page.screenshot(path=out)
                    shots += 1
                await asyncio.sleep(0.5)
            await browser.close()
    finally:
        if run.poll() is None:
            run.terminate()
        run.wait(timeout=30)
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="passed on to emotion-stream run as --set")
    args = parser.parse_args()
    extra = [item for pair in (("--set", o) for o in args.overrides) for item in pair]
    shots = asyncio.run(capture(args.out, args.port, extra))
    print(f"{shots} screenshots taken while live; the last is {args.out}")
    sys.exit(0 if shots else 1)


if __name__ == "__main__":
    main()
