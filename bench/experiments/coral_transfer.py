"""Second-order alignment across corpora (issue 28, exploratory): does aligning each corpus's
feature covariance (whitening per corpus, as CORAL, Sun et al. 2016) transfer better than
aligning its means and variances (the protocol's ``corpus`` normalisation)?

Features: the encoder comparison's pooled table (Whisper base, every layer, fit window,
audio only: 1,314 wideband clips of RAVDESS and nEMO, ``egemaps_transfer.load_table``).
One probe for every variant: a PCA of ``--components`` dimensions fitted on the training
rows, then logistic regression (balanced classes, ``--c``). Variants:

- ``none``: one standardisation fitted on the training rows (v5's recipe);
- ``corpus``: every corpus (each training corpus and the test corpus) standardised by its own
  mean and variance per feature (an oracle on the test side, as in the protocol);
- ``whiten``: ``corpus``, then in the PCA space every corpus whitened by its own covariance
  (Ledoit-Wolf shrinkage): second-order statistics aligned too (oracle likewise);
- ``corpus+self``: ``corpus``, then one round of self-training on the unlabelled test rows
  (the most confident 30 % of each predicted class join the training rows with the
  predicted label, and the probe is fitted again): what unsupervised adaptation to a
  deployment's own audio could add.

Settings: RAVDESS -> nEMO, nEMO -> RAVDESS, and both with speakers held out (3 folds).
Only worth building causally (deployment statistics of a covariance) if ``whiten`` beats
``corpus`` clearly. Writes ``--out`` (JSON, every fold).

    python -m bench.experiments.coral_transfer --out bench/results/coral_transfer.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, recall_score

from bench.experiments.egemaps_transfer import table_parser, wideband_table
from offline_training import cross_corpus as cc

VARIANTS = ("none", "corpus", "whiten", "corpus+self")
SELF_SHARE = 0.3  # corpus+self: the most confident share of each predicted class


def standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (x - ref.mean(axis=0)) / (ref.std(axis=0) + 1e-8)


def per_corpus(x: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for name in set(corpus.tolist()):
        rows = corpus == name
        out[rows] = standardise(x[rows], x[rows])
    return out


def whiten(z: np.ndarray, corpus: np.ndarray) -> np.ndarray:
    """Each corpus's rows times the inverse square root of its (shrunk) covariance."""
    out = np.empty_like(z)
    for name in set(corpus.tolist()):
        rows = corpus == name
        centred = z[rows] - z[rows].mean(axis=0)
        cov = LedoitWolf().fit(centred).covariance_
        values, vectors = np.linalg.eigh(cov)
        out[rows] = centred @ vectors @ np.diag(values.clip(1e-8) ** -0.5) @ vectors.T
    return out


def features(train: cc.Table, test: cc.Table, variant: str, components: int
             ) -> tuple[np.ndarray, np.ndarray]:
    if variant == "none":
        xtr, xte = standardise(train.audio, train.audio), standardise(test.audio, train.audio)
    else:
        xtr, xte = per_corpus(train.audio, train.corpus), per_corpus(test.audio, test.corpus)
    pca = PCA(components, random_state=0).fit(xtr)
    ztr, zte = pca.transform(xtr), pca.transform(xte)
    if variant.startswith("whiten"):
        ztr, zte = whiten(ztr, train.corpus), whiten(zte, test.corpus)
    scale = ztr.std(axis=0) + 1e-8  # one scale for the regulariser, fitted on training rows
    return ztr / scale, zte / scale


def score(train: cc.Table, test: cc.Table, variant: str, components: int, c: float
          ) -> dict[str, float]:
    xtr, xte = features(train, test, variant.removesuffix("+self"), components)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(
        xtr, train.labels)
    predicted = model.predict(xte)
    if variant.endswith("+self"):
        confidence = model.predict_proba(xte).max(axis=1)
        picked = []
        for label in np.unique(predicted):
            rows = np.flatnonzero(predicted == label)
            keep = max(1, int(SELF_SHARE * len(rows)))
            picked.append(rows[np.argsort(-confidence[rows])[:keep]])
        chosen = np.concatenate(picked)
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(
            np.vstack([xtr, xte[chosen]]), np.concatenate([train.labels, predicted[chosen]]))
        predicted = model.predict(xte)
    neutral = train.classes.index("neutral")
    recall = recall_score(test.labels, predicted, labels=[neutral], average=None,
                          zero_division=0)
    return {"ua": float(balanced_accuracy_score(test.labels, predicted)),
            "neutral_recall": float(recall[0])}


def main() -> None:
    parser = table_parser(__doc__)
    parser.add_argument("--components", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--c", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--out", type=Path, default=Path("bench/results/coral_transfer.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    table = wideband_table(args)
    runs = [("ravdess->nemo", table.corpus == "ravdess", table.corpus == "nemo"),
            ("nemo->ravdess", table.corpus == "nemo", table.corpus == "ravdess")]
    runs += [(f"both/{fold}", ~held, held) for fold, held in cc.both_folds(table)]
    rows: list[dict[str, Any]] = []
    for components in args.components:
        for c in args.c:
            for variant in VARIANTS:
                for name, train, test in runs:
                    m = score(table.where(train), table.where(test), variant, components, c)
                    rows.append({"run": name, "variant": variant, "components": components,
                                 "c": c, **m})
                    print(f"k={components} C={c} {variant:7s} {name:16s} UA {m['ua']:.3f} "
                          f"neutral {m['neutral_recall']:.2f}", flush=True)
    summary = []
    for components in args.components:
        for c in args.c:
            for variant in VARIANTS:
                part = [r for r in rows if r["variant"] == variant
                        and r["components"] == components and r["c"] == c]
                both = [r for r in part if r["run"].startswith("both")]
                cell = {r["run"]: round(r["ua"], 3) for r in part if "->" in r["run"]}
                cell["both_ua"] = f"{np.mean([r['ua'] for r in both]):.3f} ± " \
                                  f"{np.std([r['ua'] for r in both]):.3f}"
                summary.append({"components": components, "c": c, "variant": variant, **cell})
                print(summary[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows,
                                    "seconds": round(time.perf_counter() - started)},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
