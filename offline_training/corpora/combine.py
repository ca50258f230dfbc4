"""Several manifests as one training corpus: ids and speakers prefixed with a corpus name,
paths made absolute, the corpus name kept in ``extra.corpus`` (for per-corpus scores).

    .venv/bin/python -m offline_training.corpora.combine --out runs/default.jsonl \
        ravdess=runs/ravdess.jsonl synth=data/synth/manifest.jsonl

Labels are left as they are: give the trainer one ``--label-map`` that covers every input's
labels (e.g. configs/label_maps/ravdess-4class-calm-as-neutral.json covers RAVDESS and the
synthetic corpus).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from offline_training.corpora.manifest import read_rows
from offline_training.errors import CorpusError


def combine(inputs: Sequence[tuple[str, Path]], out: Path) -> int:
    """Write the combined manifest; returns the number of rows."""
    names = [name for name, _ in inputs]
    if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
        raise CorpusError(f"corpus names must be distinct identifiers, got {names}")
    rows = []
    for name, path in inputs:
        for index, row in enumerate(read_rows(path)):
            if not row.get("path") or not row.get("label"):
                raise CorpusError(f"manifest '{path}' row {index + 1} lacks path or label")
            audio = Path(str(row["path"]))
            audio = audio if audio.is_absolute() else (path.parent / audio).resolve()
            combined = {**row, "path": str(audio),
                        "id": f"{name}-{row.get('id') or f'{audio.stem}_{index:06d}'}",
                        "speaker": f"{name}-{row.get('speaker') or 'unknown'}",
                        "extra": {**(row.get("extra") or {}), "corpus": name}}
            for key in ("session", "dialog_id"):
                if row.get(key):
                    combined[key] = f"{name}-{row[key]}"
            rows.append(combined)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="combined manifest (.jsonl)")
    parser.add_argument("inputs", nargs="+", metavar="NAME=MANIFEST")
    args = parser.parse_args(argv)
    inputs = []
    for spec in args.inputs:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"expected NAME=MANIFEST, got '{spec}'")
        inputs.append((name, Path(path)))
    print(f"wrote {combine(inputs, args.out)} rows to {args.out}")


if __name__ == "__main__":
    main()
