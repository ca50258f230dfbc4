"""Waiting in async tests: one helper instead of a copy per file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], object], timeout: float = 10.0,
                     what: str = "the condition", poll_s: float = 0.05) -> None:
    """Poll ``condition`` until it is true; fail the test, naming ``what``, after
    ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(poll_s)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from None
