"""Live equals offline: the same file in real time (speculation, partials) and with ``--fast``.

Runs each audio file through ``run_pipeline`` twice in one process, paced at real time and
as fast as possible, and compares the final events utterance by utterance: boundaries,
transcripts, labels. Issue 11 row 4: they must be identical.

``--assembled N`` adds a conversation of N RAVDESS clips of two actors (gaps -0.2..0.6 s,
bench/conversations.py), once mixed to mono and once as a stereo file run with
``--channels split`` (one channel per actor: both channels share the fusion worker).

Usage (from the repository root)::

    .venv/bin/python bench/experiments/live_vs_offline.py --out bench/results/live_vs_offline.json \
        --assembled 16 builtin:sample builtin:sample-synthetic
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamer.apps.pipeline import run_pipeline  # noqa: E402
from streamer.core.config import AppConfig, load_config  # noqa: E402
from streamer.engine.loading import Models, load_models  # noqa: E402
from streamer.sources.local import make_source  # noqa: E402


async def final_events(config: AppConfig, models: Models) -> tuple[list[dict[str, Any]],
                                                                    dict[str, Any]]:
    """The ``utterance.emotion`` events of one run, in order, and the run's counts."""
    got: list[dict[str, Any]] = []

    async def ready(bus, server) -> None:  # type: ignore[no-untyped-def]
        sub = bus.subscribe("bench", lambda e: e["type"] == "utterance.emotion", 100_000)

        async def drain() -> None:
            while True:
                got.append(await sub.get())

        asyncio.get_running_loop().create_task(drain())

    summary = await run_pipeline(config, make_source(config.source), models, on_ready=ready)
    await asyncio.sleep(0.1)
    got.sort(key=lambda e: (e["channel"], e["t_start"]))
    return got, {"utterances": summary.utterances, **summary.recognition.__dict__}


def compare(live: list[dict[str, Any]], fast: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = list(zip(live, fast, strict=False))
    return {
        "utterances": [len(live), len(fast)],
        "boundary_differences": sum((a["t_start"], a["t_end"]) != (b["t_start"], b["t_end"])
                                    for a, b in pairs),
        "transcript_differences": sum(a["text"] != b["text"] for a, b in pairs),
        "label_differences": sum(a["label"] != b["label"] for a, b in pairs),
        "max_probability_difference": max(
            (abs(a["probabilities"].get(k, 0) - b["probabilities"].get(k, 0))
             for a, b in pairs for k in set(a["probabilities"]) | set(b["probabilities"])),
            default=0.0),
        "differing": [{"t": a["t_start"], "live": [a["text"], a["label"]],
                       "fast": [b["text"], b["label"]]}
                      for a, b in pairs if (a["text"], a["label"]) != (b["text"], b["label"])],
    }


def assembled(n: int) -> list[tuple[str, list[str]]]:
    """A RAVDESS conversation as a mono and a stereo file (in a temporary directory)."""
    import random
    import tempfile

    import numpy as np
    import soundfile as sf

    from bench.conversations import RAVDESS, assemble, trim
    from streamer.audio.audio_io import read_audio_file

    rng = random.Random(4)
    files = {a: sorted((RAVDESS / f"Actor_{a:02d}").glob("*.flac")) for a in (11, 12)}
    pieces = [(f"actor{a}", trim(read_audio_file(rng.choice(files[a]))), ())
              for a in [11, 12] * (n // 2)]
    gaps = [rng.uniform(-0.2, 0.6) for _ in pieces]
    mono, placed = assemble(pieces, gaps)
    stereo = np.zeros((len(mono), 2), np.float32)
    for p, (speaker, audio, _) in zip(placed, pieces, strict=True):
        i = int(round(p.start * 16000))
        stereo[i:i + len(audio), 0 if speaker == "actor11" else 1] += audio
    out = Path(tempfile.mkdtemp(prefix="live_vs_offline-"))
    sf.write(str(out / "assembled_mono.wav"), mono, 16000, subtype="PCM_16")
    sf.write(str(out / "assembled_stereo.wav"), stereo, 16000, subtype="PCM_16")
    return [(str(out / "assembled_mono.wav"), []),
            (str(out / "assembled_stereo.wav"),
             ["source.channels=split", "source.channel_names=actor11,actor12"])]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", help="audio files or builtin:sample...")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--assembled", type=int, default=0, metavar="N",
                        help="also an assembled RAVDESS conversation of N clips")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base = ["websocket.enabled=false", "stdout.enabled=false", *args.overrides]
    models = load_models(load_config(None, base))
    runs_of: list[tuple[str, list[str]]] = [(s, []) for s in args.sources]
    if args.assembled:
        runs_of += assembled(args.assembled)
    results = {}
    for source, extra in runs_of:
        runs = {}
        for mode, realtime in (("live", "true"), ("fast", "false")):
            config = load_config(None, [*base, f"source.path={source}",
                                        f"source.realtime={realtime}", *extra])
            runs[mode] = await final_events(config, models)
        source = source + (" (split)" if extra else "")
        results[source] = {"live_counts": runs["live"][1], "fast_counts": runs["fast"][1],
                           **compare(runs["live"][0], runs["fast"][0])}
        print(source, json.dumps({k: v for k, v in results[source].items()
                                  if k != "differing"}), flush=True)
        for d in results[source]["differing"]:
            print("   ", d, flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
