"""Temperature scaling and expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from offline_training.calibration import expected_calibration_error, fit_temperature, softmax


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated, then sharpened 3x (as an overfit head's are)."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.2, size=(n, 4))
    probs = softmax(true_logits)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    return true_logits * 3.0, labels


def test_fitted_temperature_undoes_overconfidence() -> None:
    logits, labels = overconfident(4000, seed=0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, temperature), labels)
    assert after < before / 3 and after < 0.03
    # Scaling changes no label.
    assert (softmax(logits).argmax(1) == softmax(logits, temperature).argmax(1)).all()


def test_ece_of_perfect_and_of_wrong_confidence() -> None:
    labels = np.array([0, 1, 2, 3])
    assert expected_calibration_error(np.eye(4), labels) == pytest.approx(0.0)
    wrong = np.roll(np.eye(4), 1, axis=1)  # fully confident and always wrong
    assert expected_calibration_error(wrong, labels) == pytest.approx(1.0)
