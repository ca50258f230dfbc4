"""Turning cached features into the heads' ``HeadItem``s (labels, context, functionals)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from models.features import TextFeatures, head_item
from models.heads import FusionHead, HeadItem
from offline_training.errors import FeatureCacheError
from offline_training.features import FeatureSet
from offline_training.records import Utterance


def context_index(utterances: Sequence[Utterance], size: int) -> dict[str, list[str]]:
    """For each utterance, the ids of up to ``size`` earlier utterances of its dialog (oldest
    first; past only, as in streaming). Utterances without a dialog id get no context."""
    by_dialog: dict[str, list[Utterance]] = {}
    for utt in utterances:
        if utt.dialog_id:
            by_dialog.setdefault(utt.dialog_id, []).append(utt)
    past: dict[str, list[str]] = {u.id: [] for u in utterances}
    for dialog in by_dialog.values():
        ordered = sorted(dialog, key=lambda u: u.order)
        for position, utt in enumerate(ordered):
            past[utt.id] = [u.id for u in ordered[max(0, position - size):position]] if size else []
    return past


def pooled(features: FeatureSet, ids: Sequence[str], dim_audio: int, dim_text: int
           ) -> tuple[Tensor, Tensor]:
    """(K, Da), (K, Dt): mean audio frames and mean text states, as ``context_item_for``."""
    if not ids:
        return torch.zeros(0, dim_audio), torch.zeros(0, dim_text)
    audio = torch.stack([features.items[i].audio.mean(dim=0) for i in ids])
    text = torch.stack([features.items[i].text.mean(dim=0) for i in ids])
    return audio, text


def build_items(utterances: Sequence[Utterance], features: FeatureSet, classes: Sequence[str],
                head_cls: type[FusionHead], context_size: int = 0) -> dict[str, HeadItem]:
    """HeadItems keyed by utterance id, with what ``head_cls`` declares it needs
    (``models.features.head_item``, as serving builds them)."""
    missing = [u.id for u in utterances if u.id not in features.items]
    if missing:
        raise FeatureCacheError(f"{len(missing)} utterance(s) have no cached features, e.g. "
                                f"'{missing[0]}'; run 'emotion-train extract' for this corpus")
    label_index = {name: i for i, name in enumerate(classes)}
    past = context_index(utterances, context_size) if head_cls.needs_context else {}
    items: dict[str, HeadItem] = {}
    for utt in utterances:
        feats = features.items[utt.id]
        if head_cls.needs_words and feats.word_text is None:
            raise FeatureCacheError(f"head {head_cls.__name__} needs word features; extract "
                                    "with --words")
        if head_cls.needs_functionals and feats.functionals is None:
            raise FeatureCacheError(f"head {head_cls.__name__} needs prosody functionals; "
                                    "extract with this head in --heads")
        context = pooled(features, past[utt.id], features.audio_dim, features.text_dim) \
            if head_cls.needs_context else None
        text = TextFeatures(text=feats.text, text_layers=feats.text_layers,
                            word_text=feats.word_text, word_spans=feats.word_spans)
        items[utt.id] = head_item(head_cls, feats.audio, text, feats.transcript,
                                  audio_layers=feats.audio_layers, context=context,
                                  functionals=feats.functionals, label=label_index[utt.label])
    return items
