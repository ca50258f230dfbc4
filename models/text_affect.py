"""Emotional language in a transcript: GoEmotions label scores from pooled text tokens.

A one-vs-rest logistic regression per GoEmotions label (27 emotions + neutral, multi-label)
on the mean of the text encoder's token states, fitted on the GoEmotions training split by
``offline_training/text_affect.py``. Heads read the 28 scores as a compact "what do the
words say" feature (``linear_probe_affect``): it knows emotional language far beyond the few
words of a small speech corpus, and it is near constant when the words carry nothing, so a
probe trained on such a corpus gives it no weight.

The packaged model (``PACKAGED_TEXT_AFFECT``) was fitted on GoEmotions (CC BY 4.0, Demszky
et al. 2020) with the packaged MiniLM; its card is ``models/text_affect/README.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from models.digests import SHA256_KEY, file_sha256, verify_sha256
from models.errors import ModelFileError
from models.layers import masked_mean

GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral")

# The GoEmotions paper's grouping of its labels into Ekman's basic emotions (+ neutral).
EKMAN_GROUPS: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "annoyance", "disapproval"),
    "disgust": ("disgust",),
    "fear": ("fear", "nervousness"),
    "joy": ("joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism",
            "relief", "pride", "admiration", "desire", "caring"),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"),
    "neutral": ("neutral",),
}

PACKAGED_TEXT_AFFECT = Path(__file__).resolve().parent / "text_affect" / "goemotions-minilm"


@dataclass(frozen=True)
class TextAffect:
    """Weights of the per-label logistic regressions on pooled text token states."""

    labels: tuple[str, ...]
    weight: Tensor  # (A, Dt)
    bias: Tensor  # (A,)
    text_encoder: str  # the text encoder reference the weights expect

    def scores(self, pooled: Tensor) -> Tensor:
        """(B, Dt) mean token states -> (B, A) probability of each label."""
        return affect_scores(pooled, self.weight, self.bias)


def affect_scores(pooled: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """(B, Dt) mean token states, (A, Dt), (A,) -> (B, A): the per-label regressions."""
    return torch.sigmoid(pooled.float() @ weight.T + bias)


def pooled_text(states: Tensor, mask: Tensor) -> Tensor:
    """(B, T, Dt), (B, T) -> (B, Dt): what the affect regressions read (token mean)."""
    return masked_mean(states.float(), mask)


def save_text_affect(affect: TextAffect, directory: Path, card: dict[str, object]) -> None:
    """``weights.safetensors`` + ``text_affect.json`` (labels, encoder, how it was fitted,
    the weights' sha256, checked by ``load_text_affect``)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({"weight": affect.weight.contiguous(), "bias": affect.bias.contiguous()},
              str(directory / "weights.safetensors"))
    meta = {"labels": list(affect.labels), "text_encoder": affect.text_encoder, **card,
            SHA256_KEY: {"weights.safetensors": file_sha256(directory / "weights.safetensors")}}
    (directory / "text_affect.json").write_text(json.dumps(meta, indent=1) + "\n")


def load_text_affect(directory: str | Path = PACKAGED_TEXT_AFFECT) -> TextAffect:
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path, weights_path = directory / "text_affect.json", directory / "weights.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise ModelFileError(
            f"text affect model '{directory}' needs text_affect.json and weights.safetensors; "
            "fit one with 'python -m offline_training.text_affect --goemotions DIR --out DIR'")
    meta = json.loads(meta_path.read_text())
    # the weights' sha256 recorded at fitting (models.digests.verify_sha256); none: a warning
    verify_sha256(directory, meta.get(SHA256_KEY), ("weights.safetensors",), meta_path,
                  ModelFileError, "refit it (python -m offline_training.text_affect)")
    tensors = load_file(str(weights_path))
    weight, bias = tensors["weight"].float(), tensors["bias"].float()
    labels = tuple(meta["labels"])
    if weight.shape[0] != len(labels) or bias.shape != (len(labels),):
        raise ModelFileError(f"text affect model '{directory}': weights of shape "
                             f"{tuple(weight.shape)} do not match its {len(labels)} labels")
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise ModelFileError(f"text affect model '{directory}' has non-finite weights")
    return TextAffect(labels=labels, weight=weight, bias=bias,
                      text_encoder=str(meta["text_encoder"]))
