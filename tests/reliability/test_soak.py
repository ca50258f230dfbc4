"""Issue 13, the soak: 8 concurrent good calls with periodic bad clients, real ``serve``.

A short version of ``bench/soak.py`` (the full 10 minutes writes
``bench/results/soak.json``; figures in docs/reliability.md). The duration comes from
``SOAK_SECONDS`` (default 75): ``SOAK_SECONDS=600`` runs the full soak as a test.

Asserted: every good call's utterances arrive as events (count = the same segmenter run
offline on the same audio path), every channel ends with ``stream.ended``, every good call
closes 1000, the subscriber never lags; every bad client (malformed frames, wrong
protocol, floods, abrupt disconnects, a stalled subscriber) gets its documented answer;
no ``call_errors``, no traceback in the server's log, a clean exit on SIGTERM; RSS after
the warm-up grows less than ``SOAK_RSS_LIMIT_MB`` (default 50 MB for a run of 10 minutes
or more, 250 MB for a short one, where warm-up and the first backlog dominate: the short
run catches a gross leak, the long one says whether RSS is flat).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.soak import SoakSettings, check, expected_outcomes, print_summary, run_soak

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "75"))
LONG = SOAK_SECONDS >= 600
RSS_LIMIT_MB = float(os.environ.get("SOAK_RSS_LIMIT_MB", "50" if LONG else "250"))


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 900)  # model loading, drain and stop on a loaded machine
async def test_soak_good_calls_lose_nothing_among_bad_clients(tmp_path: Path) -> None:
    settings = SoakSettings(
        duration_s=SOAK_SECONDS, calls=8,
        call_s=60.0 if LONG else 30.0,  # short: 2 calls per slot, so calls end and start
        bad_every_s=5.0 if LONG else 2.5,  # short: every kind of bad client at least once
        warmup_s=60.0 if LONG else SOAK_SECONDS / 3,
        server_log=str(tmp_path / "server.log"))
    result = await run_soak(settings)
    result["checks"] = check(result, rss_growth_limit_mb=RSS_LIMIT_MB)
    (tmp_path / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)

    good, bad = result["good_calls"], result["bad_clients"]
    assert good["calls"] >= 8 and good["events"] > 0
    assert good["lost"] == 0 and good["extra"] == 0, good["problems"]
    assert not good["problems"], good["problems"]
    assert good["stream_ended"] == good["stream_ended_expected"]
    assert good["subscriber_lagged"] == 0
    assert not bad["unexpected"], bad["unexpected"]
    if SOAK_SECONDS >= 60:  # one every 2.5 s or 5 s: every kind ran at least once
        assert set(bad["outcomes"]) == set(expected_outcomes()), bad["outcomes"]
    server = result["server"]
    assert server["ingest_health"]["call_errors"] == 0
    assert server["log_tracebacks"] == 0, Path(settings.server_log).read_text()[-3000:]
    assert server["alive_at_end"] and server["exit_status"] == 0
    assert result["checks"]["rss_flat"], result["rss"]
