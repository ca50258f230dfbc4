"""Augmentation in the cached-feature world: applied to each training batch, never to
validation or test, so the encoders do not run again.

- **Time masks** (SpecAugment on encoder frames): ``time_masks`` stretches per utterance, each
  up to ``time_mask_max`` of its frames, set to zero in ``audio`` and ``audio_layers``.
- **Channel masks**: ``channel_masks`` bands per utterance, each up to ``channel_mask_max``
  feature channels wide, set to zero over the whole utterance.
- **Text swap** (a modality dropout for ASR text): with probability ``text_swap`` an
  utterance is given the words of another utterance of the batch, label unchanged. A fusion
  head then learns that words may say nothing about the voice (a wrong or noisy transcript),
  and keeps the audio evidence. Word-level and context inputs are left as they are.

Masked frames stay in the padding masks, so every head sees the same shapes as in serving.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from models.heads import HeadBatch


@dataclass(frozen=True)
class AugmentConfig:
    time_masks: int = 0
    time_mask_max: float = 0.15  # fraction of the utterance's frames, per mask
    channel_masks: int = 0
    channel_mask_max: int = 40  # feature channels, per mask
    text_swap: float = 0.0  # probability per utterance

    def __post_init__(self) -> None:
        if self.time_masks < 0 or self.channel_masks < 0:
            raise ValueError("time_masks and channel_masks must be >= 0, got "
                             f"{self.time_masks} and {self.channel_masks}")
        if not 0.0 < self.time_mask_max <= 1.0:
            raise ValueError(f"time_mask_max must be in (0, 1], got {self.time_mask_max}")
        if self.channel_mask_max < 1:
            raise ValueError(f"channel_mask_max must be >= 1, got {self.channel_mask_max}")
        if not 0.0 <= self.text_swap <= 1.0:
            raise ValueError(f"text_swap must be a probability, got {self.text_swap}")

    @property
    def active(self) -> bool:
        return bool(self.time_masks or self.channel_masks or self.text_swap)


def keep_mask(lengths: Tensor, width: int, masks: int, max_span: Tensor,
              generator: torch.Generator) -> Tensor:
    """(B, width) float: 0 inside ``masks`` random spans per row, each of up to ``max_span``
    (B,) positions starting within the row's first ``lengths`` (B,) positions; 1 elsewhere."""
    b = lengths.shape[0]
    keep = torch.ones(b, width)
    positions = torch.arange(width)
    for _ in range(masks):
        span = (torch.rand(b, generator=generator) * (max_span + 1)).long()  # 0..max_span
        start = (torch.rand(b, generator=generator) * (lengths - span).clamp(min=0)).long()
        inside = (positions >= start[:, None]) & (positions < (start + span)[:, None])
        keep = keep.masked_fill(inside, 0.0)
    return keep


def augment_batch(batch: HeadBatch, config: AugmentConfig,
                  generator: torch.Generator) -> HeadBatch:
    """A training batch with ``config``'s augmentations drawn from ``generator``."""
    if not config.active:
        return batch
    b, t, d = batch.audio.shape
    device = batch.audio.device  # draws on the CPU generator, then moved: reproducible
    keep = torch.ones(b, t, d)
    if config.time_masks:
        lengths = batch.audio_mask.sum(dim=1).cpu()
        max_span = (lengths.float() * config.time_mask_max).long()
        keep = keep * keep_mask(lengths, t, config.time_masks, max_span, generator)[..., None]
    if config.channel_masks:
        width = torch.full((b,), min(config.channel_mask_max, d))
        keep = keep * keep_mask(torch.full((b,), d), d, config.channel_masks, width,
                                generator)[:, None, :]
    updates: dict[str, Tensor] = {}
    if config.time_masks or config.channel_masks:  # text swap alone leaves the frames as they are
        keep = keep.to(device=device, dtype=batch.audio.dtype)
        updates["audio"] = batch.audio * keep
        if batch.audio_layers is not None:
            updates["audio_layers"] = batch.audio_layers * keep[:, None]
    if config.text_swap and b > 1:
        swap = torch.rand(b, generator=generator) < config.text_swap
        # another utterance of the batch for each swapped one (never itself)
        other = (torch.arange(b) + torch.randint(1, b, (b,), generator=generator)) % b
        source = torch.where(swap, other, torch.arange(b)).to(device)
        updates["text"], updates["text_mask"] = batch.text[source], batch.text_mask[source]
        if batch.text_layers is not None:
            updates["text_layers"] = batch.text_layers[source]
    return replace(batch, **updates)
