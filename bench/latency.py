"""Single-stream latency: end of speech to ``utterance.emotion``, on a fixed set of utterances.

Two measurements in one process, so they can be compared as ratios:

1. The pipeline, replaying a fixed espeak-ng conversation in real time, as a
   live source would deliver it; latency comes from each event's breakdown.
2. Per-utterance processing cost of the shared-encoder path (one Whisper
   encoder pass serves ASR and emotion) against a naive baseline (faster-whisper
   ``transcribe()``, then a separate encoder pass for emotion, then fusion).

Usage (from the repository root)::

    .venv/bin/python bench/latency.py --out bench/results/latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.speech import Turn, conversation, synthesize, write_wav  # noqa: E402
from models.inference import EmotionInput  # noqa: E402
from streamer.apps.pipeline import run_pipeline  # noqa: E402
from streamer.core.config import load_config  # noqa: E402
from streamer.engine.loading import Models, load_models  # noqa: E402
from streamer.sources.local import FileSource  # noqa: E402

# Fixed utterances from about 1 s to about 10 s.
TURNS = (
    Turn("Yes.", "en-us+f2"),
    Turn("I am not sure about that.", "en-us+m3"),
    Turn("Thank you so much, this is exactly what I needed today!", "en-us+f2", 70, 180, 130),
    Turn("I have been waiting on hold for forty minutes and nobody can tell me where my "
         "order is.", "en-us+m3", 60, 190, 170),
    Turn("Let me see what I can do. I will check the warehouse system, and then I will call "
         "the courier to find out where the parcel is right now.", "en-us+f2"),
    Turn("My mother is in hospital, and I really cannot deal with this kind of problem at the "
         "moment, I just need someone to fix it for me.", "en-us+m3", 30, 150, 80),
)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def pipeline_latency(models: Models, repeats: int, overrides: list[str]) -> list[dict]:
    """Replay the conversation in real time; return the latency block of every emotion event."""
    latencies: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_wav(Path(tmp) / "conv.wav", conversation(list(TURNS) * repeats, gap_s=1.0))
        config = load_config(None, [f"source.path={wav}", "source.realtime=true",
                                    "websocket.enabled=false", "stdout.enabled=false",
                                    *overrides])
        collected: list[dict] = []

        async def attach(bus, server) -> None:  # type: ignore[no-untyped-def]
            sub = bus.subscribe("bench", accept=lambda e: e["type"] == "utterance.emotion")

            async def drain() -> None:
                while True:
                    collected.append(await sub.get())

            asyncio.get_running_loop().create_task(drain())

        await run_pipeline(config, FileSource(config.source), models, on_ready=attach)
        await asyncio.sleep(0.1)
        for event in collected:
            latencies.append({**event["latency"], "duration_s": event["t_end"] - event["t_start"]})
    return latencies


def processing_cost(models: Models, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per utterance: shared encoder pass vs naive separate passes."""
    shared, naive = [], []
    audios = [synthesize(t) for t in TURNS]
    for _ in range(repeats):
        for audio in audios:
            t0 = time.perf_counter()
            tr = models.asr.transcribe(audio, final=True)
            models.emotion.predict([EmotionInput(audio=audio, text=tr.text,
                                                 whisper_frames=tr.encoder_frames)])
            shared.append((time.perf_counter() - t0) * 1000)

            t0 = time.perf_counter()
            segments, _ = models.whisper.transcribe(audio, language="en", beam_size=1,
                                                    word_timestamps=True)
            text = " ".join(s.text.strip() for s in segments)
            models.emotion.predict([EmotionInput(audio=audio, text=text)])  # encodes again
            naive.append((time.perf_counter() - t0) * 1000)
    return {"shared_ms": shared, "naive_ms": naive}


def latency_stats(latencies: list[dict]) -> dict:
    total = [lat["total_ms"] for lat in latencies]
    after_hangover = [lat["total_ms"] - lat["vad_hangover_ms"] for lat in latencies]
    return {
        "utterances": len(latencies),
        "total_ms": {"p50": percentile(total, 50), "p95": percentile(total, 95),
                     "max": max(total) if total else None},
        "after_hangover_ms": {"p50": percentile(after_hangover, 50),
                              "p95": percentile(after_hangover, 95)},
        "mean_breakdown_ms": {k: statistics.fmean(lat[k] for lat in latencies)
                              for k in ("vad_hangover_ms", "queue_ms", "asr_ms", "fusion_ms")},
        "per_utterance": latencies,
    }


def summarize(runs: dict[str, list[dict]], cost: dict[str, list[float]]) -> dict:
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count()},
        "runs": {name: latency_stats(lat) for name, lat in runs.items()},
        "processing_cost": {
            "shared_p50_ms": percentile(cost["shared_ms"], 50),
            "naive_p50_ms": percentile(cost["naive_ms"], 50),
            "naive_over_shared": percentile(cost["naive_ms"], 50)
            / percentile(cost["shared_ms"], 50),
        },
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, stats in result["runs"].items():
        xs = [u["duration_s"] for u in stats["per_utterance"]]
        ys = [u["total_ms"] - u["vad_hangover_ms"] for u in stats["per_utterance"]]
        ax.scatter(xs, ys, label=name)
    ax.set_xlabel("utterance duration (s)")
    ax.set_ylabel("end of speech to event, minus hangover (ms)")
    ax.set_title("Single-stream latency, 2-core CPU, tiny.en int8")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="times the utterance set is played")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument("--plot", type=Path, help="write a latency-vs-duration plot (PNG)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override, as for emotion-stream run")
    args = parser.parse_args()
    models = load_models(load_config(None, args.overrides))
    runs = {}
    for name, flag in (("speculative", "true"), ("no speculation", "false")):
        runs[name] = asyncio.run(pipeline_latency(
            models, args.repeats, [*args.overrides, f"asr.speculative={flag}"]))
    cost = processing_cost(models, args.repeats)
    result = summarize(runs, cost)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, args.plot)
    for name, stats in result["runs"].items():
        print(f"[{name}] utterances: {stats['utterances']}")
        print(f"  end of speech -> event, total:          p50 {stats['total_ms']['p50']:.0f} ms,"
              f" p95 {stats['total_ms']['p95']:.0f} ms")
        print(f"  end of speech -> event, minus hangover: p50 "
              f"{stats['after_hangover_ms']['p50']:.0f} ms, "
              f"p95 {stats['after_hangover_ms']['p95']:.0f} ms")
        print("  mean breakdown:", {k: round(v, 1) for k, v in stats["mean_breakdown_ms"].items()})
    pc = result["processing_cost"]
    print(f"processing per utterance: shared encoder {pc['shared_p50_ms']:.0f} ms, naive "
          f"{pc['naive_p50_ms']:.0f} ms (naive/shared = {pc['naive_over_shared']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
