"""Would within-speaker covariance normalisation help the speaker encoder? (issue 11)

Resemblyzer d-vectors (``models.speaker_encoder``) of every RAVDESS clip; same- against
different-speaker cosine on actors 01-12 (the actors ``bench/conversations.py`` assembles
its conversations from), as an equal error rate. Then the same after WCCN (the embeddings
whitened by the within-speaker covariance, shrunk toward a scaled identity) and after LDA,
both fitted on actors 13-24 only, so nothing is fitted on the evaluated speakers. An actor's
emotions are the within-speaker variation RAVDESS has plenty of.

    .venv/bin/python bench/speaker_wccn.py    # ~5 min of embedding on one core
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RAVDESS = ROOT.parent / "shared/corpora/ravdess"
OUT = ROOT / "bench/results/speaker_wccn.json"


def equal_error_rate(z: np.ndarray, actors: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    upper = np.triu_indices(len(z), 1)
    same = (actors[:, None] == actors[None])[upper]
    fpr, tpr, _ = roc_curve(same, (z @ z.T)[upper])
    i = int(np.argmin(np.abs(1 - tpr - fpr)))
    return float((fpr[i] + 1 - tpr[i]) / 2)


def within_between(x: np.ndarray, actors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-speaker and between-speaker covariances."""
    speakers = np.unique(actors)
    means = np.stack([x[actors == s].mean(0) for s in speakers])
    within = sum(np.cov(x[actors == s].T, bias=True) * int((actors == s).sum())
                 for s in speakers) / len(x)
    return within, np.cov(means.T, bias=True)


def main() -> None:
    import scipy.linalg
    import soundfile as sf
    import torch

    from models.speaker_encoder import SpeakerEncoder

    torch.set_num_threads(1)
    encoder = SpeakerEncoder()
    files = sorted(RAVDESS.glob("Actor_*/*.flac"))
    embeddings = np.stack([encoder.embed(sf.read(f, dtype="float32")[0]) for f in files])
    actors = np.array([int(f.stem.split("-")[6]) for f in files])
    test, train = actors <= 12, actors > 12
    mean = embeddings[train].mean(0)
    within, between = within_between(embeddings[train], actors[train])
    rows: dict[str, float] = {"cosine": equal_error_rate(embeddings[test], actors[test])}
    for shrink in (0.0, 0.1, 0.3, 0.5, 0.8):
        w = (1 - shrink) * within + shrink * np.eye(len(within)) * np.trace(within) / len(within)
        values, vectors = np.linalg.eigh(w)
        whiten = vectors / np.sqrt(values + 1e-6)
        rows[f"wccn shrink {shrink}"] = equal_error_rate(
            (embeddings[test] - mean) @ whiten, actors[test])
        _, directions = scipy.linalg.eigh(between, w + 1e-6 * np.eye(len(w)))
        for k in (7, 11, 32):
            rows[f"lda {k} shrink {shrink}"] = equal_error_rate(
                (embeddings[test] - mean) @ directions[:, ::-1][:, :k], actors[test])
    for name, value in rows.items():
        print(f"{name:24s} EER {value:.3f}")
    OUT.write_text(json.dumps({"protocol": __doc__.split("\n\n")[1], "clips": len(files),
                               "eer": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
