"""Issue 13 rows 1, 7 and 8 end to end: the real ``emotion-stream serve`` process.

One process, real models (``builtin:synthetic``), JSONL and stdout on, MQTT to a broker
that refuses our password. A hostile raw-PCM call (a lone surrogate as role) is closed
with 1007, a good call after it is still served and written to JSONL (0600); SIGTERM
stops the process within ``HARD_STOP_S`` plus model-free margin; the exit status is 1
because MQTT lost the events, and the log says it was an authentication error. A busy
port and a non-finite config float are clear errors (exit 2) without a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from harness.broker import Broker
from harness.net import free_port
from streamer.cli import HARD_STOP_S, main
from streamer.ingest.clients import CallAudio, send_pcm

EMOTION_STREAM = [sys.executable, "-m", "streamer.cli"]
START_TIMEOUT_S = 240.0  # model loading on a loaded 2-core machine


def serve_args(port: int, *extra: str) -> list[str]:
    return [*EMOTION_STREAM, "serve", "--set", f"ingest.port={port}", "--set",
            "ingest.warmup=false", "--set", "websocket.port=0", "--set",
            "emotion.bundle=builtin:synthetic", "--set", "asr.cpu_threads=1", "--set",
            "emotion.torch_threads=1", *extra]


def test_non_finite_config_float_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--set", "segmenter.partial_interval_s=.inf"]) == 2
    err = capsys.readouterr().err
    assert "segmenter.partial_interval_s" in err and "finite" in err
    assert main(["config", "--set", "gate.min_rms_dbfs=.nan"]) == 2


@pytest.mark.slow
def test_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(serve_args(port), capture_output=True, text=True,
                              timeout=START_TIMEOUT_S)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} for call ingest" in done.stderr
    assert "ingest.port" in done.stderr and "Traceback" not in done.stderr


def wait_for_line(proc: subprocess.Popen[str], text: str, lines: list[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError("serve exited early:\n" + "".join(lines))
        lines.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} after {START_TIMEOUT_S} s:\n" + "".join(lines))


async def hostile_then_good_call(port: int) -> tuple[int | None, int | None]:
    base = f"ws://127.0.0.1:{port}/ingest/pcm"
    async with connect(base, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start", "stream_id": "evil", "roles": ["\ud800"]}))
        await asyncio.wait_for(ws.wait_closed(), 60)
        hostile = ws.close_code
    t = np.arange(8000) / 8000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    report = await asyncio.wait_for(send_pcm(base, CallAudio("good-call", (tone,)), pace=5), 120)
    return hostile, report.close_code


@pytest.mark.slow
def test_hostile_call_sigterm_and_mqtt_auth_failure(password_broker: Broker,
                                                    tmp_path: Path) -> None:
    port = free_port()
    jsonl = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        serve_args(port, "--json", "--jsonl", str(jsonl), "--set", "mqtt.enabled=true",
                   "--set", f"mqtt.port={password_broker.port}", "--set",
                   "mqtt.username=streamer", "--set", "mqtt.password=wrong", "--set",
                   "mqtt.reconnect_max_s=1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        wait_for_line(proc, "call ingest on", lines)
        hostile, good = asyncio.run(hostile_then_good_call(port))
        deadline = time.monotonic() + 120
        while "good-call" not in (jsonl.read_text() if jsonl.exists() else ""):
            assert time.monotonic() < deadline, "the good call never reached the JSONL file"
            time.sleep(0.2)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HARD_STOP_S + 30)
        stop_s = time.monotonic() - stopped_at
        print(f"serve exited {stop_s:.1f} s after SIGTERM with status {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    log = "".join(lines) + err
    assert hostile == 1007 and good == 1000
    assert stop_s < HARD_STOP_S + 30
    assert proc.returncode == 1, log[-3000:]  # MQTT lost the events
    assert "refused the credentials" in log and "mqtt.password" in log
    assert "events lost" in log and "Traceback" not in log
    assert "evil" not in out and "good-call" in out
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {e["stream_id"] for e in events} == {"pcm:good-call"}
    assert {e["type"] for e in events} >= {"stream.started", "stream.ended"}
    assert stat.S_IMODE(os.stat(jsonl).st_mode) == 0o600
