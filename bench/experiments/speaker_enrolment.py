"""Would enrolment help the speaker turns? (issue 11; an experiment, not in the streamer)

The streamer's detector is open-set: it compares the second before a point with the second
after it, knowing nothing of the voices (docs/conversations.md). Many deployments know
their parties (an agent, a host), so one labelled sample per party could be given up front.
This bench measures that closed-set alternative on the same assembled RAVDESS conversations
as ``bench/conversations.py`` (same actors, clips, gaps and seed): each party is enrolled
with the mean Resemblyzer embedding of ``--enrol`` clips of their neutral and calm takes
that are not in the conversation; every ``--hop`` s, the 1 s of audio ending there is given
the nearest enrolled party (windows under ``--min-rms`` are skipped), and a change of
party held for ``--hold`` windows is a boundary (half a window plus half a hop before the
end of the first window the new party wins).

It reports changes with a boundary within 0.5 s (all and overlapped), boundaries with no
change within 0.5 s (false), the same on each conversation's first actor talking alone
(where every boundary is false), and the window accuracy. ``--pairing same``: two actors
of the same sex.

    .venv/bin/python bench/experiments/speaker_enrolment.py \
        --out bench/results/speaker_enrolment.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.conversations import (  # noqa: E402
    PAIRS,
    RAVDESS,
    Placed,
    assemble,
    enrolment_clips,
    ravdess_pieces,
    speaker_changes,
    speech_by_speaker,
)
from models.audio import SAMPLE_RATE  # noqa: E402
from streamer.engine.speakers import enrol  # noqa: E402


def boundaries(encoder: Any, mix: np.ndarray, centroids: np.ndarray, hop: float, hold: int,
               min_rms: float) -> tuple[list[float], list[tuple[float, int]]]:
    """Boundaries (s) where the nearest party changes and stays for ``hold`` windows, and
    the (window end, party) of every voiced window."""
    window, step = SAMPLE_RATE, int(hop * SAMPLE_RATE)
    parties: list[tuple[float, int]] = []
    for end in range(window, len(mix) + 1, step):
        audio = mix[end - window:end]
        if float(np.sqrt(np.mean(audio ** 2))) < min_rms:
            continue
        parties.append((end / SAMPLE_RATE, int(np.argmax(centroids @ encoder.embed(audio)))))
    cuts: list[float] = []
    current: int | None = None
    for i, (t, party) in enumerate(parties):
        run = parties[i:i + hold]
        if party != current and len(run) == hold and all(p == party for _, p in run):
            if current is not None:  # the new party holds most of this window, not the last
                cuts.append(t - 0.5 - hop / 2)
            current = party
    return cuts, parties


def score(cuts: list[float], parties: list[tuple[float, int]], placed: list[Placed],
          speakers: tuple[str, str]) -> dict[str, int]:
    changes = speaker_changes(placed)
    found = [any(abs(b - c) <= 0.5 for b in cuts) for c, _ in changes]
    offsets = [min((b - c for b in cuts), key=abs) for c, _ in changes if cuts]
    false = sum(not any(abs(b - c) <= 0.5 for c, _ in changes) for b in cuts)
    right = 0
    for end, party in parties:  # the speaker with most speech in the window
        speech = speech_by_speaker((end - 1.0, end), placed)
        right += max(speech, key=lambda s: speech[s]) == speakers[party]
    return {"speaker_changes": len(changes), "changes_with_boundary_0_5s": sum(found),
            "overlapped_changes": sum(o for _, o in changes),
            "overlapped_changes_with_boundary_0_5s": sum(f and o for f, (_, o) in
                                                         zip(found, changes, strict=True)),
            "changes_with_boundary_1s": sum(abs(o) <= 1.0 for o in offsets),
            "boundary_late_0_5_to_1s": sum(0.5 < o <= 1.0 for o in offsets),
            "false_boundaries": false, "windows": len(parties), "windows_right": right}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairing", choices=tuple(PAIRS), default="mixed")
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--gaps", type=float, nargs=2, default=(-0.2, 0.6))
    parser.add_argument("--enrol", type=int, default=4, help="enrolment clips per party")
    parser.add_argument("--hop", type=float, default=0.2)
    parser.add_argument("--hold", type=int, default=3)
    parser.add_argument("--min-rms", type=float, default=0.005)
    parser.add_argument("--ravdess", type=Path, default=RAVDESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from models.asr import AsrEngine, AsrOptions
    from models.encoders.whisper import load_whisper
    from models.speaker_encoder import PACKAGED_RESEMBLYZER, SpeakerEncoder

    asr = AsrEngine(AsrOptions(), load_whisper("packaged:tiny.en", cpu_threads=2))
    encoder = SpeakerEncoder(PACKAGED_RESEMBLYZER)  # what this study measured
    rng = random.Random(11)  # the same sequence as bench/conversations.py
    total: dict[str, int] = {}
    alone: dict[str, int] = {}
    for c in range(args.conversations):
        pair = PAIRS[args.pairing][c % len(PAIRS[args.pairing])]
        pieces = ravdess_pieces(asr, args.ravdess, pair, args.clips, rng)
        gaps = [rng.uniform(*args.gaps) for _ in pieces]
        solo = ravdess_pieces(asr, args.ravdess, (pair[0], pair[0]), args.clips,
                              random.Random(1000 + c))
        used = [a for _, a, _ in pieces + solo]
        centroids = np.stack([enrol(encoder, f"actor{a}", enrolment_clips(
            args.ravdess, a, used, args.enrol)).embedding for a in pair])
        speakers = (f"actor{pair[0]}", f"actor{pair[1]}")
        for pieces_, into in ((pieces, total), (solo, alone)):
            mix, placed = assemble(pieces_, gaps)
            cuts, parties = boundaries(encoder, mix, centroids, args.hop, args.hold,
                                       args.min_rms)
            for k, v in score(cuts, parties, placed, speakers).items():
                into[k] = into.get(k, 0) + v
        print(f"conversation {c + 1}: {total}", flush=True)
    results = {"protocol": __doc__.split("\n\n")[1], "pairing": args.pairing,
               "enrol_clips": args.enrol, "hop_s": args.hop, "hold_windows": args.hold,
               "min_rms": args.min_rms, "conversations": total, "one_actor_alone": alone}
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
