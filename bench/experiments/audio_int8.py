"""The emotion model's Whisper base pass with int8 linear layers (issue 31): CPU cost and
what it does to the default bundle's labels, against today's float32 pass, in one run.

At 16 calls the audio pass is the second busiest thread of a loaded server (76 % of a
thread; the ASR 85 %: docs/performance.md). PyTorch's dynamic quantisation
(``torch.ao.quantization.quantize_dynamic``: int8 weights, activations quantised per batch)
replaces every ``nn.Linear`` of the encoder (attention and feed-forward: nearly all of its
multiply-adds); the convolutions stay float32. Weights per tensor (PyTorch's default) and per
output channel are both measured.

Quality: the default bundle's labels on the same clips and the same transcripts (tiny.en,
computed once) with each pass: agreement with float32, UA and per-class recall on RAVDESS
actors 01/11/20/21 (held out of the default bundle) and on nEMO clips (in its training set:
agreement only means something there), and the features' drift (cosine of each layer's
mean over time). Time: process CPU per utterance, passes alternated clip by clip, 1 thread
(as the server's audio worker runs).

    .venv/bin/python -m bench.experiments.audio_int8 --nemo 120
    .venv/bin/python -m bench.experiments.audio_int8 --nemo 120 --telephone \
        --out bench/results/audio_int8_8k.json

Writes ``bench/results/audio_int8.json``. ``--telephone``: every clip goes through the
telephone band first (``bench.telephone_asr.to_telephone``: 8 kHz, G.711 mu-law, back to
16 kHz through the ingest's own upsampler), so the passes and the ASR see what a phone
call gives them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import recall_score

from bench.experiments.one_pass import BUNDLE, Clip, nemo_clips, ravdess_clips
from bench.telephone_asr import to_telephone
from models.asr import AsrEngine, AsrOptions
from models.encoders import AudioFeatures
from models.encoders.whisper import load_whisper
from models.encoders.whisper_torch import WhisperTorchEncoder, quantize_int8
from models.inference import EmotionInput, EmotionModel

OUT = Path("bench/results/audio_int8.json")
HELD_OUT = ["01", "11", "20", "21"]
CLASSES = ["neutral", "happy", "sad", "angry"]


def quantised(encoder: WhisperTorchEncoder, per_channel: bool) -> WhisperTorchEncoder:
    """Per channel: what ``emotion.audio_int8`` serves (``quantize_int8``)."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if per_channel:
        return WhisperTorchEncoder(quantize_int8(encoder.module))
    module = quantize_dynamic(encoder.module, {torch.nn.Linear: default_dynamic_qconfig},
                              dtype=torch.qint8)
    return WhisperTorchEncoder(module)  # type: ignore[arg-type]


def layer_cosines(a: AudioFeatures, b: AudioFeatures) -> list[float]:
    assert a.layers is not None and b.layers is not None
    x, y = a.layers.mean(dim=1).numpy(), b.layers.mean(dim=1).numpy()  # (L + 1, D)
    return [float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))
            for u, v in zip(x, y, strict=True)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nemo", type=int, default=120, help="nEMO clips (evenly spaced)")
    p.add_argument("--per-actor", type=int, default=0, help="RAVDESS clips per actor (0: all)")
    p.add_argument("--telephone", action="store_true",
                   help="clips through the 8 kHz mu-law telephone band first")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    torch.set_num_threads(1)
    emotion = EmotionModel.load(BUNDLE)
    fp32 = emotion._audio_encoder
    assert isinstance(fp32, WhisperTorchEncoder)
    passes = {"float32": fp32, "int8": quantised(fp32, per_channel=False),
              "int8_per_channel": quantised(fp32, per_channel=True)}
    asr = AsrEngine(AsrOptions(), load_whisper("packaged:tiny.en", cpu_threads=1))
    clips: list[Clip] = ravdess_clips(HELD_OUT, args.per_actor) + nemo_clips(args.nemo)
    if args.telephone:
        clips = [dataclasses.replace(c, audio=to_telephone(c.audio)) for c in clips]
    rows: list[dict[str, Any]] = []
    for i, clip in enumerate(clips):
        transcript = asr.transcribe(clip.audio, final=True)
        row: dict[str, Any] = {"clip": clip.name, "corpus": clip.corpus, "truth": clip.emotion,
                               "seconds": len(clip.audio) / 16000, "cpu_ms": {}, "label": {},
                               "confidence": {}, "cosine": {}}
        feats: dict[str, AudioFeatures] = {}
        for name, encoder in passes.items():
            emotion._audio_encoder = encoder
            start = time.process_time()
            feats[name] = emotion.encode_audio([clip.audio])[0]
            row["cpu_ms"][name] = (time.process_time() - start) * 1000
            pred = emotion.predict([EmotionInput(
                audio=clip.audio, text=transcript.text, words=transcript.words,
                language=transcript.language, audio_features=feats[name])], observe=False)[0]
            row["label"][name] = pred.label
            row["confidence"][name] = float(pred.probabilities.max())
            if name != "float32":
                row["cosine"][name] = layer_cosines(feats["float32"], feats[name])
        emotion._audio_encoder = fp32
        rows.append(row)
        print(f"[{i + 1}/{len(clips)}] {clip.corpus} {clip.name} " + " ".join(
            f"{n} {row['label'][n]} {row['cpu_ms'][n]:.0f}ms" for n in passes), flush=True)
    summary: dict[str, Any] = {}
    for name in passes:
        s: dict[str, Any] = {"cpu_ms_median": round(statistics.median(
            r["cpu_ms"][name] for r in rows), 1)}
        s["cpu_ratio_to_float32"] = round(statistics.median(
            r["cpu_ms"][name] / r["cpu_ms"]["float32"] for r in rows), 3)
        for corpus in ("ravdess", "nemo"):
            part = [r for r in rows if r["corpus"] == corpus]
            truth = [r["truth"] for r in part]
            predicted = [r["label"][name] for r in part]
            recall = recall_score(truth, predicted, labels=CLASSES, average=None,
                                  zero_division=0)
            s[corpus] = {
                "clips": len(part),
                "agree_with_float32": round(float(np.mean(
                    [r["label"][name] == r["label"]["float32"] for r in part])), 4),
                "ua": round(float(np.mean(recall)), 4),
                "recall": {c: round(float(v), 3) for c, v in zip(CLASSES, recall, strict=True)},
            }
            if name != "float32":
                s[corpus]["layer_cosine_min"] = [round(float(min(r["cosine"][name][k]
                                                                 for r in part)), 4)
                                                 for k in range(len(part[0]["cosine"][name]))]
        summary[name] = s
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_after": os.getloadavg()[0]},
              "telephone_band": args.telephone,
              "summary": summary, "rows": rows}
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
