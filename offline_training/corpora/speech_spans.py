"""Cut each manifest row to the speech the streamer would hear: the span of the utterances
that the streamer's own segmenter (``streamer.segmenter``, served settings) finds in it.

Acted corpora keep up to a second of silence before and after each sentence (RAVDESS clips
are 3-4 s with about 1.5 s of speech). The served model never sees that silence: the
segmenter drops it, keeping only its pre-roll and a short tail. A model trained on whole
clips pools its frame statistics over silence it will not get when serving, so training
rows are cut to the served span. One span per row (first utterance's start to the last
one's end), so a row stays one labelled example of one speaker.

    .venv/bin/python -m offline_training.corpora.speech_spans runs/default.jsonl \
        --out runs/default-spans.jsonl

Rows where the segmenter finds no speech keep their whole audio and are counted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.audio import SAMPLE_RATE
from offline_training.audio import load_audio
from offline_training.corpora.manifest import read_rows
from offline_training.records import Utterance
from streamer.config import SegmenterConfig
from streamer.messages import Utterance as Segment
from streamer.segmenter import Segmenter


@dataclass(frozen=True)
class Span:
    start: float  # seconds into the given audio
    end: float
    segments: int  # utterances the segmenter found


def speech_span(audio: np.ndarray, config: SegmenterConfig) -> Span | None:
    """The served span of ``audio`` (16 kHz mono), or None when the segmenter finds no
    utterance in it."""
    segmenter = Segmenter(config)
    events = segmenter.push(audio) + segmenter.flush()
    segments = [e for e in events if isinstance(e, Segment)]
    if not segments:
        return None
    start = segments[0].t_start
    end = segments[-1].t_start + len(segments[-1].audio) / SAMPLE_RATE
    return Span(start=round(start, 3), end=round(min(end, len(audio) / SAMPLE_RATE), 3),
                segments=len(segments))


def row_audio(row: dict[str, Any], index: int) -> np.ndarray:
    """A manifest row's audio as the trainer reads it (its own start/end applied)."""
    start, end = row.get("start"), row.get("end")
    return load_audio(Utterance(
        id=str(row.get("id") or index), path=str(row["path"]), text="", label="", speaker="",
        start=float(start) if start is not None else None,
        end=float(end) if end is not None else None))


def cut_rows(rows: Sequence[dict[str, Any]], config: SegmenterConfig
             ) -> tuple[list[dict[str, Any]], int]:
    """Rows with ``start``/``end`` set to the served span; returns them and the number of
    rows left whole (no speech found)."""
    out, whole = [], 0
    for index, row in enumerate(tqdm(rows, desc="speech spans", unit="row")):
        span = speech_span(row_audio(row, index), config)
        if span is None:
            whole += 1
            out.append(dict(row))
            continue
        offset = float(row.get("start") or 0.0)
        out.append({**row, "start": round(offset + span.start, 3),
                    "end": round(offset + span.end, 3)})
    return out, whole


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="input manifest (.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="output manifest (.jsonl)")
    args = parser.parse_args(argv)
    rows = list(read_rows(args.manifest))
    cut, whole = cut_rows(rows, SegmenterConfig())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in cut), encoding="utf-8")
    kept = [float(r["end"]) - float(r["start"]) for r in cut
            if r.get("start") is not None and r.get("end") is not None]
    print(f"wrote {len(cut)} rows to {args.out}; {whole} without speech kept whole; "
          f"mean span {np.mean(kept) if kept else 0.0:.2f} s")


if __name__ == "__main__":
    main()
