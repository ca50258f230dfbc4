"""Issue 30 ("Hardening, round 3"): one test per defect, real parts (sockets, Mosquitto,
WebSocket clients, the parsers and loaders themselves). docs/reliability.md, "Round 3"."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from harness.broker import Broker
from streamer.core.alert_rules import parse_rules
from streamer.core.config import AlertsConfig, MqttConfig, WebSocketConfig, load_config
from streamer.core.errors import ConfigError
from streamer.ingest.clients import CallAudio, SendReport, send_audiohook, send_pcm, send_twilio
from streamer.ingest.protocol import CallStart, ChannelAudio, Limits
from streamer.ingest.twilio import TwilioProtocol, twilio_signature
from streamer.ops.health import ReadinessInputs, readiness
from streamer.publish.bus import EventBus
from streamer.publish.mqtt_publisher import MqttPublisher, event_topic, topic_part
from streamer.publish.ws_server import WebSocketServer
from streamer.sources.replay import ReplayError, replay
from streamer.supervise.summary import CallSummaries
from streamer.supervise.supervisor import Supervisor
from tests.ingest.test_server import (
    RecordingRecognizer,
    assert_close,
    expected_16k,
    make_config,
    started,
    tone_call,
)
from tests.streamer.test_bus_and_events import sample_emotion
from tests.streamer.test_mqtt_publisher import Collector, running
from tests.waiting import wait_until

TIMEOUT_S = 20.0
PUBLIC = "wss://calls.example.com"


async def until(condition: Callable[[], object], timeout: float = TIMEOUT_S) -> None:
    await wait_until(condition, timeout)


# ------------------------------------------------------------------ 1: secrets
@pytest.mark.parametrize("key", ["ingest.twilio_auth_token", "ingest.token",
                                 "ingest.audiohook_api_key", "websocket.token",
                                 "mqtt.password"])
@pytest.mark.parametrize("value", ["''", "'   '"])
def test_empty_secrets_are_refused_at_start(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}' is empty or blank.*lets anyone in"):
        load_config(None, [f"{key}={value}"])


def test_short_secrets_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="'ingest.twilio_auth_token' is 3 characters long; "
                                          "use at least 8"):
        load_config(None, ["ingest.twilio_auth_token=abc"])
    assert load_config(None, ["ingest.twilio_auth_token=0123456789abcdef"])


async def test_an_empty_twilio_key_verifies_no_signature() -> None:
    """Defence in depth behind the config check: a server built with an empty key (not
    through load_config) refuses a signature forged with that empty key."""
    server, base = await started(make_config(twilio_auth_token=""), RecordingRecognizer())
    url = f"{PUBLIC}/ingest/twilio"
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{base}/ingest/twilio", additional_headers={
                    "X-Twilio-Signature": twilio_signature("", url)}):
                pass
    finally:
        await server.__aexit__()
    assert refused.value.response.status_code == 401


# ------------------------------------------------ 2: stream ids namespaced by route
def tones(stream_id: str, seconds: float, hz: tuple[float, float]) -> CallAudio:
    t = np.arange(int(8000 * seconds)) / 8000
    return CallAudio(stream_id, tuple((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)
                                      for f in hz))


def send_on(route: str, base: str, call: CallAudio, pace: float) -> asyncio.Task[SendReport]:
    if route == "twilio":
        sender = send_twilio(f"{base}/ingest/twilio", call, pace, auth_token="tw-secret",
                             signed_url=f"{PUBLIC}/ingest/twilio")
    else:
        sender = send_pcm(f"{base}/ingest/pcm", call, pace, token="pcm-secret")
    return asyncio.create_task(sender)


def expected_on(route: str, party: np.ndarray) -> np.ndarray:
    """What the server hands on for ``party`` sent over ``route`` (16 kHz)."""
    if route == "twilio":
        return expected_16k(party)
    pcm = np.clip(np.round(party * 32768), -32768, 32767).astype(np.float32) / 32768
    return soxr.resample(pcm, 8000, 16000, quality="HQ").astype(np.float32)


@pytest.mark.parametrize("first", ["twilio", "pcm"])
async def test_one_id_on_two_routes_is_two_calls_and_a_second_connection_is_refused(
        first: str) -> None:
    """A Twilio call with callSid CA1 and a raw PCM call with stream_id CA1 (either one
    live first) are two calls: events twilio:CA1 and pcm:CA1, each party with exactly its
    own audio. A second connection on the live call's own route with CA1 is refused with
    1008 (never merged). Before the fix the second route's call was refused: one route's
    client could take (squat) another route's call id."""
    other = "pcm" if first == "twilio" else "twilio"
    live_call, other_call = tones("CA1", 3.0, (300, 700)), tones("CA1", 0.5, (1100, 1900))
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        live = send_on(first, base, live_call, pace=2)  # 1.5 s: live while the others run
        await until(lambda: len(server.calls) == 1)
        second = await asyncio.wait_for(send_on(other, base, other_call, pace=10), TIMEOUT_S)
        duplicate = await asyncio.wait_for(
            send_on(first, base, tones("CA1", 0.5, (500, 500)), pace=10), TIMEOUT_S)
        live_meanwhile = set(server.calls)  # the first call is still live
        reports = {first: await asyncio.wait_for(live, TIMEOUT_S), other: second}
        await until(lambda: all(r.done for r in rec.channels.values()))
    finally:
        await server.__aexit__()
    assert second.close_code in (1000, None), \
        f"the {other} call CA1 was refused: {second.close_code} {second.close_reason!r}"
    assert live_meanwhile == {f"{first}:CA1"}
    assert duplicate.close_code == 1008 and "already active" in duplicate.close_reason
    assert server.edge.refused["duplicate_stream"] == 1
    assert all(r.close_code in (1000, None) for r in reports.values()), reports
    assert set(rec.channels) == {(f"{route}:CA1", party) for route in ("twilio", "pcm")
                                 for party in ("customer", "agent")}
    for route, call in ((first, live_call), (other, other_call)):
        for i, party in enumerate(("customer", "agent")):  # nothing of the other call in it
            assert_close(rec.audio(f"{route}:CA1", party), expected_on(route, call.parties[i]))
    assert server.calls == {} and server.stats.calls_finished == 2


async def test_without_namespaces_ids_are_shared_by_the_routes() -> None:
    """ingest.namespace_stream_ids=false: the clients' own ids, as before the fix, so the
    second route's call with a live id is refused (the squatting caveat, documented)."""
    rec = RecordingRecognizer()
    server, base = await started(make_config(namespace_stream_ids=False), rec)
    try:
        live = send_on("pcm", base, tones("CA1", 2.0, (300, 700)), pace=2)
        await until(lambda: "CA1" in server.calls)
        refused = await asyncio.wait_for(
            send_on("twilio", base, tones("CA1", 0.5, (1100, 1900)), pace=10), TIMEOUT_S)
        await asyncio.wait_for(live, TIMEOUT_S)
        await until(lambda: len(rec.channels) == 2 and all(r.done for r in
                                                           rec.channels.values()))
    finally:
        await server.__aexit__()
    assert refused.close_code == 1008 and "already active" in refused.close_reason
    assert set(rec.channels) == {("CA1", "customer"), ("CA1", "agent")}


# ------------------------------------------------------- 3: broker outage != password
async def test_broker_restart_is_unreachable_not_bad_password(broker: Broker) -> None:
    bus = EventBus()
    publisher = MqttPublisher(MqttConfig(enabled=True, port=broker.port, prefix="emo",
                                         reconnect_min_s=0.2, reconnect_max_s=30.0), bus)
    collector = Collector(broker.port)
    async with running(collector.run(), publisher.run()):
        await until(lambda: publisher.connected)
        await collector.ready()  # its session must exist before the broker goes down
        broker.stop()
        bus.publish(sample_emotion("s1", "mono", 0))  # paho: "no connection", code 4
        await until(lambda: publisher.state == "unreachable")
        reasons = readiness(ReadinessInputs(
            models="ready", draining=False, connections=0, max_calls=4, mqtt_enabled=True,
            mqtt_connected=publisher.connected, mqtt_error=publisher.last_error,
            mqtt_state=publisher.state))
        assert "unreachable" in reasons["mqtt"] and "credentials" not in reasons["mqtt"]
        assert not publisher.auth_failed
        await asyncio.sleep(2.0)  # a 2 s restart
        broker.start()
        restarted = time.monotonic()
        await until(lambda: publisher.connected and publisher.pending == 0, timeout=10)
        recovered_s = time.monotonic() - restarted
        # The collector's persistent session gets the event once it is back on the broker.
        await until(lambda: collector.subscriptions >= 2)
        await collector.wait_for("utterance.emotion", 1)
        await until(lambda: any(json.loads(m.payload).get("after") for m in collector.messages
                                if str(m.topic) == "emo/status"
                                and isinstance(m.payload, bytes) and m.payload))
    assert recovered_s < 5.0  # the backoff was at 0.4-1.6 s, not the 30 s cap
    online = [json.loads(m.payload) for m in collector.messages if str(m.topic) == "emo/status"
              and isinstance(m.payload, bytes) and m.payload]
    assert online[-1]["state"] == "online" and online[-1]["after"]["state"] == "unreachable"


# ------------------------------------------------------ 4: a third protocol keeps room
async def test_two_protocols_cannot_lock_the_third_out() -> None:
    """max_calls 6, per-protocol limits out of the way: idle PCM and Twilio sockets can
    take 4 slots, the last 2 stay for AudioHook (reserved_calls_per_protocol)."""
    rec = RecordingRecognizer()
    server, base = await started(make_config(max_calls=6, max_pcm_calls=6, max_twilio_calls=6,
                                             max_audiohook_calls=6), rec)
    signature = twilio_signature("tw-secret", f"{PUBLIC}/ingest/twilio")
    held: list[ClientConnection] = []
    refusals: list[bytes] = []
    try:
        for url, headers in [(f"{base}/ingest/pcm?token=pcm-secret", {}),
                             (f"{base}/ingest/twilio", {"X-Twilio-Signature": signature})] * 3:
            try:
                held.append(await connect(url, additional_headers=headers))
            except InvalidStatus as exc:
                refusals.append(exc.response.body)
        report = await asyncio.wait_for(send_audiohook(
            f"{base}/ingest/audiohook", tone_call("AH-room", 0.5), pace=10, api_key="ah-key"),
            30)
    finally:
        for ws in held:
            await ws.close()
        await server.__aexit__()
    assert len(held) == 4 and len(refusals) == 2
    assert all(b"ingest.reserved_calls_per_protocol" in body for body in refusals)
    assert report.close_code in (1000, None) and ("audiohook:AH-room", "customer") in rec.channels


# --------------------------------------------------------- 5, 6, 12: the config loader
def test_deeply_nested_config_is_a_clear_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("alerts:\n  rules: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply to read"):
        load_config(deep)
    medium = tmp_path / "medium.yaml"
    medium.write_text("alerts:\n  rules: " + "[" * 40 + "]" * 40 + "\n")
    with pytest.raises(ConfigError, match="nested more than 32 levels"):
        load_config(medium)
    with pytest.raises(ConfigError, match="nested"):
        load_config(None, ["alerts.rules=" + "[" * 5000 + "]" * 5000])


@pytest.mark.parametrize("override, message", [
    ("bus.replay_events=-1", "bus.replay_events must be 0..100000"),
    ("bus.replay_events=1000000000", "bus.replay_events must be 0..100000"),
    ("mqtt.keepalive_s=-5", "mqtt.keepalive_s must be 0..65535"),
    ("mqtt.reconnect_jitter=2", "mqtt.reconnect_jitter must be 0..1"),
    ("asr.max_new_tokens=0", "asr.max_new_tokens must be 1..448"),
    ("emotion.torch_threads=0", "emotion.torch_threads must be 1..256"),
    ("websocket.max_message_bytes=10", "websocket.max_message_bytes must be 1024"),
    ("websocket.max_subscribers_per_address=0", "max_subscribers_per_address must be >= 1"),
    ("ingest.reserved_calls_per_protocol=-1", "reserved_calls_per_protocol must be >= 0"),
    ("source.mic_sample_rate=0", "source.mic_sample_rate must be 8000..384000"),
])
def test_numbers_out_of_range_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("prefix", ["'#'", "'emo/+'", "'a/#/b'", "''", "'a//b'", "'$SYS'"])
def test_mqtt_prefix_wildcards_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="mqtt.prefix .* is invalid: .*wildcards"):
        load_config(None, [f"mqtt.prefix={prefix}"])
    assert load_config(None, ["mqtt.prefix=site1/emotion"]).mqtt.prefix == "site1/emotion"


# ----------------------------------------------------------- 7: Twilio timestamp jumps
def media(timestamp: float) -> str:
    payload = base64.b64encode(bytes([0xFF]) * 160).decode()  # 20 ms of mu-law silence
    return json.dumps({"event": "media", "streamSid": "MZ1",
                       "media": {"track": "inbound", "timestamp": str(timestamp),
                                 "payload": payload}})


def twilio_call() -> TwilioProtocol:
    protocol = TwilioProtocol(Limits())
    protocol.receive_text(json.dumps({"event": "connected"}))
    protocol.receive_text(json.dumps({"event": "start", "start": {
        "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    assert isinstance(protocol.poll()[0], CallStart)
    return protocol


def audio_ms(protocol: TwilioProtocol) -> float:
    return sum(len(e.samples) for e in protocol.poll() if isinstance(e, ChannelAudio)) / 8.0


def test_twilio_timestamp_jumps_cannot_multiply_audio(caplog: pytest.LogCaptureFixture) -> None:
    protocol = twilio_call()
    for i in range(300):  # 300 frames of 20 ms, each 6 s after the one before
        protocol.receive_text(media(i * 6000))
    total = audio_ms(protocol)
    assert total <= 300 * 20 + 5000 + 300 * 20 + 1  # the frames, 5 s, as much again at most
    assert protocol.gaps_skipped > 0 and protocol.skipped_ms > 1_000_000
    assert "timestamp jumped" in caplog.text and "skipped" in caplog.text
    # An honest gap after real audio (a muted track) is still filled in full.
    protocol = twilio_call()
    for i in range(500):  # 10 s of audio
        protocol.receive_text(media(i * 20))
    protocol.receive_text(media(10_000 + 8000))  # then 8 s without media
    protocol.receive_text(media(18_020))
    assert audio_ms(protocol) == pytest.approx(10_000 + 8000 + 40, abs=1)
    assert protocol.gaps_skipped == 0


# ---------------------------------------------------------- 8: topics do not collide
async def test_topic_levels_are_escaped_reversibly(broker: Broker) -> None:
    assert topic_part("q a") == "q%20a" and topic_part("q_a") == "q_a"
    assert topic_part("q%20a") == "q%2520a"  # '%' itself is escaped: no two ids meet
    bus = EventBus()
    publisher = MqttPublisher(MqttConfig(enabled=True, port=broker.port, prefix="emo",
                                         reconnect_min_s=0.1, reconnect_max_s=0.5), bus)
    collector = Collector(broker.port)
    async with running(collector.run()):
        await collector.ready()
        async with running(publisher.run()):
            await until(lambda: publisher.connected)
            bus.publish(sample_emotion("q a", "mono", 0))
            bus.publish(sample_emotion("q_a", "mono", 1))
            got = await collector.wait_for("utterance.emotion", 2)
    topics = {str(m.topic): json.loads(m.payload)["stream_id"] for m in collector.messages
              if str(m.topic).endswith("utterance.emotion")}
    assert topics == {"emo/q%20a/mono/utterance.emotion": "q a",
                      "emo/q_a/mono/utterance.emotion": "q_a"}
    assert len(got) == 2 and event_topic("emo", got[0]) != event_topic("emo", got[1])


# ------------------------------------------------------- 9, 10, 11: subscribers
def test_subscribers_beyond_localhost_without_token_are_warned(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamer.publish.ws_server"):
        WebSocketServer(WebSocketConfig(host="0.0.0.0", port=0), EventBus())
        assert "without websocket.token" in caplog.text
        caplog.clear()
        WebSocketServer(WebSocketConfig(host="0.0.0.0", port=0, token="long-enough-token"),
                        EventBus())
        WebSocketServer(WebSocketConfig(host="127.0.0.1", port=0), EventBus())
        assert "without websocket.token" not in caplog.text


async def stalled_subscriber(port: int) -> socket.socket:
    """A client that does the WebSocket handshake, then never reads (nor answers pings)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            b"Sec-WebSocket-Version: 13\r\n\r\n")
    reply = await asyncio.wait_for(loop.sock_recv(sock, 12), 5)
    assert reply == b"HTTP/1.1 101"
    return sock


async def test_stalled_subscribers_are_capped_per_address_and_freed_soon() -> None:
    server = WebSocketServer(WebSocketConfig(port=0, send_timeout_s=1.0,
                                             max_subscribers_per_address=2), EventBus())
    async with server:
        first, second = (await stalled_subscriber(server.port),
                         await stalled_subscriber(server.port))
        await until(lambda: server.subscribers == 2)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://127.0.0.1:{server.port}/events"):
                pass
        stalled_at = time.monotonic()
        await until(lambda: server.subscribers == 0, timeout=15)
        freed_s = time.monotonic() - stalled_at
        first.close()
        second.close()
    assert refused.value.response.status_code == 503
    assert b"websocket.max_subscribers_per_address" in refused.value.response.body
    assert freed_s < 7.0  # a ping after 1 s idle, 1 s for the pong, 2 s close (was 40-50 s)


async def test_a_dropped_subscriber_is_reported_with_its_lost_events(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus(default_queue_size=50)
    server = WebSocketServer(WebSocketConfig(port=0, send_timeout_s=1.0), bus)
    with caplog.at_level(logging.WARNING, logger="streamer.publish.ws_server"):
        async with server:
            sock = await stalled_subscriber(server.port)
            await until(lambda: server.subscribers == 1)
            for i in range(3000):
                bus.publish(sample_emotion("s1", "mono", i))
                if i % 100 == 0:
                    await asyncio.sleep(0)
            await until(lambda: server.subscribers == 0, timeout=15)
            sock.close()
    assert server.dropped_subscribers == 1 and server.events_undelivered > 1000
    lines = [r.getMessage() for r in caplog.records if "events" in r.getMessage()]
    assert any(f"{server.events_undelivered} events" in line for line in lines), lines


async def test_a_subscriber_that_vanishes_is_reported_with_its_lost_events(
        caplog: pytest.LogCaptureFixture) -> None:
    """Its connection is reset while events wait for it: logged with the count."""
    bus = EventBus(default_queue_size=50)
    server = WebSocketServer(WebSocketConfig(port=0, send_timeout_s=30.0), bus)
    with caplog.at_level(logging.WARNING, logger="streamer.publish.ws_server"):
        async with server:
            sock = await stalled_subscriber(server.port)
            await until(lambda: server.subscribers == 1)
            for i in range(3000):
                bus.publish(sample_emotion("s1", "mono", i))
            await asyncio.sleep(0.5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST
            await until(lambda: server.subscribers == 0, timeout=15)
    assert server.dropped_subscribers == 1 and server.events_undelivered > 1000
    assert "never got" in caplog.text, caplog.text


# ---------------------------------------------------------------- 13, 14, 15: alerts
def test_alert_rule_on_an_unknown_label_is_refused() -> None:
    rules = [{"id": "furious", "kind": "label_count", "label": "furious", "k": 1, "n": 1}]
    with pytest.raises(ConfigError, match="label 'furious' is not a label of the emotion model"
                                          ".*use one of angry, happy, neutral, sad"):
        Supervisor(AlertsConfig(rules=rules), EventBus(), ("angry", "happy", "neutral", "sad"))
    assert parse_rules([{**rules[0], "label": "angry"}], labels=("angry", "sad"))


@pytest.mark.timeout(20)
def test_a_fifo_as_rules_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "rules.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(None, [f"alerts.rules_file={fifo}"])


@pytest.mark.timeout(20)
def test_a_catastrophic_queue_pattern_is_stopped() -> None:
    pattern = "^(?P<queue>(a|aa)+)$"
    load_config(None, [f"alerts.queue_pattern='{pattern}'"])  # valid syntax: accepted
    summaries = CallSummaries(queue_pattern=pattern)
    began = time.monotonic()
    assert summaries.queue_of("a" * 40 + "!") is None
    assert time.monotonic() - began < 1.0 and summaries.queue_timeouts == 1
    assert summaries.queue_of("aaa") == "aaa"


# ------------------------------------------------------------------ 16: enrolment
def test_a_nan_enrolment_recording_is_invalid_not_silent(tmp_path: Path) -> None:
    from streamer.engine.loading import enrolment_audio

    path = tmp_path / "nan.wav"
    sf.write(path, np.full(32000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(ConfigError, match="invalid audio: it holds NaN"):
        enrolment_audio("alice", str(path))


# ------------------------------------------------------------------- 17: replay pace
@pytest.mark.parametrize("pace", [math.nan, math.inf, -1.0, 0.0])
async def test_replay_pace_must_be_finite_and_positive(pace: float) -> None:
    with pytest.raises(ReplayError, match="--pace must be a finite number > 0"):
        await replay("builtin:sample", "raw", url="ws://127.0.0.1:9/ingest/pcm", pace=pace)
