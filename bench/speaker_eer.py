"""Speaker encoders compared on 1 s windows (issue 29): EER and the cosine thresholds.

The middle second of ``--clips`` clips per speaker, from RAVDESS (24 English actors) and
nEMO (9 Polish speakers), each also as an 8 kHz telephone copy (down to 8 kHz and back
up, as the streamer does with telephone channels). Same- against different-speaker
cosines of every pair within one corpus and one condition give the equal error rate, over
all pairs and over pairs of one sex (the hard case). For the streamer's thresholds it
reports, per cosine threshold, the share of same-speaker pairs below it (a false change)
and of different-speaker pairs below it (a change found).

    .venv/bin/python bench/speaker_eer.py --encoder packaged:campplus \
        --encoder packaged:resemblyzer --out bench/results/speaker_eer.json
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.audio import SAMPLE_RATE  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(-2, 14))  # -0.1 .. 0.65


def ravdess(root: Path, clips: int, rng: random.Random) -> list[tuple[str, str, Path]]:
    """(speaker, sex, file): odd actors are male."""
    out = []
    for actor in range(1, 25):
        files = sorted((root / f"Actor_{actor:02d}").glob("*.flac"))
        out += [(f"ravdess{actor:02d}", "male" if actor % 2 else "female", f)
                for f in rng.sample(files, clips)]
    return out


def nemo(root: Path, clips: int, rng: random.Random) -> list[tuple[str, str, Path]]:
    with open(root / "data.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out = []
    for speaker in sorted({r["speaker_id"] for r in rows}):
        mine = sorted((r for r in rows if r["speaker_id"] == speaker), key=lambda r: r["file_id"])
        out += [(f"nemo{speaker}", r["gender"], root / "samples" / r["file_id"])
                for r in rng.sample(mine, clips)]
    return out


def middle_second(audio: np.ndarray) -> np.ndarray:
    middle = len(audio) // 2
    return audio[max(0, middle - SAMPLE_RATE // 2):middle + SAMPLE_RATE // 2]


def telephone(audio: np.ndarray) -> np.ndarray:
    import soxr

    narrow = soxr.resample(audio, SAMPLE_RATE, 8000)
    return soxr.resample(narrow, 8000, SAMPLE_RATE).astype(np.float32)


def pairs(z: np.ndarray, speakers: list[str], sexes: list[str], same_sex_only: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    cos = z @ z.T
    i, j = np.triu_indices(len(z), k=1)
    spk, sex = np.array(speakers), np.array(sexes)
    keep = sex[i] == sex[j] if same_sex_only else np.ones(len(i), bool)
    same = (spk[i] == spk[j]) & keep
    return cos[i, j][same], cos[i, j][~(spk[i] == spk[j]) & keep]


def eer(same: np.ndarray, different: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(same)), np.zeros(len(different))],
                            np.r_[same, different])
    k = int(np.argmin(np.abs(1 - tpr - fpr)))
    return round(float((fpr[k] + 1 - tpr[k]) / 2), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", action="append", default=[])
    parser.add_argument("--clips", type=int, default=12, help="clips per speaker")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from models.speaker_encoder import SpeakerEncoder
    from streamer.audio.audio_io import read_audio_file

    rng = random.Random(29)
    sets = {"ravdess": ravdess(CORPORA / "ravdess", args.clips, rng),
            "nemo": nemo(CORPORA / "nemo", args.clips, rng)}
    windows = {name: [middle_second(read_audio_file(path)) for _, _, path in items]
               for name, items in sets.items()}
    results: dict[str, Any] = {"clips_per_speaker": args.clips, "window_s": 1.0}
    for ref in args.encoder or ["packaged:campplus"]:
        encoder = SpeakerEncoder(ref)
        per: dict[str, Any] = {}
        for name, items in sets.items():
            speakers, sexes = [s for s, _, _ in items], [x for _, x, _ in items]
            for condition in ("16k", "8k"):
                audio = windows[name] if condition == "16k" else \
                    [telephone(w) for w in windows[name]]
                started = time.perf_counter()
                z = np.stack([encoder.embed(w) for w in audio])
                ms = 1000 * (time.perf_counter() - started) / len(audio)
                same, different = pairs(z, speakers, sexes, False)
                same_sex = pairs(z, speakers, sexes, True)
                per[f"{name}_{condition}"] = {
                    "eer": eer(same, different), "eer_same_sex": eer(*same_sex),
                    "ms_per_window": round(ms, 1),
                    "same_speaker_cosine_below": {t: round(float(np.mean(same < t)), 3)
                                                  for t in THRESHOLDS},
                    "different_speaker_cosine_below": {t: round(float(np.mean(different < t)), 3)
                                                       for t in THRESHOLDS},
                    "same_sex_different_below": {t: round(float(np.mean(same_sex[1] < t)), 3)
                                                 for t in THRESHOLDS}}
                print(ref, name, condition, per[f"{name}_{condition}"]["eer"],
                      per[f"{name}_{condition}"]["eer_same_sex"], f"{ms:.1f} ms", flush=True)
        results[ref] = per
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
