"""Does a temperature fitted on the training corpora calibrate another corpus? (issue 28)

The bundles' temperatures (v6 2.16, v7 1.94) were fitted on the `both` protocol's held-out
predictions and scored on the same predictions: in-sample. Here the temperature is fitted
on the training speakers only (the inner, speaker-grouped cross-validation predictions that
``neutral_fallback.py`` saves in ``--probs``) and the expected calibration error is scored on
the test corpus: RAVDESS -> nEMO, nEMO -> RAVDESS, and `both` with held-out speakers (each
fold's own inner temperature). Audio-only probe on the encoder comparison's third of the
clips, plain weights, `acted` and `mostly-neutral` streams.

    python -m bench.experiments.neutral_fallback   # writes runs/neutral-fallback-probs.npz
    python -m bench.experiments.ece_transfer --out bench/results/ece_transfer.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from offline_training.calibration import expected_calibration_error, fit_temperature, softmax

CROSS = (("ravdess->nemo", "nemo"), ("nemo->ravdess", "ravdess"))
FOLDS = ("fold1", "fold2", "fold3")


def log_probs(z: np.lib.npyio.NpzFile, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A saved prediction set as log-probabilities (the probe's logits up to a constant)."""
    return np.log(np.clip(z[key + "|probs"], 1e-12, 1.0)), z[key + "|labels"]


def scored(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    return {"ece_raw": round(expected_calibration_error(softmax(logits), labels), 4),
            "ece": round(expected_calibration_error(softmax(logits, temperature), labels), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probs", type=Path, default=Path("runs/neutral-fallback-probs.npz"))
    parser.add_argument("--normalisations", default="none,mixed:40")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ece_transfer.json"))
    args = parser.parse_args()
    z = np.load(args.probs, allow_pickle=False)
    rows = []
    for norm in args.normalisations.split(","):
        for setting, test in CROSS:
            inner = log_probs(z, f"{norm}|plain|{setting}|all|inner|acted")
            t = fit_temperature(*inner)
            for stream in ("acted", "mostly-neutral"):
                test_set = log_probs(z, f"{norm}|plain|{setting}|all|{test}|{stream}")
                rows.append({"normalisation": norm, "setting": setting, "stream": stream,
                             "temperature": round(t, 3), **scored(*test_set, t),
                             "ece_inner": round(expected_calibration_error(
                                 softmax(inner[0], t), inner[1]), 4)})
        for test in ("nemo", "ravdess"):
            folds = []
            for fold in FOLDS:
                t = fit_temperature(*log_probs(z, f"{norm}|plain|both|{fold}|inner|acted"))
                folds.append({"temperature": round(t, 3), **scored(
                    *log_probs(z, f"{norm}|plain|both|{fold}|{test}|acted"), t)})
            rows.append({"normalisation": norm, "setting": f"both->{test}", "stream": "acted",
                         "folds": folds,
                         "ece_raw": round(float(np.mean([f["ece_raw"] for f in folds])), 4),
                         "ece": round(float(np.mean([f["ece"] for f in folds])), 4),
                         "ece_std": round(float(np.std([f["ece"] for f in folds])), 4)})
    for row in rows:
        print(f"{row['normalisation']:9s} {row['setting']:14s} {row['stream']:14s} "
              f"ECE {row['ece_raw']:.3f} -> {row['ece']:.3f} with the training temperature")
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
