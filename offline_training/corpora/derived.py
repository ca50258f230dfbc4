"""Derived copies of a manifest's rows: each row's audio (its start/end applied) through a
transform, written as FLAC under an audio directory, with a new manifest row that keeps the
speaker, label and text. ``offline_training.corpora.telephone`` (8 kHz G.711 copies, tested
on like originals) and ``offline_training.corpora.speed`` (training-only speed-perturbed
copies) are built on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from offline_training.audio import load_audio
from offline_training.corpora.speech_spans import Item, manifest_items

Transform = Callable[[np.ndarray], np.ndarray]  # 16 kHz float32 in, ``rate`` float32 out


def derived_rows(items: Sequence[Item], audio_dir: Path, transform: Transform, rate: int,
                 id_suffix: str, extra: Callable[[dict[str, Any]], dict[str, str]],
                 desc: str, file_suffix: str = "") -> list[dict[str, Any]]:
    """Write each row's transformed audio under ``audio_dir``; return the copies' rows.
    ``extra(row)`` gives the fields the copy adds to the row's ``extra``; ``file_suffix``
    tells the files of two kinds of copies in one directory apart."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for row, utt in tqdm(items, desc=desc, unit="row"):
        # Named by the source and segment, so two rows of one file do not collide.
        source = f"{row['path']}|{row.get('start')}|{row.get('end')}"
        name = f"{Path(str(row['path'])).stem}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"
        path = (audio_dir / f"{name}{file_suffix}.flac").resolve()
        sf.write(path, transform(load_audio(utt)), rate, subtype="PCM_16")
        fields = {**dict(row.get("extra") or {}), "source": str(row["path"]), **extra(row)}
        out.append({**row, "id": f"{row.get('id') or name}{id_suffix}", "path": str(path),
                    "start": None, "end": None, "extra": fields})
    return out


def run_tool(argv: Sequence[str] | None, description: str,
             add_arguments: Callable[[argparse.ArgumentParser], None],
             make_copies: Callable[[list[Item], Path, argparse.Namespace],
                                   list[dict[str, Any]]],
             originals_help: str) -> None:
    """The command line both tools share: manifest in, copies (and originals) out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("manifest", type=Path, help="input manifest (.jsonl)")
    parser.add_argument("--audio-dir", type=Path, required=True,
                        help="where the FLAC copies are written")
    parser.add_argument("--out", type=Path, required=True, help="output manifest (.jsonl)")
    parser.add_argument("--with-originals", action="store_true", help=originals_help)
    add_arguments(parser)
    args = parser.parse_args(argv)
    items = manifest_items(args.manifest)
    copies = make_copies(items, args.audio_dir, args)
    written = ([row for row, _ in items] if args.with_originals else []) + copies
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in written), encoding="utf-8")
    print(f"wrote {len(written)} rows ({len(copies)} copies) to {args.out}")
