"""Metrics against hand-computed values; results tables; confusion images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offline_training.metrics import (
    Scores,
    confusion,
    results_markdown,
    save_confusion_png,
    score,
    summarise,
    write_results,
)

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_scores_match_hand_computed_values() -> None:
    s = score(Y_TRUE, Y_PRED, 3)
    # correct: 4 of 6; recalls 2/3, 1/2, 1/1; precisions 1, 1/2, 1/2
    # F1: 0.8, 0.5, 2/3
    assert s.wa == pytest.approx(4 / 6)
    assert s.ua == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert s.uwf1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert s.wf1 == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert s.n == 6


def test_confusion_matrix() -> None:
    assert confusion(Y_TRUE, Y_PRED, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_summary_mean_and_std() -> None:
    folds = [Scores(0.5, 0.4, 0.3, 0.2, 10), Scores(0.7, 0.6, 0.5, 0.4, 10)]
    summary = summarise(folds)
    assert summary.mean["wa"] == pytest.approx(0.6) and summary.std["wa"] == pytest.approx(0.1)
    assert summary.folds == 2
    table = results_markdown({"self_mha": summary})
    assert "| self_mha | 2 | 0.600 ± 0.100 | 0.500 ± 0.100 |" in table


def test_results_files_and_confusion_png(tmp_path: Path) -> None:
    folds = [score(Y_TRUE, Y_PRED, 3)]
    write_results({"m": summarise(folds)}, {"m": folds}, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["m"]["per_fold"][0]["wa"] == pytest.approx(4 / 6)
    assert (tmp_path / "results.md").read_text().startswith("| model |")
    save_confusion_png(np.array([[2, 1], [0, 3]]), ["a", "b"], tmp_path / "c.png", "t")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_word_error_rate_normalises_and_counts_an_empty_hypothesis() -> None:
    from offline_training.metrics import word_error_rate

    assert word_error_rate("I have been waiting.", "i have been WAITING") == 0.0
    assert word_error_rate("kids are talking by the door", "kids are walking by the door") \
        == pytest.approx(1 / 6)
    assert word_error_rate("two words", "") == 1.0  # every reference word missing
