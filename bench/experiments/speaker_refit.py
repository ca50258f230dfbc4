"""Grid of the speaker thresholds on bench/conversations.py's conversations (issue 29).

The same conversations, gaps and actor-alone runs as ``bench/conversations.py --speakers``
(same seeds), assembled once; each (change_threshold, scan_threshold) setting re-runs the
segmenter with the detector, and each label_threshold re-labels its utterances. The
encoder's embeddings are cached by audio content, so a setting costs the segmenter and
the windows no earlier setting embedded. Per setting: changes with a boundary within
0.5 s, utterances with both speakers, false speaker-change cuts with one actor alone, and
per label threshold the labels right by majority mapping and one to one (each speaker one
label, per conversation), and the labels used. Fit on actors 1-12; check the chosen
setting with bench/conversations.py on held-out speakers.

    .venv/bin/python -m bench.experiments.speaker_refit --encoder packaged:campplus \
        --pairing mixed \
        --points 0.3,0.15 0.35,0.15 0.25,0.15 0.3,0.2 0.3,0.1 0.4,0.15 0.35,0.2 0.4,0.2 \
        --label 0.25 0.3 0.35 0.4 0.45 --out /tmp/refit_mixed.json
    # CAM++ on int8 (speakers.int8): add --speaker-set int8=true
    # at 8 kHz (every mix through 8 kHz and back): add --telephone
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import conversations as conv


class CachedEncoder:
    """A speaker encoder whose embeddings are remembered by the audio's bytes."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder
        self._cache: dict[bytes, np.ndarray] = {}
        self.calls = 0

    def embed(self, audio: np.ndarray) -> np.ndarray:
        key = hashlib.blake2b(np.ascontiguousarray(audio, np.float32).tobytes(),
                              digest_size=16).digest()
        if key not in self._cache:
            self.calls += 1
            self._cache[key] = self._encoder.embed(audio)
        return self._cache[key]


def one_to_one(truth: list[str], labels: list[str]) -> int:
    """Utterances right when each speaker gets one label (the best assignment)."""
    from scipy.optimize import linear_sum_assignment

    speakers, names = sorted(set(truth)), sorted(set(labels))
    counts = np.zeros((len(speakers), len(names)))
    for t, label in zip(truth, labels, strict=True):
        counts[speakers.index(t), names.index(label)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return int(counts[rows, cols].sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="packaged:campplus")
    parser.add_argument("--pairing", choices=("mixed", "same"), default="mixed")
    parser.add_argument("--actors", choices=("1-12", "13-24"), default="1-12")
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--change", type=float, nargs="+", default=[])
    parser.add_argument("--scan", type=float, nargs="+", default=[])
    parser.add_argument("--points", nargs="+", default=[], metavar="CHANGE,SCAN",
                        help="settings in this order (before the --change x --scan grid)")
    parser.add_argument("--label", type=float, nargs="+", required=True)
    parser.add_argument("--telephone", action="store_true",
                        help="every mix through 8 kHz and back, as bench/conversations.py")
    parser.add_argument("--speaker-set", dest="speaker_overrides", action="append",
                        default=[], metavar="KEY=VALUE", help="another speakers setting")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import yaml

    from models.asr import AsrEngine, AsrOptions
    from models.encoders.whisper import load_whisper
    from models.speaker_encoder import SpeakerEncoder
    from streamer.core.config import SegmenterConfig, SpeakersConfig
    from streamer.engine.loading import speaker_calibration
    from streamer.engine.speakers import ChannelSpeakers, SpeakerTracker

    extra = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.speaker_overrides)}
    asr = AsrEngine(AsrOptions(), load_whisper("packaged:tiny.en", cpu_threads=2))
    rng = random.Random(11)  # as bench/conversations.py
    pairs = conv.PAIRS[args.pairing]
    if args.actors == "13-24":
        pairs = [(a + 12, b + 12) for a, b in pairs[:6]]
    talks = []  # (mix, placed, solo mix, solo placed)
    for c in range(args.conversations):
        pair = pairs[c % len(pairs)]
        pieces = conv.ravdess_pieces(asr, conv.RAVDESS, pair, args.clips, rng)
        gaps = [rng.uniform(-0.2, 0.6) for _ in pieces]
        solo = conv.ravdess_pieces(asr, conv.RAVDESS, (pair[0], pair[0]), args.clips,
                                   random.Random(1000 + c))
        mix, placed = conv.assemble(pieces, gaps)
        solo_mix, solo_placed = conv.assemble(solo, gaps)
        if args.telephone:
            mix, solo_mix = conv.telephone(mix), conv.telephone(solo_mix)
        talks.append((mix, placed, solo_mix, solo_placed))
    print(f"assembled {len(talks)} conversations", file=sys.stderr)
    # --speaker-set int8=true: CAM++'s convolutions on int8, calibrated as the streamer does
    calibration = speaker_calibration(SpeakersConfig(enabled=True, encoder=args.encoder,
                                                     **extra))
    encoder = CachedEncoder(SpeakerEncoder(args.encoder, calibration))
    segmenter = SegmenterConfig()
    rows = []
    points = [tuple(float(x) for x in p.split(",")) for p in args.points]
    points += [p for p in itertools.product(args.change, args.scan) if p not in points]
    for change, scan in points:
        started = time.perf_counter()
        config = SpeakersConfig(enabled=True, encoder=args.encoder, change_threshold=change,
                                scan_threshold=scan, **extra)
        total: dict[str, Any] = {}
        false_cuts, solo_utts, joins = 0, 0, 0
        per_label = {t: {"label_right": 0, "label_one_to_one": 0, "labels_used": 0,
                         "solo_labels_used": 0} for t in args.label}
        for mix, placed, solo_mix, solo_placed in talks:
            channel = ChannelSpeakers(encoder, config)
            utts, _, _ = conv.segment(mix, segmenter, channel)
            conv.add(total, conv.measure(utts, placed))
            embeddings = [encoder.embed(u.audio) for u in utts]
            truth = [conv.dominant(u, placed) for u in utts]
            channel = ChannelSpeakers(encoder, config)
            solo_utts_ = conv.segment(solo_mix, segmenter, channel)[0]
            false_cuts += sum(u.cut_reason == "speaker_change" for u in solo_utts_)
            solo_utts += len(solo_utts_)
            joins += len(solo_placed) - 1
            solo_embeddings = [encoder.embed(u.audio) for u in solo_utts_]
            for t in args.label:
                tracker = SpeakerTracker(t, config.max_speakers)
                labels = [tracker.assign(e) for e in embeddings]
                acc = conv.label_accuracy(utts, placed, labels)
                per_label[t]["label_right"] += acc["label_right"]
                per_label[t]["labels_used"] += acc["labels_used"]
                per_label[t]["label_one_to_one"] += one_to_one(truth, labels)
                tracker = SpeakerTracker(t, config.max_speakers)
                per_label[t]["solo_labels_used"] += len({tracker.assign(e)
                                                         for e in solo_embeddings})
        row = {"change_threshold": change, "scan_threshold": scan,
               "utterances": total["utterances"],
               "speaker_changes": total["speaker_changes"],
               "changes_with_boundary_0_5s": total["changes_with_boundary_0_5s"],
               "overlapped_changes": total["overlapped_changes"],
               "overlapped_changes_with_boundary_0_5s":
                   total["overlapped_changes_with_boundary_0_5s"],
               "two_speaker_utterances": total["two_speaker_utterances"],
               "cuts_mid_word": total["cuts_mid_word"],
               "one_speaker_false_cuts": false_cuts, "one_speaker_utterances": solo_utts,
               "one_speaker_clip_joins": joins,
               "labels": {str(t): v for t, v in per_label.items()},
               "seconds": round(time.perf_counter() - started, 1)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "labels"}), file=sys.stderr,
              flush=True)
        args.out.write_text(json.dumps({"encoder": args.encoder, "int8": bool(calibration),
                                        "pairing": args.pairing,
                                        "actors": args.actors, "extra": extra,
                                        "telephone": args.telephone,
                                        "embeddings": encoder.calls, "grid": rows},
                                       indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
