"""``GET /metrics`` of the real service: real calls through the protocol clients, events
on a WebSocket subscriber and a real Mosquitto broker, the exposition scraped over HTTP
and parsed by prometheus-client; its counters must match what the clients saw."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from harness.broker import Broker
from harness.speech import espeak_available
from streamer.engine.loading import Models
from streamer.ingest.clients import CallAudio, send_pcm, send_twilio
from streamer.ops.metrics import ServiceMetrics
from tests.ingest.test_calls_e2e import Subscriber, turns, two_party_call, wait_until
from tests.reliability.test_slow_subscribers import big_event, small_buffer_client
from tests.service import running_service
from tests.streamer.ops import (
    http_get,
    ops_config,
    ops_models,
    parse_metrics,
    scrape,
    total,
    value,
)

__all__ = ["ops_models", "turns"]  # fixtures used by name

P = "emotion_stream_"


def test_metrics_of_one_instance_do_not_leak_into_another() -> None:
    """One registry per service: two in one process count apart, nothing global."""
    a, b = ServiceMetrics(), ServiceMetrics()
    a.observe_event({"type": "utterance.emotion", "speech": False, "abstain_reason": "no_words",
                     "latency": {"total_ms": 420.0, "queue_ms": 5.0, "asr_ms": 0.0,
                                 "fusion_ms": 0.0}})
    a.observe_event({"type": "stream.ended", "reason": "shutdown"})
    sa, sb = parse_metrics(a.exposition().decode()), parse_metrics(b.exposition().decode())
    assert value(sa, P + "utterances_total") == 1 and value(sb, P + "utterances_total") == 0
    assert value(sa, P + "utterances_abstained_total", reason="no_words") == 1
    assert value(sa, P + "channels_ended_total", reason="shutdown") == 1
    assert value(sa, P + "end_of_speech_to_event_seconds_sum") == pytest.approx(0.42)
    assert value(sa, P + "end_of_speech_to_event_seconds_bucket", le="0.5") == 1
    assert value(sa, P + "end_of_speech_to_event_seconds_bucket", le="0.4") == 0
    assert value(sa, P + "asr_seconds_count") == 0  # not speech: no ASR/fusion observation


async def refused_connections(port: int) -> list[int | None]:
    """A wrong token (401), an unknown path (404) and a malformed start (1007)."""
    base = f"ws://127.0.0.1:{port}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{base}/ingest/pcm", additional_headers={
                "Authorization": "Bearer wrong"}):
            pass
    status, _ = await asyncio.to_thread(http_get, port, "/no-such-page")
    async with connect(f"{base}/ingest/pcm", additional_headers={
            "Authorization": "Bearer pcm-token"}) as ws:
        await ws.send("{not json")
        await asyncio.wait_for(ws.wait_closed(), 30)
    return [refused.value.response.status_code, status, ws.close_code]


@pytest.mark.slow
@pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")
async def test_metrics_match_the_events_of_real_calls(
        ops_models: Models, turns: tuple[np.ndarray, np.ndarray], broker: Broker) -> None:
    config = ops_config("mqtt.enabled=true", f"mqtt.port={broker.port}", "mqtt.prefix=ops",
                        "operations.endpoints=both")
    async with running_service(config, ops_models) as (svc, _, _):
        port = svc.ingest.port
        assert svc.subscribers is not None
        async with asyncio.timeout(30):  # also on the subscriber port (endpoints=both)
            while (await asyncio.to_thread(http_get, svc.subscribers.port, "/readyz"))[0] != 200:
                await asyncio.sleep(0.1)  # 503 "mqtt" until the publisher has connected
        with pytest.raises(InvalidStatus):  # a bad filter: 400
            async with connect(f"ws://127.0.0.1:{svc.subscribers.port}/events?streams=a%00b"):
                pass
        sub, subscribed = Subscriber(), asyncio.Event()
        reader = asyncio.create_task(sub.run(svc.subscribers.port, subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        assert await refused_connections(port) == [401, 404, 1007]
        customer, agent = (t[: int(2.5 * 8000)] for t in turns)
        t = np.arange(int(1.5 * 8000)) / 8000
        tone = np.concatenate([np.zeros(2400), 0.3 * np.sin(2 * np.pi * 440 * t),
                               np.zeros(4000)]).astype(np.float32)
        await asyncio.gather(
            send_twilio(f"ws://127.0.0.1:{port}/ingest/twilio",
                        two_party_call("CAops1", customer, agent), pace=3),
            send_pcm(f"ws://127.0.0.1:{port}/ingest/pcm",
                     two_party_call("pcm-ops", customer, agent), pace=3, token="pcm-token"),
            send_pcm(f"ws://127.0.0.1:{port}/ingest/pcm", CallAudio("tone-ops", (tone,)),
                     pace=3, token="pcm-token"))
        await wait_until(lambda: len(sub.of("stream.ended")) == 5, 180)
        # Events may still follow the last stream.ended (alerts, call summaries), and MQTT
        # acknowledges asynchronously: scrape until both publishers have counted every
        # event the subscriber holds and the subscriber has all the bus published.
        async with asyncio.timeout(60):
            while True:
                m = await scrape(port)
                events = [e for e in sub.messages if "stream_id" in e]
                if value(m, P + "events_published_total", publisher="mqtt") \
                        == value(m, P + "events_published_total", publisher="websocket") \
                        == len(events):
                    break
                await asyncio.sleep(0.2)
        reader.cancel()

    emotions = sub.of("utterance.emotion")
    abstained = [e for e in emotions if not e["speech"]]
    assert len(emotions) >= 4  # one per speaking party at least
    assert value(m, P + "utterances_total") == len(emotions)
    for reason in {e["abstain_reason"] for e in abstained}:
        assert value(m, P + "utterances_abstained_total", reason=reason) == sum(
            e["abstain_reason"] == reason for e in abstained)
    assert total(m, P + "utterances_abstained_total") == len(abstained)
    assert value(m, P + "end_of_speech_to_event_seconds_count") == len(emotions)
    assert value(m, P + "end_of_speech_to_event_seconds_sum") == pytest.approx(
        sum(e["latency"]["total_ms"] for e in emotions) / 1000, abs=1e-3)
    assert value(m, P + "asr_seconds_count") == len(emotions) - len(abstained)
    assert value(m, P + "fusion_seconds_sum") == pytest.approx(
        sum(e["latency"]["fusion_ms"] for e in emotions if e["speech"]) / 1000, abs=1e-3)
    assert value(m, P + "channels_ended_total", reason="end_of_input") == 5
    # Every event the bus published reached the one subscriber and the broker.
    assert value(m, P + "events_published_total", publisher="websocket") == len(events)
    assert value(m, P + "events_published_total", publisher="mqtt") == len(events)
    assert total(m, P + "events_dropped_total") == 0
    assert value(m, P + "calls_started_total") == 3 == value(m, P + "calls_finished_total")
    assert value(m, P + "calls_active") == 0 and value(m, P + "channels_active") == 0
    for reason in ("auth", "not_found", "bad_protocol"):
        assert value(m, P + "refused_connections_total", listener="ingest", reason=reason) == 1
    assert value(m, P + "refused_connections_total", listener="subscribers",
                 reason="bad_filter") == 1
    assert value(m, P + "models", **{P + "models": "ready"}) == 1
    assert value(m, P + "mqtt_connected") == 1 and value(m, P + "ready") == 1
    assert value(m, P + "subscribers_active") == 1
    assert {"asr", "fusion", "ingest_audio", "mqtt", "websocket"} <= {
        dict(labels)["queue"] for name, labels in m if name == P + "queue_depth"}
    assert value(m, P + "model_info", model_id=ops_models.emotion.model_id,
                 asr_model="packaged:tiny.en") == 1
    print(json.dumps({"utterances": len(emotions), "abstained": len(abstained),
                      "events": len(events)}))


@pytest.mark.slow
async def test_slow_subscriber_drops_are_counted(ops_models: Models) -> None:
    """Issue 13's slow subscriber (small socket buffers, stops reading): the events it lost
    (told in subscriber.lagged) are the websocket overflow drops on /metrics."""
    config = ops_config("bus.subscriber_queue=20", "alerts.enabled=false")
    async with running_service(config, ops_models) as (svc, _, _):
        assert svc.subscribers is not None
        ws = await small_buffer_client(svc.subscribers.port)
        async with asyncio.timeout(30):
            while not (slow := [s for s in svc.bus.subscriptions if s.name.startswith("ws:")]):
                await asyncio.sleep(0.01)
            n = 0
            while not slow[0].dropped:  # it does not read: its bus queue overflows
                for _ in range(10):
                    svc.bus.publish(big_event(n))
                    n += 1
                await asyncio.sleep(0.01)
        lost = 0
        async with asyncio.timeout(30):
            while not lost:
                message = json.loads(await ws.recv())
                if message["type"] == "subscriber.lagged":
                    lost = message["dropped"]
        m = await scrape(svc.ingest.port)
        await ws.close()
    assert lost > 0
    assert value(m, P + "events_dropped_total", publisher="websocket", reason="overflow") == lost
    assert value(m, P + "subscriber_lagged_notices_total") == 1
    assert value(m, P + "subscribers_dropped_total") == 0
