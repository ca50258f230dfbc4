"""The cross-corpus protocol: does the emotion model work on voices and languages it never heard?

One command trains and tests the all-layer linear probe (the default model's head) on the
features the streamer serves (segmenter spans, ASR transcripts, wideband and telephone
copies), over the classes the corpora share, in three settings:

- ``ravdess->nemo``: trained on all of one corpus, tested on all of the other;
- ``nemo->ravdess``: the reverse;
- ``both``: trained on both corpora with whole speakers held out of each (3 folds: two of
  EmoBox's RAVDESS actor groups and 3 nEMO speakers mixing sexes per fold).

Each setting is run with every normalisation of the audio features (``NORMALISATIONS``) and
scored on several test streams (``STREAMS``), because what is right on an emotion-balanced
acted corpus (per-speaker standardisation) is wrong on a call where the caller stays angry.
The results table gives UA, per-class recall (neutral on its own column), ECE, and fold spread;
confusion matrices are written as PNGs. ``--export`` then fits the chosen recipe on all the
training speakers and writes a bundle the streamer serves (the default bundle's recipe).

    emotion-train cross-corpus --corpus manifest --root runs/transfer-v6.jsonl \\
        --label-map configs/label_maps/ravdess-4class-calm-as-neutral.json \\
        --audio-layers all --cache runs/cache --out runs/cross-corpus

The manifest is ``offline_training.corpora.combine``'s (``extra.corpus`` names the corpus;
telephone copies end in ``-telephone``), see docs/transfer.md for the whole recipe.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.feature_stats import (
    BANDS,
    AdaptationSettings,
    DeploymentStats,
    RunningStats,
    std_of,
)
from models.inference import text_trusted
from offline_training.corpora import Corpus
from offline_training.errors import TrainingError

NORMALISATIONS = ("none", "corpus", "deployment", "mixed", "speaker")
NORMALISATION_HELP = {
    "none": "one standardisation fitted on the training set (v5's recipe)",
    "corpus": "each corpus standardised by its own statistics, the test corpus too (an "
              "oracle: serving never has the whole test corpus)",
    "deployment": "training corpora by their own statistics; the test stream by running "
                  "statistics that start from the training population and follow the stream "
                  "(what the streamer does: models/feature_stats.py)",
    "mixed": "trained on every row twice, standardised by its corpus and by the training "
             "population; served as 'deployment' (holds before and after it adapts)",
    "speaker": "each speaker by their own statistics; at test time causal running "
               "statistics per speaker, starting from the training population",
}
STREAMS = ("acted", "one-emotion", "calls", "mostly-neutral")
STREAM_HELP = {
    "acted": "every test utterance, in random order (emotion-balanced)",
    "one-emotion": "each test speaker keeps one emotion only (a caller angry all call), "
                   "speakers interleaved",
    "calls": "as one-emotion, but speaker after speaker: with files of N, each file is one "
             "caller in one emotion",
    "mostly-neutral": "70 % neutral, as calm calls are the common case",
}
NEUTRAL = "neutral"
MOSTLY_NEUTRAL_SHARE = 0.7
SPEAKER_PRIOR_WEIGHT = 10.0  # per-speaker adaptation: the population counts as 10 utterances
DEFAULT_C = 1e-2  # v5's choice by speaker-grouped inner CV
# nEMO speaker groups for the 'both' folds: 3 speakers each, both sexes in every group.
NEMO_GROUPS = (("EB0", "KS0", "MP0"), ("IC0", "SM0", "TP0"), ("KD0", "MK0", "WR0"))
RAVDESS_GROUPS = ((1, 11, 20, 21, 4, 10, 12, 14), (8, 9, 19, 23, 3, 5, 7, 24),
                  (2, 15, 16, 18, 6, 13, 17, 22))  # EmoBox's 6 groups, two per fold
TELEPHONE_SUFFIX = "-telephone"


TABLE_CHUNK = 1000  # utterances whose all-layer features are in memory at once


@dataclass(frozen=True)
class Table:
    """The probe's pooled features of a corpus, one row per utterance."""

    ids: tuple[str, ...]
    audio: np.ndarray  # (N, Fa) mean + std of every encoder layer, as the probe pools them
    affect: np.ndarray  # (N, A) text affect scores of the transcript as given
    empty_affect: np.ndarray  # (A,) the scores of an empty transcript (untrusted words)
    trusted: np.ndarray  # (N,) bool: the words pass the gate
    word_probability: np.ndarray  # (N,) mean ASR word probability (nan: no words)
    labels: np.ndarray  # (N,) int
    corpus: np.ndarray  # (N,) str, without the band suffix
    band: np.ndarray  # (N,) str, one of BANDS
    speaker: np.ndarray  # (N,) str
    classes: tuple[str, ...]

    def take(self, index: np.ndarray) -> Table:
        return replace(self, ids=tuple(self.ids[i] for i in index), audio=self.audio[index],
                       affect=self.affect[index], trusted=self.trusted[index],
                       word_probability=self.word_probability[index],
                       labels=self.labels[index], corpus=self.corpus[index],
                       band=self.band[index], speaker=self.speaker[index])

    def where(self, mask: np.ndarray) -> Table:
        return self.take(np.flatnonzero(mask))

    def text(self, gate: bool) -> np.ndarray:
        """(N, A) affect columns: untrusted transcripts replaced by the empty one's."""
        if not gate:
            return self.affect
        return np.where(self.trusted[:, None], self.affect, self.empty_affect[None, :])

    def __len__(self) -> int:
        return len(self.ids)


def split_corpus_band(name: str) -> tuple[str, str]:
    if name.endswith(TELEPHONE_SUFFIX):
        return name[: -len(TELEPHONE_SUFFIX)], "telephone"
    return name, "wideband"


def build_table(corpus: Corpus, features: Any, head: Any, text_encoder: Any,
                gate: WordGate) -> Table:
    """Pool every utterance's cached features with ``head`` (a linear_probe_affect: the
    serving code), and the affect scores of an empty transcript for the gate."""
    from models.asr import Transcript
    from models.features import text_features
    from models.heads import HeadItem, collate
    from models.heads.linear_probe import LinearProbeHead
    from offline_training.dataset import build_items

    items = build_items(corpus.utterances, features, corpus.classes, LinearProbeHead)
    ids = [u.id for u in corpus.utterances]
    audio_rows, text_rows = [], []
    with torch.no_grad():
        for start in range(0, len(ids), 256):
            batch = collate([items[i] for i in ids[start:start + 256]])  # type: ignore[misc]
            audio, text = head.pooled(batch)
            audio_rows.append(audio.double().numpy())
            text_rows.append(text.double().numpy())
        empty = text_features(text_encoder, [Transcript("")], [50], words=False,
                              layers=False)[0]
        example: Any = items[ids[0]]
        _, empty_text = head.pooled(collate([HeadItem(audio=example.audio,  # type: ignore
                                                      text=empty.text,
                                                      audio_layers=example.audio_layers)]))
    words = [features.items[i].words for i in ids]
    probability = np.array([np.mean([w.probability for w in ws]) if ws else np.nan
                            for ws in words])
    corpus_band = [split_corpus_band(u.extra.get("corpus", corpus.name))
                   for u in corpus.utterances]
    label_index = {c: i for i, c in enumerate(corpus.classes)}
    return Table(
        ids=tuple(ids), audio=np.concatenate(audio_rows), affect=np.concatenate(text_rows),
        empty_affect=empty_text.double().numpy()[0],
        trusted=np.array([gate.trusted(ws) for ws in words]),
        word_probability=probability,
        labels=np.array([label_index[u.label] for u in corpus.utterances]),
        corpus=np.array([c for c, _ in corpus_band]), band=np.array([b for _, b in corpus_band]),
        speaker=np.array([u.speaker for u in corpus.utterances]), classes=corpus.classes)


# ---------------------------------------------------------------- the word gate

@dataclass(frozen=True)
class WordGate:
    """Words reach the text branch only when the ASR was sure of them (models/inference.py
    ``text_trusted``); fitted by ``fit_word_gate``."""

    min_word_probability: float = 0.0
    min_words: int = 1

    def trusted(self, words: Sequence[Any]) -> bool:
        return text_trusted(words, self.min_word_probability, self.min_words)


def fit_word_gate(probability: np.ndarray, native: np.ndarray) -> tuple[WordGate, dict[str, Any]]:
    """The mean-word-probability threshold that best separates transcripts of speech in the
    ASR's language (``native``) from the rest (balanced accuracy); rows without words are
    left out (they carry no text either way)."""
    has = ~np.isnan(probability)
    p, y = probability[has], native[has]
    if not y.any() or y.all():
        raise TrainingError("the word gate needs transcripts of both native and foreign speech")
    best, best_score = 0.0, -1.0
    for threshold in np.unique(np.round(p, 3)):
        accept = p >= threshold
        score = (accept[y].mean() + (~accept[~y]).mean()) / 2
        if score > best_score:
            best, best_score = float(threshold), float(score)
    accept = p >= best
    report = {"threshold": best, "native_kept": float(accept[y].mean()),
              "foreign_dropped": float((~accept[~y]).mean()), "native_n": int(y.sum()),
              "foreign_n": int((~y).sum())}
    return WordGate(min_word_probability=best), report


# ---------------------------------------------------------------- normalisations

def group_stats(audio: np.ndarray, groups: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {g: (audio[groups == g].mean(axis=0), audio[groups == g].var(axis=0))
            for g in np.unique(groups)}


def standardise_groups(audio: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each group of rows by its own mean and std (a batch statistic, for training)."""
    out = np.empty_like(audio)
    for g, (mean, var) in group_stats(audio, groups).items():
        out[groups == g] = (audio[groups == g] - mean) / std_of(var)
    return out


def domains(table: Table) -> np.ndarray:
    return np.char.add(np.char.add(table.corpus.astype(str), "/"), table.band.astype(str))


def population_prior(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """(len(BANDS), Fa) mean and variance of the 'typical corpus': per band, the average of
    the training corpora's means and variances (a band no corpus has takes wideband's)."""
    means, vars_ = [], []
    for band in BANDS:
        rows = table.band == band
        if not rows.any():
            rows = table.band == BANDS[0]
        stats = group_stats(table.audio[rows], table.corpus[rows])
        means.append(np.mean([m for m, _ in stats.values()], axis=0))
        vars_.append(np.mean([v for _, v in stats.values()], axis=0))
    return np.stack(means), np.stack(vars_)


def standardise_prior(table: Table, prior: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Each row by its band's training-population statistics (a deployment that has not
    adapted yet)."""
    index = np.array([BANDS.index(str(b)) for b in table.band])
    return (table.audio - prior[0][index]) / std_of(prior[1][index])


def training_audio(table: Table, normalisation: str,
                   prior: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The training rows' audio features under ``normalisation`` and, for each, the table
    row it comes from. ``mixed`` trains on every row twice: standardised by its corpus (a
    deployment that has adapted) and by the training population (one that has not yet), so
    that the probe holds at every stage of a deployment's adaptation."""
    normalisation, _ = parse_normalisation(normalisation)
    rows = np.arange(len(table))
    if normalisation == "none":
        return table.audio, rows
    if normalisation in ("corpus", "deployment"):
        return standardise_groups(table.audio, domains(table)), rows
    if normalisation == "mixed":
        own = standardise_groups(table.audio, domains(table))
        start = standardise_prior(table, prior if prior is not None
                                  else population_prior(table))
        return np.concatenate([own, start]), np.concatenate([rows, rows])
    if normalisation == "speaker":
        return standardise_groups(table.audio, np.char.add(
            np.char.add(table.speaker.astype(str), "/"), table.band.astype(str))), rows
    raise TrainingError(f"unknown normalisation '{normalisation}'; use one of {NORMALISATIONS}")


def parse_normalisation(name: str) -> tuple[str, float | None]:
    """'deployment:40' -> ('deployment', 40.0): the training population weighing 40
    utterances; a plain name keeps the default weight."""
    base, _, weight = name.partition(":")
    if base not in NORMALISATIONS or (weight and base not in ("deployment", "mixed")):
        raise TrainingError(f"unknown normalisation '{name}'; use one of {NORMALISATIONS} "
                            "(deployment:<prior weight> or mixed:<w> for another weight)")
    try:
        return base, float(weight) if weight else None
    except ValueError as exc:
        raise TrainingError(f"normalisation '{name}': the prior weight must be a number") \
            from exc


def served_audio(table: Table, normalisation: str, prior: tuple[np.ndarray, np.ndarray],
                 settings: AdaptationSettings, chunk: int = 0) -> np.ndarray:
    """The test stream's audio features as the normalisation serves them; causal ones see
    the rows in the table's order, the stream's (each row standardised before it is
    observed). ``chunk``: the
    deployment statistics start again from the training population every ``chunk`` rows
    (each file of a served check is a fresh ``emotion-stream run``); 0 = one deployment."""
    base, weight = parse_normalisation(normalisation)
    if base == "none":
        return table.audio
    if base == "corpus":
        return standardise_groups(table.audio, domains(table))
    out = np.empty_like(table.audio)
    if base in ("deployment", "mixed"):
        if weight is not None:
            settings = replace(settings, prior_weight=weight,
                               window=max(settings.window, weight))
        deployment = DeploymentStats(prior[0], prior[1], settings)
        for i in range(len(table)):
            if chunk and i and i % chunk == 0:
                deployment = DeploymentStats(prior[0], prior[1], settings)
            row, band = table.audio[i:i + 1], [str(table.band[i])]
            out[i] = deployment.standardise(row, band)[0]
            deployment.observe(row, band)
        return out
    if base == "speaker":
        speakers: dict[tuple[str, str], RunningStats] = {}
        for i in range(len(table)):
            key = (str(table.speaker[i]), str(table.band[i]))
            if key not in speakers:
                b = BANDS.index(key[1])
                speakers[key] = RunningStats(prior[0][b], prior[1][b], SPEAKER_PRIOR_WEIGHT,
                                             float("inf"))
            out[i] = speakers[key].standardise(table.audio[i])
            speakers[key].update(table.audio[i])
        return out
    raise TrainingError(f"unknown normalisation '{normalisation}'; use one of {NORMALISATIONS}")


# ---------------------------------------------------------------- test streams

def stream_rows(table: Table, stream: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``table`` in the stream's order."""
    if stream == "acted":
        rows = np.arange(len(table))
    elif stream in ("one-emotion", "calls"):
        calls = []
        for i, speaker in enumerate(sorted(set(table.speaker.tolist()))):
            cls = i % len(table.classes)
            calls.append(rng.permutation(np.flatnonzero((table.speaker == speaker)
                                                        & (table.labels == cls))))
        if stream == "calls":  # speaker after speaker, in a random order of speakers
            return np.concatenate([calls[i] for i in rng.permutation(len(calls))])
        rows = np.concatenate(calls)
    elif stream == "mostly-neutral":
        neutral = table.classes.index(NEUTRAL)
        calm, other = np.flatnonzero(table.labels == neutral), \
            np.flatnonzero(table.labels != neutral)
        n_other = int(round(len(calm) * (1 - MOSTLY_NEUTRAL_SHARE) / MOSTLY_NEUTRAL_SHARE))
        rows = np.concatenate([calm, rng.choice(other, size=min(n_other, len(other)),
                                                replace=False)])
    else:
        raise TrainingError(f"unknown stream '{stream}'; use one of {STREAMS}")
    return rng.permutation(rows)


# ---------------------------------------------------------------- fitting and scoring

def fit_probe(head: Any, audio: np.ndarray, text: np.ndarray, labels: np.ndarray,
              c: float) -> Any:
    from offline_training.train import probe_pipeline

    x = np.concatenate([audio, text], axis=1)
    return probe_pipeline(head, x.shape[1], True, c).fit(x, labels)


def choose_c(head: Any, audio: np.ndarray, text: np.ndarray, labels: np.ndarray,
             speakers: np.ndarray, cs: Sequence[float]) -> tuple[float, dict[str, float]]:
    """C by UA in a 3-fold speaker-grouped inner CV (one C: no search)."""
    from sklearn.model_selection import GroupKFold, cross_val_score

    from offline_training.train import probe_pipeline

    if len(cs) == 1:
        return float(cs[0]), {}
    x = np.concatenate([audio, text], axis=1)
    scores = {str(c): float(np.mean(cross_val_score(
        probe_pipeline(head, x.shape[1], True, c), x, labels, groups=speakers,
        cv=GroupKFold(3), scoring="balanced_accuracy"))) for c in cs}
    return float(max(scores, key=lambda k: scores[k])), scores


@dataclass(frozen=True)
class Result:
    setting: str  # ravdess->nemo, nemo->ravdess, both
    test_corpus: str
    normalisation: str
    gate: bool
    stream: str
    band: str
    fold: str
    n: int
    ua: float
    recall: dict[str, float]
    ece: float
    predicted: dict[str, int]
    confusion: list[list[int]] = field(default_factory=list)


def evaluate(model: Any, audio: np.ndarray, text: np.ndarray, labels: np.ndarray,
             classes: Sequence[str]) -> tuple[float, dict[str, float], float, dict[str, int],
                                              np.ndarray, np.ndarray]:
    from offline_training.calibration import expected_calibration_error
    from offline_training.metrics import confusion

    probabilities = model.predict_proba(np.concatenate([audio, text], axis=1))
    full = np.zeros((len(labels), len(classes)))
    full[:, model.named_steps["logisticregression"].classes_] = probabilities
    predicted = full.argmax(axis=1)
    recall = {c: float((predicted[labels == i] == i).mean()) if (labels == i).any()
              else float("nan") for i, c in enumerate(classes)}
    present = [v for v in recall.values() if not np.isnan(v)]
    matrix = confusion(labels.tolist(), predicted.tolist(), len(classes))
    counts = {c: int((predicted == i).sum()) for i, c in enumerate(classes)}
    return (float(np.mean(present)), recall, expected_calibration_error(full, labels), counts,
            matrix, full)


@dataclass(frozen=True)
class Options:
    normalisations: tuple[str, ...] = NORMALISATIONS
    streams: tuple[str, ...] = STREAMS
    cs: tuple[float, ...] = (DEFAULT_C,)
    adaptation: AdaptationSettings = AdaptationSettings()
    seed: int = 0
    # The normalisation also scored without the word gate ("": the first one listed).
    gate_compare: str = ""
    # Deployment statistics start again every N test utterances (0: never), as when each
    # file of a served check is a fresh 'emotion-stream run'; one result row per value.
    chunks: tuple[int, ...] = (0,)
    settings: tuple[str, ...] = ("ravdess->nemo", "nemo->ravdess", "both")


def run_setting(name: str, train: Table, test: Table, head: Any, options: Options,
                fold: str, log: Callable[[str], None]) -> tuple[list[Result], dict[str, Any]]:
    """Fit each normalisation on ``train``; score every test corpus, band and stream."""
    results: list[Result] = []
    oof: dict[str, Any] = {}
    prior = population_prior(train)
    rng = np.random.default_rng(options.seed)
    fitted: dict[tuple[str, bool], Any] = {}  # corpus and deployment train the same way
    variants = [(n, c) for n in options.normalisations
                for c in (options.chunks if parse_normalisation(n)[0] in ("deployment", "mixed")
                          else (0,))]
    for normalisation, chunk in variants:
        label = normalisation if not chunk else f"{normalisation} files of {chunk}"
        compare = options.gate_compare or options.normalisations[0]
        gates = [True] + ([False] if normalisation == compare and not chunk else [])
        base = parse_normalisation(normalisation)[0]
        trained_as = "domain" if base in ("corpus", "deployment") else base
        for gate in gates:
            if (trained_as, gate) not in fitted:
                x_train, rows = training_audio(train, normalisation, prior)
                text = train.text(gate)[rows]
                c, _ = choose_c(head, x_train, text, train.labels[rows], train.speaker[rows],
                                options.cs)
                fitted[trained_as, gate] = fit_probe(head, x_train, text, train.labels[rows], c)
            model = fitted[trained_as, gate]
            for corpus in sorted(set(test.corpus.tolist())):
                for band in BANDS:
                    part = test.where((test.corpus == corpus) & (test.band == band))
                    if not len(part):
                        continue
                    for stream in options.streams:
                        rows = stream_rows(part, stream, rng)
                        sub = part.take(rows)  # in the stream's order
                        x_test = served_audio(sub, normalisation, prior, options.adaptation,
                                              chunk)
                        ua, recall, ece, counts, matrix, probs = evaluate(
                            model, x_test, sub.text(gate), sub.labels, test.classes)
                        results.append(Result(name, corpus, label, gate, stream, band,
                                              fold, len(sub), ua, recall, ece, counts,
                                              matrix.tolist()))
                        if stream == "acted" and gate and not chunk:
                            oof[f"{normalisation}/{corpus}/{band}"] = (sub.ids, sub.labels,
                                                                       probs)
                        log(f"{name} {fold} {label:10s} gate={int(gate)} {corpus:8s} "
                            f"{band:9s} {stream:14s} n={len(sub):4d} UA {ua:.3f} neutral "
                            f"{recall.get(NEUTRAL, float('nan')):.3f}")
    return results, oof


def both_folds(table: Table) -> list[tuple[str, np.ndarray]]:
    """Held-out speaker masks of the 'both' setting: fold i tests RAVDESS_GROUPS[i] and
    NEMO_GROUPS[i]."""
    folds = []
    for i, (actors, nemo) in enumerate(zip(RAVDESS_GROUPS, NEMO_GROUPS, strict=True)):
        held = {f"ravdess-Actor_{a:02d}" for a in actors} | {f"nemo-{s}" for s in nemo}
        folds.append((f"fold{i + 1}", np.isin(table.speaker, sorted(held))))
    return folds


def run_protocol(table: Table, head: Any, options: Options, log: Callable[[str], None]
                 ) -> tuple[list[Result], dict[str, Any]]:
    results: list[Result] = []
    oof: dict[str, Any] = {}
    corpora = sorted(set(table.corpus.tolist()))
    for source in corpora:
        for target in corpora:
            if source != target and f"{source}->{target}" in options.settings:
                found, _ = run_setting(f"{source}->{target}", table.where(table.corpus == source),
                                       table.where(table.corpus == target), head, options,
                                       "all", log)
                results += found
    for fold, held in both_folds(table) if "both" in options.settings else []:
        if not held.any() or held.all():
            raise TrainingError(f"'both' {fold}: no speakers held out or none left to train; "
                                "is the manifest RAVDESS + nEMO (combine's speaker names)?")
        found, fold_oof = run_setting("both", table.where(~held), table.where(held), head,
                                      options, fold, log)
        results += found
        for key, value in fold_oof.items():
            oof.setdefault(key, []).append(value)
    return results, oof


# ---------------------------------------------------------------- reporting

def summary_rows(results: Sequence[Result]) -> list[dict[str, Any]]:
    """One row per (setting, test corpus, normalisation, gate, stream, band): mean and
    spread over folds."""
    groups: dict[tuple[Any, ...], list[Result]] = {}
    for r in results:
        groups.setdefault((r.setting, r.test_corpus, r.normalisation, r.gate, r.stream,
                           r.band), []).append(r)
    rows = []
    for key, rs in groups.items():
        classes = list(rs[0].recall)
        rows.append({
            "setting": key[0], "test": key[1], "normalisation": key[2], "gate": key[3],
            "stream": key[4], "band": key[5], "folds": len(rs), "n": sum(r.n for r in rs),
            "ua": float(np.mean([r.ua for r in rs])), "ua_std": float(np.std([r.ua for r in rs])),
            "recall": {c: nanmean([r.recall[c] for r in rs]) for c in classes},
            "ece": float(np.mean([r.ece for r in rs])),
            "predicted": {c: int(sum(r.predicted[c] for r in rs)) for c in classes}})
    return rows


def nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are numbers (a class absent from every fold: nan)."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def markdown(rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    others = [c for c in classes if c != NEUTRAL]
    head = ("| setting | test | band | normalisation | words | stream | UA | neutral recall | "
            + " | ".join(f"{c} recall" for c in others) + " | ECE |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        spread = f" ± {r['ua_std']:.3f}" if r["folds"] > 1 else ""
        lines.append(
            f"| {r['setting']} | {r['test']} | {r['band']} | {r['normalisation']} | "
            f"{'gated' if r['gate'] else 'all'} | {r['stream']} | {r['ua']:.3f}{spread} | "
            f"**{r['recall'][NEUTRAL]:.3f}** | "
            + " | ".join(f"{r['recall'][c]:.3f}" for c in others) + f" | {r['ece']:.3f} |")
    return "\n".join(lines) + "\n"


def write_report(results: Sequence[Result], classes: Sequence[str], out: Path,
                 extra: dict[str, Any]) -> None:
    from offline_training.metrics import save_confusion_png

    out.mkdir(parents=True, exist_ok=True)
    rows = summary_rows(results)
    (out / "results.json").write_text(json.dumps({"rows": rows, **extra,
                                                  "results": [r.__dict__ for r in results]},
                                                 indent=1, default=float))
    legend = "\n".join(f"- `{k}`: {v}" for k, v in NORMALISATION_HELP.items()) + "\n" + \
        "\n".join(f"- stream `{k}`: {v}" for k, v in STREAM_HELP.items())
    (out / "results.md").write_text(markdown(rows, classes) + "\n" + legend + "\n")
    merged: dict[tuple[str, str, str], np.ndarray] = {}
    for r in results:
        if r.stream == "acted" and r.gate and r.band == "wideband":
            key = (r.setting, r.test_corpus, r.normalisation)
            merged[key] = merged.get(key, 0) + np.array(r.confusion)
    for (setting, test, norm), matrix in merged.items():
        slug = norm.replace(" files of ", "-files").replace(":", "-w")  # portable names
        name = f"confusion-{setting.replace('->', '-to-')}-{test}-{slug}.png"
        save_confusion_png(matrix, classes, out / name,
                           f"{setting}, test {test}, {norm}")


OOF_FILE = "oof.npz"  # the 'both' folds' held-out predictions, for a bundle's temperature


def save_oof(oof: dict[str, Any], out: Path) -> None:
    """Out-of-fold probabilities of the 'both' folds, per normalisation/corpus/band."""
    arrays = {}
    for key, folds in oof.items():
        arrays[f"{key}|labels"] = np.concatenate([y for _, y, _ in folds])
        arrays[f"{key}|probabilities"] = np.concatenate([p for _, _, p in folds])
    np.savez(out / OOF_FILE, **arrays)  # type: ignore[arg-type]


def load_oof(directory: Path, normalisation: str) -> list[tuple[Any, np.ndarray, np.ndarray]]:
    """The held-out predictions ``save_oof`` wrote for ``normalisation`` (all corpora and
    bands)."""
    path = directory / OOF_FILE
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: run the protocol into {directory} first "
                            "(without --no-protocol)")
    saved = np.load(path)
    variants = sorted({k.split("/", 1)[0] for k in saved.files
                       if parse_normalisation(k.split("/", 1)[0])[0] == normalisation})
    keys = sorted({k.rsplit("|", 1)[0] for k in saved.files
                   if variants and k.split("/", 1)[0] == variants[0]})
    if not keys:
        raise TrainingError(f"{path} has no predictions of normalisation '{normalisation}'")
    return [((), saved[f"{k}|labels"], saved[f"{k}|probabilities"]) for k in keys]


# ---------------------------------------------------------------- export

def export(table: Table, head: Any, options: Options, normalisation: str, gate: WordGate,
           out: Path, model_id: str, spec: Any,
           oof: list[tuple[Any, np.ndarray, np.ndarray]] | None,
           training: dict[str, Any], report: dict[str, Any],
           prior_corpora: Sequence[str] = ()) -> Path:
    """Fit the recipe on every row of ``table`` and write a bundle: the probe, the training
    population's statistics (the deployment's starting point; of ``prior_corpora`` only when
    given, e.g. the human corpora without the synthetic one), the word gate, and a
    temperature fitted on the out-of-fold predictions of held-out speakers."""
    import dataclasses

    from models.bundle import (
        AudioEncoderSpec,
        BundleConfig,
        Calibration,
        TextEncoderSpec,
        load_bundle,
        save_bundle,
    )
    from offline_training.calibration import expected_calibration_error, fit_temperature
    from offline_training.train import copy_probe_solution

    if normalisation not in ("none", "deployment", "mixed"):
        raise TrainingError(f"only 'none', 'deployment' and 'mixed' can be served, not "
                            f"'{normalisation}'")
    domain = normalisation in ("deployment", "mixed")
    if domain:
        head = type(head)(dataclasses.replace(head.config, domain_standardise=True))
    from models.text_affect import PACKAGED_TEXT_AFFECT, load_text_affect

    head.set_text_affect(load_text_affect(PACKAGED_TEXT_AFFECT))
    human = table.where(np.isin(table.corpus, prior_corpora)) if prior_corpora else table
    prior = population_prior(human)
    x_audio, rows = training_audio(table, normalisation, prior)
    text = table.text(gate=True)[rows]
    c, inner = choose_c(head, x_audio, text, table.labels[rows], table.speaker[rows],
                        options.cs)
    model = fit_probe(head, x_audio, text, table.labels[rows], c)
    copy_probe_solution(model, head, len(table.classes))
    if domain:
        mean, var = prior
        head.set_domain_prior(torch.as_tensor(mean, dtype=torch.float32),
                              torch.as_tensor(var, dtype=torch.float32))
    calibration = Calibration()
    if oof:
        probs = np.concatenate([p for _, _, p in oof])
        labels = np.concatenate([y for _, y, _ in oof])
        logits = np.log(np.clip(probs, 1e-12, 1.0))
        temperature = fit_temperature(logits, labels)
        from offline_training.calibration import softmax

        calibration = Calibration(
            temperature=temperature,
            fitted_on=f"{len(labels)} out-of-fold predictions of held-out speakers "
                      "(cross-corpus 'both' folds)",
            ece_before=round(expected_calibration_error(softmax(logits), labels), 4),
            ece_after=round(expected_calibration_error(softmax(logits, temperature), labels), 4))
    config = BundleConfig(
        model_id=model_id, head="linear_probe_affect",
        head_config=dataclasses.asdict(head.config), labels=table.classes,
        audio=AudioEncoderSpec(ref=spec.audio, dim=head.config.audio_dim, layers="all",
                               window=spec.audio_window),
        text=TextEncoderSpec(ref=spec.text, dim=head.config.text_dim, layers="last",
                             max_tokens=spec.max_tokens,
                             min_word_probability=gate.min_word_probability,
                             min_words=gate.min_words),
        context_size=0, calibration=calibration,
        training={**training, "C": c, "inner_cv_ua": inner, "normalisation": normalisation,
                  "utterances": len(table)})
    path = save_bundle(out, config, head.cpu(), report)
    load_bundle(path)
    return path


# ---------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="results directory")
    parser.add_argument("--normalisations", default=",".join(NORMALISATIONS),
                        help=f"comma list of {NORMALISATIONS}; deployment:<w> sets the "
                             "training population's weight in utterances (default 200)")
    parser.add_argument("--settings", default="ravdess->nemo,nemo->ravdess,both",
                        help="comma list of the settings to run")
    parser.add_argument("--chunks", default="0",
                        help="comma list: deployment statistics start again every N test "
                             "utterances, as when each file is a fresh 'emotion-stream run' "
                             "(0: one long deployment)")
    parser.add_argument("--streams", default=",".join(STREAMS), help=f"comma list of {STREAMS}")
    parser.add_argument("--probe-cs", default=str(DEFAULT_C),
                        help="inverse L2 strengths; more than one: chosen by a 3-fold "
                             "speaker-grouped inner CV on the training part")
    parser.add_argument("--no-protocol", action="store_true",
                        help="skip the protocol (with --export: only fit and write the bundle)")
    parser.add_argument("--export", type=Path, default=None,
                        help="also write a bundle trained on every speaker of --export-corpora")
    parser.add_argument("--export-corpora", default="",
                        help="comma list of corpora the bundle is trained on (default: all)")
    parser.add_argument("--export-exclude-speakers", default="",
                        help="comma list of speakers kept out of the bundle (e.g. the actors of "
                             "the bundled sample)")
    parser.add_argument("--export-prior-corpora", default="",
                        help="comma list of the corpora whose statistics make the deployment's "
                             "starting point (default: all trained on; leave synthetic speech "
                             "out)")
    parser.add_argument("--export-normalisation", default="mixed",
                        choices=("none", "deployment", "mixed"))
    parser.add_argument("--temperature-from", type=Path, default=None,
                        help="a protocol run's --out directory: fit the bundle's temperature "
                             "on its held-out predictions (with --no-protocol)")
    parser.add_argument("--model-id", default="cross-corpus-probe")
    parser.add_argument("--word-gate", default="fit",
                        help="'fit' (threshold fitted on the corpora: English vs the rest), "
                             "'off', or a mean word probability")
    parser.add_argument("--native-corpora", default="ravdess",
                        help="human speech in the ASR's language: the word gate is fitted to "
                             "keep their transcripts (default ravdess)")
    parser.add_argument("--foreign-corpora", default="nemo",
                        help="human speech in other languages: the word gate is fitted to drop "
                             "their transcripts (default nemo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool-layers", default="",
                        help="FROM:TO: pool only the encoder's hidden states FROM..TO-1 "
                             "(e.g. 2:6 for Whisper base's middle four); default: every layer")


def command(args: argparse.Namespace, data: Any) -> int:
    """``emotion-train cross-corpus`` (``data``: the CLI's DataSettings)."""
    from offline_training.pipeline import open_corpus

    corpus = open_corpus(data)
    table, head, words_of = pooled_table(data, corpus, pool_layers=parse_pool_layers(
        args.pool_layers))
    gate_report: dict[str, Any] = {}
    if args.word_gate == "fit":
        # Fitted on human speech only: synthetic voices' words are less sure, a training
        # artefact that says nothing of a deployment's language.
        native = np.isin(table.corpus, args.native_corpora.split(","))
        fit_rows = native | np.isin(table.corpus, args.foreign_corpora.split(","))
        gate, gate_report = fit_word_gate(table.word_probability[fit_rows], native[fit_rows])
    elif args.word_gate == "off":
        gate = WordGate(0.0, 0)
    else:
        gate = WordGate(float(args.word_gate), 1)
    table = replace(table, trusted=np.array([gate.trusted(words_of[i]) for i in table.ids]))
    print(f"word gate: {gate} {gate_report}", flush=True)
    options = Options(normalisations=tuple(args.normalisations.split(",")),
                      streams=tuple(args.streams.split(",")),
                      cs=tuple(float(c) for c in args.probe_cs.split(",")), seed=args.seed,
                      chunks=tuple(int(c) for c in args.chunks.split(",")),
                      settings=tuple(args.settings.split(",")))
    oof: dict[str, Any] = {}
    extra = {"word_gate": {"min_word_probability": gate.min_word_probability,
                           "min_words": gate.min_words, **gate_report},
             "manifest": str(args.root), "cs": list(options.cs)}
    if not args.no_protocol:
        results, oof = run_protocol(table, head, options, print)
        write_report(results, table.classes, args.out, extra)
        save_oof(oof, args.out)
        print(f"results: {args.out / 'results.md'}", flush=True)
    if args.export is not None:
        keep = np.ones(len(table), bool)
        if args.export_corpora:
            keep &= np.isin(table.corpus, args.export_corpora.split(","))
        if args.export_exclude_speakers:
            keep &= ~np.isin(table.speaker, args.export_exclude_speakers.split(","))
        key = args.export_normalisation
        # The temperature from the first protocol variant of that normalisation.
        variant = next((n for n in options.normalisations
                        if parse_normalisation(n)[0] == key), key)
        folds = [f for k, v in oof.items() if k.split("/", 1)[0] == variant for f in v]
        if args.temperature_from is not None:
            folds = load_oof(args.temperature_from, key)
        path = export(table.where(keep), head, options, key, gate, args.export, args.model_id,
                      data.features, folds or None,
                      {"head": "linear_probe_affect", "recipe": "offline_training.cross_corpus",
                       "corpora": sorted(set(table.where(keep).corpus.tolist())),
                       "excluded_speakers": args.export_exclude_speakers},
                      {"cross_corpus": extra},
                      [c for c in args.export_prior_corpora.split(",") if c])
        print(f"bundle written to {path}", flush=True)
    return 0


def parse_pool_layers(text: str) -> tuple[int, int]:
    """'2:6' -> (2, 6); '' -> (0, 0): every layer."""
    if not text:
        return 0, 0
    first, sep, last = text.partition(":")
    try:
        if not sep:
            raise ValueError(text)
        return int(first), int(last)
    except ValueError as exc:
        raise TrainingError(f"--pool-layers '{text}': give FROM:TO, e.g. 2:6 (hidden states "
                            "2 to 5)") from exc


def pooled_table(data: Any, corpus: Corpus, chunk: int = TABLE_CHUNK,
                 pool_layers: tuple[int, int] = (0, 0)
                 ) -> tuple[Table, Any, dict[str, Any]]:
    """The corpus pooled by the probe head, ``chunk`` utterances' features in memory at a
    time (every layer of 9,000 utterances would not fit: ~2 MB each for Whisper base);
    also the head and each utterance's ASR words (for the word gate)."""
    from models.encoders.text import TextEncoder
    from offline_training.pipeline import extract

    encoder = TextEncoder.load(data.features.text, max_tokens=data.features.max_tokens)
    head: Any = None
    tables: list[Table] = []
    words: dict[str, Any] = {}
    for start in range(0, len(corpus.utterances), chunk):
        part = replace(corpus, utterances=corpus.utterances[start:start + chunk])
        features = extract(data, part, ["linear_probe_affect"])
        if head is None:
            head = probe_head_for(features, len(corpus.classes), pool_layers)
        tables.append(build_table(part, features, head, encoder, WordGate(0.0, 1)))
        words.update({i: features.items[i].words for i in tables[-1].ids})
        del features
    return concat_tables(tables), head, words


def concat_tables(tables: Sequence[Table]) -> Table:
    """Rows of ``tables`` (of one corpus: same classes and empty transcript) in order."""
    def stack(name: str) -> np.ndarray:
        return np.concatenate([getattr(t, name) for t in tables])

    return replace(tables[0], ids=tuple(i for t in tables for i in t.ids),
                   audio=stack("audio"), affect=stack("affect"), trusted=stack("trusted"),
                   word_probability=stack("word_probability"), labels=stack("labels"),
                   corpus=stack("corpus"), band=stack("band"), speaker=stack("speaker"))


def probe_head_for(features: Any, num_classes: int, pool_layers: tuple[int, int] = (0, 0)
                   ) -> Any:
    """The linear_probe_affect that pools these features (the default bundle's head)."""
    example = next(iter(features.items.values()))
    if example.audio_layers is None:
        raise TrainingError("cross-corpus: the features need every encoder layer "
                            "(--audio-layers all)")
    return affect_probe_head(features.audio_dim, features.text_dim,
                             int(example.audio_layers.shape[0]), num_classes, pool_layers)


def affect_probe_head(audio_dim: int, text_dim: int, audio_layers: int, num_classes: int,
                      pool_layers: tuple[int, int] = (0, 0)) -> Any:
    """A linear_probe_affect with the packaged text affect, as the default bundle's."""
    from models.heads import build_head
    from models.text_affect import PACKAGED_TEXT_AFFECT, load_text_affect

    try:
        head: Any = build_head("linear_probe_affect", {
            "audio_dim": audio_dim, "text_dim": text_dim, "num_classes": num_classes,
            "audio_layers": audio_layers, "affect_scale": 8.0,
            "pool_layers_from": pool_layers[0], "pool_layers_to": pool_layers[1]})
    except ValueError as exc:  # e.g. a --pool-layers range outside the layers
        raise TrainingError(f"cross-corpus: {exc}") from exc
    head.set_text_affect(load_text_affect(PACKAGED_TEXT_AFFECT))
    return head.eval()


__all__ = ["NORMALISATIONS", "STREAMS", "Table", "WordGate", "command", "fit_word_gate",
           "run_protocol"]
