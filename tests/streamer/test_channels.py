"""Channels from any source (issue 11 row 2): ``run --channels split`` gives one channel of
events per input channel, and ``emotion-stream replay`` sends a recording into a running
``serve``. Real espeak-ng speech, the real ASR and bundle, real servers on loopback."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.net import free_port
from harness.speech import Turn, espeak_available, synthesize
from offline_training.metrics import word_error_rate as wer
from streamer.apps.pipeline import run_pipeline
from streamer.apps.service import Service
from streamer.core import events
from streamer.core.config import AppConfig, SourceConfig, load_config
from streamer.core.errors import AudioInputError, ConfigError
from streamer.engine.loading import Models, load_models
from streamer.sources.local import FileSource, SplitSource, StdinSource, make_source
from streamer.sources.replay import ReplayError, default_url, replay, replayed_stream_id
from tests.service import subscribed_service

CUSTOMER = Turn("I have been waiting for an hour and nobody helps me with my order.",
                "en-us+m3", 60, 180, 150)
AGENT = Turn("I am so sorry, let me look at your account right now.", "en-us+f2", 50, 165, 60)


@pytest.fixture(scope="module")
def stereo_call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Customer left, agent right; the quieter agent starts while the customer still talks
    (a mono mix merges the two lines)."""
    customer, agent = synthesize(CUSTOMER), synthesize(AGENT)
    lead = 8000
    agent_at = lead + len(customer) - 16000  # one second of overlap
    total = agent_at + len(agent) + 16000
    audio = np.zeros((total, 2), np.float32)
    audio[lead:lead + len(customer), 0] = customer
    audio[agent_at:agent_at + len(agent), 1] = agent
    path = tmp_path_factory.mktemp("call") / "call.wav"
    sf.write(str(path), audio, 16000, subtype="PCM_16")
    return path


# ---------------------------------------------------------------- sources, no models


def tone_file(path: Path, channels: int, rate: int = 44100, seconds: float = 1.0) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    audio = np.stack([0.1 * (i + 1) * np.sin(2 * np.pi * 220 * (i + 1) * t)
                      for i in range(channels)], axis=1).astype(np.float32)
    sf.write(str(path), audio, rate)
    return path


async def collect(source: SplitSource) -> dict[str, np.ndarray]:
    got: dict[str, list[np.ndarray]] = {c.channel: [] for c in source.channels}

    async def drain(channel) -> None:  # type: ignore[no-untyped-def]
        starts = []
        async for chunk in channel.chunks():
            assert chunk.channel == channel.channel and chunk.stream_id == source.stream_id
            starts.append(chunk.t_start)
            got[channel.channel].append(chunk.samples)
        assert starts == sorted(starts)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(source.run())
        for channel in source.channels:
            tg.create_task(drain(channel))
    return {name: np.concatenate(parts) for name, parts in got.items()}


async def test_split_file_gives_one_channel_per_input_channel(tmp_path: Path) -> None:
    path = tone_file(tmp_path / "three.wav", 3)
    source = make_source(SourceConfig(path=str(path), realtime=False, channels="split",
                                      channel_names="agent,customer,supervisor"))
    assert isinstance(source, SplitSource)
    audio = await collect(source)
    assert list(audio) == ["agent", "customer", "supervisor"]
    for i, name in enumerate(audio):
        assert abs(len(audio[name]) - 16000) < 50  # resampled to 16 kHz, nothing lost
        # each channel keeps its own level (0.1, 0.2, 0.3 peak): not mixed
        assert np.max(np.abs(audio[name][1000:-1000])) == pytest.approx(0.1 * (i + 1), abs=0.01)


async def test_split_stdin_and_default_names() -> None:
    stereo = np.zeros((8000, 2), np.float32)
    stereo[:, 1] = 0.5
    raw = io.BytesIO((stereo * 32767).astype("<i2").tobytes())
    config = SourceConfig(kind="stdin", stdin_sample_rate=8000, stdin_channels=2,
                          channels="split")
    source = SplitSource(StdinSource(config, stream=raw), ("ch0", "ch1"), config.chunk_ms)
    audio = await collect(source)
    assert np.max(np.abs(audio["ch0"])) < 1e-3 and np.median(audio["ch1"]) == pytest.approx(
        0.5, abs=0.01)


def test_channel_names_must_match_the_input(tmp_path: Path) -> None:
    path = tone_file(tmp_path / "stereo.wav", 2)
    with pytest.raises(AudioInputError, match="2 channel.*3 channel name"):
        make_source(SourceConfig(path=str(path), channels="split", channel_names="a,b,c"))
    with pytest.raises(AudioInputError, match="twice"):
        make_source(SourceConfig(path=str(path), channels="split", channel_names="a,a"))
    with pytest.raises(ConfigError, match="channels=split"):
        load_config(None, ["source.channel_names=a,b"])
    with pytest.raises(ConfigError, match="channel_names"):
        load_config(None, ["source.channels=split", "source.channel_names=a/b,c"])
    # the default stays one mono channel
    assert isinstance(make_source(SourceConfig(path=str(path))), FileSource)


def test_replay_to_nothing_listening_is_a_clear_error(tmp_path: Path) -> None:
    path = tone_file(tmp_path / "stereo.wav", 2)
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "replay", str(path), "--protocol", "raw",
         "--url", default_url("raw", port=free_port())],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "cannot reach" in result.stderr and "serve" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- real models

needs_speech = pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng")


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models(AppConfig())


@pytest.mark.slow
@needs_speech
async def test_run_split_stereo_call_gives_per_party_events(stereo_call: Path,
                                                            models: Models) -> None:
    config = load_config(None, [
        "websocket.enabled=false", "stdout.enabled=false", "source.realtime=false",
        f"source.path={stereo_call}", "source.stream_id=call1", "source.channels=split",
        "source.channel_names=customer,agent"])
    got: list[dict] = []

    async def ready(bus, server) -> None:  # type: ignore[no-untyped-def]
        sub = bus.subscribe("test", maxsize=10_000)

        async def read() -> None:
            while True:
                got.append(await sub.get())

        asyncio.get_running_loop().create_task(read())

    summary = await run_pipeline(config, make_source(config.source), models, on_ready=ready)
    await asyncio.sleep(0.1)
    for event in got:
        events.validate_event(event)
    emotions = {e["channel"]: e for e in got if e["type"] == "utterance.emotion"}
    assert summary.utterances == 2 and set(emotions) == {"customer", "agent"}
    assert wer(CUSTOMER.text, emotions["customer"]["text"]) <= 0.3
    # the agent's overlapped, quieter line is not lost
    assert wer(AGENT.text, emotions["agent"]["text"]) <= 0.3
    assert emotions["agent"]["t_start"] < emotions["customer"]["t_end"]  # they overlap
    ended = {e["channel"]: e for e in got if e["type"] == "stream.ended"}
    assert set(ended) == {"customer", "agent"}
    assert all(e["stream_id"] == "call1" and e["utterances"] == 1 for e in ended.values())


@pytest.fixture
async def service(models: Models) -> AsyncIterator[tuple[Service, list[dict]]]:
    config = load_config(None, ["ingest.port=0", "websocket.port=0", "stdout.enabled=false",
                                "ingest.warmup=false", "ingest.token=pcm-secret",
                                "ingest.twilio_auth_token=tw-secret"])
    async with subscribed_service(config, models) as (svc, sub):
        yield svc, sub.messages


@pytest.mark.slow
@needs_speech
async def test_replay_into_serve_over_twilio_and_raw(
        stereo_call: Path, service: tuple[Service, list[dict]]) -> None:
    svc, messages = service
    port = svc.ingest.port
    twilio = await replay(str(stereo_call), "twilio", url=default_url("twilio", port=port),
                          token="tw-secret", pace=2.0, stream_id="CAreplay")
    assert twilio.parties == 2 and twilio.report.sent_s == pytest.approx(twilio.audio_s,
                                                                           abs=0.05)
    with pytest.raises(ReplayError, match="HTTP 401.*--token"):
        await replay(str(stereo_call), "raw", url=default_url("raw", port=port),
                     token="wrong", pace=4.0)
    # the user-facing command, in its own process, against the same server
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer.cli", "replay", str(stereo_call), "--protocol", "raw",
        "--url", default_url("raw", port=port), "--token", "pcm-secret", "--pace", "2",
        "--stream-id", "raw-replay", stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(cli.communicate(), 120)
    assert cli.returncode == 0, err.decode()
    assert "replayed" in out.decode() and "2 parties" in out.decode()

    async with asyncio.timeout(120):
        while sum(m["type"] == "stream.ended" for m in messages) < 4:
            await asyncio.sleep(0.05)
    for message in messages:
        events.validate_event(message)
    for stream_id in (replayed_stream_id("twilio", "CAreplay"),
                      replayed_stream_id("raw", "raw-replay")):
        emotions = {m["channel"]: m for m in messages
                    if m["type"] == "utterance.emotion" and m["stream_id"] == stream_id}
        assert set(emotions) == {"customer", "agent"}, stream_id
        assert wer(CUSTOMER.text, emotions["customer"]["text"]) <= 0.35
        assert wer(AGENT.text, emotions["agent"]["text"]) <= 0.35

