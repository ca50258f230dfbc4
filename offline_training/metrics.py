"""Metrics of the papers: WA, UA (UWA), WF1, UWF1; per fold, mean +- std over folds and
pooled (all folds' predictions scored together); confusion matrix images; results tables
(markdown + JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

METRIC_NAMES = ("wa", "ua", "wf1", "uwf1")


@dataclass(frozen=True)
class Scores:
    """WA = accuracy, UA = mean per-class recall (balanced accuracy), WF1 = F1 weighted by
    class frequency, UWF1 = macro F1. ``n`` = number of utterances scored."""

    wa: float
    ua: float
    wf1: float
    uwf1: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in METRIC_NAMES}


@dataclass(frozen=True)
class Summary:
    """Mean and (population) standard deviation of each metric over folds; ``pooled``: each
    metric of all folds' test predictions together (empty when not computed)."""

    mean: dict[str, float]
    std: dict[str, float]
    folds: int
    pooled: dict[str, float] = field(default_factory=dict)


def score(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> Scores:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    if len(y_true) == 0:
        raise ValueError("score() needs at least one prediction")
    labels = sorted(set(y_true))  # UA averages over the classes present in the reference
    all_labels = list(range(num_classes))
    return Scores(
        wa=float(accuracy_score(y_true, y_pred)),
        ua=float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        wf1=float(f1_score(y_true, y_pred, labels=all_labels, average="weighted",
                           zero_division=0)),
        uwf1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        n=len(y_true),
    )


def summarise(per_fold: Sequence[Scores], pooled: Scores | None = None) -> Summary:
    if not per_fold:
        raise ValueError("summarise() needs at least one fold")
    table = np.array([[getattr(s, m) for m in METRIC_NAMES] for s in per_fold])
    return Summary(mean=dict(zip(METRIC_NAMES, table.mean(0).tolist(), strict=True)),
                   std=dict(zip(METRIC_NAMES, table.std(0).tolist(), strict=True)),
                   folds=len(per_fold),
                   pooled={} if pooled is None else pooled.as_dict())


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def confusion_text(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as an aligned text table (rows: reference, columns: predicted),
    with each row's recall."""
    width = max(6, *(len(c) for c in classes), len(str(int(matrix.max(initial=0)))))
    lines = [" " * width + " " + " ".join(f"{c:>{width}}" for c in classes) + "  recall"]
    for i, name in enumerate(classes):
        total = int(matrix[i].sum())
        recall = f"{matrix[i, i] / total:.3f}" if total else "–"
        lines.append(f"{name:>{width}} " + " ".join(f"{int(v):>{width}}" for v in matrix[i])
                     + f"  {recall}")
    return "\n".join(lines) + "\n"


def save_confusion_png(matrix: np.ndarray, classes: Sequence[str], path: Path,
                       title: str) -> None:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float),
                           where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(classes), 1.0 + 0.8 * len(classes)))
    ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center",
                    color="white" if normalised[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_cell(summary: Summary, metric: str) -> str:
    if summary.folds == 1:
        return f"{summary.mean[metric]:.3f}"
    return f"{summary.mean[metric]:.3f} ± {summary.std[metric]:.3f}"


POOLED_NAMES = ("wa", "ua", "wf1")


def results_markdown(rows: dict[str, Summary],
                     per_fold: dict[str, list[Scores]] | None = None,
                     fold_names: Sequence[str] = ()) -> str:
    """One row per model: WA, UA, WF1, UWF1 as mean ± std over folds, then pooled WA, UA, WF1;
    with ``per_fold``, a second table of each fold's UA (``fold_names`` head its columns)."""
    lines = ["| model | folds | WA | UA | WF1 | UWF1 | pooled WA | pooled UA | pooled WF1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, summary in rows.items():
        cells = " | ".join(format_cell(summary, m) for m in METRIC_NAMES)
        pooled = " | ".join(f"{summary.pooled[m]:.3f}" if m in summary.pooled else "–"
                            for m in POOLED_NAMES)
        lines.append(f"| {name} | {summary.folds} | {cells} | {pooled} |")
    longest = max((len(v) for v in (per_fold or {}).values()), default=0)
    if longest > 1:
        names = list(fold_names)[:longest] + [f"fold {i + 1}" for i in
                                              range(len(fold_names), longest)]
        lines += ["", "UA per fold:", "", "| model | " + " | ".join(names) + " |",
                  "|---|" + "---|" * longest]
        for name, scores in (per_fold or {}).items():
            uas = [f"{s.ua:.3f}" for s in scores] + ["–"] * (longest - len(scores))
            lines.append(f"| {name} | " + " | ".join(uas) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows: dict[str, Summary], per_fold: dict[str, list[Scores]],
                  out_dir: Path, fold_names: Sequence[str] = ()) -> None:
    """``results.md`` and ``results.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(results_markdown(rows, per_fold, fold_names),
                                        encoding="utf-8")
    data = {name: {"mean": s.mean, "std": s.std, "folds": s.folds, "pooled": s.pooled,
                   "fold_names": list(fold_names)[:len(per_fold.get(name, []))],
                   "per_fold": [asdict(f) for f in per_fold.get(name, [])]}
            for name, s in rows.items()}
    (out_dir / "results.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` after ``models.asr.normalize_words``
    (case, punctuation and number words as the ASR checks use them); an empty hypothesis
    counts as every reference word deleted. One definition for tests and benchmarks."""
    import jiwer

    from models.asr import normalize_words

    return float(jiwer.wer(" ".join(normalize_words(reference)),
                           " ".join(normalize_words(hypothesis)) or "<empty>"))
