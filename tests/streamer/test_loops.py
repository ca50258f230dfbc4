"""No loops (issue 11 row 5): a final that loops in the short encoder window is decoded
again in Whisper's 30 s window before it is published. Real ASR, real pipeline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.speech import write_wav
from streamer.apps.pipeline import run_pipeline
from streamer.core import events
from streamer.core.config import AppConfig, load_config
from streamer.engine.loading import Models, load_models
from streamer.sources.local import FileSource

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


# Hums that tiny.en loops on in the padded 10 s window (compression ratio 3.5: "I'm not
# going to be able to do that." ...) but not in 30 s: (Hz, swells per second, seconds).
# Which of them loop depends on the kernels CTranslate2 picks for the CPU (the first on an
# AMD EPYC with AVX2, all but the first on a Xeon with AVX-512), so the test takes the
# first that loops here.
HUMS = ((150, 4, 6), (150, 6, 6), (200, 4, 6), (200, 3, 6), (150, 4, 8), (200, 4, 8),
        (150, 6, 8))


def hum(hz: float, swells: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    pad = np.zeros(8000)
    tone = 0.3 * np.sin(2 * np.pi * hz * t) * (0.5 + 0.5 * np.sin(2 * np.pi * swells * t))
    return np.concatenate([pad, tone, pad]).astype(np.float32)


async def test_a_loop_of_the_short_window_is_decoded_again(tmp_path: Path,
                                                           models: Models) -> None:
    for i, shape in enumerate(HUMS):
        wav = write_wav(tmp_path / f"hum{i}.wav", hum(*shape))
        without = await run(models, wav, "asr.redecode_loops=false")
        [looped] = [e for e in without if e["type"] == "utterance.emotion"]
        if looped["abstain_reason"] == "repetitive_text":  # Whisper's compression ratio
            break
    else:
        pytest.fail(f"none of the hums {HUMS} loops in tiny.en's 10 s window on this CPU")
    assert without[-1]["redecoded_utterances"] == 0

    got = await run(models, wav)
    [event] = [e for e in got if e["type"] == "utterance.emotion"]
    assert got[-1]["type"] == "stream.ended" and got[-1]["redecoded_utterances"] == 1
    # The published transcript is the full window's: the loop is gone; "." is no words.
    assert event["text"] != looped["text"] and event["abstain_reason"] == "no_words"
