"""text_only / audio_only baselines: self-attention on one modality.

The paper's baselines (papers/self_cross_attention_fusion.txt): projection,
multi-head self-attention, temporal average pooling, a linear layer and the
classifier, on one modality only. The other modality is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.heads.base import FusionHead, HeadBatch, HeadConfig, HeadOutput
from models.layers import MultiHeadAttention, masked_mean


@dataclass(frozen=True, kw_only=True)
class UnimodalConfig(HeadConfig):
    modality: str = "text"  # "text" or "audio"
    model_dim: int = 384
    num_heads: int = 6
    fused_dim: int = 256


class UnimodalHead(FusionHead):
    @property
    def modalities(self) -> tuple[str, ...]:
        return (self.config.modality,)  # type: ignore[attr-defined]

    config_cls = UnimodalConfig

    def __init__(self, config: UnimodalConfig) -> None:
        super().__init__(config)
        if config.modality not in ("text", "audio"):
            raise ValueError(f"unimodal head: modality '{config.modality}' is not text or audio")
        in_dim = config.text_dim if config.modality == "text" else config.audio_dim
        d = config.model_dim
        self.proj = nn.Linear(in_dim, d)
        self.attn = MultiHeadAttention(d, config.num_heads, config.dropout)
        self.drop = nn.Dropout(config.dropout)
        self.fuse = nn.Sequential(nn.Linear(d, config.fused_dim), nn.ReLU(),
                                  nn.Dropout(config.dropout))
        self.classifier = nn.Linear(config.fused_dim, config.num_classes)
        self.make_regressor(config.fused_dim)

    def forward(self, batch: HeadBatch) -> HeadOutput:
        batch = self.downsampled(batch)
        use_text = self.config.modality == "text"  # type: ignore[attr-defined]
        x, mask = (batch.text, batch.text_mask) if use_text else (batch.audio, batch.audio_mask)
        h = self.proj(x)  # (B, T, d)
        h = self.drop(self.attn(h, h, mask))  # (B, T, d)
        pooled = masked_mean(h, mask)  # (B, d)
        fused = self.fuse(pooled)  # (B, fused_dim)
        empty = torch.zeros(pooled.shape[0], 0, dtype=pooled.dtype, device=pooled.device)
        return HeadOutput(logits=self.classifier(fused), aux_loss=None,
                          regression=self.regress(fused),
                          pooled_audio=empty if use_text else pooled,
                          pooled_text=pooled if use_text else empty)
