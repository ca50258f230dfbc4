"""Roles on replay and file input (issue 33): ``--roles`` names a stereo file's channels.

A real stereo WAV: channel 0 holds one RAVDESS clip (actor 01) early in the call, channel 1
another (actor 11) later. Replayed with ``--roles agent,customer`` over raw PCM and over
Twilio, and read by ``run --roles agent,customer`` (``source.channel_names``, the same
concept), the early utterance must come out on the channel named ``agent`` and the late one
on ``customer``. A count of names that does not match the file's channels is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamer.apps.pipeline import run_pipeline
from streamer.apps.service import Service
from streamer.audio.audio_io import read_audio_file
from streamer.audio.telephony import TELEPHONY_RATE
from streamer.cli import build_parser, main, source_overrides
from streamer.core.config import load_config
from streamer.core.errors import AudioInputError, ConfigError
from streamer.engine.loading import Models, load_models
from streamer.publish.bus import EventBus, Subscription
from streamer.publish.ws_server import WebSocketServer
from streamer.sources.local import make_source
from streamer.sources.replay import (
    ReplayError,
    ReplayProtocol,
    load_call,
    parse_roles,
    replay,
    replayed_stream_id,
)
from tests.service import Subscriber, subscribed_service

RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
EARLY = "Actor_01/03-01-05-02-01-01-01.flac"  # channel 0
LATE = "Actor_11/03-01-03-02-02-01-11.flac"  # channel 1
RATE = 16000
LATE_START_S = 6.0  # channel 1 speaks from here; channel 0 is silent by then

needs_ravdess = pytest.mark.needs_corpus("ravdess")
BASE_CONFIG = ["websocket.port=0", "stdout.enabled=false", "ingest.port=0",
               "ingest.warmup=false", "ingest.token=pcm-token", "emotion.adaptation=false"]


@pytest.fixture(scope="module")
def stereo_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    early, late = read_audio_file(RAVDESS / EARLY), read_audio_file(RAVDESS / LATE)
    start = int(LATE_START_S * RATE)
    assert int(0.3 * RATE) + len(early) < start - RATE  # a second of silence between them
    audio = np.zeros((start + len(late) + RATE, 2), dtype=np.float32)
    audio[int(0.3 * RATE): int(0.3 * RATE) + len(early), 0] = early
    audio[start: start + len(late), 1] = late
    path = tmp_path_factory.mktemp("roles") / "call.wav"
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def mono_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roles") / "mono.wav"
    sf.write(path, read_audio_file(RAVDESS / EARLY), RATE, subtype="PCM_16")
    return path


def test_parse_roles_applies_the_edge_rule() -> None:
    assert parse_roles("agent, customer") == ("agent", "customer")
    for bad in ("customer,customer", "customer,a/b", "customer,", "a\x00b"):
        with pytest.raises(ReplayError):
            parse_roles(bad)


@needs_ravdess
def test_roles_count_must_match_the_channels(stereo_wav: Path, mono_wav: Path) -> None:
    with pytest.raises(AudioInputError, match="has 2 channel.*--roles names 1"):
        load_call(str(stereo_wav), "c", "raw", ("customer",))
    with pytest.raises(AudioInputError, match="has 1 channel.*--roles names 2"):
        load_call(str(mono_wav), "c", "raw", ("customer", "agent"))


@needs_ravdess
def test_twilio_sends_the_named_customer_first(stereo_wav: Path) -> None:
    plain = load_call(str(stereo_wav), "c", "twilio")
    swapped = load_call(str(stereo_wav), "c", "twilio", ("agent", "customer"))
    assert np.array_equal(swapped.parties[0], plain.parties[1])
    assert np.array_equal(swapped.parties[1], plain.parties[0])
    assert swapped.parties[0].shape[0] / TELEPHONY_RATE == pytest.approx(plain.seconds)
    with pytest.raises(ReplayError, match="customer and agent only"):
        load_call(str(stereo_wav), "c", "twilio", ("caller", "agent"))


@needs_ravdess
def test_cli_refuses_a_roles_count_that_does_not_match(
        stereo_wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before connecting: no server needed.
    assert main(["replay", str(stereo_wav), "--roles", "customer,agent,supervisor",
                 "--url", "ws://127.0.0.1:9/ingest/pcm"]) == 2
    assert "has 2 channel(s) but --roles names 3" in capsys.readouterr().err


def test_run_roles_is_source_channel_names() -> None:
    args = build_parser().parse_args(["run", "--roles", "agent,customer"])
    config = load_config(None, source_overrides(args))
    assert (config.source.channels, config.source.channel_names) == ("split",
                                                                     "agent,customer")
    with pytest.raises(ConfigError, match="channel_names"):
        load_config(None, source_overrides(build_parser().parse_args(
            ["run", "--roles", "agent,cus\u200btomer"])))


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models(load_config(None, BASE_CONFIG))


@pytest.fixture
async def service(models: Models) -> AsyncIterator[tuple[Service, Subscriber]]:
    async with subscribed_service(load_config(None, BASE_CONFIG), models) as (svc, sub):
        yield svc, sub


def assert_parties_follow_roles(got: list[dict[str, Any]]) -> None:
    """Channel 0 (named agent) spoke first, channel 1 (customer) after LATE_START_S."""
    assert {e["channel"] for e in got} == {"agent", "customer"}, got
    for event in got:
        early = event["t_start"] < LATE_START_S - 0.5
        assert event["channel"] == ("agent" if early else "customer"), event


@pytest.mark.slow
@needs_ravdess
async def test_replay_roles_name_the_events_channels(
        stereo_wav: Path, service: tuple[Service, Subscriber]) -> None:
    svc, sub = service
    base = f"ws://127.0.0.1:{svc.ingest.port}"
    calls: tuple[tuple[ReplayProtocol, str, str | None], ...] = (
        ("raw", f"{base}/ingest/pcm", "pcm-token"), ("twilio", f"{base}/ingest/twilio", None))
    for protocol, url, token in calls:
        client_id = f"roles-{protocol}"
        result = await replay(str(stereo_wav), protocol, url=url, token=token, pace=4,
                              stream_id=client_id, roles=("agent", "customer"))
        stream_id = replayed_stream_id(protocol, client_id)
        assert result.roles == ("agent", "customer")
        assert_parties_follow_roles(await sub.emotions_when_ended(stream_id))


@pytest.mark.slow
@needs_ravdess
async def test_run_roles_name_the_events_channels(stereo_wav: Path, models: Models) -> None:
    args = build_parser().parse_args(["run", "--source", str(stereo_wav), "--fast",
                                      "--roles", "agent,customer"])
    config = load_config(None, BASE_CONFIG + ["websocket.enabled=false"]
                         + source_overrides(args))
    subs: list[Subscription] = []

    async def on_ready(bus: EventBus, _: WebSocketServer | None) -> None:
        subs.append(bus.subscribe("test", lambda e: e["type"] == "utterance.emotion", 1000))

    await run_pipeline(config, make_source(config.source), models, on_ready)
    got = []
    while (event := subs[0].get_nowait()) is not None:
        got.append(event)
    assert_parties_follow_roles(got)
