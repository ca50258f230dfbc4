"""Evaluation protocols: which utterances train, validate and test in each fold.

- ``loso``: leave-one-session-out (IEMOCAP: 5 folds, speaker independent);
- ``loso-speaker``: leave-one-speaker-out;
- ``fixed``: the corpus' own split, by session name (MELD: train / dev / test);
- ``kfold``: k stratified random folds (speaker dependent; the 5-fold of some papers).

Validation (early stopping) comes from the training part: for the speaker-independent
protocols one further session/speaker is held out of training (the next one in order); for
``kfold`` a stratified 10 % of the training part.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from offline_training.errors import ProtocolError
from offline_training.records import Utterance

PROTOCOLS = ("loso", "loso-speaker", "fixed", "kfold")


@dataclass(frozen=True)
class Fold:
    name: str
    train: tuple[str, ...]  # utterance ids
    valid: tuple[str, ...]
    test: tuple[str, ...]


@dataclass(frozen=True)
class ProtocolSpec:
    name: str = "loso"
    k: int = 5  # kfold: number of folds
    train_split: str = "train"  # fixed: session names
    valid_split: str = "dev"
    test_split: str = "test"
    max_folds: int = 0  # 0 = all folds; else only the first ones (quick runs)
    seed: int = 0


def group_folds(utterances: Sequence[Utterance], key: str, seed: int) -> list[Fold]:
    groups = sorted({getattr(u, key) for u in utterances})
    if len(groups) < 3:
        raise ProtocolError(f"leave-one-{key}-out needs at least 3 distinct {key}s (one to "
                            f"test, one to validate, one to train); found {groups}")
    folds = []
    for index, held_out in enumerate(groups):
        valid_group = groups[(index + 1) % len(groups)]
        test = tuple(u.id for u in utterances if getattr(u, key) == held_out)
        valid = tuple(u.id for u in utterances if getattr(u, key) == valid_group)
        train = tuple(u.id for u in utterances if getattr(u, key) not in (held_out, valid_group))
        folds.append(Fold(name=f"{key}={held_out}", train=train, valid=valid, test=test))
    return folds


def stratified_chunks(utterances: Sequence[Utterance], k: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for utt in utterances:
        by_label.setdefault(utt.label, []).append(utt.id)
    chunks: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for label in sorted(by_label):
        ids = by_label[label]
        rng.shuffle(ids)
        for i, utt_id in enumerate(ids):
            chunks[(i + offset) % k].append(utt_id)
        offset += len(ids)
    return chunks


def kfold(utterances: Sequence[Utterance], k: int, seed: int) -> list[Fold]:
    if k < 2 or len(utterances) < 2 * k:
        raise ProtocolError(f"k-fold needs k >= 2 and at least 2k utterances; k={k}, "
                            f"{len(utterances)} utterances")
    chunks = stratified_chunks(utterances, k, seed)
    folds = []
    by_id = {u.id: u for u in utterances}
    for index in range(k):
        rest = [by_id[i] for j, chunk in enumerate(chunks) if j != index for i in chunk]
        inner = stratified_chunks(rest, 10, seed + index + 1)
        valid = tuple(inner[0])
        train = tuple(u.id for u in rest if u.id not in set(valid))
        folds.append(Fold(name=f"fold{index + 1}", train=train, valid=valid,
                          test=tuple(chunks[index])))
    return folds


def fixed(utterances: Sequence[Utterance], spec: ProtocolSpec) -> list[Fold]:
    parts = {name: tuple(u.id for u in utterances if u.session == name)
             for name in (spec.train_split, spec.valid_split, spec.test_split)}
    empty = [name for name, ids in parts.items() if not ids]
    if empty:
        found = sorted({u.session for u in utterances})
        raise ProtocolError(f"fixed split: no utterances in session(s) {empty}; sessions "
                            f"found: {found}")
    return [Fold(name="fixed", train=parts[spec.train_split], valid=parts[spec.valid_split],
                 test=parts[spec.test_split])]


def make_folds(utterances: Sequence[Utterance], spec: ProtocolSpec) -> list[Fold]:
    if spec.name == "loso":
        folds = group_folds(utterances, "session", spec.seed)
    elif spec.name == "loso-speaker":
        folds = group_folds(utterances, "speaker", spec.seed)
    elif spec.name == "fixed":
        folds = fixed(utterances, spec)
    elif spec.name == "kfold":
        folds = kfold(utterances, spec.k, spec.seed)
    else:
        raise ProtocolError(f"unknown protocol '{spec.name}'; use one of {', '.join(PROTOCOLS)}")
    return folds[: spec.max_folds] if spec.max_folds > 0 else folds
