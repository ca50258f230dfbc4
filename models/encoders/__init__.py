"""Encoders: audio (Whisper, Hugging Face wav2vec2/WavLM/HuBERT, prosody) and text.

Every audio encoder except Whisper (whose frames come from the ASR's own
encoder pass, see whisper.py) has ``encode_items(audios, layers) ->
list[AudioFeatures]``; all give 50 frames per second (20 ms per frame).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from models.audio import FRAMES_PER_SECOND as FRAMES_PER_SECOND  # re-exported


@dataclass(frozen=True)
class AudioFeatures:
    """One utterance's audio encoder output."""

    frames: Tensor  # (T, D) float32, final layer
    layers: Tensor | None  # (L, T, D) all hidden layers (embeddings first), if asked for
