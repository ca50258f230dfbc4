"""Running a protocol: train and test one head per fold, score, write the run's outputs.

A run directory gets ``run.json`` (the options of the run, checked by ``--resume``), per
head: ``<head>/<fold>/confusion.png`` and ``<head>/<fold>/fold.json`` (the finished fold's
scores, history and predictions), ``<head>/predictions.jsonl``, ``<head>/history.json``,
``<head>/settings.json`` (and ``<head>/fit.json``: the chosen C of closed-form heads); and for
the whole run ``results.md`` and ``results.json`` (mean ± std over folds, pooled scores of all
folds' predictions, UA per fold). All of them are rewritten after every fold, so a stopped run
keeps the folds it finished.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.heads import HeadItem
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
from offline_training.train import (
    EpochLog,
    Predictions,
    TrainConfig,
    TrainResult,
    predict,
    train_head,
)

FOLD_RECORD = "fold.json"  # a finished fold: scores, history, predictions (for --resume)


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
               items: dict[str, HeadItem], verbose: bool,
               progress: bool = False) -> tuple[TrainResult, FoldResult]:
    from tqdm import tqdm

    train = [items[i] for i in fold.train]
    valid = [items[i] for i in fold.valid]
    speaker = {u.id: u.speaker for u in corpus.utterances}
    closed_form = getattr(head_class(config.head), "closed_form", False)
    bar = tqdm(total=config.max_epochs, desc=f"{config.head} {fold.name} epochs", unit="ep",
               disable=not progress or closed_form, leave=False)

    def on_epoch(log: EpochLog) -> None:  # early stopping may end before max_epochs
        bar.set_postfix_str(f"valid UA {log.valid.ua:.3f} loss {log.valid_loss:.3f}")
        bar.update(1)

    try:
        result = train_head(config, train, valid, features.audio_dim, features.text_dim,
                            len(corpus.classes),
                            progress=f"[{config.head} {fold.name}]" if verbose else "",
                            train_groups=[speaker[i] for i in fold.train],
                            valid_groups=[speaker[i] for i in fold.valid], on_epoch=on_epoch)
    finally:
        bar.close()
    preds, _ = predict(result.head, [items[i] for i in fold.test], fold.test,
                       device=config.device)
    test = score(preds.y_true, preds.y_pred, len(corpus.classes))
    return result, FoldResult(fold=fold.name, test=test, valid=result.valid,
                              best_epoch=result.best_epoch, epochs=len(result.history),
                              predictions=preds, details=result.details)


def run_head(corpus: Corpus, features: FeatureSet, folds: Sequence[Fold], config: TrainConfig,
             out_dir: Path, verbose: bool = False, resume: bool = False,
             progress: bool = False,
             on_fold: Callable[[HeadRun], None] | None = None) -> HeadRun:
    """Train and test ``config.head`` on every fold. After each fold the head's files
    (predictions, histories, fits, the fold's record) are rewritten with the folds finished so
    far and ``on_fold`` gets the partial run, so a stopped run keeps what it finished. With
    ``resume``, a fold whose record ``<head>/<fold>/fold.json`` exists is read, not retrained
    (the caller checks that the run directory was made with the same options)."""
    from tqdm import tqdm

    if not folds:
        raise TrainingError("the protocol gave no fold to run")
    head_dir = out_dir / config.head
    head_dir.mkdir(parents=True, exist_ok=True)
    items: dict[str, HeadItem] | None = None  # built when a fold has to be trained
    results: list[FoldResult] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    pooled = np.zeros((len(corpus.classes), len(corpus.classes)), dtype=np.int64)
    bar = tqdm(total=len(folds), desc=f"{config.head} folds", unit="fold",
               disable=not progress, leave=False)
    for fold in folds:
        record = fold_record_path(head_dir, fold.name)
        if resume and record.is_file():
            fold_result, history = load_fold(record, fold)
            say(f"{config.head} {fold.name}: finished earlier, read from {record} "
                f"(UA {fold_result.test.ua:.3f})")
        else:
            if items is None:
                items = build_items(corpus.utterances, features, corpus.classes,
                                    head_class(config.head), config.context_size)
            trained, fold_result = train_fold(corpus, features, fold, config, items, verbose,
                                              progress)
            history = [asdict(h) for h in trained.history]
            if is_main_process():
                save_fold_outputs(fold_result, history, fold, corpus.classes, config.head,
                                  record)
        results.append(fold_result)
        histories[fold.name] = history
        pooled += confusion(fold_result.predictions.y_true, fold_result.predictions.y_pred,
                            len(corpus.classes))
        run = HeadRun(head=config.head, folds=tuple(results),
                      summary=summarise([r.test for r in results],
                                        pooled_scores(results, len(corpus.classes))),
                      pooled_confusion=pooled.copy())
        if is_main_process():
            write_head_files(run, histories, corpus.classes, config, features, head_dir)
        if on_fold is not None:
            on_fold(run)
        bar.set_postfix_str(f"{fold.name} UA {fold_result.test.ua:.3f}")
        bar.update(1)
    bar.close()
    if is_main_process():
        save_confusion_png(pooled, corpus.classes, head_dir / "confusion_all_folds.png",
                           f"{config.head} all folds, UA {run.summary.mean['ua']:.3f}")
    return run


def say(line: str) -> None:
    """A line on stdout that does not break a progress bar drawn on stderr."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def fold_record_path(head_dir: Path, fold_name: str) -> Path:
    """Where a finished fold's record lives; written last, so it marks the fold finished."""
    return head_dir / safe(fold_name) / FOLD_RECORD


def save_fold_outputs(result: FoldResult, history: list[dict[str, Any]], fold: Fold,
                      classes: Sequence[str], head: str, record: Path) -> None:
    """A freshly trained fold: its confusion PNG, its result line, then its record."""
    matrix = confusion(result.predictions.y_true, result.predictions.y_pred, len(classes))
    save_confusion_png(matrix, classes, record.parent / "confusion.png",
                       f"{head} {fold.name} UA {result.test.ua:.3f}")
    chosen = (f"C {result.details['C']:g}, inner-CV UA {result.valid.ua:.3f}"
              if "C" in result.details else
              f"best epoch {result.best_epoch}/{result.epochs}, validation UA "
              f"{result.valid.ua:.3f}")
    held_out = f" [{' '.join(fold.test_speakers)}]" if fold.test_speakers else ""
    say(f"{head} {fold.name}{held_out}: WA {result.test.wa:.3f} UA "
        f"{result.test.ua:.3f} WF1 {result.test.wf1:.3f} ({chosen})")
    p = result.predictions
    write_json_atomically(record, {
        "fold": result.fold, "test": asdict(result.test), "valid": asdict(result.valid),
        "best_epoch": result.best_epoch, "epochs": result.epochs, "details": result.details,
        "history": history,
        "predictions": {"ids": list(p.ids), "y_true": list(p.y_true), "y_pred": list(p.y_pred),
                        "probabilities": np.asarray(p.probabilities).tolist()}})


def load_fold(record: Path, fold: Fold) -> tuple[FoldResult, list[dict[str, Any]]]:
    """A fold finished by an earlier run of the same options, from its record."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        p = data["predictions"]
        predictions = Predictions(ids=tuple(p["ids"]), y_true=tuple(p["y_true"]),
                                  y_pred=tuple(p["y_pred"]),
                                  probabilities=np.asarray(p["probabilities"],
                                                           dtype=np.float32))
        result = FoldResult(fold=data["fold"], test=Scores(**data["test"]),
                            valid=Scores(**data["valid"]), best_epoch=data["best_epoch"],
                            epochs=data["epochs"], predictions=predictions,
                            details=data["details"])
        history = data["history"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TrainingError(f"fold record '{record}' is unreadable ({exc!r}); delete it to "
                            "train that fold again") from exc
    if result.fold != fold.name or sorted(predictions.ids) != sorted(fold.test):
        raise TrainingError(f"fold record '{record}' was tested on other utterances than fold "
                            f"'{fold.name}' now has; the corpus or the protocol changed since: "
                            "start the run afresh (without --resume) or in a new --out")
    return result, history


def write_head_files(run: HeadRun, histories: dict[str, list[dict[str, Any]]],
                     classes: Sequence[str], config: TrainConfig, features: FeatureSet,
                     head_dir: Path) -> None:
    """The head's files for the folds finished so far."""
    write_predictions(run.folds, classes, head_dir / "predictions.jsonl")
    (head_dir / "history.json").write_text(json.dumps(histories, indent=1))
    details = {f.fold: f.details for f in run.folds if f.details}
    if details:
        (head_dir / "fit.json").write_text(json.dumps(details, indent=1))
    (head_dir / "settings.json").write_text(json.dumps(
        {"training": asdict(config), "features": asdict(features.spec)}, indent=1))


def write_json_atomically(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


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


RUN_RECORD = "run.json"


def start_run(out_dir: Path, record: dict[str, Any], resume: bool) -> None:
    """Record the run's options in ``out_dir/run.json``. With ``resume`` the directory must
    hold a run made with the same options; without it, fold records of an earlier run there
    are removed (they are not this run's)."""
    path = out_dir / RUN_RECORD
    current = json.loads(json.dumps(record))  # tuples as lists, as read back
    if resume:
        if not path.is_file():
            raise TrainingError(f"nothing to resume in '{out_dir}': it has no {RUN_RECORD}; "
                                "run without --resume to start the run")
        recorded = json.loads(path.read_text(encoding="utf-8"))
        changed = differences(recorded, current)
        if changed:
            listed = "; ".join(changed[:8]) + ("; ..." if len(changed) > 8 else "")
            raise TrainingError(f"the run in '{out_dir}' was made with other options "
                                f"({listed}); resume it with the options in {path}, or "
                                "start a new run without --resume (or in another --out)")
        return
    if not is_main_process():
        return
    stale = sorted(out_dir.glob(f"*/*/{FOLD_RECORD}"))
    if stale:
        print(f"{out_dir} holds {len(stale)} finished fold(s) of an earlier run: starting "
              "afresh (--resume continues a stopped run instead)", flush=True)
        for old in stale:
            old.unlink()
    write_json_atomically(path, current)


def differences(recorded: Any, current: Any, where: str = "") -> list[str]:
    """What differs between two JSON values, as 'key: recorded X, now Y' lines."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current), key=str):
            name = f"{where}.{key}" if where else str(key)
            if key not in recorded:
                out.append(f"{name}: not recorded, now {json.dumps(current[key])}")
            elif key not in current:
                out.append(f"{name}: recorded {json.dumps(recorded[key])}, now absent")
            else:
                out += differences(recorded[key], current[key], name)
        return out
    if isinstance(recorded, list) and isinstance(current, list) and len(recorded) == len(current):
        return [line for i, (a, b) in enumerate(zip(recorded, current, strict=True))
                for line in differences(a, b, f"{where}.{i}" if where else str(i))]
    if recorded != current:
        return [f"{where}: recorded {json.dumps(recorded)}, now {json.dumps(current)}"]
    return []


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
                    config: TrainConfig, expected_folds: int | None = None
                    ) -> dict[str, object]:
    """The report of a head evaluated earlier in ``run_dir`` (by train or ablate), checked
    against the settings of the model being exported (and, with ``expected_folds``, that the
    run finished all its folds)."""
    results_path = run_dir / "results.json"
    head_dir = run_dir / config.head
    if not results_path.is_file() or not (head_dir / "predictions.jsonl").is_file():
        raise TrainingError(f"'{run_dir}' holds no evaluation of head '{config.head}' "
                            "(results.json and <head>/predictions.jsonl); run train or ablate "
                            "first, or export without --report-from")
    results = json.loads(results_path.read_text())
    if config.head not in results:
        raise TrainingError(f"'{results_path}' has no results for head '{config.head}'")
    finished = results[config.head]["folds"]
    if expected_folds is not None and finished < expected_folds:
        raise TrainingError(f"the run in '{run_dir}' finished {finished} of the {expected_folds} "
                            f"folds of head '{config.head}' (it was stopped); finish it with "
                            "the same train/ablate command and --resume, then export")
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
