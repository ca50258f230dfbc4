"""Does speed perturbation (and a few cheap variants) move the RAVDESS probe? (issue 10/16)

RAVDESS whole clips, the 6 EmoBox folds of 4 held-out actors, 4 classes (the default's:
neutral + calm as neutral, happy, sad, angry) and all 8. Features: mean + std of every
Whisper tiny.en layer (the default recipe's), from bench/layer_probe.py's cache. Speed
copies (x0.9 and x1.1, offline_training.corpora.speed's transform) of the training actors'
clips are added to each fold's training part only; the test is always the original clips.
Rows: logistic regression (C = 0.01, the value the default's inner CV picks) and a ridge
classifier (alpha 1000 and 3000), each with and without the copies, and with a nuisance
attribute projection (the 10 leading directions of the training actors' mean features
removed: speaker variability, fitted on training actors only).

    .venv/bin/python bench/experiments/augment_probe.py    # ~8 min of extraction once, then ~10 min
"""

from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.layer_probe import FOLDS, RAVDESS, extract, ravdess_clips  # noqa: E402
from offline_training.corpora.speed import speed_perturb  # noqa: E402

CACHE = Path("/tmp/layer-probe")
OUT = ROOT / "bench/results/augment_probe.json"
FOUR = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}  # RAVDESS codes - 1 -> neutral, happy, sad, angry
FACTORS = (0.9, 1.1)


def speaker_directions(z: np.ndarray, speakers: np.ndarray, k: int) -> np.ndarray:
    """The k leading directions of the speakers' mean features (rows: unit vectors)."""
    means = np.stack([z[speakers == s].mean(0) for s in np.unique(speakers)])
    return np.linalg.svd(means - means.mean(0), full_matrices=False)[2][:k]


def run(x: np.ndarray, copies: list[np.ndarray], y: np.ndarray, actors: np.ndarray,
        model: str, augment: bool, nap: int) -> dict[str, object]:
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.metrics import balanced_accuracy_score

    fold_ua = []
    for held in FOLDS:
        test, train = np.isin(actors, held), ~np.isin(actors, held)
        parts = [x[train]] + ([c[train] for c in copies] if augment else [])
        x_train, n = np.vstack(parts), len(parts)
        y_train, a_train = np.tile(y[train], n), np.tile(actors[train], n)
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        z_train, z_test = (x_train - mean) / std, (x[test] - mean) / std
        if nap:
            v = speaker_directions(z_train, a_train, nap)
            z_train, z_test = z_train - (z_train @ v.T) @ v, z_test - (z_test @ v.T) @ v
        name, value = model.split("=")
        clf = (LogisticRegression(C=float(value), max_iter=3000) if name == "lr"
               else RidgeClassifier(alpha=float(value)))
        clf.fit(z_train, y_train)
        fold_ua.append(float(balanced_accuracy_score(y[test], clf.predict(z_test))))
    return {"model": model, "speed_copies": augment, "nap_directions": nap,
            "fold_ua": [round(u, 4) for u in fold_ua], "mean_ua": round(float(np.mean(fold_ua)), 4),
            "std_ua": round(float(np.std(fold_ua)), 4)}


def main() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    clips = ravdess_clips(RAVDESS)
    started = time.time()
    base = extract("tiny.en", "packaged:tiny.en", clips, CACHE, 16)
    copies = [extract(f"tiny.en-speed{f:g}", "packaged:tiny.en", clips, CACHE, 16,
                      transform=partial(speed_perturb, factor=f)).layers for f in FACTORS]
    results = []
    for classes in (4, 8):
        keep = np.isin(base.labels, list(FOUR)) if classes == 4 else np.ones(len(clips), bool)
        y = np.array([FOUR[v] for v in base.labels[keep]]) if classes == 4 \
            else base.labels[keep]
        flat = [m.reshape(len(clips), -1)[keep].astype(np.float64) for m in [base.layers, *copies]]
        for model in ("lr=0.01", "ridge=1000", "ridge=3000"):
            for augment in (False, True):
                for nap in (0, 10):
                    r = {"classes": classes,
                         **run(flat[0], flat[1:], y, base.actors[keep], model, augment, nap)}
                    results.append(r)
                    print(f"{classes}-class {model:10s} speed copies {augment!s:5s} nap {nap:2d}"
                          f"  UA {r['mean_ua']:.3f} ± {r['std_ua']:.3f}", flush=True)
    OUT.write_text(json.dumps({"protocol": __doc__.split("\n\n")[1], "factors": FACTORS,
                               "results": results,
                               "minutes": round((time.time() - started) / 60, 1)},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
