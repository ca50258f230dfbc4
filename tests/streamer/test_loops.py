"""No loops (issue 11 row 5): a final that loops in the short encoder window is decoded
again in Whisper's 30 s window before it is published. Real ASR, real pipeline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer import events
from streamer.config import AppConfig, load_config
from streamer.pipeline import run_pipeline
from streamer.runtime import Models, load_models
from streamer.sources import FileSource
from tests.speech import write_wav

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models() -> Models:
    return load_models(AppConfig())


async def run(models: Models, wav: Path, *overrides: str) -> list[dict[str, Any]]:
    # One utterance for the whole signal: no turn cut inside it (the hum's troughs are
    # pauses to the turn rule).
    config = load_config(None, ["websocket.enabled=false", "stdout.enabled=false",
                                "source.realtime=false", f"source.path={wav}",
                                "segmenter.turn_soft_s=15",
                                "alerts.enabled=false",  # stream.ended is the last event
                                *overrides])
    got: list[dict[str, Any]] = []

    readers: list[asyncio.Task[None]] = []

    async def ready(bus, server) -> None:  # type: ignore[no-untyped-def]
        sub = bus.subscribe("test", maxsize=10_000)

        async def read() -> None:
            while True:
                got.append(await sub.get())

        readers.append(asyncio.create_task(read()))

    await run_pipeline(config, FileSource(config.source), models, on_ready=ready)
    await asyncio.sleep(0.1)
    readers[0].cancel()
    for event in got:
        events.validate_event(event)
    return got


async def test_a_loop_of_the_short_window_is_decoded_again(tmp_path: Path,
                                                           models: Models) -> None:
    # tiny.en loops on 6 s of a 150 Hz hum swelling 4 times a second in the padded 10 s
    # window (compression ratio 3.3: "I'm not going to be able to do it." ...) but not in 30 s.
    t = np.arange(6 * 16000) / 16000
    pad = np.zeros(8000)
    hum = 0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    wav = write_wav(tmp_path / "hum.wav", np.concatenate([pad, hum, pad]).astype(np.float32))

    without = await run(models, wav, "asr.redecode_loops=false")
    [looped] = [e for e in without if e["type"] == "utterance.emotion"]
    assert looped["abstain_reason"] == "repetitive_text"  # Whisper's compression ratio 3.3
    assert without[-1]["redecoded_utterances"] == 0

    got = await run(models, wav)
    [event] = [e for e in got if e["type"] == "utterance.emotion"]
    assert got[-1]["type"] == "stream.ended" and got[-1]["redecoded_utterances"] == 1
    # The published transcript is the full window's: the loop is gone; "." is no words.
    assert event["text"] != looped["text"] and event["abstain_reason"] == "no_words"
