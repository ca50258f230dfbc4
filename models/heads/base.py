"""What every fusion head takes and returns.

``HeadItem`` holds one utterance's encoder features (unpadded, what the
trainer caches); ``collate`` pads a list of them into a ``HeadBatch``; a head
maps a ``HeadBatch`` to a ``HeadOutput``. Masks are True at valid positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class HeadItem:
    """Encoder features of one utterance (no batch dimension, no padding)."""

    audio: Tensor  # (Ta, Da) audio frames (final or weighted layer)
    text: Tensor  # (Tt, Dt) text token states
    audio_layers: Tensor | None = None  # (La, Ta, Da) all audio encoder layers
    text_layers: Tensor | None = None  # (Lt, Tt, Dt) all text encoder layers
    word_text: Tensor | None = None  # (W, Dt) one text vector per word
    word_spans: Tensor | None = None  # (W, 2) long: [start, end) in audio frames
    context_audio: Tensor | None = None  # (K, Da) pooled audio of past utterances, oldest first
    context_text: Tensor | None = None  # (K, Dt) pooled text of past utterances
    functionals: Tensor | None = None  # (Dp,) handcrafted prosody statistics
    label: int | None = None
    ctc_target: Tensor | None = None  # (S,) long, character ids (0 is the CTC blank)
    vad: Tensor | None = None  # (3,) valence, arousal, dominance targets


@dataclass(frozen=True)
class HeadBatch:
    """A padded batch of encoder features."""

    audio: Tensor  # (B, Ta, Da)
    audio_mask: Tensor  # (B, Ta) bool
    text: Tensor  # (B, Tt, Dt)
    text_mask: Tensor  # (B, Tt) bool
    audio_layers: Tensor | None = None  # (B, La, Ta, Da)
    text_layers: Tensor | None = None  # (B, Lt, Tt, Dt)
    word_text: Tensor | None = None  # (B, W, Dt)
    word_spans: Tensor | None = None  # (B, W, 2) long, frame indices [start, end)
    word_mask: Tensor | None = None  # (B, W) bool
    context_audio: Tensor | None = None  # (B, K, Da); K aligned to the right (newest last)
    context_text: Tensor | None = None  # (B, K, Dt)
    context_mask: Tensor | None = None  # (B, K) bool
    functionals: Tensor | None = None  # (B, Dp)
    labels: Tensor | None = None  # (B,) long
    ctc_targets: Tensor | None = None  # (B, S) long, padded with 0
    ctc_lengths: Tensor | None = None  # (B,) long
    vad: Tensor | None = None  # (B, 3) float

    @property
    def batch_size(self) -> int:
        return int(self.audio.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> HeadBatch:
        """Move every tensor to ``device``; float tensors are cast to ``dtype`` if given."""
        moved: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                moved[f.name] = None
            elif dtype is not None and value.is_floating_point():
                moved[f.name] = value.to(device=device, dtype=dtype)
            else:
                moved[f.name] = value.to(device)
        return replace(self, **moved)

    def unbatch(self) -> list[HeadItem]:
        """Split into unpadded per-utterance items (inverse of ``collate``)."""
        items = []
        for i in range(self.batch_size):
            ta = int(self.audio_mask[i].sum())
            tt = int(self.text_mask[i].sum())
            w = int(self.word_mask[i].sum()) if self.word_mask is not None else 0
            k = int(self.context_mask[i].sum()) if self.context_mask is not None else 0
            kk = self.context_mask.shape[1] if self.context_mask is not None else 0
            items.append(HeadItem(
                audio=self.audio[i, :ta],
                text=self.text[i, :tt],
                audio_layers=None if self.audio_layers is None else self.audio_layers[i, :, :ta],
                text_layers=None if self.text_layers is None else self.text_layers[i, :, :tt],
                word_text=None if self.word_text is None else self.word_text[i, :w],
                word_spans=None if self.word_spans is None else self.word_spans[i, :w],
                context_audio=(None if self.context_audio is None
                               else self.context_audio[i, kk - k:]),
                context_text=None if self.context_text is None else self.context_text[i, kk - k:],
                functionals=None if self.functionals is None else self.functionals[i],
                label=None if self.labels is None else int(self.labels[i]),
                ctc_target=(None if self.ctc_targets is None or self.ctc_lengths is None
                            else self.ctc_targets[i, : int(self.ctc_lengths[i])]),
                vad=None if self.vad is None else self.vad[i],
            ))
        return items


def _pad(seqs: Sequence[Tensor], dim: int = 0, left: bool = False) -> tuple[Tensor, Tensor]:
    """Pad tensors along ``dim`` to the longest; return (stacked, mask (B, T))."""
    lengths = [int(s.shape[dim]) for s in seqs]
    longest = max(max(lengths), 1)
    padded = []
    for s, n in zip(seqs, lengths, strict=True):
        pad_amount = longest - n
        # F.pad lists pads from the last dimension backwards.
        spec = [0, 0] * (s.dim() - dim - 1) + ([pad_amount, 0] if left else [0, pad_amount])
        padded.append(F.pad(s, spec))
    positions = torch.arange(longest)
    lens = torch.tensor(lengths)
    if left:
        mask = positions.unsqueeze(0) >= (longest - lens).unsqueeze(1)
    else:
        mask = positions.unsqueeze(0) < lens.unsqueeze(1)
    return torch.stack(padded), mask


def _all_or_none(items: Sequence[HeadItem], name: str) -> list[Tensor] | None:
    values = [getattr(it, name) for it in items]
    present = [v is not None for v in values]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(f"HeadItem.{name} is set on some items of the batch but not on others")
    return values  # type: ignore[return-value]


def collate(items: Sequence[HeadItem]) -> HeadBatch:
    """Pad a list of items into a batch (context is left-padded so the newest is last)."""
    if not items:
        raise ValueError("collate() needs at least one HeadItem")
    audio, audio_mask = _pad([it.audio for it in items])
    text, text_mask = _pad([it.text for it in items])
    batch = HeadBatch(audio=audio, audio_mask=audio_mask, text=text, text_mask=text_mask)
    updates: dict[str, Any] = {}
    if (al := _all_or_none(items, "audio_layers")) is not None:
        updates["audio_layers"] = _pad(al, dim=1)[0]
    if (tl := _all_or_none(items, "text_layers")) is not None:
        updates["text_layers"] = _pad(tl, dim=1)[0]
    if (wt := _all_or_none(items, "word_text")) is not None:
        updates["word_text"], updates["word_mask"] = _pad(wt)
        spans = _all_or_none(items, "word_spans")
        if spans is None:
            raise ValueError("HeadItem.word_text is set but word_spans is not")
        updates["word_spans"] = _pad(spans)[0].long()
    if (ca := _all_or_none(items, "context_audio")) is not None:
        updates["context_audio"], updates["context_mask"] = _pad(ca, left=True)
        ct = _all_or_none(items, "context_text")
        if ct is None:
            raise ValueError("HeadItem.context_audio is set but context_text is not")
        updates["context_text"] = _pad(ct, left=True)[0]
    if (fn := _all_or_none(items, "functionals")) is not None:
        updates["functionals"] = torch.stack(fn)
    labels = [it.label for it in items]
    if all(label is not None for label in labels):
        updates["labels"] = torch.tensor(labels, dtype=torch.long)
    if (ctc := _all_or_none(items, "ctc_target")) is not None:
        updates["ctc_targets"] = _pad([c.long() for c in ctc])[0]
        updates["ctc_lengths"] = torch.tensor([int(c.shape[0]) for c in ctc], dtype=torch.long)
    if (vad := _all_or_none(items, "vad")) is not None:
        updates["vad"] = torch.stack(vad).float()
    return replace(batch, **updates)


@dataclass(frozen=True)
class HeadOutput:
    logits: Tensor  # (B, C)
    aux_loss: Tensor | None  # scalar, already weighted (e.g. alpha * CTC)
    regression: Tensor | None  # (B, 3) valence, arousal, dominance
    pooled_audio: Tensor  # (B, Da')
    pooled_text: Tensor  # (B, Dt')


@dataclass(frozen=True, kw_only=True)
class HeadConfig:
    """Settings every head has; each head's config subclasses this."""

    audio_dim: int  # Da of the audio features
    text_dim: int  # Dt of the text features
    num_classes: int
    dropout: float = 0.1
    regression: bool = False  # also predict valence/arousal/dominance (B, 3)
    # Average every N audio frames before the head reads them (50 Hz -> 50/N Hz). Emotion
    # lives in syllables and phrases, not 20 ms frames, and attention/recurrence cost falls
    # with the frame count: 4 makes the paper heads ~4x cheaper to train and to serve.
    audio_pool: int = 1

    def __post_init__(self) -> None:
        if self.audio_pool < 1:
            raise ValueError(f"audio_pool must be >= 1 (1 = every frame), got {self.audio_pool}")


class FusionHead(nn.Module):
    """Base class: subclasses set ``config_cls`` and implement ``forward``.

    Class attributes tell the feature builder what the head needs.
    """

    config_cls: ClassVar[type[HeadConfig]] = HeadConfig
    needs_words: ClassVar[bool] = False  # word_text + word_spans
    needs_context: ClassVar[bool] = False  # context_audio/context_text
    needs_audio_layers: ClassVar[bool] = False  # audio_layers (falls back to L = 1)
    needs_text_layers: ClassVar[bool] = False
    needs_functionals: ClassVar[bool] = False  # functionals (prosody statistics)
    needs_ctc: ClassVar[bool] = False  # ctc_targets for an auxiliary CTC loss (training only)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The inputs the head reads ("audio", "text"); fusion heads read both."""
        return ("audio", "text")

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.regressor: nn.Module | None = None

    def make_regressor(self, in_dim: int) -> None:
        """Add the (valence, arousal, dominance) output when ``config.regression``."""
        if self.config.regression:
            self.regressor = nn.Linear(in_dim, 3)

    def regress(self, fused: Tensor) -> Tensor | None:
        return None if self.regressor is None else self.regressor(fused)  # (B, 3)

    def forward(self, batch: HeadBatch) -> HeadOutput:
        raise NotImplementedError

    def downsampled(self, batch: HeadBatch) -> HeadBatch:
        """The batch at this head's audio frame rate (``config.audio_pool``); every head's
        ``forward`` starts with it, so training and serving pool alike."""
        return pool_audio_frames(batch, self.config.audio_pool)

    def loss(self, batch: HeadBatch, output: HeadOutput,
             class_weights: Tensor | None = None) -> Tensor:
        """Cross-entropy on ``batch.labels`` + the head's auxiliary loss + VAD MSE if given."""
        if batch.labels is None:
            raise ValueError("HeadBatch.labels is None; the loss needs labels")
        total = F.cross_entropy(output.logits.float(), batch.labels, weight=class_weights)
        if output.aux_loss is not None:
            total = total + output.aux_loss.float()
        if output.regression is not None and batch.vad is not None:
            total = total + F.mse_loss(output.regression.float(), batch.vad.float())
        return total


def pool_audio_frames(batch: HeadBatch, factor: int) -> HeadBatch:
    """Average every ``factor`` audio frames (``audio`` and ``audio_layers``), padding left
    out of the average; a pooled frame is valid if any of its frames is. Word spans are mapped
    to the pooled frames (each word keeps at least one). ``factor`` 1 changes nothing."""
    if factor == 1:
        return batch
    b, t = batch.audio_mask.shape
    groups = -(-t // factor)
    pad = groups * factor - t
    mask = F.pad(batch.audio_mask, (0, pad)).view(b, groups, factor)  # (B, G, f)
    counts = mask.sum(dim=-1)  # (B, G)
    weight = mask.to(batch.audio.dtype) / counts.clamp(min=1).unsqueeze(-1)  # (B, G, f)

    def pool(x: Tensor) -> Tensor:  # (B, *, T, D) -> (B, *, G, D)
        x = F.pad(x, (0, 0, 0, pad))
        w = weight.view(b, *([1] * (x.dim() - 3)), groups, factor, 1)
        return (x.view(*x.shape[:-2], groups, factor, x.shape[-1]) * w).sum(dim=-2)

    updates: dict[str, Any] = {"audio": pool(batch.audio), "audio_mask": counts > 0}
    if batch.audio_layers is not None:
        updates["audio_layers"] = pool(batch.audio_layers)
    if batch.word_spans is not None:
        start = batch.word_spans[..., 0] // factor
        end = torch.maximum(-(-batch.word_spans[..., 1] // factor), start + 1)
        updates["word_spans"] = torch.stack([start, end], dim=-1)
    return replace(batch, **updates)


def text_or_layers(batch: HeadBatch) -> Tensor:
    """(B, Lt, Tt, Dt): the text layers, or the final states as a single layer."""
    return batch.text_layers if batch.text_layers is not None else batch.text.unsqueeze(1)


def audio_or_layers(batch: HeadBatch) -> Tensor:
    """(B, La, Ta, Da): the audio layers, or the final frames as a single layer."""
    return batch.audio_layers if batch.audio_layers is not None else batch.audio.unsqueeze(1)
