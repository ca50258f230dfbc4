"""What the abstain rule and the calibration add per utterance (issue 10: < 5 ms).

Real utterances: RAVDESS clips (4 per actor by default), each transcribed once by the
streamer's ASR (tiny.en, as served). Then, per utterance and repeated, the steps the
streamer adds for abstention and calibration, on that utterance's own audio and
transcript: ``speech_gate.check_audio``, ``speech_gate.check_transcript``,
``speech_gate.looks_looped`` (the loop check before publishing) and the temperature
scaling of the logits (``softmax(logits / T)`` against a plain ``softmax``). Timed with
``time.perf_counter``, one thread; p50 / p95 / max over the utterances of the per-utterance
mean of the repeats.

    .venv/bin/python bench/gate_overhead.py --out bench/results/gate_overhead.json   # ~1 min
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RAVDESS = ROOT.parent / "shared/corpora/ravdess"


def per_call_ms(fn: object, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) * 1000.0 / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-actor", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import soundfile as sf
    import torch

    from models.asr import AsrEngine, AsrOptions
    from models.bundle import load_bundle
    from models.encoders.whisper import load_whisper
    from streamer.audio import speech_gate
    from streamer.core.config import GateConfig

    torch.set_num_threads(1)
    gate = GateConfig()
    temperature = load_bundle("builtin:default").config.calibration.temperature
    asr = AsrEngine(AsrOptions(), load_whisper("packaged:tiny.en", cpu_threads=1))
    files = [f for actor in sorted(RAVDESS.glob("Actor_*"))
             for f in sorted(actor.glob("*.flac"))[:: 60 // args.per_actor][: args.per_actor]]
    rows = []
    logits = torch.randn(1, 4)
    for path in files:
        audio = sf.read(path, dtype="float32")[0]
        transcript = asr.transcribe(audio)
        gate_ms = per_call_ms(lambda a=audio, t=transcript: (
            speech_gate.check_audio(a, gate), speech_gate.check_transcript(t, gate),
            speech_gate.looks_looped(t, gate)), args.repeats)
        scaled = per_call_ms(lambda: torch.softmax(logits / temperature, dim=-1), args.repeats)
        plain = per_call_ms(lambda: torch.softmax(logits, dim=-1), args.repeats)
        rows.append((gate_ms, scaled - plain, len(audio) / 16000))

    def stats(values: list[float]) -> dict[str, float]:
        return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
                "max": float(np.max(values))}

    result = {"utterances": len(rows), "repeats": args.repeats, "temperature": temperature,
              "median_audio_s": float(np.median([r[2] for r in rows])),
              "gate_ms": stats([r[0] for r in rows]),
              "calibration_extra_ms": stats([r[1] for r in rows]),
              "total_ms": stats([r[0] + max(r[1], 0.0) for r in rows])}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
