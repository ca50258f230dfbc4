"""self_mha: multi-head self-attention per modality + statistical pooling.

Paper: papers/self_cross_attention_fusion.txt. Each modality is projected to
a shared width, goes through its own multi-head self-attention (6 heads),
is averaged over time; the two vectors are stacked and reduced to their mean
and standard deviation (statistical pooling), concatenated, passed through a
linear layer and the classifier.

Variants (``variant``): "sp" (the paper's model), "nosp" (concatenate the two
pooled vectors instead of statistical pooling), "cls" (text reduced to its
first token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.heads.base import FusionHead, HeadBatch, HeadConfig, HeadOutput
from models.layers import MultiHeadAttention, masked_mean, stat_pool

VARIANTS = ("sp", "nosp", "cls")


@dataclass(frozen=True, kw_only=True)
class SelfMHAConfig(HeadConfig):
    model_dim: int = 384  # shared width both modalities are projected to
    num_heads: int = 6
    fused_dim: int = 256  # width of the linear layer before the classifier
    variant: str = "sp"


def check_variant(variant: str, head: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"{head}: variant '{variant}' is not one of {VARIANTS}")


def pick_text(text: Tensor, mask: Tensor, variant: str) -> tuple[Tensor, Tensor]:
    """The "cls" variant keeps only the first token. (B, Tt, D) -> (B, Tt' , D)."""
    if variant == "cls":
        return text[:, :1], mask[:, :1]
    return text, mask


def fuse_pooled(pooled_audio: Tensor, pooled_text: Tensor, variant: str) -> Tensor:
    """(B, D), (B, D) -> (B, 2D): statistical pooling, or plain concatenation for "nosp"."""
    if variant == "nosp":
        return torch.cat([pooled_audio, pooled_text], dim=-1)
    return stat_pool(torch.stack([pooled_audio, pooled_text], dim=1))  # (B, 2, D) -> (B, 2D)


class SelfMHAHead(FusionHead):
    config_cls = SelfMHAConfig

    def __init__(self, config: SelfMHAConfig) -> None:
        super().__init__(config)
        check_variant(config.variant, "self_mha")
        d = config.model_dim
        self.audio_proj = nn.Linear(config.audio_dim, d)
        self.text_proj = nn.Linear(config.text_dim, d)
        self.audio_attn = MultiHeadAttention(d, config.num_heads, config.dropout)
        self.text_attn = MultiHeadAttention(d, config.num_heads, config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.fuse = nn.Sequential(nn.Linear(2 * d, config.fused_dim), nn.ReLU(),
                                  nn.Dropout(config.dropout))
        self.classifier = nn.Linear(config.fused_dim, config.num_classes)
        self.make_regressor(config.fused_dim)

    def forward(self, batch: HeadBatch) -> HeadOutput:
        batch = self.downsampled(batch)
        variant = self.config.variant  # type: ignore[attr-defined]
        text, text_mask = pick_text(batch.text, batch.text_mask, variant)
        a = self.audio_proj(batch.audio)  # (B, Ta, d)
        t = self.text_proj(text)  # (B, Tt, d)
        a = self.drop(self.audio_attn(a, a, batch.audio_mask))  # (B, Ta, d)
        t = self.drop(self.text_attn(t, t, text_mask))  # (B, Tt, d)
        pooled_a = masked_mean(a, batch.audio_mask)  # (B, d)
        pooled_t = masked_mean(t, text_mask)  # (B, d)
        fused = self.fuse(fuse_pooled(pooled_a, pooled_t, variant))  # (B, fused_dim)
        return HeadOutput(logits=self.classifier(fused), aux_loss=None,
                          regression=self.regress(fused), pooled_audio=pooled_a,
                          pooled_text=pooled_t)
