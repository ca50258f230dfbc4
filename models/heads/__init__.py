"""Fusion heads, by name.

``build_head(name, config)`` makes a head from its registry name and a config
dict (the dict stored in bundle.json); ``make_config`` fills in the fields a
variant fixes (e.g. ``self_mha_nosp`` is ``self_mha`` with variant "nosp").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from models.heads.base import (
    FusionHead,
    HeadBatch,
    HeadConfig,
    HeadItem,
    HeadOutput,
    collate,
)
from models.heads.cm_roberta import CMRobertaHead
from models.heads.context_mmt import ContextMMTHead
from models.heads.cross_mha import CrossMHAHead
from models.heads.linear_probe import LinearProbeHead
from models.heads.mmer import MMERHead
from models.heads.self_mha import SelfMHAHead
from models.heads.shared_qk_mt import SharedQKMTHead
from models.heads.unimodal import UnimodalHead


@dataclass(frozen=True)
class HeadSpec:
    head_cls: type[FusionHead]
    fixed: dict[str, Any] = field(default_factory=dict)  # config fields the name implies
    description: str = ""


HEADS: dict[str, HeadSpec] = {
    "self_mha": HeadSpec(SelfMHAHead, {"variant": "sp"}, "self-attention + statistical pooling"),
    "self_mha_nosp": HeadSpec(SelfMHAHead, {"variant": "nosp"}, "self_mha without SP"),
    "self_mha_cls": HeadSpec(SelfMHAHead, {"variant": "cls"}, "self_mha, text = first token"),
    "cross_mha": HeadSpec(CrossMHAHead, {"variant": "sp"}, "cross-attention + statistical pooling"),
    "cross_mha_nosp": HeadSpec(CrossMHAHead, {"variant": "nosp"}, "cross_mha without SP"),
    "cross_mha_cls": HeadSpec(CrossMHAHead, {"variant": "cls"}, "cross_mha, text = first token"),
    "text_only": HeadSpec(UnimodalHead, {"modality": "text"}, "text self-attention baseline"),
    "audio_only": HeadSpec(UnimodalHead, {"modality": "audio"}, "audio self-attention baseline"),
    "shared_qk_mt": HeadSpec(SharedQKMTHead, {}, "word-level transformer, W_Q/W_K shared"),
    "mmer": HeadSpec(MMERHead, {}, "three cross-modal encoder blocks, acoustic gate, CE + a*CTC"),
    "cm_roberta": HeadSpec(CMRobertaHead, {}, "BiLSTMs, parallel self/cross attention, mid fusion"),
    "context_mmt": HeadSpec(ContextMMTHead, {"fusion": "mmt"}, "layer SE, context conv, MMT"),
    "cmt_a2t": HeadSpec(ContextMMTHead, {"fusion": "cmt_at"}, "context_mmt with CMT(A->T) only"),
    "cmt_t2a": HeadSpec(ContextMMTHead, {"fusion": "cmt_ta"}, "context_mmt with CMT(T->A) only"),
    "early_fusion": HeadSpec(ContextMMTHead, {"fusion": "early"}, "concat pooled features (EF)"),
    "late_fusion": HeadSpec(ContextMMTHead, {"fusion": "late"}, "transformer per modality (LF)"),
    "linear_probe": HeadSpec(LinearProbeHead, {"modalities": "audio+text"},
                             "baseline: logistic regression on mean+std pooled audio and text"),
    "linear_probe_audio": HeadSpec(LinearProbeHead, {"modalities": "audio"},
                                   "baseline: logistic regression on mean+std pooled audio"),
    "linear_probe_affect": HeadSpec(
        LinearProbeHead, {"modalities": "audio+affect"},
        "logistic regression on pooled audio + GoEmotions label scores of the words"),
    "linear_probe_text_affect": HeadSpec(LinearProbeHead, {"modalities": "affect"},
                                         "logistic regression on GoEmotions label scores only"),
}


def head_spec(name: str) -> HeadSpec:
    spec = HEADS.get(name)
    if spec is None:
        raise KeyError(f"unknown head '{name}'; known heads: {', '.join(sorted(HEADS))}")
    return spec


def make_config(name: str, **settings: Any) -> HeadConfig:
    """The config dataclass for head ``name``; ``settings`` must be fields of it."""
    spec = head_spec(name)
    cls = spec.head_cls.config_cls
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"head '{name}' ({cls.__name__}) has no setting(s) {unknown}; "
            f"its settings are {sorted(known)}"
        )
    for key, value in spec.fixed.items():
        if key in settings and settings[key] != value:
            raise ValueError(
                f"head '{name}' fixes {key}={value!r}, but {settings[key]!r} was given")
    return cls(**{**settings, **spec.fixed})


def build_head(name: str, config: HeadConfig | dict[str, Any]) -> FusionHead:
    """A new, randomly initialised head. ``config`` is a config object or a dict of settings."""
    spec = head_spec(name)
    if isinstance(config, dict):
        config = make_config(name, **config)
    if not isinstance(config, spec.head_cls.config_cls):
        raise TypeError(f"head '{name}' needs a {spec.head_cls.config_cls.__name__}, "
                        f"got {type(config).__name__}")
    return spec.head_cls(config)


def input_settings(name: str, *, audio_dim: int, text_dim: int, num_classes: int,
                   audio_layers: int = 1, text_layers: int = 1,
                   functionals_dim: int = 0) -> dict[str, Any]:
    """The settings of head ``name`` that must match its inputs, for ``make_config``.

    ``audio_layers``/``text_layers``: how many encoder layers the features carry
    (1 when only the last layer is kept; MiniLM-L6 with all layers gives 7).
    ``functionals_dim``: size of the prosody functionals the features carry
    (models.encoders.prosody.FUNCTIONALS_DIM), 0 if none. Only fields the
    head's config has are returned, so this works for every head::

        build_head(name, {**user_settings, **input_settings(name, audio_dim=384, ...)})
    """
    fields = {f.name for f in dataclasses.fields(head_spec(name).head_cls.config_cls)}
    candidates = {"audio_dim": audio_dim, "text_dim": text_dim, "num_classes": num_classes,
                  "audio_layers": audio_layers, "text_layers": text_layers,
                  "functionals_dim": functionals_dim}
    return {key: value for key, value in candidates.items() if key in fields}


def config_to_dict(config: HeadConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


__all__ = [
    "HEADS", "FusionHead", "HeadBatch", "HeadConfig", "HeadItem", "HeadOutput", "HeadSpec",
    "build_head", "collate", "config_to_dict", "head_spec", "input_settings", "make_config",
]
