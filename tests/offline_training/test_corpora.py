"""Corpus adapters on fixture trees that mimic each release's layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline_training.audio import load_audio
from offline_training.corpora import CorpusSpec, load_corpus
from offline_training.errors import CorpusError, LabelError

from .fixtures import make_cremad, make_emodb, make_iemocap, make_meld, make_ravdess, tone


def test_iemocap_four_classes_merge_excited_and_follow_dialog_order(tmp_path: Path) -> None:
    corpus = load_corpus(CorpusSpec("iemocap", make_iemocap(tmp_path / "iemocap"), "4"))
    assert corpus.classes == ("angry", "happy", "sad", "neutral")
    # fru is dropped in the 4-class set; exc becomes happy
    assert corpus.label_counts() == {"angry": 2, "happy": 2, "sad": 2, "neutral": 2}
    by_id = {u.id: u for u in corpus.utterances}
    first = by_id["Ses01F_impro01_F000"]
    assert first.speaker == "Ses01F" and first.session == "Session1"
    assert first.text == "words 0" and first.label == "neutral"
    assert by_id["Ses01F_impro01_M001"].speaker == "Ses01M"
    # start times decrease with the index, so the last utterance comes first in the dialog
    assert by_id["Ses01F_impro01_F004"].order == 0 and first.order == 4


def test_iemocap_seven_classes(tmp_path: Path) -> None:
    corpus = load_corpus(CorpusSpec("iemocap", make_iemocap(tmp_path / "iemocap"), "7"))
    assert corpus.classes == ("angry", "excited", "happy", "sad", "frustrated", "surprised",
                              "neutral")
    assert corpus.label_counts()["frustrated"] == 2 and corpus.label_counts()["excited"] == 2


def test_iemocap_missing_wav_is_reported(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path / "iemocap", sessions=1)
    next((root / "Session1" / "sentences" / "wav").rglob("*.wav")).unlink()
    with pytest.raises(CorpusError, match="audio .* is missing"):
        load_corpus(CorpusSpec("iemocap", root))


def test_iemocap_without_sessions(tmp_path: Path) -> None:
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(CorpusError, match="no Session"):
        load_corpus(CorpusSpec("iemocap", tmp_path / "empty"))


def test_meld_extracts_audio_from_mp4(tmp_path: Path) -> None:
    root = make_meld(tmp_path / "MELD.Raw")
    corpus = load_corpus(CorpusSpec("meld", root))
    assert len(corpus) == 9
    utt = next(u for u in corpus.utterances if u.id == "dev_dia0_utt0")
    assert utt.label == "happy" and utt.text == "Hello, number 0" and utt.session == "dev"
    assert utt.dialog_id == "dev_dia0" and utt.speaker == "Ross"
    audio = load_audio(utt)
    assert 0.3 < len(audio) / 16000 < 0.7


def test_meld_missing_clip(tmp_path: Path) -> None:
    root = make_meld(tmp_path / "MELD.Raw")
    (root / "train_splits" / "dia0_utt1.mp4").unlink()
    with pytest.raises(CorpusError, match="clip"):
        load_corpus(CorpusSpec("meld", root))


def test_cremad_ravdess_emodb_labels_from_file_names(tmp_path: Path) -> None:
    crema = load_corpus(CorpusSpec("cremad", make_cremad(tmp_path / "crema")))
    assert len(crema) == 6 and {u.speaker for u in crema.utterances} == {"1001", "1002"}
    assert next(iter(crema.utterances)).text == "Don't forget a jacket."
    ravdess = load_corpus(CorpusSpec("ravdess", make_ravdess(tmp_path / "ravdess")))
    assert len(ravdess) == 6  # songs skipped
    assert {u.label for u in ravdess.utterances} == {"neutral", "happy", "angry"}
    emodb = load_corpus(CorpusSpec("emodb", make_emodb(tmp_path / "emodb")))
    assert {u.label for u in emodb.utterances} == {"angry", "happy", "neutral"}
    assert emodb.utterances[0].text == "Der Lappen liegt auf dem Eisschrank."


def test_foreign_file_name_is_reported(tmp_path: Path) -> None:
    root = make_cremad(tmp_path / "crema")
    tone(root / "AudioWAV" / "notes.wav")
    with pytest.raises(CorpusError, match="naming scheme"):
        load_corpus(CorpusSpec("cremad", root))


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_manifest_jsonl_and_csv(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav", seconds=1.0)
    rows = [{"path": "a.wav", "label": "joy", "text": "hi", "speaker": "s1", "start": 0.25,
             "end": 0.75}, {"path": "a.wav", "label": "anger", "id": "x"}]
    corpus = load_corpus(CorpusSpec("manifest", write_jsonl(tmp_path / "m.jsonl", rows)))
    assert corpus.classes == ("anger", "joy")
    assert len(load_audio(corpus.utterances[0])) == 8000
    (tmp_path / "m.csv").write_text("path,label,speaker\na.wav,sad,s1\n")
    assert load_corpus(CorpusSpec("manifest", tmp_path / "m.csv")).utterances[0].label == "sad"


def test_manifest_label_map_and_its_errors(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"path": "a.wav", "label": "joy"},
                                                   {"path": "a.wav", "label": "meh"}])
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"joy": "happy", "meh": None}))
    corpus = load_corpus(CorpusSpec("manifest", manifest, label_map=mapping))
    assert [u.label for u in corpus.utterances] == ["happy"]
    mapping.write_text(json.dumps({"joy": "happy"}))
    with pytest.raises(LabelError, match="'meh' .* not covered by the label map"):
        load_corpus(CorpusSpec("manifest", manifest, label_map=mapping))
    mapping.write_text(json.dumps({"joy": "happy", "meh": "bored"}))
    with pytest.raises(LabelError, match="not in the class list"):
        load_corpus(CorpusSpec("manifest", manifest, classes="happy", label_map=mapping))


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(CorpusSpec("manifest", tmp_path / "none.jsonl"))
    bad = write_jsonl(tmp_path / "m.jsonl", [{"path": "missing.wav", "label": "x"}])
    with pytest.raises(CorpusError, match="missing"):
        load_corpus(CorpusSpec("manifest", bad))
    tone(tmp_path / "a.wav")
    bad = write_jsonl(tmp_path / "m.jsonl", [{"path": "a.wav"}])
    with pytest.raises(CorpusError, match="lacks"):
        load_corpus(CorpusSpec("manifest", bad))
    bad = write_jsonl(tmp_path / "m.jsonl", [{"path": "a.wav", "label": "x", "emotion": "y"}])
    with pytest.raises(CorpusError, match="unknown field"):
        load_corpus(CorpusSpec("manifest", bad))


def test_label_map_applies_to_any_corpus(tmp_path: Path) -> None:
    """RAVDESS's 8 classes onto the shipped 4-class map (calm and the rest dropped)."""
    import shutil

    from offline_training.corpora import CorpusSpec, load_corpus

    from .fixtures import tone

    actor = tmp_path / "Actor_01"
    actor.mkdir()
    for emotion in ("01", "02", "03", "04", "05", "06"):
        tone(actor / f"03-01-{emotion}-01-01-01-01.wav")
    repo = Path(__file__).resolve().parents[2]
    label_map = tmp_path / "map.json"
    shutil.copy(repo / "configs" / "label_maps" / "ravdess-4class.json", label_map)
    corpus = load_corpus(CorpusSpec("ravdess", tmp_path, label_map=label_map))
    assert corpus.classes == ("neutral", "happy", "sad", "angry")
    assert sorted(u.label for u in corpus.utterances) == ["angry", "happy", "neutral", "sad"]


NEMO = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "nemo"


def write_nemo(root: Path, rows: list[tuple[str, str, str]]) -> None:
    (root / "samples").mkdir(parents=True)
    lines = ["file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage"]
    for name, emotion, speaker in rows:
        tone(root / "samples" / name, 0.5)
        lines.append(f"{name}\t{emotion}\tTekst.\ttekst\t{speaker}\tfemale\t30")
    (root / "data.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_nemo_adapter(tmp_path: Path) -> None:
    write_nemo(tmp_path, [("AA0_anger_1.wav", "anger", "AA0"),
                          ("AA0_neutral_1.wav", "neutral", "AA0"),
                          ("BB0_surprised_2.wav", "surprised", "BB0")])
    corpus = load_corpus(CorpusSpec("nemo", tmp_path))
    assert corpus.classes == ("angry", "fearful", "happy", "neutral", "sad", "surprised")
    assert [(u.id, u.label, u.speaker) for u in corpus.utterances] == [
        ("AA0_anger_1", "angry", "AA0"), ("AA0_neutral_1", "neutral", "AA0"),
        ("BB0_surprised_2", "surprised", "BB0")]
    four = load_corpus(CorpusSpec("nemo", tmp_path, label_map=Path(
        "configs/label_maps/nemo-4class.json")))
    assert four.classes == ("neutral", "happy", "sad", "angry") and len(four) == 2


def test_nemo_missing_files_are_named(tmp_path: Path) -> None:
    write_nemo(tmp_path, [("AA0_anger_1.wav", "anger", "AA0")])
    (tmp_path / "samples" / "AA0_anger_1.wav").unlink()
    with pytest.raises(CorpusError, match="lists 'AA0_anger_1.wav' but .* does not exist"):
        load_corpus(CorpusSpec("nemo", tmp_path))
    with pytest.raises(CorpusError, match="nEMO: directory .* does not exist"):
        load_corpus(CorpusSpec("nemo", tmp_path / "nowhere"))


def test_the_shared_nemo_release_reads_whole() -> None:
    if not (NEMO / "data.tsv").is_file():
        pytest.fail(f"nEMO is missing from {NEMO}: this test needs shared/corpora/nemo")
    corpus = load_corpus(CorpusSpec("nemo", NEMO))
    assert len(corpus) == 4481
    assert len({u.speaker for u in corpus.utterances}) == 9
    assert corpus.label_counts()["neutral"] == 809
