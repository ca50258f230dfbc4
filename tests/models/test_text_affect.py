"""The text affect model (GoEmotions label scores) and the probe that reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.errors import ModelFileError
from models.heads import HeadItem, build_head, collate
from models.text_affect import (
    PACKAGED_TEXT_AFFECT,
    TextAffect,
    load_text_affect,
    pooled_text,
    save_text_affect,
)
from offline_training.train import fit_linear_probe, paper_config


def tiny_affect(dim: int = 4, labels: int = 3) -> TextAffect:
    """Label a is 'on' when text dimension a is large."""
    weight = torch.zeros(labels, dim)
    for a in range(labels):
        weight[a, a] = 4.0
    return TextAffect(labels=tuple(f"l{a}" for a in range(labels)), weight=weight,
                      bias=torch.full((labels,), -2.0), text_encoder="test")


def test_round_trip_and_scores(tmp_path: Path) -> None:
    affect = tiny_affect()
    save_text_affect(affect, tmp_path / "m", {"data": "none"})
    loaded = load_text_affect(tmp_path / "m")
    assert loaded.labels == affect.labels and loaded.text_encoder == "test"
    states = torch.zeros(1, 3, 4)
    states[0, :2, 1] = 1.0  # two valid tokens, one padding token that must not count
    states[0, 2, 1] = 100.0
    mask = torch.tensor([[True, True, False]])
    np.testing.assert_allclose(pooled_text(states, mask), [[0.0, 1.0, 0.0, 0.0]])
    scores = loaded.scores(pooled_text(states, mask))
    assert scores.shape == (1, 3) and scores[0, 1] > 0.8 and scores[0, 0] < 0.2


def test_missing_or_broken_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="text_affect.json"):
        load_text_affect(tmp_path)
    bad = tiny_affect()
    save_text_affect(TextAffect(bad.labels, bad.weight * float("nan"), bad.bias, "t"),
                     tmp_path / "nan", {})
    with pytest.raises(ModelFileError, match="non-finite"):
        load_text_affect(tmp_path / "nan")


def test_packaged_model_is_for_the_packaged_text_encoder() -> None:
    from models.paths import DEFAULT_TEXT_ENCODER

    affect = load_text_affect(PACKAGED_TEXT_AFFECT)
    assert len(affect.labels) == 28 and affect.labels[-1] == "neutral"
    assert affect.text_encoder == DEFAULT_TEXT_ENCODER and affect.weight.shape == (28, 384)


def test_affect_probe_learns_from_the_words(tmp_path: Path) -> None:
    """Audio is noise, the words (text dim = label) carry the class: the probe on audio +
    affect scores separates the classes through the affect model it was given."""
    save_text_affect(tiny_affect(), tmp_path / "affect", {})
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(60):
        label = i % 3
        text = torch.randn(3, 4, generator=gen) * 0.1
        text[:, label] += 1.0
        items.append(HeadItem(audio=torch.randn(5, 6, generator=gen), text=text, label=label))
    groups = [f"spk{i % 5}" for i in range(60)]
    config = paper_config("linear_probe_affect", text_affect=str(tmp_path / "affect"))
    probe = build_head("linear_probe_affect", {"audio_dim": 6, "text_dim": 4, "num_classes": 3,
                                               "affect_labels": 3})
    result = fit_linear_probe(config, probe, items[:48], items[48:], groups[:48], groups[48:], 3)
    assert result.valid.ua > 0.9
    head = result.head
    assert torch.equal(head.affect_weight, tiny_affect().weight)  # kept in the state dict
    out = head(collate(items[48:]))
    assert (out.logits.argmax(1) == torch.tensor([it.label for it in items[48:]])).all()
    with pytest.raises(ValueError, match="do not fit"):
        head.set_text_affect(tiny_affect(dim=8))
