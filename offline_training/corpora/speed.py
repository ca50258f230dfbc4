"""Speed-perturbed copies of a manifest's audio, for training only (augmentation).

Each row's audio (its start/end applied) is resampled by soxr so that, played at 16 kHz, it
runs ``factor`` times as fast with its pitch moved by the same factor (Kaldi-style speed
perturbation; 0.9 and 1.1 by default). A copy keeps the row's speaker, label and text, and
names its original in ``extra.augments``: the trainer's protocols then train on it wherever
its original trains and never validate or test on it (``offline_training.protocols``), so
the figures stay those of real, unperturbed speech.

    .venv/bin/python -m offline_training.corpora.speed runs/default.jsonl \
        --audio-dir data/speed --out runs/default-speed.jsonl --with-originals
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from models.audio import SAMPLE_RATE
from offline_training.corpora.derived import derived_rows, run_tool
from offline_training.corpora.speech_spans import Item
from offline_training.protocols import AUGMENTS

DEFAULT_FACTORS = (0.9, 1.1)


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """``factor`` times as fast (and as high) at the same 16 kHz rate."""
    if not 0.5 <= factor <= 2.0:
        raise ValueError(f"speed factor {factor} is outside 0.5-2.0")
    return soxr.resample(audio, SAMPLE_RATE, SAMPLE_RATE / factor, quality="HQ") \
        .astype(np.float32)


def speed_rows(items: Sequence[Item], audio_dir: Path,
               factors: Sequence[float] = DEFAULT_FACTORS) -> list[dict[str, Any]]:
    """Write each row's copies under ``audio_dir``, one per factor; return their rows."""
    missing = [row for row, _ in items if not row.get("id")]
    if missing:
        raise ValueError(f"{len(missing)} rows have no id (e.g. {missing[0]['path']}): a "
                         "training-only copy names its original by id")
    rows: list[dict[str, Any]] = []
    for factor in factors:
        tag = f"-sp{factor:g}"
        rows += derived_rows(items, audio_dir, partial(speed_perturb, factor=factor),
                             SAMPLE_RATE, tag, partial(_copy_fields, factor=factor),
                             f"speed x{factor:g}", file_suffix=tag)
    return rows


def _copy_fields(row: dict[str, Any], factor: float) -> dict[str, str]:
    return {AUGMENTS: str(row["id"]), "augmentation": f"speed {factor:g}"}


def main(argv: Sequence[str] | None = None) -> None:
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--factors", default=",".join(f"{f:g}" for f in DEFAULT_FACTORS),
                            help="comma list of speed factors (default 0.9,1.1)")

    def copies(items: list[Item], audio_dir: Path, args: argparse.Namespace
               ) -> list[dict[str, Any]]:
        try:
            return speed_rows(items, audio_dir, [float(f) for f in args.factors.split(",")])
        except ValueError as exc:  # rows without ids, a factor out of range: say which
            raise SystemExit(str(exc)) from exc

    run_tool(argv, __doc__.split("\n\n")[0], arguments, copies,
             "write the original rows too (needed: a copy trains only beside its original)")


if __name__ == "__main__":
    main()
