"""context_mmt: context-aware multimodal transformer (+ early/late fusion baselines).

Paper: papers/context_aware_mmt.txt.

- All hidden layers of each encoder; a squeeze-and-excitation block
  re-weights the layers (reduction ratio = number of layers).
- An MLP with LayerNorm projects each modality to a small shared width (16).
- Context convolution (text): the projected embeddings of the K past
  utterances and of the current one are the K + 1 input channels of a
  kernel-3 convolution, giving one context-aware vector that is added to
  every text token. In streaming only past utterances exist (causal); the
  paper's 4 future ones would need a look-ahead delay.
- Fusion (``fusion``):
  "mmt"    CMT(A->T) and CMT(T->A), average-pooled, concatenated (the paper's best);
  "cmt_at" CMT(A->T) only: text queries, audio keys/values;
  "cmt_ta" CMT(T->A) only: audio queries, text keys/values;
  "early"  concatenate the time-pooled projected features (baseline EF);
  "late"   one transformer block per modality, then pool and concatenate (baseline LF).
- An MLP classifier.

Inputs: ``audio_layers`` (B, La, Ta, Da) and ``text_layers`` (B, Lt, Tt, Dt) when
the bundle keeps all layers (otherwise the final layer alone, La = Lt = 1), and
``context_text`` (B, K, Dt): mean-pooled text states of past utterances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.heads.base import (
    FusionHead,
    HeadBatch,
    HeadConfig,
    HeadOutput,
    audio_or_layers,
    text_or_layers,
)
from models.layers import LayerSqueezeExcitation, TransformerBlock, masked_mean, mlp_classifier

FUSIONS = ("mmt", "cmt_at", "cmt_ta", "early", "late")


@dataclass(frozen=True, kw_only=True)
class ContextMMTConfig(HeadConfig):
    audio_layers: int = 1  # La the audio encoder gives (hidden states incl. embeddings)
    text_layers: int = 1  # Lt
    proj_dim: int = 16  # shared width after projection (paper: 16)
    proj_hidden: int = 128
    context_size: int = 4  # past utterances in the context convolution (0 = none)
    num_heads: int = 2
    ff_dim: int = 64
    hidden_dim: int = 64  # classifier hidden layer
    fusion: str = "mmt"
    dropout: float = 0.5


def projector(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """MLP with LayerNorm mapping a modality into the shared space."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))


class ContextMMTHead(FusionHead):
    config_cls = ContextMMTConfig
    needs_context = True
    needs_audio_layers = True
    needs_text_layers = True

    def __init__(self, config: ContextMMTConfig) -> None:
        super().__init__(config)
        if config.fusion not in FUSIONS:
            raise ValueError(f"context_mmt: fusion '{config.fusion}' is not one of {FUSIONS}")
        p = config.proj_dim
        self.audio_se = LayerSqueezeExcitation(config.audio_layers, reduction=config.audio_layers)
        self.text_se = LayerSqueezeExcitation(config.text_layers, reduction=config.text_layers)
        self.audio_proj = projector(config.audio_dim, config.proj_hidden, p, config.dropout)
        self.text_proj = projector(config.text_dim, config.proj_hidden, p, config.dropout)
        if config.context_size > 0:
            self.context_proj = projector(config.text_dim, config.proj_hidden, p, config.dropout)
            self.context_conv = nn.Conv1d(config.context_size + 1, 1, kernel_size=3, padding=1)

        def block() -> TransformerBlock:
            return TransformerBlock(p, config.num_heads, config.ff_dim, config.dropout)

        fusion = config.fusion
        self.cmt_at = block() if fusion in ("mmt", "cmt_at") else None  # text queries audio
        self.cmt_ta = block() if fusion in ("mmt", "cmt_ta") else None  # audio queries text
        self.late_audio = block() if fusion == "late" else None
        self.late_text = block() if fusion == "late" else None
        fused_dim = p if fusion in ("cmt_at", "cmt_ta") else 2 * p
        self.drop = nn.Dropout(config.dropout)
        self.classifier = mlp_classifier(fused_dim, config.hidden_dim, config.num_classes,
                                         config.dropout)
        self.make_regressor(fused_dim)

    def _layers(self, layers: Tensor, expected: int, name: str) -> Tensor:
        if layers.shape[1] != expected:
            raise ValueError(
                f"context_mmt was configured with {name}_layers={expected} but the batch has "
                f"{layers.shape[1]}; set {name}_layers to the encoder's layer count (1 when "
                f"the bundle keeps only the last layer)"
            )
        return layers

    def context_vector(self, text: Tensor, text_mask: Tensor, batch: HeadBatch) -> Tensor:
        """The context-aware utterance vector (B, p) from past utterances + the current one."""
        config: ContextMMTConfig = self.config  # type: ignore[assignment]
        k = config.context_size
        b, _, p = text.shape
        if batch.context_text is not None and batch.context_mask is not None:
            ctx, mask = batch.context_text[:, -k:], batch.context_mask[:, -k:]  # newest last
            missing = k - ctx.shape[1]
            ctx = F.pad(ctx, (0, 0, missing, 0))  # (B, k, Dt), left-padded
            mask = F.pad(mask, (missing, 0), value=False)  # (B, k)
            ctx = self.context_proj(ctx) * mask.unsqueeze(-1).to(text.dtype)  # (B, k, p)
        else:
            ctx = text.new_zeros(b, k, p)
        current = masked_mean(text, text_mask).unsqueeze(1)  # (B, 1, p)
        channels = torch.cat([ctx, current], dim=1)  # (B, k + 1, p): utterances as channels
        return self.context_conv(channels).squeeze(1)  # (B, p)

    def forward(self, batch: HeadBatch) -> HeadOutput:
        batch = self.downsampled(batch)
        config: ContextMMTConfig = self.config  # type: ignore[assignment]
        am, tm = batch.audio_mask, batch.text_mask
        audio_layers = self._layers(audio_or_layers(batch), config.audio_layers, "audio")
        text_layers = self._layers(text_or_layers(batch), config.text_layers, "text")
        a = self.audio_proj(self.audio_se(audio_layers, am))  # (B, Ta, p)
        t = self.text_proj(self.text_se(text_layers, tm))  # (B, Tt, p)
        if config.context_size > 0:
            t = t + self.context_vector(t, tm, batch).unsqueeze(1)  # (B, Tt, p)
        pooled_a = masked_mean(a, am)  # (B, p)
        pooled_t = masked_mean(t, tm)  # (B, p)
        parts: list[Tensor] = []
        if config.fusion == "early":
            parts = [pooled_a, pooled_t]
        elif config.fusion == "late" and self.late_audio is not None and self.late_text is not None:
            parts = [masked_mean(self.late_audio(a, a, am), am),
                     masked_mean(self.late_text(t, t, tm), tm)]
        else:
            if self.cmt_at is not None:
                parts.append(masked_mean(self.cmt_at(t, a, am), tm))  # A -> T: (B, p)
            if self.cmt_ta is not None:
                parts.append(masked_mean(self.cmt_ta(a, t, tm), am))  # T -> A: (B, p)
        fused = self.drop(torch.cat(parts, dim=-1))  # (B, fused_dim)
        return HeadOutput(logits=self.classifier(fused), aux_loss=None,
                          regression=self.regress(fused), pooled_audio=pooled_a,
                          pooled_text=pooled_t)
