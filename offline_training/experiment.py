"""Running a protocol: train and test one head per fold, score, write the run's outputs.

A run directory gets, per head: ``<head>/<fold>/confusion.png``, ``<head>/predictions.jsonl``,
``<head>/history.json`` (and ``<head>/fit.json``: the chosen C of closed-form heads); and for
the whole run ``results.md`` and ``results.json`` (mean ± std over folds, pooled scores of all
folds' predictions, UA per fold).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offline_training.corpora.base import Corpus
from offline_training.dataset import build_items
from offline_training.distributed import is_main_process
from offline_training.errors import TrainingError
from offline_training.features import FeatureSet
from offline_training.metrics import (
    Scores,
    Summary,
    confusion,
    save_confusion_png,
    score,
    summarise,
    write_results,
)
from offline_training.protocols import Fold
from offline_training.train import Predictions, TrainConfig, TrainResult, predict, train_head


@dataclass(frozen=True)
class FoldResult:
    fold: str
    test: Scores
    valid: Scores
    best_epoch: int
    epochs: int
    predictions: Predictions
    details: dict[str, Any] = field(default_factory=dict)  # TrainResult.details (probe's C)


@dataclass(frozen=True)
class HeadRun:
    head: str
    folds: tuple[FoldResult, ...]
    summary: Summary
    pooled_confusion: np.ndarray  # (C, C) summed over folds


def head_class(name: str) -> type:
    from models.heads import head_spec

    return head_spec(name).head_cls


def train_fold(corpus: Corpus, features: FeatureSet, fold: Fold, config: TrainConfig,
               items: dict[str, object], verbose: bool) -> tuple[TrainResult, FoldResult]:
    train = [items[i] for i in fold.train]
    valid = [items[i] for i in fold.valid]
    speaker = {u.id: u.speaker for u in corpus.utterances}
    result = train_head(config, train, valid, features.audio_dim, features.text_dim,
                        len(corpus.classes),
                        progress=f"[{config.head} {fold.name}]" if verbose else "",
                        train_groups=[speaker[i] for i in fold.train],
                        valid_groups=[speaker[i] for i in fold.valid])
    preds, _ = predict(result.head, [items[i] for i in fold.test], fold.test,
                       device=config.device)
    test = score(preds.y_true, preds.y_pred, len(corpus.classes))
    return result, FoldResult(fold=fold.name, test=test, valid=result.valid,
                              best_epoch=result.best_epoch, epochs=len(result.history),
                              predictions=preds, details=result.details)


def run_head(corpus: Corpus, features: FeatureSet, folds: Sequence[Fold], config: TrainConfig,
             out_dir: Path, verbose: bool = False) -> HeadRun:
    items = build_items(corpus.utterances, features, corpus.classes, head_class(config.head),
                        config.context_size)
    head_dir = out_dir / config.head
    head_dir.mkdir(parents=True, exist_ok=True)
    results, histories = [], {}
    details: dict[str, dict[str, Any]] = {}  # closed-form fits: chosen C etc.
    pooled = np.zeros((len(corpus.classes), len(corpus.classes)), dtype=np.int64)
    for fold in folds:
        trained, fold_result = train_fold(corpus, features, fold, config, items, verbose)
        results.append(fold_result)
        histories[fold.name] = [asdict(h) for h in trained.history]
        if trained.details:
            details[fold.name] = trained.details
        matrix = confusion(fold_result.predictions.y_true, fold_result.predictions.y_pred,
                           len(corpus.classes))
        pooled += matrix
        if not is_main_process():
            continue
        save_confusion_png(matrix, corpus.classes, head_dir / safe(fold.name) / "confusion.png",
                           f"{config.head} {fold.name} UA {fold_result.test.ua:.3f}")
        chosen = (f"C {fold_result.details['C']:g}, inner-CV UA {fold_result.valid.ua:.3f}"
                  if "C" in fold_result.details else
                  f"best epoch {fold_result.best_epoch}/{fold_result.epochs}, validation UA "
                  f"{fold_result.valid.ua:.3f}")
        held_out = f" [{' '.join(fold.test_speakers)}]" if fold.test_speakers else ""
        print(f"{config.head} {fold.name}{held_out}: WA {fold_result.test.wa:.3f} UA "
              f"{fold_result.test.ua:.3f} WF1 {fold_result.test.wf1:.3f} ({chosen})", flush=True)
    summary = summarise([r.test for r in results], pooled_scores(results, len(corpus.classes)))
    run = HeadRun(head=config.head, folds=tuple(results), summary=summary,
                  pooled_confusion=pooled)
    if not is_main_process():
        return run
    save_confusion_png(pooled, corpus.classes, head_dir / "confusion_all_folds.png",
                       f"{config.head} all folds, UA {summary.mean['ua']:.3f}")
    write_predictions(results, corpus.classes, head_dir / "predictions.jsonl")
    (head_dir / "history.json").write_text(json.dumps(histories, indent=1))
    if details:
        (head_dir / "fit.json").write_text(json.dumps(details, indent=1))
    (head_dir / "settings.json").write_text(json.dumps(
        {"training": asdict(config), "features": asdict(features.spec)}, indent=1))
    return run


def pooled_scores(results: Sequence[FoldResult], num_classes: int) -> Scores:
    """All folds' test predictions scored together (each utterance is tested once)."""
    y_true = [y for r in results for y in r.predictions.y_true]
    y_pred = [y for r in results for y in r.predictions.y_pred]
    return score(y_true, y_pred, num_classes)


def safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_predictions(results: Sequence[FoldResult], classes: Sequence[str], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for result in results:
            p = result.predictions
            for i, utt_id in enumerate(p.ids):
                handle.write(json.dumps({
                    "id": utt_id, "fold": result.fold, "label": classes[p.y_true[i]],
                    "predicted": classes[p.y_pred[i]],
                    "probabilities": [round(float(x), 4) for x in p.probabilities[i]]}) + "\n")


def write_run(runs: Sequence[HeadRun], out_dir: Path) -> None:
    if not is_main_process():
        return
    write_results({r.head: r.summary for r in runs},
                  {r.head: [f.test for f in r.folds] for r in runs}, out_dir,
                  fold_names=[f.fold for f in runs[0].folds] if runs else ())


def report_for(run: HeadRun, corpus: Corpus, features: FeatureSet, protocol: str,
               config: TrainConfig) -> dict[str, object]:
    """The evaluation report stored in a bundle's report.json."""
    return {
        "corpus": corpus.name, "classes": list(corpus.classes), "utterances": len(corpus),
        "protocol": protocol, "features": asdict(features.spec),
        "training": {k: v for k, v in asdict(config).items()},
        "mean": run.summary.mean, "std": run.summary.std, "folds": run.summary.folds,
        "pooled": run.summary.pooled,
        "per_fold": [{"fold": f.fold, **asdict(f.test), "best_epoch": f.best_epoch}
                     for f in run.folds],
        "confusion_all_folds": run.pooled_confusion.tolist(),
    }


def report_from_run(run_dir: Path, corpus: Corpus, features: FeatureSet, protocol: str,
                    config: TrainConfig) -> dict[str, object]:
    """The report of a head evaluated earlier in ``run_dir`` (by train or ablate), checked
    against the settings of the model being exported."""
    results_path = run_dir / "results.json"
    head_dir = run_dir / config.head
    if not results_path.is_file() or not (head_dir / "predictions.jsonl").is_file():
        raise TrainingError(f"'{run_dir}' holds no evaluation of head '{config.head}' "
                            "(results.json and <head>/predictions.jsonl); run train or ablate "
                            "first, or export without --report-from")
    results = json.loads(results_path.read_text())
    if config.head not in results:
        raise TrainingError(f"'{results_path}' has no results for head '{config.head}'")
    settings_path = head_dir / "settings.json"
    if settings_path.is_file():
        settings = json.loads(settings_path.read_text())
        expected = json.loads(json.dumps({"training": asdict(config),
                                          "features": asdict(features.spec)}))
        if settings != expected:
            raise TrainingError(f"the run in '{run_dir}' was made with other settings "
                                f"({settings_path}); export with the same options or without "
                                "--report-from")
    index = {name: i for i, name in enumerate(corpus.classes)}
    matrix = np.zeros((len(corpus.classes), len(corpus.classes)), dtype=np.int64)
    for line in (head_dir / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        matrix[index[row["label"]], index[row["predicted"]]] += 1
    head = results[config.head]
    return {
        "corpus": corpus.name, "classes": list(corpus.classes), "utterances": len(corpus),
        "protocol": protocol, "features": asdict(features.spec), "training": asdict(config),
        "mean": head["mean"], "std": head["std"], "folds": head["folds"],
        "pooled": head.get("pooled", {}), "per_fold": head["per_fold"],
        "confusion_all_folds": matrix.tolist(),
        "evaluation_run": str(run_dir),
    }
