"""cm_roberta: Cross-Modal RoBERTa (BiLSTMs, parallel self/cross attention, mid-level fusion).

Paper: papers/cm_roberta_meld.txt.

- Audio x_a: pretrained audio frames, each concatenated with the utterance's
  handcrafted prosody functionals (the paper: openSMILE functionals + OpenL3
  embedding). Text x_t: the last ``text_layers_used`` text encoder layers
  concatenated per token (the paper: RoBERTa's last four).
- Two-layer BiLSTM per modality: H_a, H_t.
- Self- and cross-attention unit (SCA): two stacked layers of cross-attention
  each way (H_a^c, H_t^c) and, in parallel, two stacked layers of
  self-attention (H_a^s, H_t^s); each with residual + LayerNorm + feed-forward.
- Mid-level fusion: a BiLSTM over the joined sequence [H_a; H_t], then a
  feed-forward layer: H_mid.
- Residual branches: pooled x_a, x_t through linear + LayerNorm: H_a^r, H_t^r.
- Concatenate the seven (each pooled over time) and classify with two FC layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.heads.base import FusionHead, HeadBatch, HeadConfig, HeadOutput
from models.layers import (
    FeedForward,
    MaskedRNN,
    TransformerBlock,
    concat_in_time,
    masked_mean,
    mlp_classifier,
)


@dataclass(frozen=True, kw_only=True)
class CMRobertaConfig(HeadConfig):
    functionals_dim: int = 0  # Dp of the prosody functionals; 0 = no handcrafted branch
    text_layers_used: int = 4  # last N text layers concatenated (1 = final layer only)
    lstm_hidden: int = 128  # per direction (paper: 128 hidden neurons)
    num_heads: int = 4
    num_sca_layers: int = 2
    hidden_dim: int = 128  # first classifier layer


class CMRobertaHead(FusionHead):
    config_cls = CMRobertaConfig
    needs_text_layers = True
    needs_functionals = True

    def __init__(self, config: CMRobertaConfig) -> None:
        super().__init__(config)
        audio_in = config.audio_dim + config.functionals_dim
        text_in = config.text_dim * config.text_layers_used
        d = 2 * config.lstm_hidden
        self.audio_lstm = MaskedRNN(audio_in, config.lstm_hidden, bidirectional=True,
                                    cell="lstm", num_layers=2)
        self.text_lstm = MaskedRNN(text_in, config.lstm_hidden, bidirectional=True,
                                   cell="lstm", num_layers=2)

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(
                TransformerBlock(d, config.num_heads, 2 * d, config.dropout)
                for _ in range(config.num_sca_layers)
            )

        self.cross_audio, self.cross_text = blocks(), blocks()  # audio queries text / reverse
        self.self_audio, self.self_text = blocks(), blocks()
        self.mid_lstm = MaskedRNN(d, config.lstm_hidden, bidirectional=True, cell="lstm")
        self.mid_ff = FeedForward(d, 2 * d, config.dropout)
        self.audio_residual = nn.Sequential(nn.Linear(audio_in, d), nn.LayerNorm(d))
        self.text_residual = nn.Sequential(nn.Linear(text_in, d), nn.LayerNorm(d))
        self.drop = nn.Dropout(config.dropout)
        self.classifier = mlp_classifier(7 * d, config.hidden_dim, config.num_classes,
                                         config.dropout)
        self.make_regressor(7 * d)

    def inputs(self, batch: HeadBatch) -> tuple[Tensor, Tensor]:
        """x_a (B, Ta, Da + Dp), x_t (B, Tt, Dt * N)."""
        config: CMRobertaConfig = self.config  # type: ignore[assignment]
        x_a = batch.audio
        if config.functionals_dim > 0:
            if batch.functionals is None or batch.functionals.shape[-1] != config.functionals_dim:
                raise ValueError(
                    f"cm_roberta was configured with functionals_dim={config.functionals_dim} "
                    "but the batch has no prosody functionals of that size"
                )
            per_frame = batch.functionals.unsqueeze(1).expand(-1, x_a.shape[1], -1)
            x_a = torch.cat([x_a, per_frame], dim=-1)  # (B, Ta, Da + Dp)
        n = config.text_layers_used
        if n == 1:
            return x_a, batch.text
        if batch.text_layers is None or batch.text_layers.shape[1] < n:
            have = 1 if batch.text_layers is None else batch.text_layers.shape[1]
            raise ValueError(
                f"cm_roberta concatenates the last {n} text layers but the batch has {have}; "
                "set encoders.text.layers to 'all' or text_layers_used to 1"
            )
        last = batch.text_layers[:, -n:]  # (B, N, Tt, Dt)
        x_t = last.permute(0, 2, 1, 3).reshape(last.shape[0], last.shape[2], -1)  # (B, Tt, N*Dt)
        return x_a, x_t

    def forward(self, batch: HeadBatch) -> HeadOutput:
        batch = self.downsampled(batch)
        am, tm = batch.audio_mask, batch.text_mask
        x_a, x_t = self.inputs(batch)
        h_a = self.audio_lstm(x_a, am)  # (B, Ta, d)
        h_t = self.text_lstm(x_t, tm)  # (B, Tt, d)
        c_a, c_t = h_a, h_t
        for block_a, block_t in zip(self.cross_audio, self.cross_text, strict=True):
            c_a, c_t = block_a(c_a, c_t, tm), block_t(c_t, c_a, am)  # (B, Ta, d), (B, Tt, d)
        s_a, s_t = h_a, h_t
        for block_a, block_t in zip(self.self_audio, self.self_text, strict=True):
            s_a, s_t = block_a(s_a, s_a, am), block_t(s_t, s_t, tm)
        joined, joined_mask = concat_in_time(h_a, am, h_t, tm)  # (B, Ta + Tt, d)
        mid = self.mid_ff(self.mid_lstm(joined, joined_mask))  # (B, Ta + Tt, d)
        pooled_a = masked_mean(h_a, am)  # (B, d)
        pooled_t = masked_mean(h_t, tm)  # (B, d)
        seven = torch.cat([
            masked_mean(c_a, am), masked_mean(c_t, tm),
            masked_mean(s_a, am), masked_mean(s_t, tm),
            masked_mean(mid, joined_mask),
            self.audio_residual(masked_mean(x_a, am)),
            self.text_residual(masked_mean(x_t, tm)),
        ], dim=-1)  # (B, 7d)
        fused = self.drop(seven)
        return HeadOutput(logits=self.classifier(fused), aux_loss=None,
                          regression=self.regress(fused), pooled_audio=pooled_a,
                          pooled_text=pooled_t)
