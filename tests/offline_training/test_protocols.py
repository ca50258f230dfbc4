"""Evaluation protocols: folds are disjoint and speaker independent where promised."""

from __future__ import annotations

import pytest

from offline_training.errors import ProtocolError
from offline_training.protocols import ProtocolSpec, make_folds
from offline_training.records import Utterance


def corpus(sessions: int = 4, per: int = 10) -> list[Utterance]:
    labels = ["angry", "happy", "sad", "neutral"]
    return [Utterance(id=f"s{s}_{i}", path="x.wav", text="", label=labels[i % 4],
                      speaker=f"spk{s}{i % 2}", session=f"S{s}")
            for s in range(sessions) for i in range(per)]


def test_leave_one_session_out() -> None:
    utts = corpus()
    folds = make_folds(utts, ProtocolSpec("loso"))
    assert len(folds) == 4
    session = {u.id: u.session for u in utts}
    for fold in folds:
        parts = [set(fold.train), set(fold.valid), set(fold.test)]
        assert sum(map(len, parts)) == len(utts)
        groups = [{session[i] for i in p} for p in parts]
        assert len(groups[1]) == 1 and len(groups[2]) == 1
        assert not (groups[0] & groups[1]) and not (groups[0] & groups[2])
    assert sorted(f.test[0].split("_")[0] for f in folds) == ["s0", "s1", "s2", "s3"]


def test_leave_one_speaker_out_and_max_folds() -> None:
    folds = make_folds(corpus(), ProtocolSpec("loso-speaker", max_folds=2))
    assert len(folds) == 2 and folds[0].name == "speaker=spk00"


def test_kfold_is_a_stratified_partition() -> None:
    utts = corpus()
    folds = make_folds(utts, ProtocolSpec("kfold", k=5))
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == {u.id for u in utts}
    assert sum(map(len, tests)) == len(utts)
    for fold in folds:
        assert not set(fold.valid) & set(fold.train) and not set(fold.test) & set(fold.train)


def test_fixed_split_and_errors() -> None:
    utts = [Utterance(id=f"{s}{i}", path="x", text="", label="a", speaker="p", session=s)
            for s in ("train", "dev", "test") for i in range(3)]
    (fold,) = make_folds(utts, ProtocolSpec("fixed"))
    assert fold.test == ("test0", "test1", "test2")
    with pytest.raises(ProtocolError, match="no utterances in session"):
        make_folds(utts[:3], ProtocolSpec("fixed"))
    with pytest.raises(ProtocolError, match="at least 3"):
        make_folds(corpus(sessions=2), ProtocolSpec("loso"))


def with_speed_copies(utts: list[Utterance]) -> list[Utterance]:
    """Two training-only copies of every utterance, as offline_training.corpora.speed."""
    copies = [Utterance(f"{u.id}-sp{f}", u.path, u.text, u.label, u.speaker, u.session,
                        extra={"augments": u.id, "augmentation": f"speed {f}"})
              for u in utts for f in ("0.9", "1.1")]
    return utts + copies


@pytest.mark.parametrize("spec", [ProtocolSpec("loso"), ProtocolSpec("loso-speaker"),
                                  ProtocolSpec("kfold", k=4),
                                  ProtocolSpec("speaker-groups", k=4)])
def test_training_only_copies_train_beside_their_original_and_are_never_tested(
        spec: ProtocolSpec) -> None:
    utts = corpus()
    plain = make_folds(utts, spec)
    folds = make_folds(with_speed_copies(utts), spec)
    assert [(f.valid, f.test) for f in folds] == [(f.valid, f.test) for f in plain]
    for fold, base in zip(folds, plain, strict=True):
        copies = set(fold.train) - set(base.train)
        assert copies == {f"{i}-sp{f}" for i in base.train for f in ("0.9", "1.1")}
        assert not copies & (set(fold.valid) | set(fold.test))


def test_the_final_model_trains_on_the_test_parts_copies_too() -> None:
    from offline_training.corpora.base import Corpus
    from offline_training.pipeline import final_split

    utts = with_speed_copies(corpus())
    fold = final_split(Corpus("demo", ("angry", "happy", "sad", "neutral"), tuple(utts)),
                       ProtocolSpec("loso"))
    assert set(fold.train) == {u.id for u in utts} - {
        i for v in fold.valid for i in (v, f"{v}-sp0.9", f"{v}-sp1.1")}


def test_a_copy_without_its_original_is_an_error() -> None:
    utts = with_speed_copies(corpus())[1:]  # the first original is missing
    with pytest.raises(ProtocolError, match="name an original that is not in the corpus"):
        make_folds(utts, ProtocolSpec("loso"))
