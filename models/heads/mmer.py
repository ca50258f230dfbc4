"""mmer: multimodal interaction module with three cross-modal encoder blocks + CTC.

Paper: papers/mmer_multitask.txt. With audio frames A and text tokens T
(both projected to width d):

- block B: A as queries over T          -> P (B, Ta, d)
- block C: T as queries over P          -> R, speech-aware word representations (B, Tt, d)
- block D: T as queries over A          -> Q, word-aware speech representations (B, Tt, d)
- acoustic gate g = sigmoid(W_g [R; Q] + b_g); Q = g * Q
- M = l([Q; R]) (down-projection 2d -> d)
- logits from [meanpool(A); meanpool(M)]
- CTC head on A predicts the transcript's characters; loss = CE + alpha * CTC.

The auxiliary loss is returned in ``HeadOutput.aux_loss`` (already times
alpha) whenever the batch carries ``ctc_targets``; ``text_to_ctc_ids`` turns
a transcript into targets (upper case, no punctuation, as in the paper).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.heads.base import FusionHead, HeadBatch, HeadConfig, HeadOutput
from models.layers import TransformerBlock, masked_mean

# Index 0 is the CTC blank.
CTC_ALPHABET = "_ 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CTC_VOCAB_SIZE = len(CTC_ALPHABET)


def text_to_ctc_ids(text: str) -> list[int]:
    """Transcript -> character ids for the CTC head (unknown characters dropped)."""
    cleaned = re.sub(r"\s+", " ", text.upper()).strip()
    return [CTC_ALPHABET.index(c) for c in cleaned if c in CTC_ALPHABET[1:]]


def ctc_target(text: str) -> Tensor:
    """The CTC target of a transcript, the same in training and serving: its character ids,
    or one space for a transcript with none (CTC needs a target)."""
    ids = text_to_ctc_ids(text) or [CTC_ALPHABET.index(" ")]
    return torch.tensor(ids, dtype=torch.long)


@dataclass(frozen=True, kw_only=True)
class MMERConfig(HeadConfig):
    model_dim: int = 384  # d (paper: 768, wav2vec2-base / RoBERTa-base width)
    num_heads: int = 6
    ff_dim: int = 768
    ctc_alpha: float = 0.1  # weight of the CTC loss (paper: 0.1 best)
    ctc_vocab_size: int = CTC_VOCAB_SIZE


class MMERHead(FusionHead):
    config_cls = MMERConfig
    needs_ctc = True

    def __init__(self, config: MMERConfig) -> None:
        super().__init__(config)
        d = config.model_dim
        self.audio_proj = nn.Linear(config.audio_dim, d)
        self.text_proj = nn.Linear(config.text_dim, d)
        self.block_b = TransformerBlock(d, config.num_heads, config.ff_dim, config.dropout)
        self.block_c = TransformerBlock(d, config.num_heads, config.ff_dim, config.dropout)
        self.block_d = TransformerBlock(d, config.num_heads, config.ff_dim, config.dropout)
        self.gate = nn.Linear(2 * d, d)  # acoustic gate W_g, b_g
        self.down = nn.Linear(2 * d, d)  # l(.)
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * d, config.num_classes)
        self.ctc_head = nn.Linear(d, config.ctc_vocab_size)
        self.make_regressor(2 * d)

    def forward(self, batch: HeadBatch) -> HeadOutput:
        batch = self.downsampled(batch)
        config: MMERConfig = self.config  # type: ignore[assignment]
        a = self.audio_proj(batch.audio)  # (B, Ta, d)
        t = self.text_proj(batch.text)  # (B, Tt, d)
        p = self.block_b(a, t, batch.text_mask)  # (B, Ta, d)
        r = self.block_c(t, p, batch.audio_mask)  # (B, Tt, d)
        q = self.block_d(t, a, batch.audio_mask)  # (B, Tt, d)
        g = torch.sigmoid(self.gate(torch.cat([r, q], dim=-1)))  # (B, Tt, d)
        m = self.down(torch.cat([g * q, r], dim=-1))  # (B, Tt, d)
        pooled_a = masked_mean(a, batch.audio_mask)  # (B, d)
        pooled_m = masked_mean(m, batch.text_mask)  # (B, d)
        fused = self.drop(torch.cat([pooled_a, pooled_m], dim=-1))  # (B, 2d)
        aux = None
        if batch.ctc_targets is not None and batch.ctc_lengths is not None:
            aux = config.ctc_alpha * self.ctc_loss(a, batch.audio_mask, batch.ctc_targets,
                                                   batch.ctc_lengths)
        return HeadOutput(logits=self.classifier(fused), aux_loss=aux,
                          regression=self.regress(fused), pooled_audio=pooled_a,
                          pooled_text=pooled_m)

    def ctc_loss(self, a: Tensor, audio_mask: Tensor, targets: Tensor,
                 target_lengths: Tensor) -> Tensor:
        """CTC between per-frame character predictions on A (B, Ta, d) and the transcript."""
        log_probs = F.log_softmax(self.ctc_head(a).float(), dim=-1)  # (B, Ta, V)
        input_lengths = audio_mask.sum(dim=1)  # (B,)
        return F.ctc_loss(log_probs.transpose(0, 1), targets, input_lengths, target_lengths,
                          blank=0, reduction="mean", zero_infinity=True)

    def ctc_logits(self, batch: HeadBatch) -> Tensor:
        """Per-frame character logits (B, Ta, V), e.g. for greedy decoding in diagnostics."""
        return self.ctc_head(self.audio_proj(batch.audio))
