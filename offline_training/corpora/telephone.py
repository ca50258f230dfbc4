"""Telephone-band copies of a manifest's audio: 8 kHz G.711 mu-law, as a call arrives.

Each row's audio (its own start/end applied) goes 16 kHz -> 8 kHz (soxr, which band-limits
to below 4 kHz) -> mu-law bytes -> decoded back with the streamer's own codec
(``streamer.audio.telephony``), and is written as an 8 kHz FLAC. The trainer reads it back at
16 kHz (soxr), as the streamer upsamples a Twilio or AudioHook party. The copy keeps the
row's speaker, label and text, so speaker-independent folds hold out both versions of a
speaker; its id gets ``-tel`` and ``extra.corpus`` gets ``-telephone`` (per-corpus scores
in ``bench/per_corpus.py`` then split wideband from telephone).

    .venv/bin/python -m offline_training.corpora.telephone runs/default.jsonl \
        --audio-dir data/telephone --out runs/default-tel.jsonl [--with-originals]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from models.audio import SAMPLE_RATE
from offline_training.corpora.derived import derived_rows, run_tool
from offline_training.corpora.speech_spans import Item
from streamer.audio.telephony import TELEPHONY_RATE, pcm16_to_unit, ulaw_decode, ulaw_encode


def telephone_band(audio: np.ndarray) -> np.ndarray:
    """(N,) float32 at 16 kHz -> (M,) float32 at 8 kHz after a G.711 mu-law round trip."""
    narrow = soxr.resample(audio, SAMPLE_RATE, TELEPHONY_RATE, quality="HQ")
    return pcm16_to_unit(ulaw_decode(ulaw_encode(np.clip(narrow, -1.0, 1.0))))


def telephone_rows(items: Sequence[Item], audio_dir: Path) -> list[dict[str, Any]]:
    """Write each row's telephone copy under ``audio_dir``; return the copies' rows."""
    return derived_rows(
        items, audio_dir, telephone_band, TELEPHONY_RATE, "-tel",
        lambda row: {"corpus": f"{(row.get('extra') or {}).get('corpus', 'corpus')}-telephone"},
        "telephone band")


def main(argv: Sequence[str] | None = None) -> None:
    def copies(items: list[Item], audio_dir: Path, _: argparse.Namespace
               ) -> list[dict[str, Any]]:
        return telephone_rows(items, audio_dir)

    run_tool(argv, __doc__.split("\n\n")[0], lambda _: None, copies,
             "write the original rows too (telephone-band augmentation)")


if __name__ == "__main__":
    main()
