"""The Whisper encoder path through the packaged faster-whisper tiny.en (CTranslate2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.encoders.whisper import WhisperEncoder, load_whisper, n_output_frames
from models.errors import ModelFileError


@pytest.fixture(scope="module")
def whisper() -> Any:
    return load_whisper("packaged:tiny.en", cpu_threads=1)


def test_frames_are_20ms_and_batch_matches_single(whisper: Any) -> None:
    encoder = WhisperEncoder(whisper)
    assert encoder.dim == 384
    rng = np.random.default_rng(0)
    audios = [(0.05 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 8000, 500)]
    batch = encoder.encode_batch(audios)
    assert [f.shape for f in batch] == [(50, 384), (25, 384), (2, 384)]
    single = encoder.encode(audios[1])
    np.testing.assert_allclose(single.frames, batch[1], atol=2e-2)
    assert single.storage is not None  # reusable for decoding


def test_n_output_frames() -> None:
    assert n_output_frames(0) == 1
    assert n_output_frames(320) == 1 and n_output_frames(321) == 2
    assert n_output_frames(16000 * 60) == 1500  # capped at the 30 s window


def test_missing_model_bin_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no model.bin"):
        load_whisper(str(tmp_path))
