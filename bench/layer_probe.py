"""What every Whisper encoder layer buys on RAVDESS: a linear probe per layer.

For each clip, the hidden states of every layer (models/encoders/whisper_torch.py, the same
weights and input window as the CTranslate2 path) are mean+std pooled over the utterance's
frames. A standardised logistic regression, C chosen by UA in an inner GroupKFold over the
training actors, is fitted per layer, on all layers concatenated, and on the plain average of
the layers' hidden states (pooled after averaging; no learned weights). 8-class RAVDESS, the
6 EmoBox folds of 4 held-out actors; per-fold UA, mean UA and std, pooled WA.

Pooled features are cached per model in ``--cache`` (npz), so a re-run only fits probes.

    .venv/bin/python bench/layer_probe.py --model tiny.en=packaged:tiny.en \
        --model base=/tmp/whisper-base-ct2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RAVDESS = Path("/work/shared/corpora/ravdess")
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
# EmoBox's RAVDESS folds: held-out actors (../shared/corpora/README.md).
FOLDS = ((1, 11, 20, 21), (4, 10, 12, 14), (8, 9, 19, 23), (3, 5, 7, 24), (2, 15, 16, 18),
         (6, 13, 17, 22))
CS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
INNER_FOLDS = 4


@dataclass(frozen=True)
class Clip:
    path: Path
    label: int  # index into EMOTIONS
    actor: int


@dataclass(frozen=True)
class Pooled:
    """Mean+std pooled hidden states of every clip for one model."""

    layers: np.ndarray  # (N, L + 1, 2D): per hidden state
    average: np.ndarray  # (N, 2D): of the layer-averaged hidden states
    labels: np.ndarray  # (N,)
    actors: np.ndarray  # (N,)


@dataclass(frozen=True)
class ProbeResult:
    model: str
    features: str  # "layer i", "concat", "average"
    fold_ua: tuple[float, ...]
    mean_ua: float
    std_ua: float
    pooled_wa: float
    pooled_ua: float
    chosen_c: tuple[float, ...]


def ravdess_clips(root: Path) -> list[Clip]:
    """Speech clips, named modality-channel-emotion-intensity-statement-repetition-actor."""
    clips = []
    for path in sorted(root.glob("Actor_*/*.flac")):
        parts = path.stem.split("-")
        if len(parts) != 7:
            raise ValueError(f"'{path}': expected a RAVDESS name with 7 fields, got {path.stem}")
        clips.append(Clip(path=path, label=int(parts[2]) - 1, actor=int(parts[6])))
    if len(clips) != 1440:
        raise ValueError(f"'{root}': expected 1440 RAVDESS speech clips (FLAC), found {len(clips)}")
    return clips


def pool(states: np.ndarray) -> np.ndarray:
    """(..., T, D) -> (..., 2D): mean and std over frames."""
    return np.concatenate([states.mean(axis=-2), states.std(axis=-2)], axis=-1)


def extract(name: str, ref: str, clips: list[Clip], cache: Path, batch_size: int,
            transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Pooled:
    """Pooled hidden states of every clip (cached under ``name``); ``transform`` changes
    each clip's audio first (bench/experiments/augment_probe.py: speed-perturbed copies)."""
    import soundfile as sf

    from models.encoders.whisper import DEFAULT_WINDOW_S
    from models.encoders.whisper_torch import WhisperTorchEncoder

    file = cache / f"{name}-window{DEFAULT_WINDOW_S:g}.npz"
    paths = np.array([str(c.path) for c in clips])
    if file.is_file():
        data = np.load(file)
        if np.array_equal(data["paths"], paths):
            print(f"{name}: cached features from {file}", flush=True)
            return Pooled(data["layers"], data["average"], data["labels"], data["actors"])
        print(f"{name}: {file} is for other clips; re-extracting", flush=True)
    encoder = WhisperTorchEncoder.load(ref)
    layers, average = [], []
    start = time.time()
    for i in range(0, len(clips), batch_size):
        chunk = clips[i: i + batch_size]
        audios = []
        for clip in chunk:
            audio, rate = sf.read(clip.path, dtype="float32")
            if rate != 16000 or audio.ndim != 1:
                raise ValueError(f"'{clip.path}': expected 16 kHz mono, got {rate} Hz "
                                 f"shape {audio.shape}")
            audios.append(audio if transform is None else transform(audio))
        for encoding in encoder.encode_batch(audios, batch_size=batch_size):
            layers.append(pool(encoding.hidden_states))
            average.append(pool(encoding.hidden_states.mean(axis=0)))
        done = i + len(chunk)
        rate_s = (time.time() - start) / done
        print(f"{name}: {done}/{len(clips)} clips, {rate_s:.2f} s/clip, "
              f"ETA {rate_s * (len(clips) - done):.0f} s", flush=True)
    pooled = Pooled(np.stack(layers).astype(np.float32), np.stack(average).astype(np.float32),
                    np.array([c.label for c in clips]), np.array([c.actor for c in clips]))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(file, paths=paths, **asdict(pooled))
    return pooled


def probe(model: str, features: str, x: np.ndarray, y: np.ndarray,
          actors: np.ndarray) -> ProbeResult:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    predicted = np.full_like(y, -1)
    fold_ua, chosen = [], []
    start = time.time()
    for held_out in FOLDS:
        test = np.isin(actors, held_out)
        # The scaler is fitted on the whole training part (means/stds only, no labels);
        # C is chosen by UA over inner folds of whole training actors. LogisticRegressionCV
        # warm-starts along the C path: ~3x cheaper than a grid search on 2 shared cores.
        scaler = StandardScaler().fit(x[~test])
        inner = list(GroupKFold(n_splits=INNER_FOLDS).split(x[~test], y[~test], actors[~test]))
        logreg = LogisticRegressionCV(Cs=list(CS), cv=inner, scoring="balanced_accuracy",
                                      max_iter=2000, refit=True, l1_ratios=(0.0,),
                                      use_legacy_attributes=True)
        logreg.fit(scaler.transform(x[~test]), y[~test])
        predicted[test] = logreg.predict(scaler.transform(x[test]))
        fold_ua.append(float(balanced_accuracy_score(y[test], predicted[test])))
        chosen.append(float(np.ravel(logreg.C_)[0]))
    result = ProbeResult(
        model=model, features=features, fold_ua=tuple(fold_ua), mean_ua=float(np.mean(fold_ua)),
        std_ua=float(np.std(fold_ua)), pooled_wa=float(np.mean(predicted == y)),
        pooled_ua=float(balanced_accuracy_score(y, predicted)), chosen_c=tuple(chosen))
    print(f"{result.model:8s} {features:9s} UA {result.mean_ua:.3f} ± {result.std_ua:.3f}  "
          f"WA {result.pooled_wa:.3f}  C {chosen}  {time.time() - start:.0f} s", flush=True)
    return result


def markdown(results: list[ProbeResult]) -> str:
    head = ("| model | features | " + " | ".join(f"fold {i + 1}" for i in range(len(FOLDS)))
            + " | mean UA | std | pooled WA |")
    lines = [head, "|" + "---|" * (len(FOLDS) + 5)]
    for r in results:
        lines.append(f"| {r.model} | {r.features} | " + " | ".join(f"{u:.3f}" for u in r.fold_ua)
                     + f" | **{r.mean_ua:.3f}** | {r.std_ua:.3f} | {r.pooled_wa:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=REF",
                        help="a Whisper reference (models.paths) or CTranslate2 directory")
    parser.add_argument("--corpus", type=Path, default=RAVDESS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/layer-probe"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/layer_probe.json")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (extraction)")
    parser.add_argument("--jobs", type=int, default=2, help="probes fitted in parallel")
    args = parser.parse_args()

    import torch
    from joblib import Parallel, delayed
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    # One BLAS thread per fit: on a shared machine, threaded BLAS under parallel fits thrashes.
    threadpool_limits(1)
    clips = ravdess_clips(args.corpus)
    results: list[ProbeResult] = []
    for spec in args.model:
        name, sep, ref = spec.partition("=")
        if not sep:
            parser.error(f"--model expects NAME=REF, got '{spec}'")
        pooled = extract(name, ref, clips, args.cache, args.batch_size)
        y, actors = pooled.labels, pooled.actors
        matrices = {f"layer {i}": pooled.layers[:, i] for i in range(pooled.layers.shape[1])}
        matrices["concat"] = pooled.layers.reshape(len(y), -1)
        matrices["average"] = pooled.average
        order = sorted(matrices, key=lambda f: f != "concat")  # the slowest one first
        done = Parallel(n_jobs=args.jobs)(
            delayed(probe)(name, f, matrices[f], y, actors) for f in order)
        by_features = {r.features: r for r in done}
        results.extend(by_features[f] for f in matrices)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # written after every model
        args.out.write_text(json.dumps({
            "protocol": {"corpus": "RAVDESS speech, 8 classes, 1440 clips", "folds": FOLDS,
                         "inner_folds": INNER_FOLDS, "cs": CS, "pooling": "mean+std",
                         "layers": "0 = conv + positions, i = output of layer i, "
                                   "last = after the final layer norm (CTranslate2 output)"},
            "models": dict(spec.partition("=")[::2] for spec in args.model),
            "results": [asdict(r) for r in results]}, indent=1) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
