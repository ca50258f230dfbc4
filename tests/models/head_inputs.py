"""Random encoder features for head tests (no encoders needed)."""

from __future__ import annotations

import torch

from models.heads import HeadItem, build_head, head_spec, make_config
from models.heads.base import FusionHead

AUDIO_DIM = 24
TEXT_DIM = 16
NUM_CLASSES = 4
NUM_LAYERS = 3
FUNCTIONALS_DIM = 10
VOCAB = 12

# Small sizes so every head trains in a second or two on one CPU thread.
TINY: dict[str, dict[str, object]] = {
    "self_mha": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "self_mha_nosp": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "self_mha_cls": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "cross_mha": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "cross_mha_nosp": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "cross_mha_cls": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "text_only": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "audio_only": {"model_dim": 32, "num_heads": 2, "fused_dim": 16},
    "shared_qk_mt": {"model_dim": 16, "num_heads": 2, "ff_dim": 32, "gru_hidden": 12,
                     "hidden_dim": 12},
    "cm_roberta": {"functionals_dim": FUNCTIONALS_DIM, "text_layers_used": 2, "lstm_hidden": 8,
                   "num_heads": 2, "hidden_dim": 16},
    "mmer": {"model_dim": 16, "num_heads": 2, "ff_dim": 32, "ctc_vocab_size": VOCAB},
}
_CONTEXT_MMT = {"audio_layers": NUM_LAYERS, "text_layers": NUM_LAYERS, "proj_dim": 8,
                "proj_hidden": 16, "context_size": 2, "num_heads": 2, "ff_dim": 16,
                "hidden_dim": 16}
for _name in ("context_mmt", "cmt_a2t", "cmt_t2a", "early_fusion", "late_fusion"):
    TINY[_name] = _CONTEXT_MMT


def tiny_head(name: str, dropout: float = 0.0, regression: bool = False,
              audio_pool: int = 1) -> FusionHead:
    torch.manual_seed(0)
    config = make_config(name, audio_dim=AUDIO_DIM, text_dim=TEXT_DIM, num_classes=NUM_CLASSES,
                         dropout=dropout, regression=regression, audio_pool=audio_pool,
                         **TINY.get(name, {}))
    return build_head(name, config)


def random_items(name: str, n: int, seed: int = 0, min_context: int = 0) -> list[HeadItem]:
    """``n`` utterances with random lengths and every input the head ``name`` needs."""
    head_cls = head_spec(name).head_cls
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        ta = int(torch.randint(6, 30, (1,), generator=gen))
        tt = int(torch.randint(3, 10, (1,), generator=gen))
        audio_layers = torch.randn(NUM_LAYERS, ta, AUDIO_DIM, generator=gen)
        text_layers = torch.randn(NUM_LAYERS, tt, TEXT_DIM, generator=gen)
        item = HeadItem(
            audio=audio_layers[-1], text=text_layers[-1],
            audio_layers=audio_layers if head_cls.needs_audio_layers else None,
            text_layers=text_layers if head_cls.needs_text_layers else None,
            label=i % NUM_CLASSES,
            vad=torch.rand(3, generator=gen),
        )
        if head_cls.needs_words:
            w = int(torch.randint(1, 5, (1,), generator=gen))
            edges = torch.linspace(0, ta, w + 1).long()
            spans = torch.stack([edges[:-1], torch.maximum(edges[1:], edges[:-1] + 1)], dim=1)
            item = _replace(item, word_text=torch.randn(w, TEXT_DIM, generator=gen),
                            word_spans=spans)
        if head_cls.needs_context:
            k = int(torch.randint(min_context, 4, (1,), generator=gen))
            item = _replace(item, context_audio=torch.randn(k, AUDIO_DIM, generator=gen),
                            context_text=torch.randn(k, TEXT_DIM, generator=gen))
        if head_cls.needs_functionals:
            item = _replace(item, functionals=torch.randn(FUNCTIONALS_DIM, generator=gen))
        if head_cls.needs_ctc:
            s = int(torch.randint(1, max(2, ta // 3), (1,), generator=gen))
            item = _replace(item, ctc_target=torch.randint(1, VOCAB, (s,), generator=gen))
        items.append(item)
    return items


def _replace(item: HeadItem, **changes: object) -> HeadItem:
    from dataclasses import replace

    return replace(item, **changes)
