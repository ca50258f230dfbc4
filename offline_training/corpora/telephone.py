"""Telephone-band copies of a manifest's audio: 8 kHz G.711 mu-law, as a call arrives.

Each row's audio (its own start/end applied) goes 16 kHz -> 8 kHz (soxr, which band-limits
to below 4 kHz) -> mu-law bytes -> decoded back with the streamer's own codec
(``streamer.telephony``), and is written as an 8 kHz FLAC. The trainer reads it back at
16 kHz (soxr), as the streamer upsamples a Twilio or AudioHook party. The copy keeps the
row's speaker, label and text, so speaker-independent folds hold out both versions of a
speaker; its id gets ``-tel`` and ``extra.corpus`` gets ``-telephone`` (per-corpus scores
in ``bench/per_corpus.py`` then split wideband from telephone).

    .venv/bin/python -m offline_training.corpora.telephone runs/default.jsonl \
        --audio-dir data/telephone --out runs/default-tel.jsonl [--with-originals]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from models.audio import SAMPLE_RATE
from offline_training.audio import load_audio
from offline_training.corpora.speech_spans import Item, manifest_items
from streamer.telephony import TELEPHONY_RATE, pcm16_to_unit, ulaw_decode, ulaw_encode


def telephone_band(audio: np.ndarray) -> np.ndarray:
    """(N,) float32 at 16 kHz -> (M,) float32 at 8 kHz after a G.711 mu-law round trip."""
    narrow = soxr.resample(audio, SAMPLE_RATE, TELEPHONY_RATE, quality="HQ")
    return pcm16_to_unit(ulaw_decode(ulaw_encode(np.clip(narrow, -1.0, 1.0))))


def telephone_rows(items: Sequence[Item], audio_dir: Path) -> list[dict[str, Any]]:
    """Write each row's telephone copy under ``audio_dir``; return the copies' rows."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for row, utt in tqdm(items, desc="telephone band", unit="row"):
        # Named by the source and segment, so two rows of one file do not collide.
        source = f"{row['path']}|{row.get('start')}|{row.get('end')}"
        name = f"{Path(str(row['path'])).stem}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"
        path = (audio_dir / f"{name}.flac").resolve()
        sf.write(path, telephone_band(load_audio(utt)), TELEPHONY_RATE, subtype="PCM_16")
        extra = dict(row.get("extra") or {})
        extra["corpus"] = f"{extra.get('corpus', 'corpus')}-telephone"
        extra["source"] = str(row["path"])
        out.append({**row, "id": f"{row.get('id') or name}-tel", "path": str(path),
                    "start": None, "end": None, "extra": extra})
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="input manifest (.jsonl)")
    parser.add_argument("--audio-dir", type=Path, required=True,
                        help="where the 8 kHz FLAC copies are written")
    parser.add_argument("--out", type=Path, required=True, help="output manifest (.jsonl)")
    parser.add_argument("--with-originals", action="store_true",
                        help="write the original rows too (telephone-band augmentation)")
    args = parser.parse_args(argv)
    items = manifest_items(args.manifest)
    copies = telephone_rows(items, args.audio_dir)
    written = ([row for row, _ in items] if args.with_originals else []) + copies
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in written), encoding="utf-8")
    print(f"wrote {len(written)} rows ({len(copies)} telephone copies) to {args.out}")


if __name__ == "__main__":
    main()
