from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.encoders.text import TextEncoder
from models.errors import ModelFileError

torch.set_num_threads(1)


def test_loads_tiny_model_from_directory(tiny_text_dir: Path) -> None:
    enc = TextEncoder.load(str(tiny_text_dir))
    assert enc.dim == 32 and enc.num_layers == 3
    out = enc.encode(["hello there", "", "a much longer sentence than the others"], layers=True)
    assert out.states.shape[0] == 3 and out.states.shape[2] == 32
    assert out.mask.sum(1).tolist()[1] == 2  # [CLS] [SEP] for empty text
    assert out.layers is not None and out.layers.shape[:2] == (3, 3)
    torch.testing.assert_close(out.layers[:, -1], out.states)


def test_padding_does_not_change_states(tiny_text_dir: Path) -> None:
    enc = TextEncoder.load(str(tiny_text_dir))
    alone = enc.encode(["hi"])
    batched = enc.encode(["hi", "this one is much longer than hi"])
    n = int(alone.mask[0].sum())
    torch.testing.assert_close(batched.states[0, :n], alone.states[0, :n], atol=1e-5, rtol=1e-4)


def test_word_level_vectors(tiny_text_dir: Path) -> None:
    enc = TextEncoder.load(str(tiny_text_dir))
    out = enc.encode_words([["day", "unbelievably"], []])
    assert out.word_states is not None and out.word_mask is not None
    assert out.word_mask.sum(1).tolist() == [2, 0]
    # [CLS] day un ##bel ##ie ##va ##bly [SEP]: a word's vector is the mean of its pieces
    assert int(out.mask[0].sum()) == 8
    torch.testing.assert_close(out.word_states[0, 0], out.states[0, 1])
    torch.testing.assert_close(out.word_states[0, 1], out.states[0, 2:7].mean(0))


def test_packaged_minilm_loads() -> None:
    enc = TextEncoder.load("packaged:all-MiniLM-L6-v2")
    assert enc.dim == 384
    assert enc.encode(["fine"]).states.shape[-1] == 384


def test_bad_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="config.json"):
        TextEncoder.load(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelFileError, match=str(tmp_path)):
        TextEncoder.load(str(tmp_path))
