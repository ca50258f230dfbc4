"""Whisper encoder through faster-whisper's CTranslate2 model.

The same loaded ``WhisperModel`` serves transcription (streamer/asr.py) and
emotion features: an utterance is encoded once, in Whisper's 30 s window, and
that output is used both for decoding and, sliced to the utterance's own
frames, as the audio sequence for the fusion head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import ModelFileError
from models.paths import resolve_whisper

SAMPLE_RATE = 16000
SAMPLES_PER_OUTPUT_FRAME = 320  # 10 ms mel hop x 2 (conv stride): one encoder frame = 20 ms
WINDOW_FRAMES = 3000  # mel frames in Whisper's 30 s window


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
    return max(1, min(WINDOW_FRAMES // 2, -(-n_samples // SAMPLES_PER_OUTPUT_FRAME)))


class WhisperEncoder:
    """Frame-level audio encoder: Whisper encoder output sliced to the utterance."""

    kind = "whisper"

    def __init__(self, model: Any) -> None:
        self.model = model  # faster_whisper.WhisperModel
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        return int(self.encode(np.zeros(SAMPLE_RATE // 10, dtype=np.float32)).frames.shape[1])

    def encode(self, audio: np.ndarray, window_s: float = 30.0) -> WhisperEncoding:
        """Encode ``audio`` (16 kHz float32, at most 30 s) in a padded window.

        The window is ``window_s`` seconds when the audio fits in it, else Whisper's full
        30 s. tiny.en decodes reliably from a 10 s window (bench/asr_window.py: same WER
        as 30 s on 184 utterances, 0.34x the time) but not from shorter ones.
        """
        features = self.model.feature_extractor(audio)  # (n_mels, n_frames + 1)
        content = features[:, :WINDOW_FRAMES]
        short = int(round(window_s * 100))  # mel frames: 10 ms hop
        target = short if content.shape[1] <= short < WINDOW_FRAMES else WINDOW_FRAMES
        storage = self.model.encode(np.pad(content, ((0, 0), (0, target - content.shape[1]))))
        frames = np.asarray(storage, dtype=np.float32)[0, : n_output_frames(len(audio))]
        return WhisperEncoding(features=features, storage=storage, frames=frames)

    def encode_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Frames for several utterances in one encoder call (used by the trainer)."""
        from faster_whisper.audio import pad_or_trim

        if not audios:
            return []
        feats = np.stack(
            [pad_or_trim(self.model.feature_extractor(a)[:, :WINDOW_FRAMES]) for a in audios]
        )
        out = np.asarray(self.model.encode(feats), dtype=np.float32)  # (B, 1500, D)
        return [out[i, : n_output_frames(len(a))].copy() for i, a in enumerate(audios)]
