"""Per-corpus (and per item kind) scores of a run on a combined manifest.

A run on a manifest written by ``offline_training.corpora.combine`` pools every corpus in its
scores; this splits its out-of-fold predictions (``RUN/HEAD/predictions.jsonl``) by the corpus
prefix of the ids, by band (``corpus@telephone``: the ``-tel`` copies written by
``offline_training.corpora.telephone``; ``corpus@wideband``: the rest), and for the synthetic
corpus by item kind (congruent, prosody, words, neutral: which modality carries the emotion),
with UA per fold, its mean ± std and pooled.

    .venv/bin/python bench/per_corpus.py runs/default --manifest runs/default.jsonl
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score


def scores(rows: list[dict[str, object]]) -> dict[str, object]:
    by_fold: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        by_fold[str(row["fold"])].append(row)
    fold_ua = [float(balanced_accuracy_score([r["label"] for r in rs],
                                             [r["predicted"] for r in rs]))
               for _, rs in sorted(by_fold.items())]
    labels = [r["label"] for r in rows]
    predicted = [r["predicted"] for r in rows]
    return {"n": len(rows), "fold_ua": fold_ua, "mean_ua": float(np.mean(fold_ua)),
            "std_ua": float(np.std(fold_ua)),
            "pooled_ua": float(balanced_accuracy_score(labels, predicted)),
            "pooled_wa": float(np.mean([a == b for a, b in zip(labels, predicted, strict=True)]))}


def main() -> None:
    warnings.filterwarnings("ignore", module="sklearn")  # one-class kinds: UA = recall there
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--manifest", type=Path, help="the combined manifest (item kinds)")
    args = parser.parse_args()
    kinds = {}
    if args.manifest:
        for line in args.manifest.read_text().splitlines():
            row = json.loads(line)
            kinds[row["id"]] = row.get("kind") or ""
    report: dict[str, object] = {}
    for predictions in sorted(args.run.glob("*/predictions.jsonl")):
        rows = [json.loads(line) for line in predictions.read_text().splitlines()]
        groups: dict[str, list[dict[str, object]]] = defaultdict(list)
        for row in rows:
            corpus = str(row["id"]).split("-", 1)[0]
            groups[corpus].append(row)
            if corpus == "synth":
                groups[f"synth/{kinds.get(row['id'], '?')}"].append(row)
            # offline_training.corpora.telephone's copies: each band of a corpus on its own
            band = "telephone" if str(row["id"]).endswith("-tel") else "wideband"
            groups[f"{corpus}@{band}"].append(row)
        head = predictions.parent.name
        report[head] = {name: scores(rs) for name, rs in sorted(groups.items())}
        for name, s in report[head].items():  # type: ignore[union-attr]
            print(f"{head:26s} {name:18s} n={s['n']:<5} UA {s['mean_ua']:.3f} ± "
                  f"{s['std_ua']:.3f}  pooled UA {s['pooled_ua']:.3f} "
                  f"accuracy {s['pooled_wa']:.3f}")
    (args.run / "per_corpus.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
