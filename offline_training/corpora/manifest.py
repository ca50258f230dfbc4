"""Generic manifests: CSV (with a header) or JSON lines.

Fields: ``path`` and ``label`` (required); ``id``, ``text``, ``speaker``, ``session``,
``dialog_id``, ``order``, ``start``, ``end``, ``kind`` (optional). Relative paths are resolved
against the manifest's directory. Classes are the sorted labels found, unless given; a label
map (raw -> class, or null to drop) may rename labels.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from offline_training.corpora.base import Corpus, LabelMap, build_corpus
from offline_training.errors import CorpusError
from offline_training.records import MANIFEST_FIELDS, Utterance

REQUIRED = ("path", "label")


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CorpusError(f"manifest '{path}' does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CorpusError(f"manifest '{path}' line {number} is not valid JSON: {exc}") \
                    from exc
        return rows
    raise CorpusError(f"manifest '{path}' must end in .csv or .jsonl")


def optional_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def row_to_utterance(row: Mapping[str, Any], index: int, base: Path, source: Path) -> Utterance:
    missing = [f for f in REQUIRED if not row.get(f)]
    if missing:
        raise CorpusError(f"manifest '{source}' row {index + 1} lacks {missing}; every row "
                          f"needs {list(REQUIRED)}")
    unknown = sorted(set(row) - set(MANIFEST_FIELDS) - {"extra"})
    if unknown:
        raise CorpusError(f"manifest '{source}' row {index + 1} has unknown field(s) {unknown}; "
                          f"known fields: {list(MANIFEST_FIELDS)}")
    audio = Path(str(row["path"]))
    audio = audio if audio.is_absolute() else base / audio
    if not audio.is_file():
        raise CorpusError(f"manifest '{source}' row {index + 1}: audio file '{audio}' is missing")
    try:
        start, end = optional_float(row.get("start")), optional_float(row.get("end"))
        order = int(row.get("order") or 0)
    except ValueError as exc:
        raise CorpusError(f"manifest '{source}' row {index + 1}: start/end/order must be "
                          f"numbers: {exc}") from exc
    return Utterance(
        id=str(row.get("id") or f"{audio.stem}_{index:06d}"), path=str(audio),
        text=str(row.get("text") or ""), label=str(row["label"]),
        speaker=str(row.get("speaker") or "unknown"), session=str(row.get("session") or ""),
        dialog_id=str(row.get("dialog_id") or ""), order=order, start=start, end=end,
        kind=str(row.get("kind") or ""), extra=dict(row.get("extra") or {}))


def load_manifest(path: Path, classes: Sequence[str] | None = None,
                  label_map: LabelMap | None = None, name: str | None = None) -> Corpus:
    """Read a CSV/JSONL manifest into a Corpus."""
    rows = read_rows(path)
    utterances = [row_to_utterance(r, i, path.parent, path) for i, r in enumerate(rows)]
    raw = sorted({u.label for u in utterances})
    mapping: LabelMap = label_map if label_map is not None else {r: r for r in raw}
    class_list = tuple(classes) if classes else tuple(
        sorted({v for v in mapping.values() if v is not None}))
    return build_corpus(name or path.stem, utterances, mapping, class_list)
