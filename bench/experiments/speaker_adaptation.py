"""Does normalising features per speaker, causally, pay on real speech? (issue 10/16)

RAVDESS 4 classes (neutral + calm as neutral, happy, sad, angry), the 6 EmoBox folds of 4
held-out actors, the default recipe's features (mean + std of every Whisper tiny.en layer,
pooled per clip by bench/layer_probe.py, cached in /tmp/layer-probe) and a standardised
logistic regression (C = 0.01, the value the default's inner CV picks).

Each held-out actor is played as one stream, in a seeded random order. ``causal``: each clip
is standardised with the mean and variance of the actor's clips so far (this one included),
shrunk toward the training speakers' statistics with a prior weight of ``k`` clips; nothing
of later clips is used, as in a live channel. Training speakers are standardised with their
own whole-session statistics. ``transductive`` uses the test actor's whole session (not
possible live). ``single-emotion streams`` plays each actor's clips of one class as its own
stream: the case of a caller who stays angry, where the speaker's mean is the emotion.

    .venv/bin/python bench/layer_probe.py --model tiny.en=packaged:tiny.en   # the cache
    .venv/bin/python bench/experiments/speaker_adaptation.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path("/tmp/layer-probe/tiny.en-window10.npz")
OUT = ROOT / "bench/results/speaker_adaptation.json"
FOLDS = ((1, 11, 20, 21), (4, 10, 12, 14), (8, 9, 19, 23), (3, 5, 7, 24), (2, 15, 16, 18),
         (6, 13, 17, 22))
FOUR = {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}  # RAVDESS codes - 1 -> neutral, happy, sad, angry
C = 0.01


def causal(x: np.ndarray, mean0: np.ndarray, var0: np.ndarray, k: float) -> np.ndarray:
    """Standardise each row with the running statistics of the rows so far (itself included),
    shrunk toward (mean0, var0) with the weight of k rows."""
    out = np.empty_like(x)
    total, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for i, row in enumerate(x):
        total += row
        squares += row * row
        n = i + 1
        mean = (k * mean0 + total) / (k + n)
        var = (k * (var0 + mean0 ** 2) + squares) / (k + n) - mean ** 2
        out[i] = (row - mean) / np.sqrt(np.maximum(var, 1e-6))
    return out


def run(x: np.ndarray, y: np.ndarray, actors: np.ndarray, mode: str, k: float,
        single: bool, seed: int = 0) -> dict[str, object]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(seed)
    fold_ua = []
    for held in FOLDS:
        test, train = np.isin(actors, held), ~np.isin(actors, held)
        x_train = x[train].copy()
        mean0, var0 = x[train].mean(0), x[train].var(0)
        if mode != "none":
            for speaker in np.unique(actors[train]):
                rows = actors[train] == speaker
                part = x[train][rows]
                x_train[rows] = (part - part.mean(0)) / (part.std(0) + 1e-3)
        scale_mean, scale_std = x_train.mean(0), x_train.std(0) + 1e-6
        model = LogisticRegression(C=C, max_iter=2000).fit(
            (x_train - scale_mean) / scale_std, y[train])
        x_test = x[test].copy()
        if mode != "none":
            for speaker in held:
                rows = np.where(actors[test] == speaker)[0]
                streams = ([rows[y[test][rows] == c] for c in np.unique(y)] if single
                           else [rows])
                for stream in streams:
                    order = rng.permutation(stream)
                    part = x[test][order]
                    x_test[order] = ((part - part.mean(0)) / (part.std(0) + 1e-3)
                                     if mode == "transductive" else causal(part, mean0, var0, k))
        predicted = model.predict((x_test - scale_mean) / scale_std)
        fold_ua.append(float(balanced_accuracy_score(y[test], predicted)))
    return {"mode": mode, "prior_weight": k, "single_emotion_streams": single,
            "fold_ua": fold_ua, "mean_ua": float(np.mean(fold_ua)),
            "std_ua": float(np.std(fold_ua))}


def main() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if not CACHE.is_file():
        sys.exit(f"{CACHE} not found: run bench/layer_probe.py --model tiny.en=packaged:tiny.en")
    data = np.load(CACHE)
    keep = np.isin(data["labels"], list(FOUR))
    x = data["layers"].reshape(len(keep), -1)[keep].astype(np.float64)
    y = np.array([FOUR[v] for v in data["labels"][keep]])
    actors = data["actors"][keep]
    start = time.time()
    results = []
    for mode, k, single in (("none", 0, False), ("transductive", 0, False),
                            ("causal", 0, False), ("causal", 10, False),
                            ("none", 0, True), ("causal", 10, True)):
        results.append(run(x, y, actors, mode, k, single))
        r = results[-1]
        print(f"{mode:12s} k={k:<3} single-emotion streams={single!s:5s} "
              f"UA {r['mean_ua']:.3f} ± {r['std_ua']:.3f}", flush=True)
    OUT.write_text(json.dumps({"protocol": __doc__.split("\n\n")[1], "results": results,
                               "minutes": (time.time() - start) / 60}, indent=1) + "\n")


if __name__ == "__main__":
    main()
