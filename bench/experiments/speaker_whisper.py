"""Could a speaker embedding be derived from Whisper's encoder frames? (issue 11)

Issue 11 asks to check Resemblyzer's packaged encoder "or derive one from Whisper frames;
measure". For every RAVDESS clip, each Whisper encoder layer's hidden states are mean
(and mean+std) pooled over the clip's frames (bench/layer_probe.py's extraction, the same
weights and 10 s window as serving), for the whole clip and for its middle second (the
streaming detector's window). Same- against different-speaker cosine on actors 01-12 (the
actors bench/conversations.py assembles its conversations from), as an equal error rate,
beside Resemblyzer's d-vectors of the same audio:

- ``cosine``: the raw pooled vector;
- ``standardised``: minus the mean, over the std, of actors 13-24 (no speaker labels used);
- ``wccn``: within-speaker whitening (shrink 0.5) fitted on actors 13-24's labels, as in
  bench/experiments/speaker_wccn.py (fitted on RAVDESS: non-commercial, so not shippable as is).

A lower EER on 1 s windows did not carry over to the stream for Resemblyzer + WCCN
(docs/conversations.md), so for the middle second the script also matches each layer's
WCCN'd threshold to the false-change rate of Resemblyzer's raw 0.5 (scan) and 0.6
(change, labels) on actors 13-24, and reports false and found changes on actors 01-12.

    .venv/bin/python bench/experiments/speaker_whisper.py          # tiny.en, ~10 min on 2 cores
    .venv/bin/python bench/experiments/speaker_whisper.py --model base=/tmp/whisper-base-ct2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.experiments.speaker_wccn import (  # noqa: E402
    equal_error_rate,
    middle_second,
    wccn,
    window_thresholds,
    within_between,
)
from bench.layer_probe import RAVDESS, extract, ravdess_clips  # noqa: E402

OUT = ROOT / "bench/results/speaker_whisper.json"


def whitened(z: np.ndarray, actors: np.ndarray) -> np.ndarray:
    """All rows WCCN'd (shrink 0.5) with the statistics of actors 13-24."""
    train = actors > 12
    within, _ = within_between(z[train], actors[train])
    return (z - z[train].mean(0)) @ wccn(within, 0.5)


def eers(z: np.ndarray, actors: np.ndarray) -> dict[str, float]:
    """EER on actors 01-12 of the raw, standardised and WCCN'd embeddings (fitted on 13-24)."""
    train, test = actors > 12, actors <= 12
    mean, std = z[train].mean(0), z[train].std(0) + 1e-6
    return {"cosine": round(equal_error_rate(z[test], actors[test]), 4),
            "standardised": round(equal_error_rate((z[test] - mean) / std, actors[test]), 4),
            "wccn": round(equal_error_rate(whitened(z, actors)[test], actors[test]), 4)}


def resemblyzer(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, float]:
    """Whole-clip and middle-second d-vectors, and ms per middle-second window."""
    import soundfile as sf
    import torch

    from models.speaker_encoder import PACKAGED_RESEMBLYZER, SpeakerEncoder

    torch.set_num_threads(1)  # as the streaming detector runs it
    encoder = SpeakerEncoder(PACKAGED_RESEMBLYZER)  # what this study measured
    whole, seconds, spent = [], [], 0.0
    for path in paths:
        audio = sf.read(path, dtype="float32")[0]
        whole.append(encoder.embed(audio))
        started = time.perf_counter()
        seconds.append(encoder.embed(middle_second(audio)))
        spent += time.perf_counter() - started
    return np.stack(whole), np.stack(seconds), 1000 * spent / len(paths)


def window_ms(ref: str, paths: list[Path], n: int = 50) -> float:
    """ms to encode a 1 s window with the CTranslate2 encoder serving uses (last layer)."""
    import soundfile as sf

    from models.encoders.whisper import WhisperEncoder, load_whisper

    encoder = WhisperEncoder(load_whisper(ref, cpu_threads=1))
    audios = [middle_second(sf.read(p, dtype="float32")[0]) for p in paths[:n]]
    encoder.encode(audios[0])  # warm-up
    started = time.perf_counter()
    for audio in audios:
        encoder.encode(audio)
    return 1000 * (time.perf_counter() - started) / len(audios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=[],
                        help="name=whisper reference (default tiny.en=packaged:tiny.en)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/layer-probe"),
                        help="pooled-feature cache (shared with bench/layer_probe.py)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.model) or {"tiny.en": "packaged:tiny.en"}

    clips = ravdess_clips(RAVDESS)
    actors = np.array([c.actor for c in clips])
    whole, seconds, ms = resemblyzer([c.path for c in clips])
    results: dict[str, object] = {
        "protocol": __doc__.split("\n\n")[1], "clips": len(clips),
        "resemblyzer": {"whole_clip": eers(whole, actors), "middle_second": eers(seconds, actors),
                        "ms_per_1s_window": round(ms, 1)}}
    print("resemblyzer", results["resemblyzer"], flush=True)
    for name, ref in models.items():
        pooled = {"whole_clip": extract(name, ref, clips, args.cache, args.batch_size),
                  "middle_second": extract(f"{name}-middle1s", ref, clips, args.cache,
                                           args.batch_size, transform=middle_second)}
        rows: dict[str, object] = {"ms_per_1s_window_last_layer_ct2":
                                   round(window_ms(ref, [c.path for c in clips]), 1)}
        for span, features in pooled.items():
            dim = features.layers.shape[-1] // 2
            for layer in range(features.layers.shape[1]):
                x = features.layers[:, layer]
                rows[f"{span} layer {layer} mean"] = eers(x[:, :dim], actors)
                rows[f"{span} layer {layer} mean+std"] = eers(x, actors)
                if span == "middle_second":
                    rows[f"{span} layer {layer} mean+std wccn at resemblyzer's false rate"] = {
                        k: {m: round(v, 4) for m, v in row.items()} for k, row in
                        window_thresholds(seconds, whitened(x, actors), actors).items()}
                print(name, span, layer, rows[f"{span} layer {layer} mean+std"], flush=True)
            rows[f"{span} layer average mean+std"] = eers(features.average, actors)
        results[name] = rows
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
