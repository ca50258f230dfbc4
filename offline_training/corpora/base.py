"""What every corpus adapter shares: the Corpus record, label maps, file checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from offline_training.errors import CorpusError, LabelError
from offline_training.records import Utterance, check_unique_ids

# Canonical class names used across corpora (so bundles trained on different corpora agree).
ANGRY, HAPPY, SAD, NEUTRAL = "angry", "happy", "sad", "neutral"
EXCITED, FRUSTRATED, SURPRISED = "excited", "frustrated", "surprised"
FEARFUL, DISGUSTED, CALM, BORED = "fearful", "disgusted", "calm", "bored"

LabelMap = Mapping[str, str | None]  # raw label -> class name, or None to drop the utterance


@dataclass(frozen=True)
class Corpus:
    """Labelled utterances of one corpus with its class list (in label-index order)."""

    name: str
    classes: tuple[str, ...]
    utterances: tuple[Utterance, ...]

    def __post_init__(self) -> None:
        check_unique_ids(self.utterances)
        unknown = sorted({u.label for u in self.utterances} - set(self.classes))
        if unknown:
            raise LabelError(f"corpus '{self.name}' has labels {unknown} that are not in its "
                             f"classes {list(self.classes)}")

    def __len__(self) -> int:
        return len(self.utterances)

    def label_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for utt in self.utterances:
            counts[utt.label] += 1
        return counts

    def subset(self, ids: Iterable[str]) -> Corpus:
        wanted = set(ids)
        return replace(self, utterances=tuple(u for u in self.utterances if u.id in wanted))


def map_labels(utterances: Iterable[Utterance], label_map: LabelMap,
               classes: Sequence[str], corpus: str) -> list[Utterance]:
    """Apply ``label_map`` (raw -> class or None = drop); every raw label must be covered."""
    missing_classes = sorted({v for v in label_map.values() if v is not None} - set(classes))
    if missing_classes:
        raise LabelError(f"{corpus}: the label map targets {missing_classes}, which are not in "
                         f"the class list {list(classes)}; add them to the classes or fix the map")
    kept = []
    for utt in utterances:
        if utt.label not in label_map:
            raise LabelError(
                f"{corpus}: label '{utt.label}' of utterance '{utt.id}' is not covered by the "
                f"label map (it covers {sorted(label_map)}); add it to the map, or map it to "
                "null to drop such utterances")
        target = label_map[utt.label]
        if target is not None:
            kept.append(replace(utt, label=target))
    if not kept:
        raise LabelError(f"{corpus}: no utterance is left after the label map; check the map")
    return kept


def require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise CorpusError(f"{what}: directory '{path}' does not exist; {hint}")
    return path


def require_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise CorpusError(f"{what}: file '{path}' does not exist; {hint}")
    return path


def build_corpus(name: str, utterances: Sequence[Utterance], label_map: LabelMap,
                 classes: Sequence[str]) -> Corpus:
    if not utterances:
        raise CorpusError(f"{name}: no utterances found; check the corpus root directory")
    mapped = map_labels(utterances, label_map, classes, name)
    return Corpus(name=name, classes=tuple(classes), utterances=tuple(mapped))
