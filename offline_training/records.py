"""The one record every corpus adapter produces: a labelled utterance."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from offline_training.errors import CorpusError

MANIFEST_FIELDS = ("id", "path", "text", "label", "speaker", "session", "dialog_id", "order",
                   "start", "end", "kind")


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance of a corpus.

    ``path`` is an audio file (any format soundfile reads); ``start``/``end`` (seconds)
    select a segment of it when set. ``dialog_id`` and ``order`` give the conversation
    and the position in it, for context-aware models. ``kind`` is free-form corpus detail
    (e.g. the synthetic corpus' sentence kind).
    """

    id: str
    path: str
    text: str
    label: str
    speaker: str
    session: str = ""
    dialog_id: str = ""
    order: int = 0
    start: float | None = None
    end: float | None = None
    kind: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def with_text(self, text: str) -> Utterance:
        return replace(self, text=text)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        if not data["extra"]:
            del data["extra"]
        return data


def write_manifest(utterances: Iterable[Utterance], path: Path) -> None:
    """Write utterances as JSON lines (the format ``corpora.manifest`` reads back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for utt in utterances:
            handle.write(json.dumps(utt.to_json(), ensure_ascii=False) + "\n")


def check_unique_ids(utterances: Sequence[Utterance]) -> None:
    seen: set[str] = set()
    for utt in utterances:
        if utt.id in seen:
            raise CorpusError(f"utterance id '{utt.id}' occurs twice; ids must be unique "
                              "(fix the manifest or the corpus adapter)")
        seen.add(utt.id)
