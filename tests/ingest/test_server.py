"""Real WebSocket clients speaking each protocol to the ingest server.

The recognizer here is a recording stand-in behind the same ``run_channel`` seam, so these
tests check the ingest layer itself (handshakes, auth, tracks, decoded audio, errors,
disconnects, state freed) quickly; tests/ingest/test_calls_e2e.py runs the real models.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamer.audio.telephony import ulaw_decode, ulaw_encode
from streamer.core.channel import Channel
from streamer.core.config import IngestConfig
from streamer.core.messages import AudioChunk, AudioPause
from streamer.ingest.clients import CallAudio, send_audiohook, send_pcm, send_twilio
from streamer.ingest.server import IngestServer


@dataclass
class Recorded:
    source: str
    audio: list[np.ndarray] = field(default_factory=list)
    pauses_at: list[int] = field(default_factory=list)  # samples received before each pause
    done: bool = False
    end_reason: str = ""


class RecordingRecognizer:
    """Stands in for Recognizer.run_channel: keeps every chunk it is given."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.channels: dict[tuple[str, str], Recorded] = {}
        self.delay_s = delay_s

    async def run_channel(self, channel: Channel) -> int:
        rec = self.channels.setdefault((channel.stream_id, channel.channel),
                                       Recorded(channel.describe()))
        async for item in channel.chunks():
            if isinstance(item, AudioPause):
                rec.pauses_at.append(sum(len(a) for a in rec.audio))
                continue
            assert isinstance(item, AudioChunk)
            assert item.stream_id == channel.stream_id and item.channel == channel.channel
            rec.audio.append(item.samples)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        rec.done = True
        rec.end_reason = channel.end_reason
        return 0

    def audio(self, stream_id: str, channel: str) -> np.ndarray:
        return np.concatenate(self.channels[(stream_id, channel)].audio)


def make_config(**overrides: object) -> IngestConfig:
    values: dict[str, object] = {"port": 0, "token": "pcm-secret",
                                 "twilio_auth_token": "tw-secret",
                                 "twilio_public_url": "wss://calls.example.com",
                                 "audiohook_api_key": "ah-key", **overrides}
    return IngestConfig(**values)  # type: ignore[arg-type]


async def started(config: IngestConfig, recognizer: RecordingRecognizer
                  ) -> tuple[IngestServer, str]:
    server = IngestServer(config, recognizer)  # type: ignore[arg-type]
    await server.__aenter__()
    return server, f"ws://127.0.0.1:{server.port}"


def tone_call(stream_id: str, seconds: float = 1.0) -> CallAudio:
    t = np.arange(int(8000 * seconds)) / 8000
    return CallAudio(stream_id, (
        (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32),
        (0.3 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)))


def expected_16k(party: np.ndarray) -> np.ndarray:
    """What the server should hand on: the mu-law-quantised party, upsampled once."""
    decoded = ulaw_decode(ulaw_encode(party)).astype(np.float32) / 32768
    return soxr.resample(decoded, 8000, 16000, quality="HQ").astype(np.float32)


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    n = min(len(got), len(want))
    assert abs(len(got) - len(want)) <= 64
    assert np.max(np.abs(got[: n - 64] - want[: n - 64])) < 1e-3


async def test_twilio_both_tracks_decode_to_the_right_parties() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        call = tone_call("CA-twilio")
        report = await send_twilio(f"{base}/ingest/twilio", call, pace=20,
                                   auth_token="tw-secret",
                                   signed_url="wss://calls.example.com/ingest/twilio")
        await wait_for(lambda: rec.channels.get(("twilio:CA-twilio", "agent"), Recorded("")).done)
    finally:
        await server.__aexit__()
    assert report.close_code in (1000, None) or report.close_code == 1000
    # The events carry the route: twilio:<callSid> (ingest.namespace_stream_ids).
    assert_close(rec.audio("twilio:CA-twilio", "customer"), expected_16k(call.parties[0]))
    assert_close(rec.audio("twilio:CA-twilio", "agent"), expected_16k(call.parties[1]))
    assert "tracks inbound,outbound party customer" in rec.channels[("twilio:CA-twilio",
                                                                     "customer")].source
    assert server.calls == {} and server.stats.calls_finished == 1


async def test_audiohook_session_decodes_stereo_and_closes() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        call = tone_call("6f1e2d3c-aaaa-bbbb-cccc-000000000001")
        report = await send_audiohook(f"{base}/ingest/audiohook", call, pace=20,
                                      api_key="ah-key")
        await wait_for(lambda: all(r.done for r in rec.channels.values()) and
                       len(rec.channels) == 2)
    finally:
        await server.__aexit__()
    types = [m["type"] for m in report.replies]
    assert types == ["opened", "closed"]
    stream_id = f"audiohook:{call.stream_id}"  # audiohook:<conversationId>
    assert_close(rec.audio(stream_id, "customer"), expected_16k(call.parties[0]))
    assert_close(rec.audio(stream_id, "agent"), expected_16k(call.parties[1]))


async def test_raw_pcm_call() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        call = tone_call("pcm-1")
        report = await send_pcm(f"{base}/ingest/pcm", call, pace=20, token="pcm-secret")
        await wait_for(lambda: len(rec.channels) == 2 and all(
            r.done for r in rec.channels.values()))
    finally:
        await server.__aexit__()
    assert [m["type"] for m in report.replies] == ["started", "stopped"]
    assert report.replies[0]["stream_id"] == "pcm-1"
    assert report.replies[0]["published_stream_id"] == "pcm:pcm-1"
    pcm = np.round(call.parties[0] * 32767).astype(np.float32) / 32768
    want = soxr.resample(pcm, 8000, 16000, quality="HQ")
    assert_close(rec.audio("pcm:pcm-1", "customer"), want)


@pytest.mark.parametrize("path,headers", [
    ("/ingest/pcm", {}),
    ("/ingest/pcm", {"Authorization": "Bearer wrong"}),
    ("/ingest/twilio", {}),
    ("/ingest/twilio", {"X-Twilio-Signature": "bm9wZQ=="}),
    ("/ingest/audiohook", {"X-API-KEY": "wrong"}),
])
async def test_unauthenticated_clients_are_refused(path: str, headers: dict[str, str]) -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{base}{path}", additional_headers=headers):
                pass
        assert info.value.response.status_code == 401
        assert b"error" in info.value.response.body
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{base}/nowhere"):
                pass
        assert info.value.response.status_code == 404
    finally:
        await server.__aexit__()
    assert server.stats.refused_auth == 1 and rec.channels == {}


async def test_too_many_calls_are_refused_with_503() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(max_calls=1), rec)
    try:
        async with connect(f"{base}/ingest/pcm?token=pcm-secret"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"{base}/ingest/pcm?token=pcm-secret"):
                    pass
            assert info.value.response.status_code == 503
    finally:
        await server.__aexit__()


async def test_malformed_call_is_closed_without_affecting_another() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        good = asyncio.create_task(send_twilio(
            f"{base}/ingest/twilio", tone_call("CA-good", 2.0), pace=4, auth_token="tw-secret",
            signed_url="wss://calls.example.com/ingest/twilio"))
        async with connect(f"{base}/ingest/pcm?token=pcm-secret&stream_id=bad&channels=2"
                           ) as bad:
            assert json.loads(await bad.recv())["type"] == "started"
            await bad.send(b"\x00\x01\x02")  # not whole 4-byte frames
            error = json.loads(await bad.recv())
            assert error["type"] == "error" and "whole number" in error["message"]
            await bad.wait_closed()
            assert bad.close_code == 1007
        async with connect(f"{base}/ingest/audiohook", additional_headers={
                "X-API-KEY": "ah-key"}) as ah:
            await ah.send("[1, 2]")
            message = json.loads(await ah.recv())
            assert message["type"] == "disconnect" and message["parameters"]["reason"] == "error"
            await ah.wait_closed()
        report = await good
        await wait_for(lambda: rec.channels.get(("twilio:CA-good", "agent"), Recorded("")).done)
    finally:
        await server.__aexit__()
    assert report.close_code == 1000
    assert len(rec.audio("twilio:CA-good", "customer")) == pytest.approx(32000, abs=64)
    assert server.stats.protocol_failures == 2


async def test_disconnect_mid_call_ends_the_call_and_frees_it() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        report = await send_twilio(f"{base}/ingest/twilio", tone_call("CA-cut", 2.0), pace=10,
                                   auth_token="tw-secret",
                                   signed_url="wss://calls.example.com/ingest/twilio",
                                   disconnect_at_s=0.7)
        await wait_for(lambda: len(rec.channels) == 2 and all(
            r.done for r in rec.channels.values()))
        await wait_for(lambda: server.calls == {})
    finally:
        await server.__aexit__()
    assert report.sent_s == pytest.approx(0.7, abs=0.03)
    assert len(rec.audio("twilio:CA-cut", "customer")) == pytest.approx(0.7 * 16000, abs=400)
    assert {r.end_reason for r in rec.channels.values()} == {"client_closed"}


async def test_slow_recognizer_pushes_back_instead_of_buffering() -> None:
    rec = RecordingRecognizer(delay_s=0.02)  # 100 ms chunks consumed at 5x real time
    server, base = await started(make_config(channel_queue_chunks=2), rec)
    try:
        await send_pcm(f"{base}/ingest/pcm", tone_call("pcm-slow", 3.0), pace=1000,
                       token="pcm-secret")
        await wait_for(lambda: len(rec.channels) == 2 and all(
            r.done for r in rec.channels.values()), timeout=20)
    finally:
        await server.__aexit__()
    assert len(rec.audio("pcm:pcm-slow", "agent")) == pytest.approx(48000, abs=64)  # nothing lost


async def test_health_endpoint() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read(4096)
        writer.close()
    finally:
        await server.__aexit__()
    assert b"200 OK" in data and b'"calls": 0' in data


async def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_audiohook_pause_reaches_the_recognizer_as_a_pause() -> None:
    from websockets.asyncio.client import connect as ws_connect

    from streamer.ingest.clients import AudioHookClient

    rec = RecordingRecognizer()
    server, base = await started(make_config(), rec)
    try:
        async with ws_connect(f"{base}/ingest/audiohook",
                              additional_headers={"X-API-KEY": "ah-key"}) as ws:
            client = AudioHookClient(ws, "5d1c0a7e-0000-4000-8000-000000000001")
            reader = asyncio.create_task(client.read())
            await client.send("open", client.open_parameters("conv-pause"))
            await client.expect("opened")
            await ws.send(bytes([0x80, 0x00]) * 800)  # 100 ms, loud on both channels
            await client.send("paused", {})
            await client.send("ping", {})
            await client.expect("pong")
            await client.send("resumed", {"start": "PT0.1S", "discarded": "PT2S"})
            await ws.send(bytes([0xFF, 0xFF]) * 800)
            await client.send("close", {"reason": "end"})
            await client.expect("closed")
        await reader
        await wait_for(lambda: len(rec.channels) == 2 and all(
            r.done for r in rec.channels.values()))
    finally:
        await server.__aexit__()
    audio = rec.audio("audiohook:conv-pause", "agent")
    assert len(audio) == pytest.approx((0.1 + 0.1) * 16000, abs=64)  # no silence injected
    # The pause arrives after the loud 100 ms (all of it, drained from the upsampler).
    pauses = rec.channels[("audiohook:conv-pause", "agent")].pauses_at
    assert pauses == [pytest.approx(1600, abs=64)]


async def test_idle_connection_and_duplicate_stream_are_closed() -> None:
    rec = RecordingRecognizer()
    server, base = await started(make_config(idle_timeout_s=0.3), rec)
    try:
        async with connect(f"{base}/ingest/pcm?token=pcm-secret") as idle:
            await idle.wait_closed()
            assert idle.close_code == 1008 and "no message" in (idle.close_reason or "")
        url = f"{base}/ingest/pcm?token=pcm-secret&stream_id=dup"
        async with connect(url) as first, connect(url) as second:
            await first.recv()
            await second.wait_closed()
            assert second.close_code == 1008 and "already active" in second.close_reason
    finally:
        await server.__aexit__()
