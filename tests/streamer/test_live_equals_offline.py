"""Live equals offline (issue 11 row 4): speculation and partials are latency devices only.

The same human speech (the bundled sample: 8 RAVDESS clips of 4 actors) replayed in real
time, where partials run and the final passes start speculatively at the first pause, and
with ``--fast``, where the ASR is busy and neither happens, gives identical final
transcripts, word times, labels and probabilities. Real ASR and the shipped bundle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamer.apps.pipeline import RunSummary, run_pipeline
from streamer.core.config import load_config
from streamer.engine.loading import Models, load_models
from streamer.sources.local import FileSource

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models() -> Models:
    # One model serves both runs: without adaptation, the second run does not start from
    # the statistics the first one left (the same audio twice is not a deployment).
    return load_models(load_config(None, ["emotion.adaptation=false"]))


async def finals(models: Models, realtime: bool) -> tuple[list[dict[str, Any]], RunSummary]:
    config = load_config(None, ["websocket.enabled=false", "stdout.enabled=false",
                                "source.path=builtin:sample", f"source.realtime={realtime}"])
    got: list[dict[str, Any]] = []

    async def ready(bus, server) -> None:  # type: ignore[no-untyped-def]
        sub = bus.subscribe("test", lambda e: e["type"] == "utterance.emotion", 10_000)

        async def read() -> None:
            while True:
                got.append(await sub.get())

        asyncio.get_running_loop().create_task(read())

    summary = await run_pipeline(config, FileSource(config.source), models, on_ready=ready)
    await asyncio.sleep(0.1)
    return got, summary


def final_view(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["t_start"], event["t_end"], event["text"], event["words"], event["label"],
            event["probabilities"])


async def test_real_time_with_speculation_equals_fast(models: Models) -> None:
    live, live_summary = await finals(models, realtime=True)
    fast, _ = await finals(models, realtime=False)
    # The live run used the latency devices (else this would prove nothing) ...
    assert live_summary.recognition.speculations_reused >= 4
    # the emotion model's own audio pass (every Whisper layer) was computed ahead too
    assert live_summary.recognition.audio_passes_ahead == \
        live_summary.recognition.speculations_reused
    assert live_summary.recognition.partials_published >= 1
    # ... and published exactly what the offline run did.
    assert len(live) == len(fast) == 8
    assert [final_view(e) for e in live] == [final_view(e) for e in fast]
    assert live_summary.recognition.redecodes == 0  # no loop detected in real speech
