"""Per-word delay on real speech: from a word being spoken to its text reaching subscribers.

Issue 31: long turns are cut at the segmenter's limit, so a word spoken early in a long turn
would wait for the turn's end if only final events carried words. Partials
(``asr.partials``, every ``segmenter.partial_interval_s``) carry the words of the turn so
far. This replays real speech in real time through the pipeline (as a live source delivers
it), keeps every ``utterance.partial`` and ``utterance.emotion`` with its publication time,
and, for every word of every final transcript (its end time in stream seconds), finds the
first event of that utterance that covers the word: a partial or the final whose ``t_end`` is
past the word's end and whose text has at least as many words as the word's position. The
word's delay is that event's ``wall_time`` minus the wall time the word ended
(``stream.started``'s ``wall_time`` + the word's end).

Two recordings of real speech (RAVDESS clips cut to the spans the segmenter serves):

- ``monologue``: one actor's 36 clips back to back with 0.1 s between them (about 1.5 min of
  speech with no pause long enough to end a turn before the length limits cut it);
- ``dialogue``: two actors (a man and a woman) taking turns, 30 clips each, 0.3 s between
  turns.

Usage (from the repository root; ``runs/transfer4-spans.jsonl`` as docs/transfer.md builds it)::

    .venv/bin/python bench/word_delay.py --out bench/results/word_delay.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.apps.pipeline import run_pipeline  # noqa: E402
from streamer.audio.audio_io import read_audio_file  # noqa: E402
from streamer.core.config import load_config  # noqa: E402
from streamer.engine.loading import Models, load_models  # noqa: E402
from streamer.sources.local import FileSource  # noqa: E402

RATE = 16_000
MONOLOGUE_ACTOR = "ravdess-Actor_01"
DIALOGUE_ACTORS = ("ravdess-Actor_11", "ravdess-Actor_20")  # a man and a woman


def spans(manifest: Path, speaker: str, limit: int) -> list[np.ndarray]:
    """The first ``limit`` wideband clips of ``speaker``, cut to their served spans."""
    clips = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        if row["speaker"] != speaker or "telephone" in row["path"]:
            continue
        audio = read_audio_file(row["path"])  # 16 kHz mono
        start, end = row.get("start"), row.get("end")
        if start is not None and end is not None:
            audio = audio[int(start * RATE):int(end * RATE)]
        clips.append(audio.astype(np.float32))
        if len(clips) == limit:
            break
    if not clips:
        raise SystemExit(f"no clips of {speaker} in {manifest}; build it as docs/transfer.md says")
    return clips


def joined(clips: list[np.ndarray], gap_s: float) -> np.ndarray:
    gap = np.zeros(int(gap_s * RATE), np.float32)
    parts = [part for clip in clips for part in (clip, gap)]
    return np.concatenate([gap, *parts, np.zeros(RATE, np.float32)])


def recordings(manifest: Path) -> dict[str, np.ndarray]:
    a, b = (spans(manifest, s, 30) for s in DIALOGUE_ACTORS)
    turns = [clip for pair in zip(a, b, strict=False) for clip in pair]
    return {"monologue": joined(spans(manifest, MONOLOGUE_ACTOR, 60), 0.1),
            "dialogue": joined(turns, 0.3)}


async def replay(models: Models, audio: np.ndarray, overrides: list[str]) -> list[dict[str, Any]]:
    """Every event of a real-time replay of ``audio``, in publication order."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        sf.write(path, audio, RATE)
        config = load_config(None, [f"source.path={path}", "source.realtime=true",
                                    "websocket.enabled=false", "stdout.enabled=false",
                                    *overrides])
        collected: list[dict[str, Any]] = []

        async def attach(bus, server) -> None:  # type: ignore[no-untyped-def]
            sub = bus.subscribe("bench", maxsize=100_000)

            async def drain() -> None:
                while True:
                    collected.append(await sub.get())

            asyncio.get_running_loop().create_task(drain())

        await run_pipeline(config, FileSource(config.source), models, on_ready=attach)
        await asyncio.sleep(0.2)
    return collected


def word_delays(events: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Seconds from each final word's end to the first event that carried it, and to its
    final event (``final``)."""
    started = next(e for e in events if e["type"] == "stream.started")
    t0 = float(started["wall_time"])
    by_utterance: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["type"] in ("utterance.partial", "utterance.emotion"):
            by_utterance.setdefault(event["utterance_id"], []).append(event)
    first, final = [], []
    for utterance_events in by_utterance.values():
        finals = [e for e in utterance_events if e["type"] == "utterance.emotion"]
        if not finals:
            continue
        done = finals[0]
        for position, word in enumerate(done.get("words") or []):
            spoken = t0 + float(word["end"])
            carrier = next(e for e in utterance_events
                           if e is done or (float(e["t_end"]) >= float(word["end"])
                                            and len(e["text"].split()) > position))
            first.append(float(carrier["wall_time"]) - spoken)
            final.append(float(done["wall_time"]) - spoken)
    return {"first": first, "final": final}


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {"words": len(values), "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("runs/transfer4-spans.jsonl"))
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override, as for emotion-stream run")
    args = parser.parse_args()
    models = load_models(load_config(None, args.overrides))
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "load_avg_at_start": os.getloadavg()},
                              "overrides": args.overrides, "recordings": {}}
    for name, audio in recordings(args.manifest).items():
        events = asyncio.run(replay(models, audio, args.overrides))
        delays = word_delays(events)
        turns = [e for e in events if e["type"] == "utterance.emotion"]
        result["recordings"][name] = {
            "speech_s": round(len(audio) / RATE, 1), "turns": len(turns),
            "longest_turn_s": round(max(e["t_end"] - e["t_start"] for e in turns), 2),
            "partials": sum(e["type"] == "utterance.partial" for e in events),
            "word_to_first_event": stats(delays["first"]),
            "word_to_final_event": stats(delays["final"])}
        r = result["recordings"][name]
        print(f"{name}: {r['speech_s']} s, {r['turns']} turns (longest {r['longest_turn_s']} s), "
              f"{r['partials']} partials; word -> first event p50 "
              f"{r['word_to_first_event']['p50_ms']:.0f} ms p95 "
              f"{r['word_to_first_event']['p95_ms']:.0f} ms max "
              f"{r['word_to_first_event']['max_ms']:.0f} ms; word -> final p50 "
              f"{r['word_to_final_event']['p50_ms']:.0f} ms p95 "
              f"{r['word_to_final_event']['p95_ms']:.0f} ms max "
              f"{r['word_to_final_event']['max_ms']:.0f} ms", flush=True)
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
