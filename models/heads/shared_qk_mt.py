"""shared_qk_mt: word-level multimodal transformer with W_Q/W_K shared across modalities.

Paper: papers/shared_weight_multimodal_transformer.txt.

1. Word-level speech: the audio frames inside each word's time span go
   through a GRU; attention pooling whose query is that word's text vector
   (alpha_ij ~ h_ij^T W_a e_i, eq. 6-7) gives one acoustic vector per word,
   so audio and text sequences have the same length W.
2. One transformer per modality (2 blocks); in every block W_Q and W_K are
   shared by the two modalities, W_V is not.
3. Mutual correlation (eq. 8-11): for each text state a relation vector
   r_t,i = H_a^T tanh(h_t,i^T W_h^t H_a), h_t = sum_i tanh(W_t h_t,i + r_t,i);
   the same the other way for audio.
4. p_c = ReLU(W_u [h_a; h_t]); two-layer classifier (ReLU, dropout).

Needs ``word_text`` (one text vector per word), ``word_spans`` (frames) and
``word_mask``; the inference code builds them from ASR word timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.heads.base import FusionHead, HeadBatch, HeadConfig, HeadOutput
from models.layers import MaskedRNN, TransformerBlock, mlp_classifier


@dataclass(frozen=True, kw_only=True)
class SharedQKMTConfig(HeadConfig):
    model_dim: int = 100  # attention layer width (paper: 100)
    num_heads: int = 4
    num_layers: int = 2  # transformer blocks per modality
    ff_dim: int = 200
    gru_hidden: int = 50  # word-level GRU (paper: 50)
    max_word_frames: int = 64  # frames kept per word (paper: 64)
    hidden_dim: int = 50  # first classifier layer (paper: 50)
    dropout: float = 0.5


class WordLevelSpeech(nn.Module):
    """Frames of each word -> GRU -> text-queried attention pooling -> one vector per word."""

    def __init__(self, audio_dim: int, text_dim: int, hidden: int, max_word_frames: int) -> None:
        super().__init__()
        self.max_word_frames = max_word_frames
        self.gru = MaskedRNN(audio_dim, hidden, bidirectional=False, cell="gru")
        self.bilinear = nn.Linear(text_dim, hidden, bias=False)  # W_a in eq. 6

    def forward(self, audio: Tensor, spans: Tensor, word_text: Tensor,
                word_mask: Tensor) -> Tensor:
        """audio (B, Ta, Da), spans (B, W, 2), word_text (B, W, Dt), word_mask (B, W)
        -> (B, W, H) with zeros at padded words."""
        b, ta, da = audio.shape
        w = spans.shape[1]
        lengths = (spans[..., 1] - spans[..., 0]).clamp(1, self.max_word_frames)  # (B, W)
        n_frames = int(lengths.max()) if lengths.numel() else 1
        offsets = torch.arange(n_frames, device=audio.device)  # (F,)
        index = (spans[..., :1] + offsets).clamp(max=ta - 1)  # (B, W, F)
        frame_mask = offsets < lengths.unsqueeze(-1)  # (B, W, F)
        frames = torch.gather(
            audio, 1, index.reshape(b, w * n_frames, 1).expand(-1, -1, da)
        ).view(b, w, n_frames, da)  # (B, W, F, Da)
        out = audio.new_zeros(b, w, self.gru.out_dim)  # (B, W, H)
        if not bool(word_mask.any()):
            return out
        # Run the GRU on real words only.
        words = frames[word_mask]  # (N, F, Da)
        masks = frame_mask[word_mask]  # (N, F)
        states = self.gru(words, masks)  # (N, F, H)
        query = self.bilinear(word_text[word_mask])  # (N, H)
        scores = torch.einsum("nfh,nh->nf", states, query)  # (N, F)
        scores = scores.masked_fill(~masks, torch.finfo(scores.dtype).min)
        alpha = torch.softmax(scores.float(), dim=-1).to(states.dtype)  # (N, F)
        pooled = torch.einsum("nf,nfh->nh", alpha, states)  # (N, H)
        out[word_mask] = pooled.to(out.dtype)
        return out  # (B, W, H)


class MutualCorrelation(nn.Module):
    """h_x = sum_i tanh(W_x h_x,i + r_x,i), r_x,i = H_y^T tanh(h_x,i^T W_h H_y). -> (B, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_h = nn.Linear(dim, dim, bias=False)
        self.w_x = nn.Linear(dim, dim)

    def forward(self, h_x: Tensor, h_y: Tensor, mask: Tensor) -> Tensor:
        """h_x, h_y (B, W, D) with the same word mask (B, W)."""
        scores = torch.tanh(torch.einsum("bid,bjd->bij", self.w_h(h_x), h_y))  # (B, W, W)
        scores = scores * mask.unsqueeze(1).to(scores.dtype)  # ignore padded words of y
        relation = torch.einsum("bij,bjd->bid", scores, h_y)  # (B, W, D)
        parts = torch.tanh(self.w_x(h_x) + relation) * mask.unsqueeze(-1).to(h_x.dtype)
        return parts.sum(dim=1)  # (B, D)


class SharedQKMTHead(FusionHead):
    config_cls = SharedQKMTConfig
    needs_words = True

    def __init__(self, config: SharedQKMTConfig) -> None:
        super().__init__(config)
        d = config.model_dim
        self.word_speech = WordLevelSpeech(config.audio_dim, config.text_dim, config.gru_hidden,
                                           config.max_word_frames)
        self.audio_in = nn.Linear(config.gru_hidden, d)
        self.text_in = nn.Linear(config.text_dim, d)
        w_q = [nn.Linear(d, d) for _ in range(config.num_layers)]  # shared W_Q per layer
        w_k = [nn.Linear(d, d) for _ in range(config.num_layers)]  # shared W_K per layer
        self.shared_q = nn.ModuleList(w_q)  # registered (and saved) once, here
        self.shared_k = nn.ModuleList(w_k)
        self.audio_blocks = nn.ModuleList(
            TransformerBlock(d, config.num_heads, config.ff_dim, config.dropout,
                             shared_qk=(w_q[i], w_k[i]))
            for i in range(config.num_layers)
        )
        self.text_blocks = nn.ModuleList(
            TransformerBlock(d, config.num_heads, config.ff_dim, config.dropout,
                             shared_qk=(w_q[i], w_k[i]))
            for i in range(config.num_layers)
        )
        self.text_correlation = MutualCorrelation(d)
        self.audio_correlation = MutualCorrelation(d)
        self.fuse = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU())  # eq. 12
        self.classifier = mlp_classifier(d, config.hidden_dim, config.num_classes,
                                         config.dropout)
        self.make_regressor(d)

    def forward(self, batch: HeadBatch) -> HeadOutput:
        batch = self.downsampled(batch)
        if batch.word_text is None or batch.word_spans is None or batch.word_mask is None:
            raise ValueError("shared_qk_mt needs HeadBatch.word_text, word_spans and word_mask")
        mask = batch.word_mask  # (B, W)
        a = self.word_speech(batch.audio, batch.word_spans, batch.word_text, mask)  # (B, W, H)
        h_a = self.audio_in(a)  # (B, W, d)
        h_t = self.text_in(batch.word_text)  # (B, W, d)
        for audio_block, text_block in zip(self.audio_blocks, self.text_blocks, strict=True):
            h_a = audio_block(h_a, h_a, mask)  # (B, W, d)
            h_t = text_block(h_t, h_t, mask)  # (B, W, d)
        text_vec = self.text_correlation(h_t, h_a, mask)  # (B, d)
        audio_vec = self.audio_correlation(h_a, h_t, mask)  # (B, d)
        fused = self.fuse(torch.cat([audio_vec, text_vec], dim=-1))  # (B, d)
        return HeadOutput(logits=self.classifier(fused), aux_loss=None,
                          regression=self.regress(fused), pooled_audio=audio_vec,
                          pooled_text=text_vec)
