"""Cut each manifest row to the speech the streamer would hear: the span of the utterances
that the streamer's own segmenter (``streamer.audio.segmenter``, served settings) finds in it.

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
from offline_training.corpora.manifest import read_rows, row_to_utterance
from offline_training.records import Utterance
from streamer.audio.segmenter import Segmenter
from streamer.core.config import SegmenterConfig
from streamer.core.messages import Utterance as Segment


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


Item = tuple[dict[str, Any], Utterance]  # a manifest row (path made absolute) and its parse


def manifest_items(manifest: Path) -> list[Item]:
    """Each row of ``manifest``, checked and parsed as the trainer reads it
    (``row_to_utterance``), with its audio path made absolute so that the rows written
    elsewhere still find their audio."""
    items = []
    for index, row in enumerate(read_rows(manifest)):
        utt = row_to_utterance(row, index, manifest.parent, manifest)
        items.append(({**row, "path": str(Path(utt.path).resolve())}, utt))
    return items


def cut_rows(items: Sequence[Item], config: SegmenterConfig
             ) -> tuple[list[dict[str, Any]], int]:
    """Rows with ``start``/``end`` set to the served span; returns them and the number of
    rows left whole (no speech found)."""
    out, whole = [], 0
    for row, utt in tqdm(items, desc="speech spans", unit="row"):
        span = speech_span(load_audio(utt), config)
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
    cut, whole = cut_rows(manifest_items(args.manifest), SegmenterConfig())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in cut), encoding="utf-8")
    kept = [float(r["end"]) - float(r["start"]) for r in cut
            if r.get("start") is not None and r.get("end") is not None]
    print(f"wrote {len(cut)} rows to {args.out}; {whole} without speech kept whole; "
          f"mean span {np.mean(kept) if kept else 0.0:.2f} s")


if __name__ == "__main__":
    main()
