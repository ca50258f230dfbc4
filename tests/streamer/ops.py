"""Helpers of the operations tests (test_metrics.py, test_health.py): the real service
in this process, real HTTP GETs of its endpoints and the Prometheus text parsed by
prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from streamer.core.config import AppConfig, load_config
from streamer.engine.loading import Models, load_models

# The small shipped bundle and one thread each: fast to load on a 2-core machine.
BASE_OVERRIDES = ["emotion.bundle=builtin:synthetic", "asr.cpu_threads=1",
                  "emotion.torch_threads=1", "ingest.port=0", "websocket.port=0",
                  "stdout.enabled=false", "ingest.warmup=false", "ingest.token=pcm-token"]


def ops_config(*overrides: str) -> AppConfig:
    return load_config(None, [*BASE_OVERRIDES, *overrides])


@pytest.fixture(scope="module")
def ops_models() -> Models:
    return load_models(ops_config())


def http_get(port: int, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
    """GET http://127.0.0.1:port/path; (status, body), also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


async def aget(port: int, path: str) -> tuple[int, Any]:
    """An HTTP GET from a thread; JSON bodies decoded."""
    status, body = await asyncio.to_thread(http_get, port, path)
    return status, json.loads(body) if body.startswith(b"{") else body


Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Scrape:
    """Every sample of a Prometheus exposition: (sample name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(port: int) -> Scrape:
    status, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200
    return parse_metrics(body.decode())


def value(samples: Scrape, name: str, **labels: str) -> float:
    """One sample's value; 0 when the labelled sample is absent (a counter not yet set)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Scrape, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


async def hold_pcm_call(port: int, stream_id: str, token: str = "pcm-token") -> ClientConnection:
    """Open a raw PCM call and leave it open (no audio): it holds one call slot."""
    ws = await connect(f"ws://127.0.0.1:{port}/ingest/pcm",
                       additional_headers={"Authorization": f"Bearer {token}"})
    await ws.send(json.dumps({"type": "start", "stream_id": stream_id, "sample_rate": 8000}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply["type"] == "started", reply
    return ws


async def end_pcm_call(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "stop"}))
    await asyncio.wait_for(ws.wait_closed(), 60)
