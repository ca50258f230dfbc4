"""End to end with the real models: calls over the ingest protocols -> per-party emotion
events on WebSocket subscribers and MQTT (real Mosquitto broker)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
import soxr

from harness.broker import Broker
from harness.speech import Turn, espeak_available, synthesize
from models.asr import normalize_words
from models.bundle import BundleConfig, resolve_bundle, save_bundle
from models.heads import build_head
from offline_training.metrics import word_error_rate as wer
from streamer.apps.service import Service
from streamer.core import events
from streamer.core.config import AppConfig, load_config
from streamer.engine.loading import Models, load_models
from streamer.ingest.clients import CallAudio, send_audiohook, send_pcm, send_twilio
from streamer.ingest.protocol import published_stream_id
from tests.service import Subscriber, subscribed_service
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")]

CUSTOMER = Turn("I have been waiting for an hour and nobody helps me.", "en-us+m3", 60, 185, 160)
AGENT = Turn("I am sorry, let me look at your account right now.", "en-us+f2")


def bundle_ref(tmp_dir: Path) -> str:
    """The shipped bundle when it exists, else a random-weight stand-in (not committed)."""
    if resolve_bundle("builtin:default").is_dir():
        return "builtin:default"
    head = build_head("cross_mha", {"audio_dim": 384, "text_dim": 384, "num_classes": 4})
    config = BundleConfig(model_id="test-random", head="cross_mha",
                          head_config=dataclasses.asdict(head.config),
                          labels=("neutral", "happy", "sad", "angry"))
    return str(save_bundle(tmp_dir / "bundle", config, head))


@pytest.fixture(scope="module")
def app_config(tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    bundle = bundle_ref(tmp_path_factory.mktemp("bundle"))
    return load_config(None, [f"emotion.bundle={bundle}", "ingest.port=0", "websocket.port=0",
                              "stdout.enabled=false", "ingest.warmup=false",
                              "ingest.token=pcm-token", "ingest.audiohook_api_key=ah-api-key"])


@pytest.fixture(scope="module")
def models(app_config: AppConfig) -> Models:
    return load_models(app_config)


def to_8k(audio: np.ndarray) -> np.ndarray:
    return soxr.resample(audio, 16000, 8000).astype(np.float32)


@pytest.fixture(scope="module")
def turns() -> tuple[np.ndarray, np.ndarray]:
    return to_8k(synthesize(CUSTOMER)), to_8k(synthesize(AGENT))


def two_party_call(stream_id: str, customer: np.ndarray, agent: np.ndarray,
                   gap_s: float = 0.8) -> CallAudio:
    """Customer speaks, then the agent answers; each party silent while the other talks."""
    lead, gap = int(0.3 * 8000), int(gap_s * 8000)
    total = lead + len(customer) + gap + len(agent) + gap
    a, b = np.zeros(total, np.float32), np.zeros(total, np.float32)
    a[lead:lead + len(customer)] = customer
    start = lead + len(customer) + gap
    b[start:start + len(agent)] = agent
    return CallAudio(stream_id, (a, b))


@pytest.fixture
async def service(app_config: AppConfig, models: Models, broker: Broker
                  ) -> AsyncIterator[tuple[Service, Subscriber, AppConfig]]:
    config = dataclasses.replace(app_config, mqtt=dataclasses.replace(
        app_config.mqtt, enabled=True, port=broker.port, prefix="calls"))
    async with subscribed_service(config, models) as (svc, sub):
        yield svc, sub, config


async def test_stereo_call_as_twilio_and_audiohook_gives_per_party_events(
        service: tuple[Service, Subscriber, AppConfig], turns: tuple[np.ndarray, np.ndarray],
        broker: Broker) -> None:  # the same broker the service publishes to
    svc, sub, config = service
    mqtt_messages: list[tuple[str, dict]] = []
    subscribed = asyncio.Event()

    async def mqtt_reader() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("calls/#", qos=1)
            subscribed.set()
            async for m in client.messages:
                mqtt_messages.append((str(m.topic), json.loads(m.payload)))

    mqtt_task = asyncio.create_task(mqtt_reader())
    await asyncio.wait_for(subscribed.wait(), 10)
    base = f"ws://127.0.0.1:{svc.ingest.port}"
    twilio_call = two_party_call("CAtwilio1", *turns)
    hook_call = two_party_call("0b7c1f0e-1111-2222-3333-444455556666", *turns)
    reports = await asyncio.gather(
        send_twilio(f"{base}/ingest/twilio", twilio_call, pace=3),
        send_audiohook(f"{base}/ingest/audiohook", hook_call, pace=3, api_key="ah-api-key"))
    assert [m["type"] for m in reports[1].replies] == ["opened", "closed"]
    # The events carry the route (ingest.namespace_stream_ids): twilio:<callSid>, ...
    ids = [published_stream_id("twilio", twilio_call.stream_id),
           published_stream_id("audiohook", hook_call.stream_id)]
    await wait_until(lambda: len(sub.of("stream.ended")) == 4, 120)
    await wait_until(lambda: sum(e.get("type") == "stream.ended" for _, e in mqtt_messages) == 4,
                     30)
    mqtt_task.cancel()
    for message in sub.messages:
        events.validate_event(message)
    for stream_id in ids:
        emotions = sub.of("utterance.emotion", stream_id)
        by_channel = {e["channel"]: e for e in emotions}
        assert len(emotions) == 2 and set(by_channel) == {"customer", "agent"}
        assert wer(CUSTOMER.text, by_channel["customer"]["text"]) <= 0.5
        assert wer(AGENT.text, by_channel["agent"]["text"]) <= 0.5
        assert by_channel["customer"]["t_end"] < by_channel["agent"]["t_start"]
        for e in emotions:
            assert e["utterance_id"].startswith(f"{stream_id}/{e['channel']}/")
            assert e["label"] in svc.recognizer.facts.labels
    for topic, event in mqtt_messages:
        if "stream_id" in event:
            assert topic == f"calls/{event['stream_id']}/{event['channel']}/{event['type']}"
    mqtt_emotions = {(e["stream_id"], e["channel"]) for _, e in mqtt_messages
                     if e.get("type") == "utterance.emotion"}
    assert mqtt_emotions == {(s, c) for s in ids for c in ("customer", "agent")}
    assert svc.ingest.calls == {}


async def test_client_disconnecting_mid_utterance_still_gets_its_events(
        service: tuple[Service, Subscriber, AppConfig],
        turns: tuple[np.ndarray, np.ndarray]) -> None:
    svc, sub, _ = service
    call = two_party_call("CAcut1", *turns)
    cut_at = 0.3 + len(turns[0]) / 8000 * 0.6  # inside the customer's sentence
    report = await send_twilio(f"ws://127.0.0.1:{svc.ingest.port}/ingest/twilio", call,
                               pace=3, disconnect_at_s=cut_at)
    assert report.sent_s == pytest.approx(cut_at, abs=0.05)
    await wait_until(lambda: len(sub.of("stream.ended", "twilio:CAcut1")) == 2, 60)
    (emotion,) = sub.of("utterance.emotion", "twilio:CAcut1")
    assert emotion["channel"] == "customer" and emotion["cut_reason"] == "end_of_stream"
    assert normalize_words(emotion["text"])[:2] == ["i", "have"]
    ended = {e["channel"]: e for e in sub.of("stream.ended", "twilio:CAcut1")}
    assert ended["customer"]["utterances"] == 1 and ended["agent"]["utterances"] == 0
    assert {e["reason"] for e in ended.values()} == {"client_closed"}
    await wait_until(lambda: svc.ingest.calls == {}, 5)


async def test_twenty_concurrent_calls_every_utterance_accounted_for(
        service: tuple[Service, Subscriber, AppConfig],
        turns: tuple[np.ndarray, np.ndarray]) -> None:
    svc, sub, _ = service
    base = f"ws://127.0.0.1:{svc.ingest.port}"
    customer, agent = turns[0][: int(1.6 * 8000)], turns[1][: int(1.6 * 8000)]
    calls = [two_party_call(f"load{i:02d}", customer, agent, gap_s=0.6) for i in range(20)]
    senders = []
    routes = ("twilio", "audiohook", "pcm")  # call i comes on routes[i % 3]
    ids = {published_stream_id(routes[i % 3], c.stream_id) for i, c in enumerate(calls)}
    for i, call in enumerate(calls):
        if i % 3 == 0:
            senders.append(send_twilio(f"{base}/ingest/twilio", call, pace=2))
        elif i % 3 == 1:
            senders.append(send_audiohook(f"{base}/ingest/audiohook", call, pace=2,
                                          api_key="ah-api-key"))
        else:
            senders.append(send_pcm(f"{base}/ingest/pcm", call, pace=2, token="pcm-token"))
    await asyncio.gather(*senders)
    await wait_until(lambda: len([e for e in sub.of("stream.ended")
                                  if e["stream_id"] in ids]) == 40, 400)
    emotions = [e for e in sub.of("utterance.emotion") if e["stream_id"] in ids]
    counts = Counter((e["stream_id"], e["channel"]) for e in emotions)
    assert counts == {(s, ch): 1 for s in ids for ch in ("customer", "agent")}
    ended = [e for e in sub.of("stream.ended") if e["stream_id"] in ids]
    assert all(e["utterances"] == 1 and e["reason"] == "end_of_input" for e in ended)
    assert not sub.of("subscriber.lagged")
    assert svc.ingest.calls == {} and svc.ingest.stats.protocol_failures == 0
