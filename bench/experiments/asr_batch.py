"""ASR batched across streams (issue 31): ``AsrEngine.transcribe_batch`` against one
``transcribe`` per utterance, on real speech, in one process.

For batches of 2, 4 and 8 utterances (consecutive clips of a shuffled list of RAVDESS,
nEMO and synthetic espeak-ng clips, so lengths are mixed), each way is timed alternately
(process CPU time and wall time per utterance, median over the batches), for finals (word
times) and partials (none). Quality: every transcript of the batched path is compared with
the one-by-one transcript of the same clip (text, words and their times, the no-speech and
log-probability evidence), and the WER of both on RAVDESS and the synthetic set.

    .venv/bin/python -m bench.experiments.asr_batch --threads 2

Writes ``bench/results/asr_batch.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.experiments.one_pass import (
    Clip,
    corpus_wer,
    nemo_clips,
    ravdess_clips,
    synthetic_clips,
)
from models.asr import AsrEngine, AsrOptions, Transcript
from models.encoders.whisper import load_whisper

OUT = Path("bench/results/asr_batch.json")
ACTORS = ["01", "11", "20", "21"]  # the default bundle's held-out actors (as one_pass)


def same(a: Transcript, b: Transcript) -> bool:
    """The same transcript: text, words and times (within one 20 ms alignment step),
    evidence."""
    def close(x: float | None, y: float | None) -> bool:
        return (x is None) == (y is None) and (x is None or abs(x - (y or 0.0)) < 1e-3)

    return (a.text == b.text and len(a.words) == len(b.words)
            and all(w.word == v.word and abs(w.start - v.start) < 0.021
                    and abs(w.end - v.end) < 0.021 for w, v in zip(a.words, b.words, strict=True))
            and close(a.no_speech_prob, b.no_speech_prob) and close(a.avg_logprob, b.avg_logprob))


def timing(engine: AsrEngine, clips: list[Clip], size: int, final: bool,
           rounds: int) -> dict[str, Any]:
    """CPU and wall ms per utterance, one by one vs batched, alternating batch by batch."""
    batches = [clips[i: i + size] for i in range(0, len(clips) - size + 1, size)]
    per: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []}
                                              for k in ("single", "batched")}
    for _ in range(rounds):
        for batch in batches:
            audios = [c.audio for c in batch]
            for kind, run in (("single", lambda a=audios: [engine.transcribe(x, final=final)
                                                             for x in a]),
                              ("batched", lambda a=audios: engine.transcribe_batch(
                                  a, final=final))):
                wall, cpu = time.perf_counter(), time.process_time()
                run()
                per[kind]["cpu"].append((time.process_time() - cpu) * 1000 / size)
                per[kind]["wall"].append((time.perf_counter() - wall) * 1000 / size)
    med = {k: {m: round(statistics.median(v), 1) for m, v in d.items()} for k, d in per.items()}
    return {"batch": size, "final": final, "batches": len(batches) * rounds, **med,
            "cpu_ratio": round(med["batched"]["cpu"] / med["single"]["cpu"], 3),
            "wall_ratio": round(med["batched"]["wall"] / med["single"]["wall"], 3)}


def quality(engine: AsrEngine, clips: list[Clip], size: int) -> dict[str, Any]:
    singles = [engine.transcribe(c.audio, final=True) for c in clips]
    batched: list[Transcript] = []
    for i in range(0, len(clips), size):
        batched += engine.transcribe_batch([c.audio for c in clips[i: i + size]], final=True)
    differ = [{"clip": c.name, "single": s.text, "batched": b.text}
              for c, s, b in zip(clips, singles, batched, strict=True) if not same(s, b)]
    wer = {}
    for corpus in ("ravdess", "synthetic"):
        idx = [i for i, c in enumerate(clips) if c.corpus == corpus]
        refs = [clips[i].text for i in idx]
        wer[corpus] = {"single": round(corpus_wer(refs, [singles[i].text for i in idx]), 4),
                       "batched": round(corpus_wer(refs, [batched[i].text for i in idx]), 4)}
    shifts = [max(max(abs(w.start - v.start), abs(w.end - v.end)) for w, v in zip(
        s.words, b.words, strict=True)) * 1000 for s, b in zip(singles, batched, strict=True)
        if s.words and [w.word for w in s.words] == [w.word for w in b.words]]
    return {"batch": size, "clips": len(clips), "identical": len(clips) - len(differ),
            "differ": differ, "wer": wer,
            "word_times_moved": sum(1 for x in shifts if x > 0.5),
            "max_word_time_shift_ms": round(max(shifts, default=0.0), 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="CTranslate2 threads (asr.cpu_threads)")
    p.add_argument("--per-actor", type=int, default=12)
    p.add_argument("--nemo", type=int, default=24)
    p.add_argument("--synthetic", type=int, default=20, help="sentences (2 voices each)")
    p.add_argument("--sizes", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    engine = AsrEngine(AsrOptions(), load_whisper("packaged:tiny.en", cpu_threads=args.threads))
    clips = (ravdess_clips(ACTORS, args.per_actor) + nemo_clips(args.nemo)
             + synthetic_clips(args.synthetic))
    random.Random(0).shuffle(clips)
    engine.transcribe_batch([c.audio for c in clips[:4]])  # warm
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_before": os.getloadavg()[0]},
        "threads": args.threads,
        "quality": [quality(engine, clips, size) for size in args.sizes],
        "timing": [timing(engine, clips, size, final, args.rounds)
                   for size in args.sizes for final in (True, False)],
        "load_after": os.getloadavg()[0],
    }
    for row in result["timing"]:
        print(f"batch {row['batch']} {'final  ' if row['final'] else 'partial'}: "
              f"cpu {row['single']['cpu']} -> {row['batched']['cpu']} ms/utt "
              f"({row['cpu_ratio']}x), wall {row['single']['wall']} -> "
              f"{row['batched']['wall']} ms/utt ({row['wall_ratio']}x)")
    for row in result["quality"]:
        print(f"batch {row['batch']}: {row['identical']}/{row['clips']} identical; "
              f"{row['word_times_moved']} with a word time moved (at most "
              f"{row['max_word_time_shift_ms']} ms); WER {row['wer']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
