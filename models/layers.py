"""Blocks shared by the fusion heads.

Masks are boolean tensors with True at valid (non-padded) positions. Every
block here gives the same output at valid positions whatever padding follows
them, which is what makes the heads padding invariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------- masked pooling


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over time of the valid positions. x (B, T, D), mask (B, T) -> (B, D)."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (x * weights).sum(dim=1)  # (B, D)
    count = weights.sum(dim=1).clamp(min=1.0)  # (B, 1)
    return total / count


def stat_pool(vectors: Tensor) -> Tensor:
    """Statistical pooling over a stack of vectors. (B, N, D) -> (B, 2D) = [mean; std]."""
    mean = vectors.mean(dim=1)  # (B, D)
    std = (vectors.var(dim=1, unbiased=False) + 1e-6).sqrt()  # (B, D)
    return torch.cat([mean, std], dim=-1)


# ---------------------------------------------------------------- attention


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs.

    ``shared_qk`` passes in W_Q and W_K owned by the caller, to share them
    between modules (shared_qk_mt shares them across modalities). They are
    not registered here, so each shared weight appears once in state_dict.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0,
                 kv_dim: int | None = None,
                 shared_qk: tuple[nn.Linear, nn.Linear] | None = None) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.shared_qk = shared_qk  # a plain tuple: not a registered submodule
        if shared_qk is None:
            self.q_proj = nn.Linear(dim, dim)
            self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, H, T, Dh)

    def forward(self, query: Tensor, key_value: Tensor, key_mask: Tensor) -> Tensor:
        """query (B, Tq, D), key_value (B, Tk, Dkv), key_mask (B, Tk) -> (B, Tq, D)."""
        q_proj, k_proj = self.shared_qk if self.shared_qk is not None else (self.q_proj,
                                                                            self.k_proj)
        q = self._split(q_proj(query))  # (B, H, Tq, Dh)
        k = self._split(k_proj(key_value))  # (B, H, Tk, Dh)
        v = self._split(self.v_proj(key_value))  # (B, H, Tk, Dh)
        # Rows with no valid key would give NaN; let them attend everywhere (their
        # output is masked out downstream anyway).
        safe_mask = key_mask | ~key_mask.any(dim=1, keepdim=True)  # (B, Tk)
        attn_mask = safe_mask[:, None, None, :]  # (B, 1, 1, Tk)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, Tq, Dh)
        b, h, tq, dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, tq, h * dh))  # (B, Tq, D)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (B, T, D)


class TransformerBlock(nn.Module):
    """Post-LN transformer layer; cross-modal when ``key_value`` differs from ``x``."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float,
                 kv_dim: int | None = None,
                 shared_qk: tuple[nn.Linear, nn.Linear] | None = None) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads, dropout, kv_dim, shared_qk)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_value: Tensor, key_mask: Tensor) -> Tensor:
        """x (B, Tq, D), key_value (B, Tk, Dkv), key_mask (B, Tk) -> (B, Tq, D)."""
        x = self.norm1(x + self.drop(self.attn(x, key_value, key_mask)))
        return self.norm2(x + self.drop(self.ff(x)))


# ---------------------------------------------------------------- layer weighting


class LayerSqueezeExcitation(nn.Module):
    """Squeeze-and-excitation over encoder layers (context_mmt).

    Squeeze: masked mean over time and features gives one number per layer.
    Excite: a bottleneck MLP with a sigmoid gives one weight per layer; the
    output is the weighted sum of layers. (B, L, T, D), mask (B, T) -> (B, T, D).
    The bottleneck uses GELU rather than ReLU: with the paper's reduction ratio
    (= number of layers) it has a single unit, which a ReLU can leave dead.
    """

    def __init__(self, num_layers: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, num_layers // reduction)
        self.excite = nn.Sequential(
            nn.Linear(num_layers, hidden), nn.GELU(), nn.Linear(hidden, num_layers), nn.Sigmoid()
        )

    def forward(self, layers: Tensor, mask: Tensor) -> Tensor:
        b, n_layers, t, d = layers.shape
        per_layer = masked_mean(layers.mean(dim=-1).transpose(1, 2), mask)  # (B, L)
        weights = self.excite(per_layer)  # (B, L)
        return torch.einsum("bl,bltd->btd", weights, layers) / n_layers


# ---------------------------------------------------------------- recurrent


class MaskedRNN(nn.Module):
    """(Bi)GRU/LSTM over padded sequences using packing, so padding never leaks in."""

    def __init__(self, input_dim: int, hidden: int, bidirectional: bool,
                 cell: str = "gru", num_layers: int = 1) -> None:
        super().__init__()
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn_cls(input_dim, hidden, num_layers=num_layers, batch_first=True,
                           bidirectional=bidirectional)
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, D), mask (B, T) -> (B, T, H') with zeros at padded positions."""
        lengths = mask.sum(dim=1).clamp(min=1).cpu()  # (B,)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.rnn(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                     total_length=x.shape[1])
        return padded * mask.unsqueeze(-1).to(padded.dtype)  # (B, T, H')


def mlp_classifier(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Two fully connected layers: in -> hidden (ReLU, dropout) -> out."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )


def concat_in_time(x1: Tensor, mask1: Tensor, x2: Tensor, mask2: Tensor) -> tuple[Tensor, Tensor]:
    """Join two padded sequences along time, valid parts first: row b is
    [x1[b, valid]; x2[b, valid]; padding]. (B, T1, D), (B, T2, D) -> (B, T1 + T2, D), mask."""
    x = torch.cat([x1, x2], dim=1)  # (B, T1 + T2, D), padding in the middle
    mask = torch.cat([mask1, mask2], dim=1)  # (B, T1 + T2)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # valid positions first
    x = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
    return x, torch.gather(mask, 1, order)
