"""Tiny randomly initialised encoders saved to temp directories (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.paths import DEFAULT_TEXT_ENCODER, resolve_hf

TINY_TEXT_DIM = 32


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d BERT with the packaged MiniLM tokenizer, saved with save_pretrained."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_hf(DEFAULT_TEXT_ENCODER))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=TINY_TEXT_DIM,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    path = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
