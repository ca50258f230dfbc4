"""speaker-groups protocol: folds of whole speakers, EmoBox's RAVDESS groups, explicit and
balanced groups, fold selection; the RAVDESS adapter reads FLAC."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline_training.cli import build_parser, protocol_spec
from offline_training.corpora import CorpusSpec, load_corpus
from offline_training.errors import ProtocolError, TrainingError
from offline_training.protocols import (
    KNOWN_GROUPS,
    Fold,
    ProtocolSpec,
    balanced_groups,
    make_folds,
    read_groups,
)
from offline_training.records import Utterance

from .fixtures import tone

EMOBOX = KNOWN_GROUPS["ravdess-emobox"]


def make_flac_ravdess(root: Path, actors: int = 24) -> Path:
    """Actor_NN/03-01-EE-01-01-01-NN.flac, 2 emotions per actor (16 kHz FLAC, as in shared/)."""
    for actor in range(1, actors + 1):
        for emotion in ("01", "05"):
            tone(root / f"Actor_{actor:02d}" / f"03-01-{emotion}-01-01-01-{actor:02d}.flac",
                 seconds=0.2)
    return root


def utterances(counts: dict[str, int]) -> list[Utterance]:
    labels = ["angry", "happy", "sad", "neutral"]
    return [Utterance(id=f"{spk}_{i}", path="x.wav", text="", label=labels[i % 4],
                      speaker=spk, session=spk)
            for spk, n in counts.items() for i in range(n)]


def assert_speaker_independent(folds: list[Fold], utts: list[Utterance]) -> None:
    speaker = {u.id: u.speaker for u in utts}
    tested: list[str] = []
    for fold in folds:
        parts = [set(fold.train), set(fold.valid), set(fold.test)]
        assert set().union(*parts) == set(speaker) and sum(map(len, parts)) == len(utts)
        train, valid, test = ({speaker[i] for i in p} for p in parts)
        assert not (train & valid) and not (train & test) and not (valid & test)
        assert test == set(fold.test_speakers) and valid == set(fold.valid_speakers)
        tested += sorted(test)
    assert sorted(tested) == sorted(set(speaker.values()))  # each speaker tested once


def test_ravdess_flac_gets_the_emobox_folds(tmp_path: Path) -> None:
    corpus = load_corpus(CorpusSpec("ravdess", make_flac_ravdess(tmp_path / "ravdess")))
    assert len(corpus) == 48 and corpus.utterances[0].path.endswith(".flac")
    utts = list(corpus.utterances)
    folds = make_folds(utts, ProtocolSpec("speaker-groups", k=6))
    assert [f.test_speakers for f in folds] == list(EMOBOX)
    assert folds[0].test_speakers == ("Actor_01", "Actor_11", "Actor_20", "Actor_21")
    assert folds[0].valid_speakers == EMOBOX[1]  # a training group validates, not the test one
    assert_speaker_independent(folds, utts)
    assert make_folds(utts, ProtocolSpec("speaker-groups")) == folds  # k=0: the known count
    # another fold count on the same speakers: balanced automatic groups
    five = make_folds(utts, ProtocolSpec("speaker-groups", k=5))
    assert len(five) == 5 and [f.test_speakers for f in five] != list(EMOBOX[:5])
    assert_speaker_independent(five, utts)


def test_balanced_groups_keep_speakers_whole() -> None:
    counts = {"a": 30, "b": 25, "c": 20, "d": 10, "e": 10, "f": 5, "g": 5, "h": 5}
    utts = utterances(counts)
    groups = balanced_groups(utts, 3)
    assert sorted(s for g in groups for s in g) == sorted(counts)
    sizes = sorted(sum(counts[s] for s in g) for g in groups)
    assert sizes[-1] - sizes[0] <= 5
    folds = make_folds(utts, ProtocolSpec("speaker-groups", k=3))
    assert_speaker_independent(folds, utts)
    with pytest.raises(ProtocolError, match="at least 9 speakers"):
        balanced_groups(utts, 9)


def test_explicit_groups_from_a_file(tmp_path: Path) -> None:
    utts = utterances({s: 4 for s in "abcdef"})
    path = tmp_path / "groups.txt"
    path.write_text("# test groups\na, b\n\nc d  # two\ne,f\n")
    groups = read_groups(path)
    assert groups == (("a", "b"), ("c", "d"), ("e", "f"))
    folds = make_folds(utts, ProtocolSpec("speaker-groups", groups=groups))
    assert [f.test_speakers for f in folds] == list(groups)
    assert [f.valid_speakers for f in folds] == [("c", "d"), ("e", "f"), ("a", "b")]
    assert_speaker_independent(folds, utts)
    with pytest.raises(ProtocolError, match="4 folds asked for"):
        make_folds(utts, ProtocolSpec("speaker-groups", k=4, groups=groups))
    with pytest.raises(ProtocolError, match=r"more than one group: \['a'\]"):
        make_folds(utts, ProtocolSpec("speaker-groups", groups=(("a", "b"), ("a", "c"),
                                                                  ("d", "e", "f"))))
    with pytest.raises(ProtocolError, match=r"in no group: \['f'\]"):
        make_folds(utts, ProtocolSpec("speaker-groups", groups=(("a", "b"), ("c", "d"),
                                                                  ("e",))))
    with pytest.raises(ProtocolError, match=r"not speakers of the corpus: \['z'\]"):
        make_folds(utts, ProtocolSpec("speaker-groups", groups=(("a", "b"), ("c", "d"),
                                                                  ("e", "f", "z"))))
    with pytest.raises(ProtocolError, match="at least 3 groups"):
        make_folds(utts, ProtocolSpec("speaker-groups", groups=(("a", "b", "c"),
                                                                  ("d", "e", "f"))))


def test_only_folds_selects_folds() -> None:
    utts = utterances({s: 4 for s in "abcdef"})
    every = make_folds(utts, ProtocolSpec("speaker-groups", k=6))
    chosen = make_folds(utts, ProtocolSpec("speaker-groups", k=6, only_folds=(3, 1)))
    assert chosen == [every[0], every[2]]
    assert make_folds(utts, ProtocolSpec("loso-speaker", only_folds=(2,)))[0].name \
        == "speaker=b"
    with pytest.raises(ProtocolError, match="folds 1..6"):
        make_folds(utts, ProtocolSpec("speaker-groups", k=6, only_folds=(7,)))


def test_cli_protocol_options(tmp_path: Path) -> None:
    base = ["train", "--corpus", "ravdess", "--root", str(tmp_path), "--out", str(tmp_path)]
    args = build_parser().parse_args(base + ["--protocol", "speaker-groups", "--folds", "6",
                                             "--only-folds", "1,3"])
    spec = protocol_spec(args)
    assert (spec.name, spec.k, spec.only_folds, spec.groups) == ("speaker-groups", 6, (1, 3), ())
    path = tmp_path / "groups.txt"
    path.write_text("a b\nc d\ne f\n")
    args = build_parser().parse_args(base + ["--protocol", "speaker-groups", "--groups",
                                             str(path)])
    assert protocol_spec(args).groups == (("a", "b"), ("c", "d"), ("e", "f"))
    with pytest.raises(TrainingError, match="speaker-groups only"):
        protocol_spec(build_parser().parse_args(base + ["--groups", str(path)]))
    with pytest.raises(TrainingError, match="fold numbers"):
        protocol_spec(build_parser().parse_args(base + ["--only-folds", "one"]))
