"""cross_mha: multi-head cross-attention each way + statistical pooling.

Paper: papers/self_cross_attention_fusion.txt. Text is projected to the audio
width (here both go to ``model_dim``); one cross-attention takes queries from
audio and keys/values from text, the other the reverse. Each output is
averaged over time, then statistical pooling, a linear layer and the
classifier, as in self_mha. Variants: "sp", "nosp", "cls" (see self_mha).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models.heads.base import FusionHead, HeadBatch, HeadConfig, HeadOutput
from models.heads.self_mha import check_variant, fuse_pooled, pick_text
from models.layers import MultiHeadAttention, masked_mean


@dataclass(frozen=True, kw_only=True)
class CrossMHAConfig(HeadConfig):
    model_dim: int = 384
    num_heads: int = 6
    fused_dim: int = 256
    variant: str = "sp"


class CrossMHAHead(FusionHead):
    config_cls = CrossMHAConfig

    def __init__(self, config: CrossMHAConfig) -> None:
        super().__init__(config)
        check_variant(config.variant, "cross_mha")
        d = config.model_dim
        self.audio_proj = nn.Linear(config.audio_dim, d)
        self.text_proj = nn.Linear(config.text_dim, d)
        self.audio_to_text = MultiHeadAttention(d, config.num_heads, config.dropout)
        self.text_to_audio = MultiHeadAttention(d, config.num_heads, config.dropout)
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
        a_major = self.drop(self.audio_to_text(a, t, text_mask))  # (B, Ta, d) audio queries
        t_major = self.drop(self.text_to_audio(t, a, batch.audio_mask))  # (B, Tt, d)
        pooled_a = masked_mean(a_major, batch.audio_mask)  # (B, d)
        pooled_t = masked_mean(t_major, text_mask)  # (B, d)
        fused = self.fuse(fuse_pooled(pooled_a, pooled_t, variant))  # (B, fused_dim)
        return HeadOutput(logits=self.classifier(fused), aux_loss=None,
                          regression=self.regress(fused), pooled_audio=pooled_a,
                          pooled_text=pooled_t)
