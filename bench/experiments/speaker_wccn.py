"""Would within-speaker covariance normalisation help the speaker encoder? (issue 11)

Resemblyzer d-vectors (``models.speaker_encoder``) of every RAVDESS clip; same- against
different-speaker cosine on actors 01-12 (the actors ``bench/conversations.py`` assembles
its conversations from), as an equal error rate. Then the same after WCCN (the embeddings
whitened by the within-speaker covariance, shrunk toward a scaled identity) and after LDA,
both fitted on actors 13-24 only, so nothing is fitted on the evaluated speakers. An actor's
emotions are the within-speaker variation RAVDESS has plenty of.

    .venv/bin/python bench/experiments/speaker_wccn.py    # ~5 min of embedding on one core
    .venv/bin/python bench/experiments/speaker_wccn.py --save /tmp/wccn.npz
        # + the shrink-0.5 transform,
        # for bench/conversations.py --whitening (fitted on RAVDESS: non-commercial, not shipped)

The streaming detector compares 1 s windows, so the script also embeds the middle second
of every clip and, for the detector's raw thresholds (0.5 scan, 0.6 change and labels),
finds the whitened threshold that cuts as often between two clips of one actor (a false
change) on actors 13-24; on actors 01-12 it then reports, at those thresholds, how often
two clips of one actor are cut (false) and two of different actors are (found).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.audio import SAMPLE_RATE  # noqa: E402

RAVDESS = ROOT.parent / "shared/corpora/ravdess"
OUT = ROOT / "bench/results/speaker_wccn.json"


def middle_second(audio: np.ndarray) -> np.ndarray:
    """The middle second of a clip (RAVDESS clips have silence at both ends)."""
    middle = len(audio) // 2
    return audio[max(0, middle - SAMPLE_RATE // 2):middle + SAMPLE_RATE // 2]


def equal_error_rate(z: np.ndarray, actors: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    same, different = pair_cosines(z, actors)
    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(same)), np.zeros(len(different))],
                            np.r_[same, different])
    i = int(np.argmin(np.abs(1 - tpr - fpr)))
    return float((fpr[i] + 1 - tpr[i]) / 2)


def within_between(x: np.ndarray, actors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-speaker and between-speaker covariances."""
    speakers = np.unique(actors)
    means = np.stack([x[actors == s].mean(0) for s in speakers])
    within = sum(np.cov(x[actors == s].T, bias=True) * int((actors == s).sum())
                 for s in speakers) / len(x)
    return within, np.cov(means.T, bias=True)


def wccn(within: np.ndarray, shrink: float) -> np.ndarray:
    """The whitening matrix of the within-speaker covariance shrunk toward a scaled
    identity (0: plain WCCN, 1: no whitening)."""
    w = (1 - shrink) * within + shrink * np.eye(len(within)) * np.trace(within) / len(within)
    values, vectors = np.linalg.eigh(w)
    return vectors / np.sqrt(values + 1e-6)


def normalised(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def pair_cosines(z: np.ndarray, actors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of every pair of rows: same actor, different actors."""
    z = normalised(z)
    upper = np.triu_indices(len(z), 1)
    same = (actors[:, None] == actors[None])[upper]
    cosine = (z @ z.T)[upper]
    return cosine[same], cosine[~same]


def window_thresholds(raw: np.ndarray, white: np.ndarray, actors: np.ndarray
                      ) -> dict[str, dict[str, float]]:
    """Whitened thresholds matching the raw ones' false-change rate on actors 13-24, and
    both at work on actors 01-12 (1 s windows)."""
    train, test = actors > 12, actors <= 12
    rows: dict[str, dict[str, float]] = {}
    for threshold in (0.5, 0.6):
        same_train, _ = pair_cosines(raw[train], actors[train])
        rate = float(np.mean(same_train < threshold))
        white_same_train, _ = pair_cosines(white[train], actors[train])
        matched = float(np.quantile(white_same_train, rate))
        row = {"false_rate_13_24": rate, "whitened_threshold": matched}
        for name, z, t in (("raw", raw, threshold), ("whitened", white, matched)):
            same, different = pair_cosines(z[test], actors[test])
            row[f"{name}_false_01_12"] = float(np.mean(same < t))
            row[f"{name}_found_01_12"] = float(np.mean(different < t))
        rows[f"raw {threshold}"] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--save", type=Path, help="write the shrink-0.5 transform (.npz)")
    args = parser.parse_args()
    import scipy.linalg
    import soundfile as sf
    import torch

    from models.speaker_encoder import PACKAGED_RESEMBLYZER, SpeakerEncoder

    torch.set_num_threads(1)
    encoder = SpeakerEncoder(PACKAGED_RESEMBLYZER)  # what this study measured
    files = sorted(RAVDESS.glob("Actor_*/*.flac"))
    embeddings = np.stack([encoder.embed(sf.read(f, dtype="float32")[0]) for f in files])
    actors = np.array([int(f.stem.split("-")[6]) for f in files])
    test, train = actors <= 12, actors > 12
    mean = embeddings[train].mean(0)
    within, between = within_between(embeddings[train], actors[train])
    rows: dict[str, float] = {"cosine": equal_error_rate(embeddings[test], actors[test])}
    for shrink in (0.0, 0.1, 0.3, 0.5, 0.8):
        w = (1 - shrink) * within + shrink * np.eye(len(within)) * np.trace(within) / len(within)
        whiten = wccn(within, shrink)
        rows[f"wccn shrink {shrink}"] = equal_error_rate(
            (embeddings[test] - mean) @ whiten, actors[test])
        _, directions = scipy.linalg.eigh(between, w + 1e-6 * np.eye(len(w)))
        for k in (7, 11, 32):
            rows[f"lda {k} shrink {shrink}"] = equal_error_rate(
                (embeddings[test] - mean) @ directions[:, ::-1][:, :k], actors[test])
    whiten = wccn(within, 0.5)
    seconds = []
    for f in files:
        seconds.append(encoder.embed(middle_second(sf.read(f, dtype="float32")[0])))
    raw = np.stack(seconds)
    windows = window_thresholds(raw, normalised((raw - mean) @ whiten), actors)
    for name, row in windows.items():
        print(name, {k: round(v, 3) for k, v in row.items()})
    if args.save:
        np.savez(args.save, mean=mean, whiten=whiten)
    for name, value in rows.items():
        print(f"{name:24s} EER {value:.3f}")
    OUT.write_text(json.dumps({"protocol": __doc__.split("\n\n")[1], "clips": len(files),
                               "eer": rows, "one_second_windows": windows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
