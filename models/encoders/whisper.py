"""Whisper encoder through faster-whisper's CTranslate2 model.

The same loaded ``WhisperModel`` serves transcription (models/asr.py) and
emotion features: an utterance is encoded once, in a padded window (``DEFAULT_WINDOW_S``), and
that output is used both for decoding and, sliced to the utterance's own
frames, as the audio sequence for the fusion head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from models.errors import ModelFileError
from models.paths import resolve_whisper

WINDOW_FRAMES = 3000  # mel frames in Whisper's 30 s window
# Encoder window for utterances that fit in it (longer ones use Whisper's 30 s): tiny.en keeps
# its WER at 10 s and encodes in 0.34x the time (docs/performance-asr.md). The ASR, serving
# and the trainer's feature cache all use it, so trained-on frames are the served frames.
DEFAULT_WINDOW_S = 10.0
# Audio windows a bundle's Whisper features may use: "full" = as the ASR encodes (the
# DEFAULT_WINDOW_S window); "fit" = the utterance's own length rounded up to whole seconds
# (the all-layer PyTorch pass only: a 3 s utterance costs a third of a 10 s window).
AUDIO_WINDOWS = ("full", "fit")


def window_seconds(window: str) -> float | None:
    """The ``window_s`` argument of the encoders for a bundle's audio window (None = fit)."""
    if window not in AUDIO_WINDOWS:
        raise ValueError(f"audio window '{window}' is not one of {AUDIO_WINDOWS}")
    return DEFAULT_WINDOW_S if window == "full" else None


@dataclass(frozen=True)
class WhisperEncoding:
    """One utterance encoded in the 30 s window."""

    features: np.ndarray  # (n_mels, n_frames) log-mel of the utterance, unpadded
    storage: Any  # ctranslate2.StorageView (1, 1500, D): pass to decoding as encoder_output
    frames: np.ndarray  # (T, D) float32: encoder output sliced to the utterance


def load_whisper(ref: str, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 2, num_workers: int = 1) -> Any:
    """Load a faster-whisper model from a reference (see models.paths)."""
    from faster_whisper import WhisperModel

    path = resolve_whisper(ref)
    try:
        return WhisperModel(path, device=device, compute_type=compute_type,
                            cpu_threads=cpu_threads, num_workers=num_workers)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelFileError(
            f"could not load Whisper model '{ref}' (resolved to '{path}'): {exc}. "
            "Use 'packaged:tiny.en', a local CTranslate2 directory, or a model id that is cached."
        ) from exc


def n_output_frames(n_samples: int) -> int:
    """Encoder frames covering ``n_samples`` of audio (at least 1)."""
    return max(1, min(WINDOW_FRAMES // 2, -(-n_samples // SAMPLES_PER_FRAME)))


class WhisperEncoder:
    """Frame-level audio encoder: Whisper encoder output sliced to the utterance."""

    kind = "whisper"

    def __init__(self, model: Any) -> None:
        self.model = model  # faster_whisper.WhisperModel
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        return int(self.encode(np.zeros(SAMPLE_RATE // 10, dtype=np.float32)).frames.shape[1])

    def encode(self, audio: np.ndarray, window_s: float = DEFAULT_WINDOW_S) -> WhisperEncoding:
        """Encode ``audio`` (16 kHz float32, at most 30 s) in a padded window.

        The window is ``window_s`` seconds when the audio fits in it, else Whisper's full
        30 s. tiny.en decodes reliably from a 10 s window (bench/asr_window.py: same WER
        as 30 s on 184 utterances, 0.34x the time) but not from shorter ones.
        """
        features = self.model.feature_extractor(audio)  # (n_mels, n_frames + 1)
        storage = self.model.encode(_padded(features, window_s))
        frames = np.asarray(storage, dtype=np.float32)[0, : n_output_frames(len(audio))]
        return WhisperEncoding(features=features, storage=storage, frames=frames)

    def encode_batch(self, audios: list[np.ndarray],
                     window_s: float | None = DEFAULT_WINDOW_S) -> list[np.ndarray]:
        """Frames for several utterances, as ``encode`` gives them; one encoder call per
        window length."""
        padded = [_padded(self.model.feature_extractor(a), window_s)[0] for a in audios]
        out: list[np.ndarray | None] = [None] * len(audios)
        for width in sorted({p.shape[1] for p in padded}):
            index = [i for i, p in enumerate(padded) if p.shape[1] == width]
            encoded = np.asarray(self.model.encode(np.stack([padded[i] for i in index])),
                                 dtype=np.float32)  # (B, width // 2, D)
            for row, i in enumerate(index):
                out[i] = encoded[row, : n_output_frames(len(audios[i]))].copy()
        return [frames for frames in out if frames is not None]


def _padded(features: np.ndarray, window_s: float | None) -> np.ndarray:
    """(1, n_mels, window) log-mel padded with zeros: ``window_s`` when the audio fits in it,
    else Whisper's 30 s; ``window_s`` None: the audio's own length in whole seconds."""
    content = features[:, :WINDOW_FRAMES]
    if window_s is None:
        short = max(100, -(-content.shape[1] // 100) * 100)  # mel frames: 10 ms hop
    else:
        short = int(round(window_s * 100))
    target = short if content.shape[1] <= short < WINDOW_FRAMES else WINDOW_FRAMES
    return np.pad(content, ((0, 0), (0, target - content.shape[1])))[None]
