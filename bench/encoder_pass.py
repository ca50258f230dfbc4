"""CPU time of the all-layer Whisper encoder pass per utterance, by encoder and window.

The default bundle reads every encoder layer from the PyTorch copy of Whisper's encoder
(``models.encoders.whisper_torch``), once per final utterance. This times that pass for
each encoder and audio window (``full``: the ASR's 10 s window; ``fit``: the utterance's
own length in whole seconds), in CPU time of the process, on utterances of several lengths
cut from one real RAVDESS clip joined to itself, in one run, as ratios to the first setting
(the machines are shared and noisy: compare within a run).

    python -m bench.encoder_pass --threads 2 --repeats 8
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from models.encoders.whisper import window_seconds
from models.encoders.whisper_torch import WhisperTorchEncoder

CLIP = Path("../shared/corpora/ravdess/Actor_01/03-01-05-01-01-01-01.flac")
SETTINGS = (("packaged:tiny.en", "full"), ("packaged:base", "full"), ("packaged:base", "fit"))


def utterance(seconds: float, clip: Path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(clip, dtype="float32")
    if rate != 16000:
        raise SystemExit(f"{clip}: expected 16 kHz audio, got {rate} Hz")
    repeats = int(np.ceil(seconds * rate / len(audio)))
    return np.tile(audio, repeats)[: int(seconds * rate)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--seconds", default="1.5,2.5,4,8", help="utterance lengths")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    lengths = [float(s) for s in args.seconds.split(",")]
    audios = {s: utterance(s, args.clip) for s in lengths}
    encoders = {ref: WhisperTorchEncoder.load(ref) for ref in {r for r, _ in SETTINGS}}
    times: dict[tuple[str, str, float], float] = {}
    for ref, window in SETTINGS:
        for seconds, audio in audios.items():
            encoders[ref].encode(audio, window_seconds(window))  # warm
            runs = []
            for _ in range(args.repeats):
                # CPU time of the process (all threads): less moved by other jobs than
                # wall time on a shared machine.
                start = time.process_time()
                encoders[ref].encode(audio, window_seconds(window))
                runs.append(time.process_time() - start)
            times[(ref, window, seconds)] = statistics.median(runs) * 1000
    first = SETTINGS[0]
    print(f"all-layer encoder pass, CPU ms per utterance (median of {args.repeats}, "
          f"{args.threads} threads; ratio to {first[0]} {first[1]})\n")
    print("| encoder | window | " + " | ".join(f"{s:g} s" for s in lengths) + " |")
    print("|---|---|" + "---|" * len(lengths))
    for ref, window in SETTINGS:
        ms = [times[(ref, window, s)] for s in lengths]
        cells = [f"{m:.0f} ({m / times[(*first, s)]:.2f}x)" for m, s in zip(ms, lengths,
                                                                        strict=True)]
        print(f"| {ref} | {window} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
