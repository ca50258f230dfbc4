"""Fit the text affect model (models/text_affect.py) on GoEmotions and report its accuracy.

    .venv/bin/python -m offline_training.text_affect --goemotions ../shared/corpora/goemotions \
        --out models/text_affect/goemotions-minilm

One logistic regression per GoEmotions label (multi-label: an example counts as positive for
every label it carries) on the mean of the text encoder's token states, standardised (the
scaler is folded into the weights, so the model is one linear map). C is chosen per label by
log loss on the dev split. Reported on the test split: macro F1 over the 28 labels at 0.5,
and accuracy / UA on the examples whose labels all fall in one of four classes (neutral,
happy = the paper's joy group, sad = sadness group, angry = anger + disgust groups), where
the predicted class is the group with the highest label score.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.encoders.text import TextEncoder
from models.paths import DEFAULT_TEXT_ENCODER
from models.text_affect import (
    EKMAN_GROUPS,
    GOEMOTIONS_LABELS,
    TextAffect,
    pooled_text,
    save_text_affect,
)
from offline_training.errors import CorpusError

# The four classes of the default label set, as groups of GoEmotions labels.
FOUR_CLASSES: dict[str, tuple[str, ...]] = {
    "neutral": EKMAN_GROUPS["neutral"],
    "happy": EKMAN_GROUPS["joy"],
    "sad": EKMAN_GROUPS["sadness"],
    "angry": EKMAN_GROUPS["anger"] + EKMAN_GROUPS["disgust"],
}
CS = (0.01, 0.1, 1.0)


def read_split(path: Path) -> tuple[list[str], np.ndarray]:
    """GoEmotions TSV (text, comma-separated label ids, id) -> texts, (N, 28) 0/1 targets."""
    if not path.is_file():
        raise CorpusError(f"'{path}' not found: expected the GoEmotions simplified split "
                        "(train.tsv, dev.tsv, test.tsv with text, label ids, comment id)")
    texts, rows = [], []
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if n == 1 and row[:2] == ["text", "label"]:
                continue
            if len(row) < 2:
                raise CorpusError(f"{path}:{n}: expected text<TAB>label ids, got {row!r}")
            target = np.zeros(len(GOEMOTIONS_LABELS), dtype=np.int8)
            for label in row[1].split(","):
                if not label.isdigit() or int(label) >= len(GOEMOTIONS_LABELS):
                    raise CorpusError(f"{path}:{n}: label id '{label}' is not 0-27")
                target[int(label)] = 1
            texts.append(row[0])
            rows.append(target)
    return texts, np.stack(rows)


def embed(encoder: TextEncoder, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    """(N, Dt) pooled token states, in the order given (sorted by length for speed)."""
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for i in range(0, len(texts), batch_size):
        idx = order[i: i + batch_size]
        encoding = encoder.encode([texts[j] for j in idx])
        out[idx] = pooled_text(encoding.states, encoding.mask).numpy()
    return out


def fit(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray,
        y_dev: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Per-label logistic regressions -> weight (A, Dt), bias (A,) on raw pooled states."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    zt, zd = (x_train - mean) / std, (x_dev - mean) / std
    weight = np.zeros((y_train.shape[1], x_train.shape[1]))
    bias = np.zeros(y_train.shape[1])
    chosen = []
    for a in range(y_train.shape[1]):
        best = None
        for c in CS:
            model = LogisticRegression(C=c, max_iter=2000).fit(zt, y_train[:, a])
            loss = log_loss(y_dev[:, a], model.predict_proba(zd)[:, 1], labels=[0, 1])
            if best is None or loss < best[0]:
                best = (loss, c, model)
        assert best is not None
        _, c, model = best
        chosen.append(c)
        # Fold the standardisation in: w·(x - m)/s + b = (w/s)·x + (b - w·m/s).
        weight[a] = model.coef_[0] / std
        bias[a] = model.intercept_[0] - float(np.sum(model.coef_[0] * mean / std))
    return weight, bias, chosen


def four_class(scores: np.ndarray, labels: Sequence[str] = GOEMOTIONS_LABELS) -> np.ndarray:
    """(N, A) label scores -> (N, 4) class scores: the best label score of each group."""
    index = {name: i for i, name in enumerate(labels)}
    return np.stack([scores[:, [index[n] for n in group]].max(1)
                     for group in FOUR_CLASSES.values()], axis=1)


def four_class_targets(y: np.ndarray) -> np.ndarray:
    """(N, 28) -> (N,) class index of examples whose labels all lie in one class, else -1."""
    index = {name: i for i, name in enumerate(GOEMOTIONS_LABELS)}
    member = np.stack([y[:, [index[n] for n in group]].any(1)
                       for group in FOUR_CLASSES.values()], axis=1)
    inside = y[:, [index[n] for g in FOUR_CLASSES.values() for n in g]].sum(1) == y.sum(1)
    single = (member.sum(1) == 1) & inside
    return np.where(single, member.argmax(1), -1)


def evaluate(affect: TextAffect, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    scores = affect.scores(torch.as_tensor(x)).numpy()
    target = four_class_targets(y)
    keep = target >= 0
    predicted = four_class(scores, affect.labels).argmax(1)
    return {
        "macro_f1_28": float(f1_score(y, scores >= 0.5, average="macro", zero_division=0)),
        "four_class_n": int(keep.sum()),
        "four_class_accuracy": float(accuracy_score(target[keep], predicted[keep])),
        "four_class_ua": float(balanced_accuracy_score(target[keep], predicted[keep])),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goemotions", type=Path, required=True,
                        help="directory with train.tsv, dev.tsv, test.tsv")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    encoder = TextEncoder.load(args.text_encoder)
    splits = {}
    for name in ("train", "dev", "test"):
        texts, y = read_split(args.goemotions / f"{name}.tsv")
        splits[name] = (embed(encoder, texts), y)
        print(f"{name}: {len(texts)} texts embedded ({time.time() - start:.0f} s)", flush=True)
    weight, bias, chosen = fit(*splits["train"], *splits["dev"])
    affect = TextAffect(labels=GOEMOTIONS_LABELS, weight=torch.as_tensor(weight).float(),
                        bias=torch.as_tensor(bias).float(), text_encoder=args.text_encoder)
    report = {name: evaluate(affect, *splits[name]) for name in ("dev", "test")}
    card: dict[str, object] = {
        "data": "GoEmotions simplified (Demszky et al. 2020), train split, CC BY 4.0",
        "fitted_with": "python -m offline_training.text_affect", "chosen_c": chosen,
        "four_classes": {k: list(v) for k, v in FOUR_CLASSES.items()}, "report": report}
    save_text_affect(affect, args.out, card)
    print(json.dumps(report, indent=1))
    print(f"written to {args.out} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
