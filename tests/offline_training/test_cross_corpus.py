"""The cross-corpus protocol's parts on a synthetic population whose corpora differ by a
recording offset larger than the emotion signal (what RAVDESS vs nEMO looks like to a
linear probe): no normalisation fails across corpora, corpus and deployment statistics
recover, and per-speaker statistics erase a speaker who keeps one emotion."""

from __future__ import annotations

import numpy as np
import pytest

from models.heads import build_head
from offline_training.cross_corpus import (
    Options,
    Table,
    fit_word_gate,
    run_setting,
    served_audio,
    standardise_groups,
    stream_rows,
    summary_rows,
)
from offline_training.errors import TrainingError

CLASSES = ("neutral", "happy", "sad", "angry")
DIM = 8  # pooled audio columns (audio_dim 4, one layer: mean + std)


def population(corpus: str, offset: float, speakers: int, seed: int) -> Table:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0.0, 1.0, size=(len(CLASSES), DIM))
    rows, labels, who = [], [], []
    for s in range(speakers):
        voice = rng.normal(0.0, 0.5, size=DIM)
        for c in range(len(CLASSES)):
            for _ in range(12):
                rows.append(offset + voice + centres[c] + rng.normal(0.0, 0.6, size=DIM))
                labels.append(c)
                who.append(f"{corpus}-S{s}")
    n = len(rows)
    return Table(ids=tuple(f"{corpus}-{i}" for i in range(n)), audio=np.array(rows),
                 affect=np.zeros((n, 28)), empty_affect=np.zeros(28),
                 trusted=np.ones(n, bool), word_probability=np.full(n, 0.9),
                 labels=np.array(labels), corpus=np.array([corpus] * n),
                 band=np.array(["wideband"] * n), speaker=np.array(who), classes=CLASSES)


@pytest.fixture(scope="module")
def head() -> object:
    return build_head("linear_probe_affect", {"audio_dim": 4, "text_dim": 32, "num_classes": 4,
                                              "audio_layers": 1, "affect_scale": 8.0})


def ua_of(rows: list[dict[str, object]], normalisation: str, stream: str) -> float:
    found = [r for r in rows if r["normalisation"] == normalisation and r["stream"] == stream
             and r["gate"]]
    assert len(found) == 1
    return float(found[0]["ua"])  # type: ignore[arg-type]


def test_normalisations_across_corpora(head: object) -> None:
    train = population("a", 0.0, speakers=6, seed=1)
    test = population("b", 4.0, speakers=6, seed=2)  # another studio, another language
    options = Options(normalisations=("none", "corpus", "deployment:10", "speaker"))
    results, _ = run_setting("a->b", train, test, head, options, "all", lambda _: None)
    rows = summary_rows(results)
    assert ua_of(rows, "none", "acted") < 0.5  # the offset is read as a class
    assert ua_of(rows, "corpus", "acted") > 0.85
    # Causal: the first utterances still meet the training population.
    assert ua_of(rows, "deployment:10", "acted") > 0.7
    # A speaker who keeps one emotion: their own statistics turn it into their neutral.
    assert ua_of(rows, "speaker", "one-emotion") < 0.6
    assert ua_of(rows, "deployment:10", "one-emotion") > 0.7
    neutral = [r for r in rows if r["normalisation"] == "deployment:10"
               and r["stream"] == "mostly-neutral"][0]
    assert neutral["recall"]["neutral"] > 0.7  # type: ignore[index]


def test_streams() -> None:
    table = population("a", 0.0, speakers=8, seed=3)
    rng = np.random.default_rng(0)
    one = table.take(stream_rows(table, "one-emotion", rng))
    for speaker in set(one.speaker.tolist()):
        assert len(set(one.labels[one.speaker == speaker].tolist())) == 1
    assert set(one.labels.tolist()) == {0, 1, 2, 3}  # every class, from different speakers
    calm = table.take(stream_rows(table, "mostly-neutral", rng))
    assert abs((calm.labels == 0).mean() - 0.7) < 0.01
    acted = stream_rows(table, "acted", rng)
    assert sorted(acted.tolist()) == list(range(len(table)))
    with pytest.raises(TrainingError, match="unknown stream"):
        stream_rows(table, "loud", rng)


def test_group_standardisation_and_causal_deployment_statistics() -> None:
    table = population("a", 5.0, speakers=2, seed=4)
    z = standardise_groups(table.audio, table.speaker)
    for speaker in set(table.speaker.tolist()):
        np.testing.assert_allclose(z[table.speaker == speaker].mean(axis=0), 0.0, atol=1e-9)
    prior = (np.zeros((2, DIM)), np.ones((2, DIM)))
    served = served_audio(table, "deployment", prior, Options().adaptation)
    # The first utterance meets the training population only (causal), later ones the stream.
    np.testing.assert_allclose(served[0], table.audio[0])
    assert np.abs(served[-50:].mean()) < np.abs(table.audio[-50:].mean()) / 2


def test_word_gate_threshold_separates_native_from_foreign_transcripts() -> None:
    rng = np.random.default_rng(0)
    native = rng.uniform(0.6, 1.0, 200)
    foreign = rng.uniform(0.1, 0.65, 200)
    probability = np.concatenate([native, foreign, [np.nan]])
    is_native = np.array([True] * 200 + [False] * 201)
    gate, report = fit_word_gate(probability, is_native)
    assert 0.55 < gate.min_word_probability <= 0.66
    assert report["native_kept"] > 0.95 and report["foreign_dropped"] > 0.85
    with pytest.raises(TrainingError, match="both native and foreign"):
        fit_word_gate(native, np.ones(200, bool))


def test_calls_come_speaker_after_speaker() -> None:
    table = population("a", 0.0, speakers=4, seed=5)
    calls = table.take(stream_rows(table, "calls", np.random.default_rng(1)))
    changes = int((calls.speaker[1:] != calls.speaker[:-1]).sum())
    assert changes == 3  # four callers, one after another
    for speaker in set(calls.speaker.tolist()):
        assert len(set(calls.labels[calls.speaker == speaker].tolist())) == 1


def test_mixed_trains_on_both_stages_of_adaptation() -> None:
    from offline_training.cross_corpus import population_prior, training_audio

    table = population("a", 3.0, speakers=2, seed=6)
    other = population("b", -3.0, speakers=2, seed=7)
    both = Table(**{**table.__dict__, **{k: np.concatenate([getattr(table, k), getattr(
        other, k)]) for k in ("audio", "affect", "trusted", "word_probability", "labels",
                             "corpus", "band", "speaker")}, "ids": table.ids + other.ids})
    audio, rows = training_audio(both, "mixed:40")
    assert audio.shape == (2 * len(both), DIM) and list(rows[:len(both)]) == list(
        range(len(both)))
    own, start = audio[:len(both)], audio[len(both):]
    assert abs(own[both.corpus == "a"].mean()) < 1e-9  # each corpus by its own statistics
    prior = population_prior(both)
    np.testing.assert_allclose(start[0], (both.audio[0] - prior[0][0]) / np.sqrt(prior[1][0]))
