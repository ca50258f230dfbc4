"""The speaker path's CPU per audio second for several ``speakers.scan_hop_s`` (issue 29).

As ``bench/speaker_cpu.py``: the conversations of ``bench/conversations.py --speakers`` (6
mixed-sex RAVDESS pairs of actors 1-12, 16 turns each, the same seed and gaps; clips drawn
without its ASR, so a clip its word alignment rejects may differ) are cut by the segmenter
with the default speakers config but for ``scan_hop_s``, and every clip the speaker path
embeds (scan windows, both sides of each pause decision, each utterance's label) is
recorded per hop. The recorded clips are then embedded again by the default encoder
(CAM++ on onnxruntime, one thread), round-robin over the hops clip by clip in one
process, so that load from other jobs falls on every hop alike; the figure is process CPU
time per second of conversation audio.

    .venv/bin/python -m bench.experiments.scan_hop_cpu --hops 0.2 0.3 0.4 0.5 \
        --out bench/results/speaker_cpu_scan_hop.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from bench.conversations import report
from bench.speaker_cpu import mixed_conversations, recorded_clips
from models.audio import SAMPLE_RATE
from models.speaker_encoder import SpeakerEncoder
from streamer.core.config import SpeakersConfig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hops", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5])
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--clips", type=int, default=16, help="turns per conversation")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    default = SpeakersConfig(enabled=True)
    encoder = SpeakerEncoder(default.encoder)
    mixes = mixed_conversations(args.conversations, args.clips)
    audio_s = sum(len(m) for m in mixes) / SAMPLE_RATE
    clips: dict[float, list[np.ndarray]] = {}
    scans: dict[float, int] = {}
    for hop in args.hops:
        clips[hop], scans[hop] = recorded_clips(
            encoder, mixes, dataclasses.replace(default, scan_hop_s=hop))
    for clip in clips[args.hops[0]][:5]:  # warm
        encoder.embed(clip)
    cpu = dict.fromkeys(args.hops, 0.0)
    for row in itertools.zip_longest(*(clips[h] for h in args.hops)):
        for hop, clip in zip(args.hops, row, strict=True):
            if clip is not None:
                started = time.process_time()
                encoder.embed(clip)
                cpu[hop] += time.process_time() - started
    results = {"conversations": args.conversations, "audio_s": round(audio_s, 1),
               "hops": {str(h): {
                   "scan_windows": scans[h], "clips_embedded": len(clips[h]),
                   "clip_s_embedded_per_audio_s": round(
                       sum(len(c) for c in clips[h]) / SAMPLE_RATE / audio_s, 2),
                   "cpu_ms_per_audio_s": round(1000 * cpu[h] / audio_s, 1),
                   "ratio_to_first": round(cpu[h] / cpu[args.hops[0]], 3)}
                   for h in args.hops}}
    return report(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
