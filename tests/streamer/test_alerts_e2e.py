"""End to end: calls over the raw PCM ingest (8 kHz telephone audio, real time) through
``serve`` with the default model; the customer of one call has an angry stretch of real
speech (RAVDESS actors the default never heard). The alert arrives exactly once on a
WebSocket subscriber and on a real Mosquitto broker, and clears when the customer calms
down; the control call raises none. Prints the alert latency from the triggering
utterance's event (docs/alerts.md quotes it).

The clips were picked among those the default labels right after the telephone band
(resampled to 8 kHz and back): angry at 8 kHz, confidence 0.80-0.97; several other strongly
acted angry clips of these actors come out "happy" at 8 kHz (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
import soundfile as sf
import soxr
from websockets.asyncio.client import connect

from harness.broker import Broker
from models.bundle import resolve_bundle
from streamer.apps.service import Service, run_service
from streamer.core.config import load_config
from streamer.core.events import validate_event
from streamer.engine.loading import load_models
from streamer.ingest.clients import CallAudio, send_pcm
from streamer.ingest.protocol import published_stream_id
from tests.waiting import wait_until

RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
# v6 labels every neutral and calm clip of actor 11 "sad" at 8 kHz (his calm voice), those of
# actors 20 and 21 mostly neutral: the calm clips are theirs. The call opens with the one v7
# is surest of at 8 kHz (0.98 alone; actor 20's second take is near sad in a served call).
NEUTRAL = ("Actor_21/03-01-01-01-01-01-21.flac", "Actor_20/03-01-01-01-01-01-20.flac",
           "Actor_21/03-01-01-01-02-01-21.flac", "Actor_21/03-01-01-01-02-02-21.flac")
ANGRY = ("Actor_21/03-01-05-02-01-01-21.flac", "Actor_11/03-01-05-02-02-01-11.flac",
         "Actor_21/03-01-05-02-02-02-21.flac")
# The ids the PCM clients send, and the ids the calls' events carry (ingest namespaces them).
ANGRY_CLIENT, CALM_CLIENT = "angry-1", "calm-1"
ANGRY_CALL = published_stream_id("pcm", ANGRY_CLIENT)
CALM_CALL = published_stream_id("pcm", CALM_CLIENT)
AGENT = ("Actor_01/03-01-01-01-01-01-01.flac", "Actor_01/03-01-01-01-02-01-01.flac")
RULES = ("[{id: customer-angry, kind: label_count, channels: [customer], label: angry, "
         "min_confidence: 0.6, k: 2, n: 3, severity: critical, cooldown_s: 60}]")

pytestmark = [pytest.mark.slow,
              pytest.mark.needs_corpus("ravdess"),
              pytest.mark.skipif(not resolve_bundle("builtin:default").is_dir(),
                                 reason="needs the default bundle")]


def clip_8k(name: str) -> np.ndarray:
    audio, rate = sf.read(RAVDESS / name, dtype="float32")
    return soxr.resample(audio, rate, 8000).astype(np.float32)


def call_audio(stream_id: str, turns: list[tuple[str, str]]) -> CallAudio:
    """Turns of (party, clip) one after the other; the other party is silent meanwhile."""
    gap = np.zeros(int(0.6 * 8000), np.float32)
    customer, agent = [gap], [gap]
    for party, name in turns:
        clip = clip_8k(name)
        (customer if party == "customer" else agent).append(clip)
        (agent if party == "customer" else customer).append(np.zeros_like(clip))
        customer.append(gap)
        agent.append(gap)
    return CallAudio(stream_id, (np.concatenate(customer), np.concatenate(agent)))


class Received:
    """Messages of one subscriber with the local time each arrived."""

    def __init__(self) -> None:
        self.items: list[tuple[float, dict]] = []  # type: ignore[type-arg]

    def of(self, kind: str, stream_id: str) -> list[tuple[float, dict]]:  # type: ignore[type-arg]
        return [(t, m) for t, m in self.items
                if m.get("type") == kind and m.get("stream_id") == stream_id]


async def test_angry_customer_alert_once_on_websocket_and_mqtt_then_cleared(
        broker: Broker) -> None:
    config = load_config(None, [
        "ingest.port=0", "websocket.port=0", "stdout.enabled=false", "ingest.warmup=true",
        "ingest.token=pcm-token", f"alerts.rules={RULES}", "alerts.summary_interval_s=2",
        "mqtt.enabled=true", f"mqtt.port={broker.port}", "mqtt.prefix=calls"])
    models = load_models(config)
    angry_call = call_audio(ANGRY_CLIENT, [
        ("customer", NEUTRAL[0]), ("agent", AGENT[0]), ("customer", ANGRY[0]),
        ("customer", ANGRY[1]), ("customer", ANGRY[2]), ("customer", NEUTRAL[1]),
        ("customer", NEUTRAL[2]), ("agent", AGENT[1])])
    calm_call = call_audio(CALM_CLIENT, [("customer", NEUTRAL[3]), ("agent", AGENT[0]),
                                      ("customer", NEUTRAL[1])])
    ws_seen, mqtt_seen = Received(), Received()
    ready: asyncio.Queue[Service] = asyncio.Queue(maxsize=1)
    stop = asyncio.Event()
    service = asyncio.create_task(run_service(config, models, stop, ready.put))
    svc = await asyncio.wait_for(ready.get(), 120)
    subscribed = asyncio.Event()

    async def ws_reader() -> None:
        assert svc.subscribers is not None
        async with connect(f"ws://127.0.0.1:{svc.subscribers.port}/events",
                           max_size=None) as ws:
            async for raw in ws:
                ws_seen.items.append((time.time(), json.loads(raw)))
                subscribed.set()

    async def mqtt_reader() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("calls/+/+/alert", qos=1)
            await client.subscribe("calls/+/+/alert.cleared", qos=1)
            await client.subscribe("calls/+/+/utterance.emotion", qos=1)
            subscribed.set()
            async for message in client.messages:
                mqtt_seen.items.append((time.time(), json.loads(message.payload)))

    readers = [asyncio.create_task(ws_reader()), asyncio.create_task(mqtt_reader())]
    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        await asyncio.sleep(0.5)  # both readers subscribed
        url = f"ws://127.0.0.1:{svc.ingest.port}/ingest/pcm"
        await asyncio.gather(send_pcm(url, angry_call, token="pcm-token"),
                             send_pcm(url, calm_call, token="pcm-token"))
        await wait_until(lambda: len(ws_seen.of("call.summary", ANGRY_CALL)) > 0
                         and ws_seen.of("call.summary", ANGRY_CALL)[-1][1]["reason"] == "ended",
                         120)
        await wait_until(lambda: len(mqtt_seen.of("alert.cleared", ANGRY_CALL)) >= 1, 30)
        await asyncio.sleep(1.0)  # anything duplicated would have arrived by now
    finally:
        stop.set()
        await asyncio.wait_for(service, 60)
        for task in readers:
            task.cancel()

    for _, message in ws_seen.items:
        validate_event(message)
    emotions = [m for _, m in ws_seen.of("utterance.emotion", ANGRY_CALL)
                if m["channel"] == "customer"]
    labels = [(m["label"], m["confidence"]) for m in emotions]
    # The third angry clip comes out angry or (at 8 kHz, with context) happy: either way the
    # alert holds over it (2 of the last 3) and clears on the calm turns after it.
    names = [label for label, _ in labels]
    assert len(names) == 6 and names[:3] == ["neutral", "angry", "angry"], labels
    assert names[4:] == ["neutral", "neutral"], labels
    for seen in (ws_seen, mqtt_seen):
        [(alert_at, alert)] = seen.of("alert", ANGRY_CALL)
        [(_, cleared)] = seen.of("alert.cleared", ANGRY_CALL)
        assert alert["rule_id"] == "customer-angry" and alert["channel"] == "customer"
        assert alert["utterance_ids"] == [f"{ANGRY_CALL}/customer/1", f"{ANGRY_CALL}/customer/2"]
        assert cleared["alert_id"] == alert["alert_id"]
        assert cleared["reason"] == "condition_ended"
        assert seen.of("alert", CALM_CALL) == [] and seen.of("alert.cleared", CALM_CALL) == []
    [final] = [m for _, m in ws_seen.of("call.summary", ANGRY_CALL) if m["reason"] == "ended"]
    assert final["parties"]["customer"]["share"]["angry"] > 0.3 and final["alerts"] == []

    # Latency from the triggering utterance's event to the alert, on both clocks.
    _, alert = ws_seen.of("alert", ANGRY_CALL)[0]
    [(trigger_at, trigger)] = [(t, m) for t, m in ws_seen.of("utterance.emotion", ANGRY_CALL)
                               if m["utterance_id"] == f"{ANGRY_CALL}/customer/2"]
    server_ms = 1000 * (alert["wall_time"] - alert["trigger_wall_time"])
    assert alert["trigger_wall_time"] == trigger["wall_time"]
    ws_ms = 1000 * (ws_seen.of("alert", ANGRY_CALL)[0][0] - trigger_at)
    [(mqtt_trigger_at, _)] = [(t, m) for t, m in mqtt_seen.of("utterance.emotion", ANGRY_CALL)
                              if m["utterance_id"] == f"{ANGRY_CALL}/customer/2"]
    mqtt_ms = 1000 * (mqtt_seen.of("alert", ANGRY_CALL)[0][0] - mqtt_trigger_at)
    figures = {"server_ms": round(server_ms, 2), "websocket_ms": round(ws_ms, 2),
               "mqtt_ms": round(mqtt_ms, 2),
               "trigger_end_of_speech_ms": trigger["latency"]["total_ms"],
               "customer_labels": labels}
    print("alert latency after the triggering utterance event:", json.dumps(figures))
    out = Path(__file__).resolve().parents[2] / "test-output" / "alerts_e2e.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=1))
