"""Does a neutral fallback, or corpus-balanced weights, measure better? (issue 28, exploratory)

Two cheap levers on the cross-corpus protocol's probe (``offline_training.cross_corpus``),
on cached features: the encoder comparison's pooled table (1,314 wideband clips of RAVDESS
and nEMO; every layer of Whisper base, fit window; audio only: gold transcripts behind a
word gate of 2, so no words reach the probe; ``egemaps_transfer.load_table``).

1. **Neutral fallback.** A log-odds bias ``b`` added to neutral's logit before the argmax:
   neutral is predicted unless another class is more than ``e**b`` times as probable
   (``b = 0``: the plain probe). It is the same as raising the probe's neutral intercept by
   ``b``, so a bundle could serve it without code, and its decisions do not depend on the
   bundle's temperature. ``b`` is swept (exploratory) and **fitted honestly**: on the
   training speakers only, by a 3-fold speaker-grouped inner CV (each inner fold holds out
   a third of every training corpus's speakers; same normalisation code path, causal
   deployment statistics on the inner test stream), ``b`` maximising the pooled inner
   held-out UA over a grid 0..5 (ties: the smallest), then applied to the test speakers.
   Beside it, an explicit **"uncertain"** output: no class when the highest probability is
   below ``t`` (coverage = share of utterances that get a class; UA over those).
2. **Corpus-balanced weights** (``both`` only): sample weights so that every (corpus,
   class) cell of the training rows weighs the same (they replace the probe's
   ``class_weight='balanced'``, which balances classes only; weights average 1, so C means
   the same; the standardisation stays unweighted). Passed to the pipeline's logistic
   regression as ``sample_weight``.

Settings as the protocol's: RAVDESS -> nEMO, nEMO -> RAVDESS, both with held-out speakers
(3 folds); normalisations ``none`` and ``mixed:40``; streams ``acted`` and
``mostly-neutral`` (70 % neutral). One fit per fold serves every bias and threshold (the
rules are applied post hoc to its probabilities, saved in ``--probs``).

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python -m bench.experiments.neutral_fallback \\
        --table runs/encoder-cmp-base-fit-table.npz --out bench/results/neutral_fallback.json

``--reuse`` recomputes the tables from ``--probs`` without fitting.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.experiments.egemaps_transfer import (
    LAYER_WIDTH,
    LAYERS,
    TEXT_WIDTH,
    table_parser,
    wideband_table,
)
from offline_training import cross_corpus as cc

BIASES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)  # the exploratory sweep
BIAS_GRID = tuple(round(float(b), 2) for b in np.arange(0.0, 5.01, 0.1))  # the fitted one
THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # "uncertain" below this max probability
STREAMS = ("acted", "mostly-neutral")
INNER_FOLDS = 3
ANGRY, NEUTRAL = "angry", cc.NEUTRAL


# ---------------------------------------------------------------- fitting

def corpus_balanced_weights(corpus: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Every (corpus, class) cell weighs the same; the weights average 1."""
    cells = np.char.add(np.char.add(corpus.astype(str), "/"), labels.astype(str))
    _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]
    return weight * len(weight) / weight.sum()


def fit(head: Any, train: cc.Table, normalisation: str, balanced: bool,
        prior: tuple[np.ndarray, np.ndarray]) -> Any:
    """The protocol's probe on ``train`` (``cc.fit_probe``), or with corpus-balanced
    sample weights instead of its class weighting."""
    from offline_training.train import probe_pipeline

    audio, rows = cc.training_audio(train, normalisation, prior)
    text, labels = train.text(True)[rows], train.labels[rows]
    if not balanced:
        return cc.fit_probe(head, audio, text, labels, cc.DEFAULT_C)
    x = np.concatenate([audio, text], axis=1)
    weight = corpus_balanced_weights(train.corpus[rows], labels)
    return probe_pipeline(head, x.shape[1], False, cc.DEFAULT_C).fit(
        x, labels, logisticregression__sample_weight=weight)


def predict(model: Any, test: cc.Table, normalisation: str,
            prior: tuple[np.ndarray, np.ndarray], stream: str, seed: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (N, classes) probabilities of ``test``'s stream, served as the protocol
    serves it (causal deployment statistics in the stream's order)."""
    sub = test.take(cc.stream_rows(test, stream, np.random.default_rng(seed)))
    audio = cc.served_audio(sub, normalisation, prior, cc.Options().adaptation, 0)
    *_, probs = cc.evaluate(model, audio, sub.text(True), sub.labels, test.classes)
    return sub.labels, probs


def inner_folds(train: cc.Table, seed: int) -> list[np.ndarray]:
    """Held-out masks of the inner CV: a third of each corpus's speakers per fold."""
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for corpus in sorted(set(train.corpus.tolist())):
        speakers = sorted(set(train.speaker[train.corpus == corpus].tolist()))
        for i, s in enumerate(rng.permutation(speakers)):
            fold_of[str(s)] = i % INNER_FOLDS
    folds = np.array([fold_of[str(s)] for s in train.speaker])
    return [folds == k for k in range(INNER_FOLDS)]


def inner_predictions(head: Any, train: cc.Table, normalisation: str, balanced: bool,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out labels and probabilities of the training speakers (acted stream)."""
    labels, probs = [], []
    for held in inner_folds(train, seed):
        part, rest = train.where(held), train.where(~held)
        prior = cc.population_prior(rest)
        model = fit(head, rest, normalisation, balanced, prior)
        for corpus in sorted(set(part.corpus.tolist())):
            y, p = predict(model, part.where(part.corpus == corpus), normalisation, prior,
                           "acted", seed)
            labels.append(y)
            probs.append(p)
    return np.concatenate(labels), np.concatenate(probs)


@dataclass(frozen=True)
class Run:
    setting: str
    fold: str
    train: np.ndarray  # mask of the table
    test: np.ndarray


def runs(table: cc.Table) -> list[Run]:
    out = [Run("ravdess->nemo", "all", table.corpus == "ravdess", table.corpus == "nemo"),
           Run("nemo->ravdess", "all", table.corpus == "nemo", table.corpus == "ravdess")]
    out += [Run("both", fold, ~held, held) for fold, held in cc.both_folds(table)]
    return out


def collect(table: cc.Table, normalisations: list[str], seed: int,
            log: Any) -> dict[str, np.ndarray]:
    """Every fit's held-out labels and probabilities, keyed
    'normalisation|weights|setting|fold|test corpus|stream' ('inner' for the inner CV's)."""
    head = cc.affect_probe_head(LAYER_WIDTH, TEXT_WIDTH, LAYERS, len(table.classes))
    arrays: dict[str, np.ndarray] = {}
    for normalisation in normalisations:
        for run in runs(table):
            train, test = table.where(run.train), table.where(run.test)
            prior = cc.population_prior(train)
            for weights in ("plain", "balanced") if run.setting == "both" else ("plain",):
                started = time.perf_counter()
                balanced = weights == "balanced"
                model = fit(head, train, normalisation, balanced, prior)
                key = f"{normalisation}|{weights}|{run.setting}|{run.fold}"
                for corpus in sorted(set(test.corpus.tolist())):
                    for stream in STREAMS:
                        y, p = predict(model, test.where(test.corpus == corpus),
                                       normalisation, prior, stream, seed)
                        arrays[f"{key}|{corpus}|{stream}|labels"] = y
                        arrays[f"{key}|{corpus}|{stream}|probs"] = p
                y, p = inner_predictions(head, train, normalisation, balanced, seed)
                arrays[f"{key}|inner|acted|labels"] = y
                arrays[f"{key}|inner|acted|probs"] = p
                log(f"{key}: {time.perf_counter() - started:.0f} s")
    return arrays


# ---------------------------------------------------------------- rules and metrics

def with_bias(probs: np.ndarray, neutral: int, bias: float) -> np.ndarray:
    """Argmax after adding ``bias`` to neutral's log-probability (= its logit)."""
    logits = np.log(np.clip(probs, 1e-12, 1.0))
    logits[:, neutral] += bias
    return logits.argmax(axis=1)


def metrics(labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]
            ) -> dict[str, float]:
    """UA over the covered rows (predicted >= 0; -1 = uncertain), neutral and angry recall
    over every row of the class (uncertain = missed), neutral rows called angry, coverage."""
    n, a = classes.index(NEUTRAL), classes.index(ANGRY)
    covered = predicted >= 0
    recalls = [float((predicted[covered & (labels == i)] == i).mean())
               for i in range(len(classes)) if (covered & (labels == i)).any()]
    return {"ua": float(np.mean(recalls)) if recalls else float("nan"),
            "neutral_recall": float((predicted[labels == n] == n).mean()),
            "neutral_as_angry": float((predicted[labels == n] == a).mean()),
            "angry_recall": float((predicted[labels == a] == a).mean()),
            "coverage": float(covered.mean())}


def ua(labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    return float(np.mean([(predicted[labels == i] == i).mean() for i in range(classes)
                          if (labels == i).any()]))


def fit_bias(labels: np.ndarray, probs: np.ndarray, neutral: int) -> float:
    """The grid's bias with the best inner held-out UA (the smallest of ties)."""
    scores = [ua(labels, with_bias(probs, neutral, b), probs.shape[1]) for b in BIAS_GRID]
    return BIAS_GRID[int(np.argmax(np.round(scores, 6)))]


def uncertain(probs: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(probs.max(axis=1) >= threshold, probs.argmax(axis=1), -1)


def mean_spread(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Mean of each metric over folds, and the UA's spread (std) and per-fold values."""
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["ua_std"] = float(np.std([r["ua"] for r in rows]))
    out["ua_folds"] = [round(r["ua"], 4) for r in rows]
    return out


CELLS = [("ravdess->nemo", "nemo"), ("nemo->ravdess", "ravdess"), ("both", "nemo"),
         ("both", "ravdess")]
CELL_NAMES = {("ravdess->nemo", "nemo"): "RAVDESS → nEMO",
              ("nemo->ravdess", "ravdess"): "nEMO → RAVDESS",
              ("both", "nemo"): "both → nEMO, held out",
              ("both", "ravdess"): "both → RAVDESS, held out"}


def summarise(arrays: dict[str, np.ndarray], classes: tuple[str, ...],
              normalisations: list[str]) -> list[dict[str, Any]]:
    """One row per (normalisation, weights, setting, test corpus, stream): the plain probe,
    the fitted bias, the bias sweep and the uncertain sweep, each averaged over folds."""
    neutral = classes.index(NEUTRAL)
    rows = []
    for normalisation in normalisations:
        for weights in ("plain", "balanced"):
            for setting, test in CELLS:
                prefix = f"{normalisation}|{weights}|{setting}|"
                folds = sorted({k.split("|")[3] for k in arrays if k.startswith(prefix)})
                if not folds:
                    continue
                biases = {f: fit_bias(arrays[f"{prefix}{f}|inner|acted|labels"],
                                      arrays[f"{prefix}{f}|inner|acted|probs"], neutral)
                          for f in folds}
                for stream in STREAMS:
                    data = [(arrays[f"{prefix}{f}|{test}|{stream}|labels"],
                             arrays[f"{prefix}{f}|{test}|{stream}|probs"], biases[f])
                            for f in folds]
                    rows.append({
                        "normalisation": normalisation, "weights": weights,
                        "setting": setting, "test": test, "stream": stream,
                        "n": int(sum(len(y) for y, _, _ in data)),
                        "fitted_bias": [biases[f] for f in folds],
                        "plain": mean_spread([metrics(y, p.argmax(1), classes)
                                              for y, p, _ in data]),
                        "fitted": mean_spread([metrics(y, with_bias(p, neutral, b), classes)
                                               for y, p, b in data]),
                        "sweep": {str(b): mean_spread([metrics(y, with_bias(p, neutral, b),
                                                               classes) for y, p, _ in data])
                                  for b in BIASES},
                        "uncertain": {str(t): mean_spread([metrics(y, uncertain(p, t), classes)
                                                           for y, p, _ in data])
                                      for t in THRESHOLDS}})
    return rows


# ---------------------------------------------------------------- report

def cell(m: dict[str, Any], spread: bool) -> str:
    s = f" ± {m['ua_std']:.3f}" if spread else ""
    return (f"{m['ua']:.3f}{s} | {m['neutral_recall']:.2f} | {m['neutral_as_angry']:.3f} | "
            f"{m['angry_recall']:.2f}")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["## Fitted neutral bias vs the plain probe (argmax), same fits", "",
             "| trained → tested | norm. | stream | weights | fitted b (per fold) | "
             "plain UA | neutral rec. | neutral→angry | angry rec. | fallback UA | "
             "neutral rec. | neutral→angry | angry rec. |",
             "|" + "---|" * 13]
    for r in rows:
        spread = len(r["fitted_bias"]) > 1
        lines.append(
            f"| {CELL_NAMES[(r['setting'], r['test'])]} | `{r['normalisation']}` | "
            f"{r['stream']} | {r['weights']} | "
            f"{', '.join(f'{b:.1f}' for b in r['fitted_bias'])} | "
            f"{cell(r['plain'], spread)} | {cell(r['fitted'], spread)} |")
    lines += ["", "## Bias sweep (exploratory: b chosen on the test speakers would be "
              "optimistic)", "",
              "UA (neutral recall / neutral→angry / angry recall), plain weights", "",
              "| trained → tested | norm. | stream | "
              + " | ".join(f"b = {b}" for b in BIASES) + " |",
              "|" + "---|" * (3 + len(BIASES))]
    for r in rows:
        if r["weights"] != "plain":
            continue
        lines.append(
            f"| {CELL_NAMES[(r['setting'], r['test'])]} | `{r['normalisation']}` | "
            f"{r['stream']} | " + " | ".join(
                f"{m['ua']:.3f} ({m['neutral_recall']:.2f} / {m['neutral_as_angry']:.3f} / "
                f"{m['angry_recall']:.2f})" for m in r["sweep"].values()) + " |")
    lines += ["", "## \"Uncertain\" below a max probability t (untempered probe)", "",
              "coverage, UA over covered rows (neutral→angry share of all neutral rows / "
              "angry recall of all angry rows, uncertain = no alert), plain weights", "",
              "| trained → tested | norm. | stream | "
              + " | ".join(f"t = {t}" for t in THRESHOLDS) + " |",
              "|" + "---|" * (3 + len(THRESHOLDS))]
    for r in rows:
        if r["weights"] != "plain":
            continue
        lines.append(
            f"| {CELL_NAMES[(r['setting'], r['test'])]} | `{r['normalisation']}` | "
            f"{r['stream']} | " + " | ".join(
                f"{m['coverage']:.2f}, {m['ua']:.3f} ({m['neutral_as_angry']:.3f} / "
                f"{m['angry_recall']:.2f})" for m in r["uncertain"].values()) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = table_parser(__doc__)
    parser.add_argument("--probs", type=Path, default=Path("runs/neutral-fallback-probs.npz"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/neutral_fallback.json"))
    parser.add_argument("--normalisations", default="none,mixed:40")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="tables from --probs, no fitting")
    parser.add_argument("--columns", type=int, default=0,
                        help="keep only the first N audio columns (a quick smoke run)")
    args = parser.parse_args()
    started = time.perf_counter()
    normalisations = args.normalisations.split(",")
    table = wideband_table(args)
    if args.columns:
        table = replace(table, audio=table.audio[:, :args.columns])
    arrays: dict[str, np.ndarray] = {}
    if args.reuse:
        z = np.load(args.probs, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    for done, normalisation in enumerate([] if args.reuse else normalisations):
        with threadpool_limits(args.threads):
            arrays.update(collect(table, [normalisation], args.seed,
                                  lambda s: print(f"{time.perf_counter() - started:6.0f} s "
                                                  f"{s}", flush=True)))
        np.savez(args.probs, **arrays)  # type: ignore[arg-type]
        report(args, table, normalisations[:done + 1], arrays, started)
    if args.reuse:
        report(args, table, normalisations, arrays, started)


def report(args: argparse.Namespace, table: cc.Table, normalisations: list[str],
           arrays: dict[str, np.ndarray], started: float) -> None:
    rows = summarise(arrays, table.classes, normalisations)
    args.out.write_text(json.dumps({
        "table": str(args.table), "clips": len(table), "classes": list(table.classes),
        "rule": "neutral's logit + b, then argmax; b fitted by 3-fold speaker-grouped inner "
                "CV on the training speakers (max pooled inner UA, grid 0..5 step 0.1)",
        "uncertain": "no class when max probability < t (untempered probe probabilities)",
        "balanced": "sample weights: every (corpus, class) cell of the training rows equal, "
                    "mean 1, instead of class_weight='balanced'",
        "seconds": round(time.perf_counter() - started), "rows": rows}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
