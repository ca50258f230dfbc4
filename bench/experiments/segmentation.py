"""pyannote segmentation-3.0 (models/speaker_segmentation.py) on the conversations of
bench/conversations.py: speaker changes and overlapped speech, against the truth.

The conversations are assembled as bench/conversations.py --speakers assembles them (the
same pairs, clips drawn with the same seeds, the same gaps; without its ASR, which only
gives word times and, when its word alignment fails on a clip, draws another one), so
they are the same conversations but for such clips. ``--detector`` runs the current
detector (the webrtcvad segmenter with streamer/engine/speakers.py, ``--speaker-set`` settings)
on exactly the same mixes, for a side-by-side.

Per configuration it reports:

- speaker changes found: a segmentation change within 0.5 s of the truth's (the next
  speaker's first sample), all and overlapped ones (the next starts before the last stops);
- false changes: segmentation changes more than 0.5 s from any true change, and every
  change when the conversation's first speaker talks alone (16 other clips, same gaps);
- overlap, per 16.875 ms frame: precision and recall against the frames where both
  speakers' clips run; and per overlap, found when one frame inside it is flagged, by
  length (<= 0.2 s, 0.2-0.5 s, > 0.5 s); flagged seconds when one speaker talks alone;
- CPU milliseconds per 10 s window (process time, one thread);
- with ``--detector``: its changes with an utterance boundary within 0.5 s (as
  bench/conversations.py counts them), its false speaker-change cuts when one speaker
  talks alone, and the changes found by either (a boundary or a segmentation change).

Usage (from the repository root)::

    .venv/bin/python bench/experiments/segmentation.py --detector \
        --out bench/results/segmentation_mixed.json
    .venv/bin/python bench/experiments/segmentation.py --pairing same \
        --out bench/results/segmentation_same.json
    .venv/bin/python bench/experiments/segmentation.py --gaps -1.0 0.2 \
        --out bench/results/segmentation_overlaps.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.conversations import (  # noqa: E402
    NEMO,
    NEMO_PAIRS,
    PAIRS,
    RAVDESS,
    Placed,
    assemble,
    measure,
    nemo_pieces,
    ravdess_pieces,
    report,
    segment,
    speaker_changes,
    telephone,
)
from models.audio import SAMPLE_RATE  # noqa: E402
from models.speaker_segmentation import FRAME_STEP, Segmentation, SpeakerSegmentation  # noqa: E402
from streamer.core.config import SegmenterConfig  # noqa: E402

TOLERANCE_S = 0.5
OVERLAP_BINS = ((0.0, 0.2), (0.2, 0.5), (0.5, 99.0))


def truth_overlaps(placed: list[Placed]) -> list[tuple[float, float]]:
    """Spans where the next speaker starts before the last one stops."""
    return [(nxt.start, min(p.end, nxt.end)) for p, nxt in zip(placed, placed[1:], strict=False)
            if nxt.speaker != p.speaker and nxt.start < p.end]


def score(result: Segmentation, placed: list[Placed]) -> dict[str, Any]:
    changes = speaker_changes(placed)
    found = [any(abs(c - t) <= TOLERANCE_S for c in result.changes) for t, _ in changes]
    false = sum(all(abs(c - t) > TOLERANCE_S for t, _ in changes) for c in result.changes)
    spans = truth_overlaps(placed)
    truth = np.zeros(len(result.times), bool)
    for a, b in spans:
        truth |= (result.times >= a) & (result.times < b)
    flagged = result.overlap
    out: dict[str, Any] = {
        "speaker_changes": len(changes), "changes_found_0_5s": sum(found),
        "overlapped_changes": sum(o for _, o in changes),
        "overlapped_changes_found_0_5s": sum(f and o for f, (_, o) in
                                             zip(found, changes, strict=True)),
        "segmentation_changes": len(result.changes), "false_changes": false,
        "overlap_frames_true": int(truth.sum()), "overlap_frames_flagged": int(flagged.sum()),
        "overlap_frames_right": int((truth & flagged).sum()), "overlaps": {}}
    for lo, hi in OVERLAP_BINS:
        inside = [(a, b) for a, b in spans if lo < b - a <= hi]
        hit = sum(bool(flagged[(result.times >= a) & (result.times < b)].any())
                  for a, b in inside)
        out["overlaps"][f"{lo}-{hi}s"] = {"count": len(inside), "found": hit}
    return out


def add(total: dict[str, Any], part: dict[str, Any]) -> None:
    for k, v in part.items():
        if isinstance(v, dict):
            add(total.setdefault(k, {}), v)
        else:
            total[k] = total.get(k, 0) + v


def run_segmentation(model: SpeakerSegmentation, audio: np.ndarray, cpu_ms: list[float]
                     ) -> Segmentation:
    started = time.process_time()
    result = model(audio)
    cpu_ms.append((time.process_time() - started) * 1000 / result.windows)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--clips", type=int, default=16, help="turns per conversation")
    parser.add_argument("--gaps", type=float, nargs=2, default=(-0.2, 0.6))
    parser.add_argument("--pairing", choices=("mixed", "same"), default="mixed")
    parser.add_argument("--corpus", choices=("ravdess", "nemo"), default="ravdess")
    parser.add_argument("--telephone", action="store_true",
                        help="every mix through 8 kHz and back (telephone bandwidth)")
    parser.add_argument("--step", type=float, default=5.0, help="seconds between windows")
    parser.add_argument("--min-turn", type=float, default=0.2,
                        help="a local speaker's shortest run that counts (seconds)")
    parser.add_argument("--detector", action="store_true",
                        help="also the current detector (speakers.enabled) on the same mixes")
    parser.add_argument("--speaker-set", dest="speaker_overrides", action="append",
                        default=[], metavar="KEY=VALUE", help="a speakers setting (--detector)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not RAVDESS.is_dir():
        raise SystemExit(f"RAVDESS not found at {RAVDESS}")
    model = SpeakerSegmentation(step_s=args.step, min_turn_s=args.min_turn)
    channel_for: Any = None
    if args.detector:
        from models.speaker_encoder import SpeakerEncoder
        from streamer.core.config import SpeakersConfig
        from streamer.engine.speakers import ChannelSpeakers

        speakers_config = SpeakersConfig(enabled=True, **{
            k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.speaker_overrides)})
        encoder = SpeakerEncoder(speakers_config.encoder)

        def channel_for() -> ChannelSpeakers:
            return ChannelSpeakers(encoder, speakers_config)

    rng = random.Random(11)  # bench/conversations.py's seeds
    total: dict[str, Any] = {}
    solo_total: dict[str, Any] = {}
    detector: dict[str, Any] = {}
    cpu_ms: list[float] = []
    audio_s = 0.0
    for c in range(args.conversations):
        if args.corpus == "nemo":
            pair_n = NEMO_PAIRS[args.pairing][c % len(NEMO_PAIRS[args.pairing])]
            pieces = nemo_pieces(NEMO, pair_n, args.clips, rng)
            solo = nemo_pieces(NEMO, (pair_n[0], pair_n[0]), args.clips,
                               random.Random(1000 + c))
        else:
            pair = PAIRS[args.pairing][c % len(PAIRS[args.pairing])]
            pieces = ravdess_pieces(None, RAVDESS, pair, args.clips, rng)
            solo = ravdess_pieces(None, RAVDESS, (pair[0], pair[0]), args.clips,
                                  random.Random(1000 + c))
        gaps = [rng.uniform(*args.gaps) for _ in pieces]
        mix, placed = assemble(pieces, gaps)
        mix = telephone(mix) if args.telephone else mix
        audio_s += len(mix) / SAMPLE_RATE
        result = run_segmentation(model, mix, cpu_ms)
        add(total, score(result, placed))
        solo_mix, solo_placed = assemble(solo, gaps)
        solo_mix = telephone(solo_mix) if args.telephone else solo_mix
        alone = run_segmentation(model, solo_mix, cpu_ms)
        add(solo_total, {"audio_s": len(solo_mix) / SAMPLE_RATE,
                         "false_changes": len(alone.changes),
                         "overlap_s_flagged": float(alone.overlap.sum()) * FRAME_STEP
                         / SAMPLE_RATE})
        if channel_for is not None:
            utts, _, _ = segment(mix, SegmenterConfig(), channel_for())
            m = measure(utts, placed)
            solo_utts, _, _ = segment(solo_mix, SegmenterConfig(), channel_for())
            # would the segmentation's changes add to the detector's boundaries?
            marks = [u.t_start for u in utts] + [u.t_end for u in utts] + list(result.changes)
            either = [(any(abs(b - t) <= TOLERANCE_S for b in marks), o)
                      for t, o in speaker_changes(placed)]
            add(detector, {"changes_with_boundary_0_5s": m["changes_with_boundary_0_5s"],
                           "overlapped_changes_with_boundary_0_5s":
                               m["overlapped_changes_with_boundary_0_5s"],
                           "speaker_change_cuts": m["cut_reasons"]["speaker_change"],
                           "two_speaker_utterances": m["two_speaker_utterances"],
                           "utterances": m["utterances"],
                           "changes_found_by_either_0_5s": sum(f for f, _ in either),
                           "overlapped_changes_found_by_either_0_5s":
                               sum(f and o for f, o in either),
                           "one_speaker_false_cuts": sum(u.cut_reason == "speaker_change"
                                                         for u in solo_utts)})
    flagged, right = total["overlap_frames_flagged"], total["overlap_frames_right"]
    results: dict[str, Any] = {
        "corpus": args.corpus, "pairing": args.pairing, "telephone": args.telephone,
        "gaps": list(args.gaps), "step_s": args.step, "min_turn_s": args.min_turn,
        "conversations": args.conversations, "audio_s": round(audio_s, 1),
        "segmentation": {**total,
                         "overlap_frame_precision": round(right / flagged, 3) if flagged
                         else None,
                         "overlap_frame_recall": round(right / total["overlap_frames_true"], 3)
                         if total["overlap_frames_true"] else None},
        "one_speaker": {k: round(v, 1) for k, v in solo_total.items()},
        "cpu_ms_per_10s_window": {"mean": round(float(np.mean(cpu_ms)), 1),
                                  "p95": round(float(np.percentile(cpu_ms, 95)), 1)}}
    if detector:
        results["current_detector"] = {"speakers": args.speaker_overrides, **detector}
    return report(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
