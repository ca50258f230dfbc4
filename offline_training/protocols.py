"""Evaluation protocols: which utterances train, validate and test in each fold.

- ``loso``: leave-one-session-out (IEMOCAP: 5 folds, speaker independent);
- ``loso-speaker``: leave-one-speaker-out;
- ``fixed``: the corpus' own split, by session name (MELD: train / dev / test);
- ``kfold``: k stratified random folds (speaker dependent; the 5-fold of some papers);
- ``speaker-groups``: k folds of whole speakers: explicit groups (``ProtocolSpec.groups``,
  e.g. from a file), else the groups the field reports on when the corpus' speakers are
  exactly theirs (RAVDESS, 6 folds: EmoBox's), else k balanced groups.

Validation (early stopping) comes from the training part: for the speaker-independent
protocols one further session/speaker/speaker group is held out of training (the next one in
order), never the test part; for ``kfold`` a stratified 10 % of the training part.
``only_folds`` keeps some folds (1-based), after ``max_folds``' cut if both are given.

Training-only copies (augmentation, e.g. ``offline_training.corpora.speed``): an
utterance whose ``extra["augments"]`` names another one is never validated or tested on;
the folds are made from the originals, and each copy trains wherever its original does.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from offline_training.errors import ProtocolError
from offline_training.records import Utterance

PROTOCOLS = ("loso", "loso-speaker", "fixed", "kfold", "speaker-groups")
DEFAULT_K = 5  # kfold and automatic speaker groups when ProtocolSpec.k is 0


def _actors(*numbers: int) -> tuple[str, ...]:
    return tuple(f"Actor_{n:02d}" for n in numbers)


# Speaker groups published results use (EmoBox, RAVDESS: 6 folds of 4 held-out actors);
# speaker names as the corpus adapters write them.
KNOWN_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ravdess-emobox": (_actors(1, 11, 20, 21), _actors(4, 10, 12, 14), _actors(8, 9, 19, 23),
                       _actors(3, 5, 7, 24), _actors(2, 15, 16, 18), _actors(6, 13, 17, 22)),
}


@dataclass(frozen=True)
class Fold:
    name: str
    train: tuple[str, ...]  # utterance ids
    valid: tuple[str, ...]
    test: tuple[str, ...]
    test_speakers: tuple[str, ...] = ()  # speaker-groups: the held-out group
    valid_speakers: tuple[str, ...] = ()  # speaker-groups: the validation group


@dataclass(frozen=True)
class ProtocolSpec:
    name: str = "loso"
    k: int = 0  # kfold / speaker-groups: number of folds (0 = the groups' count, else 5)
    train_split: str = "train"  # fixed: session names
    valid_split: str = "dev"
    test_split: str = "test"
    max_folds: int = 0  # 0 = all folds; else only the first ones (quick runs)
    only_folds: tuple[int, ...] = ()  # 1-based fold numbers to keep (empty = all)
    groups: tuple[tuple[str, ...], ...] = ()  # speaker-groups: explicit groups of speakers
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


def read_groups(path: Path) -> tuple[tuple[str, ...], ...]:
    """Speaker groups from a text file: one fold per line, speakers separated by commas or
    spaces; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ProtocolError(f"speaker groups file '{path}' could not be read: {exc}") from exc
    groups = tuple(tuple(line.split("#", 1)[0].replace(",", " ").split()) for line in lines)
    groups = tuple(g for g in groups if g)
    if not groups:
        raise ProtocolError(f"speaker groups file '{path}' lists no speakers")
    return groups


def balanced_groups(utterances: Sequence[Utterance], k: int) -> tuple[tuple[str, ...], ...]:
    """``k`` groups of whole speakers with utterance counts as equal as possible: speakers
    by decreasing count, each to the group with the fewest utterances (deterministic)."""
    counts = Counter(u.speaker for u in utterances)
    if len(counts) < k:
        raise ProtocolError(f"{k} speaker groups need at least {k} speakers; found "
                            f"{len(counts)}")
    groups: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for speaker, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        target = min(range(k), key=lambda g: (sizes[g], len(groups[g]), g))
        groups[target].append(speaker)
        sizes[target] += count
    return tuple(tuple(sorted(g)) for g in groups)


def check_groups(groups: Sequence[Sequence[str]], speakers: set[str]) -> None:
    """Every speaker in exactly one group, every group a known, non-empty set."""
    seen: Counter[str] = Counter(s for g in groups for s in g)
    twice = sorted(s for s, n in seen.items() if n > 1)
    unknown = sorted(set(seen) - speakers)
    missing = sorted(speakers - set(seen))
    problems = [f"in more than one group: {twice}" if twice else "",
                f"not speakers of the corpus: {unknown}" if unknown else "",
                f"in no group: {missing}" if missing else ""]
    problems = [p for p in problems if p]
    if problems:
        raise ProtocolError("speaker groups: " + "; ".join(problems) + f" (corpus speakers: "
                            f"{sorted(speakers)})")


def resolve_groups(utterances: Sequence[Utterance], spec: ProtocolSpec
                   ) -> tuple[tuple[str, ...], ...]:
    """The explicit groups, else a known grouping of exactly these speakers (with k 0 or its
    size), else ``k`` balanced groups."""
    speakers = {u.speaker for u in utterances}
    if spec.groups:
        groups = spec.groups
    else:
        known = [g for g in KNOWN_GROUPS.values()
                 if {s for group in g for s in group} == speakers and spec.k in (0, len(g))]
        groups = known[0] if known else balanced_groups(utterances, spec.k or DEFAULT_K)
    if spec.k not in (0, len(groups)):
        raise ProtocolError(f"{len(groups)} speaker groups given, but {spec.k} folds asked for")
    if len(groups) < 3:
        raise ProtocolError(f"speaker groups need at least 3 groups (one to test, one to "
                            f"validate, one to train); got {len(groups)}")
    check_groups(groups, speakers)
    return tuple(groups)


def speaker_group_folds(utterances: Sequence[Utterance], spec: ProtocolSpec) -> list[Fold]:
    """Fold i tests group i and validates on group i + 1 (cyclically); the rest trains."""
    groups = resolve_groups(utterances, spec)
    folds = []
    for index, test_group in enumerate(groups):
        valid_group = groups[(index + 1) % len(groups)]
        test_set, valid_set = set(test_group), set(valid_group)
        folds.append(Fold(
            name=f"fold{index + 1}",
            train=tuple(u.id for u in utterances
                        if u.speaker not in test_set and u.speaker not in valid_set),
            valid=tuple(u.id for u in utterances if u.speaker in valid_set),
            test=tuple(u.id for u in utterances if u.speaker in test_set),
            test_speakers=tuple(test_group), valid_speakers=tuple(valid_group)))
    return folds


def select_folds(folds: list[Fold], spec: ProtocolSpec) -> list[Fold]:
    kept = folds[: spec.max_folds] if spec.max_folds > 0 else folds
    if not spec.only_folds:
        return kept
    bad = sorted(n for n in spec.only_folds if not 1 <= n <= len(kept))
    if bad:
        raise ProtocolError(f"--only-folds {bad}: the protocol has folds 1..{len(kept)}")
    return [kept[n - 1] for n in sorted(set(spec.only_folds))]


AUGMENTS = "augments"  # extra key of a training-only copy: the id of its original


def with_copies(ids: Sequence[str], utterances: Sequence[Utterance]) -> tuple[str, ...]:
    """``ids`` and the training-only copies of them (each once, in corpus order)."""
    present = set(ids)
    return tuple(ids) + tuple(u.id for u in utterances
                              if u.extra.get(AUGMENTS) in present and u.id not in present)


def make_folds(utterances: Sequence[Utterance], spec: ProtocolSpec) -> list[Fold]:
    originals = [u for u in utterances if AUGMENTS not in u.extra]
    if len(originals) == len(utterances):
        return _make_folds(utterances, spec)
    ids = {u.id for u in originals}
    orphans = [u.id for u in utterances if AUGMENTS in u.extra and u.extra[AUGMENTS] not in ids]
    if orphans:
        raise ProtocolError(f"{len(orphans)} training-only copies (e.g. '{orphans[0]}') name an "
                            "original that is not in the corpus: write the originals too "
                            "(--with-originals) or drop the copies")
    return [replace(fold, train=with_copies(fold.train, utterances))
            for fold in _make_folds(originals, spec)]


def _make_folds(utterances: Sequence[Utterance], spec: ProtocolSpec) -> list[Fold]:
    if spec.name == "loso":
        folds = group_folds(utterances, "session", spec.seed)
    elif spec.name == "loso-speaker":
        folds = group_folds(utterances, "speaker", spec.seed)
    elif spec.name == "fixed":
        folds = fixed(utterances, spec)
    elif spec.name == "kfold":
        folds = kfold(utterances, spec.k or DEFAULT_K, spec.seed)
    elif spec.name == "speaker-groups":
        folds = speaker_group_folds(utterances, spec)
    else:
        raise ProtocolError(f"unknown protocol '{spec.name}'; use one of {', '.join(PROTOCOLS)}")
    return select_folds(folds, spec)
