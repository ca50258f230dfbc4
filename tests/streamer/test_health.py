"""``/healthz`` and ``/readyz`` of the real service, and the graceful drain on SIGTERM.

In this process: ``/readyz`` is 503 while the models load (calls refused), while the
MQTT broker is not there, at capacity (``ingest.max_calls`` calls held open) and while
draining; 200 otherwise. Then a real ``emotion-stream serve`` process: SIGTERM flips
``/readyz`` at once, a new call is refused, the call in progress is cut at the deadline
with its ``stream.ended`` (reason shutdown) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus

from harness.broker import Broker
from harness.net import free_port
from harness.speech import espeak_available
from streamer.apps.service import Service, run_service
from streamer.engine.loading import Models, load_models
from streamer.ingest.clients import send_pcm
from streamer.ingest.protocol import published_stream_id
from streamer.ops.health import ReadinessInputs, readiness
from tests.ingest.test_calls_e2e import turns, two_party_call, wait_until
from tests.reliability.test_serve_process import START_TIMEOUT_S, serve_args
from tests.streamer.ops import (
    aget,
    end_pcm_call,
    hold_pcm_call,
    ops_config,
    parse_metrics,
    scrape,
    value,
)

__all__ = ["turns"]  # a fixture used by name

P = "emotion_stream_"


def test_readiness_rule() -> None:
    ready = ReadinessInputs(models="ready", draining=False, connections=3, max_calls=4,
                            mqtt_enabled=True, mqtt_connected=True)
    assert readiness(ready) == {}
    full = ReadinessInputs(models="warming", draining=True, connections=4, max_calls=4,
                           mqtt_enabled=True, mqtt_connected=False, mqtt_error="refused")
    reasons = readiness(full)
    assert set(reasons) == {"models", "draining", "capacity", "mqtt"}
    assert "ingest.max_calls" in reasons["capacity"] and "refused" in reasons["mqtt"]
    assert readiness(ReadinessInputs("ready", False, 0, 1, False, False)) == {}


async def refused_with(port: int, stream_id: str) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        await hold_pcm_call(port, stream_id)
    return refused.value.response.status_code, refused.value.response.body.decode()


async def readyz_until(port: int, status: int, timeout: float = 30.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            got, body = await aget(port, "/readyz")
            if got == status:
                return dict(body)
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_readyz_follows_models_mqtt_capacity_and_drain(make_broker: type[Broker]) -> None:
    port, mqtt_port = free_port(), free_port()
    config = ops_config(f"ingest.port={port}", "ingest.max_calls=2", "mqtt.enabled=true",
                        f"mqtt.port={mqtt_port}", "mqtt.reconnect_min_s=0.1",
                        "mqtt.reconnect_max_s=0.3", "operations.drain_timeout_s=60")
    gate = threading.Event()

    def loader() -> Models:  # the real loader, held until the test has probed
        assert gate.wait(120)
        return load_models(config)

    ready: asyncio.Queue[Service] = asyncio.Queue(maxsize=1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_service(config, loader, stop, ready.put))
    try:
        async with asyncio.timeout(30):  # listening while the models load
            while True:
                try:
                    status, alive = await aget(port, "/healthz")
                    break
                except OSError:  # not listening yet
                    await asyncio.sleep(0.1)
        assert status == 200
        assert alive["status"] == "alive" and alive["models"] == "loading"
        status, body = await aget(port, "/readyz")
        assert status == 503 and body["ready"] is False and "models" in body["reasons"]
        status, text = await refused_with(port, "too-early")
        assert status == 503 and "loading its models" in text

        gate.set()
        svc = await asyncio.wait_for(ready.get(), 120)
        assert svc.health is not None
        status, body = await aget(port, "/readyz")  # no broker yet
        assert status == 503 and set(body["reasons"]) == {"mqtt"}
        make_broker(mqtt_port).start()
        assert (await readyz_until(port, 200))["reasons"] == {}

        held = [await hold_pcm_call(port, f"held-{i}") for i in range(2)]
        status, body = await aget(port, "/readyz")
        assert status == 503 and set(body["reasons"]) == {"capacity"}
        assert body["calls"] == 2 and body["max_calls"] == 2
        status, text = await refused_with(port, "one-too-many")
        assert status == 503 and "ingest.max_calls" in text
        await end_pcm_call(held.pop())
        await readyz_until(port, 200)

        stop.set()  # what SIGTERM does in the CLI
        await wait_until(lambda: svc.ingest.draining, 10)
        status, body = await aget(port, "/readyz")
        assert status == 503 and "draining" in body["reasons"]
        status, text = await refused_with(port, "during-drain")
        assert status == 503 and "draining" in text
        m = await scrape(port)
        for reason in ("not_ready", "max_calls", "draining"):
            assert value(m, P + "refused_connections_total", listener="ingest",
                         reason=reason) == 1, reason
        assert value(m, P + "draining") == 1 and value(m, P + "ready") == 0
        assert value(m, P + "calls_active") == 1
        await end_pcm_call(held.pop())  # the last call ends within the deadline
        assert await asyncio.wait_for(task, 60) == 0  # nothing lost on MQTT
    finally:
        gate.set()
        stop.set()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    after = parse_metrics(svc.health.metrics.exposition().decode())
    assert value(after, P + "drain_cut_calls_total") == 0
    assert value(after, P + "channels_ended_total", reason="end_of_input") == 2


def wait_for_file_text(path: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} in {path} after {timeout} s")


@pytest.mark.slow
@pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")
async def test_sigterm_drains_a_real_serve_process(
        tmp_path: Path, turns: tuple[np.ndarray, np.ndarray]) -> None:
    port = free_port()
    jsonl, log_path = tmp_path / "events.jsonl", tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            serve_args(port, "--jsonl", str(jsonl), "--set", "stdout.enabled=false", "--set",
                       "ingest.token=pcm-token", "--set", "operations.listen_while_loading=true",
                       "--set", "operations.drain_timeout_s=5"),
            stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        answers: list[tuple[int, dict]] = []  # /readyz until ready
        async with asyncio.timeout(START_TIMEOUT_S):
            while not answers or answers[-1][0] != 200:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    answers.append(await aget(port, "/readyz"))
                except OSError:
                    pass  # not listening yet
                await asyncio.sleep(0.1)
        assert answers[0][0] == 503 and "models" in answers[0][1]["reasons"]

        call = two_party_call("sigterm-call", *turns)  # about 8 s, sent live
        sender = asyncio.create_task(send_pcm(f"ws://127.0.0.1:{port}/ingest/pcm", call,
                                              pace=1, token="pcm-token"))
        async with asyncio.timeout(30):
            while (await aget(port, "/healthz"))[1]["calls"] != 1:
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        body = await readyz_until(port, 503, timeout=4)
        assert "draining" in body["reasons"]
        status, text = await refused_with(port, "after-sigterm")
        assert status == 503 and "draining" in text
        report = await asyncio.wait_for(sender, 60)
        returncode = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    log = log_path.read_text()
    assert returncode == 0, log[-3000:]
    assert report.close_code == 1001 and report.sent_s < call.seconds  # cut at the deadline
    assert f"cutting them: {published_stream_id('pcm', 'sigterm-call')}" in log
    assert "Traceback" not in log
    events = [json.loads(line) for line in
              wait_for_file_text(jsonl, "stream.ended", 1).splitlines()]
    ended = {e["channel"]: e for e in events if e["type"] == "stream.ended"}
    assert set(ended) == {"customer", "agent"}
    assert {e["reason"] for e in ended.values()} == {"shutdown"}
