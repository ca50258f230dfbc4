"""Calibrated confidence: temperature scaling fitted on held-out speakers, and its check.

``confidence`` in events is a probability that dashboards and alert rules threshold on,
so it must mean what it says: of the utterances labelled with confidence 0.8, about 80 %
should be right. Temperature scaling (Guo et al., 2017) divides the logits by one
number T fitted to minimise the negative log-likelihood of held-out predictions (here:
the out-of-fold predictions of a speaker-independent run, whose speakers the model never
saw); it changes no label. ``expected_calibration_error`` measures the gap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from offline_training.errors import TrainingError

ECE_BINS = 15


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Top-label ECE: the confidence-weighted gap between confidence and accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(float(correct[in_bin].mean())
                                       - float(confidence[in_bin].mean()))
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (LBFGS on log T)."""
    if len(logits) == 0:
        raise TrainingError("no predictions to fit a temperature on")
    z = torch.tensor(logits, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    return float(log_t.exp().item())


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def read_predictions(path: Path, classes: Sequence[str]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-probabilities (as logits), label indices and fold names from a run's
    predictions.jsonl."""
    index = {name: i for i, name in enumerate(classes)}
    logits, labels, folds = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            probs = np.asarray(row["probabilities"], dtype=np.float64)
            labels.append(index[row["label"]])
            folds.append(str(row["fold"]))
        except (json.JSONDecodeError, KeyError) as exc:
            raise TrainingError(f"{path} line {number}: not a prediction row of classes "
                                f"{list(classes)} ({exc})") from exc
        # Rounded probabilities can be 0: floor them so the log stays finite.
        logits.append(np.log(np.clip(probs, 1e-6, 1.0)))
    return np.stack(logits), np.asarray(labels), np.asarray(folds)


@dataclass(frozen=True)
class CalibrationReport:
    temperature: float  # fitted on all held-out predictions (what the bundle gets)
    ece_before: float  # at temperature 1
    ece_after: float  # each fold scaled by a temperature fitted on the other folds
    predictions: int


def calibrate_bundle(bundle: Path, predictions: Path) -> CalibrationReport:
    """Fit the bundle's temperature on a run's out-of-fold predictions (held-out speakers)
    and write it into bundle.json; the reported ECE after scaling is cross-fitted (each
    fold by a temperature from the other folds), so it is not measured on its own fit."""
    from models.bundle import Calibration, load_bundle, save_bundle

    if not predictions.is_file():
        raise TrainingError(f"predictions file '{predictions}' does not exist; run train or "
                            "ablate with a speaker-independent protocol first")
    loaded = load_bundle(bundle)
    logits, labels, folds = read_predictions(predictions, loaded.config.labels)
    scaled = np.zeros_like(logits)
    for fold in np.unique(folds):
        held = folds == fold
        others = ~held if (~held).any() else held  # one fold only: no cross-fitting possible
        scaled[held] = softmax(logits[held], fit_temperature(logits[others], labels[others]))
    temperature = fit_temperature(logits, labels)
    report = CalibrationReport(
        temperature=temperature,
        ece_before=expected_calibration_error(softmax(logits), labels),
        ece_after=expected_calibration_error(scaled, labels), predictions=len(labels))
    calibration = Calibration(temperature=temperature,
                              fitted_on=f"{len(labels)} out-of-fold predictions ({predictions})",
                              ece_before=round(report.ece_before, 4),
                              ece_after=round(report.ece_after, 4))
    config = replace(loaded.config, calibration=calibration)
    save_bundle(loaded.path, config, loaded.build_head(), loaded.report)
    return report
