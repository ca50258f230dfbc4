"""The synthetic corpus generator: deterministic, labelled so fusion is needed, channels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from offline_training.corpora import CorpusSpec, load_corpus
from offline_training.synth import SynthConfig, generate
from offline_training.synth_sentences import ADJECTIVES, NEUTRAL, VERBS


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_same_seed_same_corpus_other_seed_other_corpus(tmp_path: Path) -> None:
    config = SynthConfig(out_dir=tmp_path / "a", speakers=2, per_class=3, seed=7)
    generate(config, progress=False)
    generate(SynthConfig(out_dir=tmp_path / "b", speakers=2, per_class=3, seed=7),
             progress=False)
    generate(SynthConfig(out_dir=tmp_path / "c", speakers=2, per_class=3, seed=8),
             progress=False)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert (tmp_path / "a" / "manifest.jsonl").read_text() != \
        (tmp_path / "c" / "manifest.jsonl").read_text()


def is_cue_of(cue: str, label: str) -> bool:
    return cue in ADJECTIVES[label] or cue in VERBS[label]


def test_kinds_carry_the_emotion_in_words_prosody_or_both(tmp_path: Path) -> None:
    utterances = generate(SynthConfig(out_dir=tmp_path, speakers=4, per_class=3),
                          progress=False)
    assert len(utterances) == 4 * 4 * 3
    for utt in utterances:
        prosody = utt.extra["prosody"]
        if utt.kind == "neutral":
            assert utt.label == "neutral" and utt.text in NEUTRAL and prosody == "neutral"
        elif utt.kind == "prosody":  # only audio tells
            assert utt.text in NEUTRAL and prosody == utt.label
        elif utt.kind == "words":  # only text tells
            assert is_cue_of(utt.extra["cue"], utt.label) and prosody == "neutral"
        else:
            assert utt.kind == "congruent"
            assert is_cue_of(utt.extra["cue"], utt.label) and prosody == utt.label
        assert utt.extra["cue"] in utt.text
    corpus = load_corpus(CorpusSpec("synth", tmp_path))
    assert corpus.classes == ("angry", "happy", "sad", "neutral")
    assert len({u.session for u in corpus.utterances}) == 2
    assert all(u.dialog_id for u in corpus.utterances)
    speakers_per_dialog = {}
    for u in corpus.utterances:
        speakers_per_dialog.setdefault(u.dialog_id, set()).add(u.speaker)
    assert all(len(s) == 2 for s in speakers_per_dialog.values())
    # each session has its own emotion words: held-out sessions test unseen words
    cues = {}
    for u in corpus.utterances:
        if u.extra["cue"]:
            cues.setdefault(u.session, set()).add(u.extra["cue"])
    first, second = cues.values()
    assert first and second and not first & second


def test_prosody_differs_between_emotions(tmp_path: Path) -> None:
    utterances = generate(SynthConfig(out_dir=tmp_path, speakers=1, per_class=6, jitter=False),
                          progress=False)
    rate = {}
    for emotion in ("sad", "neutral"):
        durations = [sf.info(tmp_path / u.path).duration / len(u.text.split())
                     for u in utterances if u.extra["prosody"] == emotion]
        rate[emotion] = float(np.mean(durations))
    assert rate["sad"] > 1.15 * rate["neutral"]  # sad is spoken slower


def test_noisy_and_telephone_channels(tmp_path: Path) -> None:
    utterances = generate(SynthConfig(out_dir=tmp_path, speakers=1, per_class=1,
                                      channels=("clean", "noisy", "telephone")), progress=False)
    assert len(utterances) == 12
    first = {u.extra["channel"]: u for u in utterances if u.id.startswith("spk01_00000")}
    clean, _ = sf.read(tmp_path / first["clean"].path)
    noisy, _ = sf.read(tmp_path / first["noisy"].path)
    phone, rate = sf.read(tmp_path / first["telephone"].path)
    assert rate == 16000 and len(phone) == pytest.approx(len(clean), abs=40)
    spectrum = np.abs(np.fft.rfft(phone))
    freqs = np.fft.rfftfreq(len(phone), 1 / 16000)
    assert spectrum[freqs > 4500].sum() < 0.02 * spectrum.sum()  # band limited to 8 kHz sampling
    silent = np.abs(clean) < 1e-4
    assert np.std(noisy[silent]) > 10 * np.std(clean[silent])


def test_bad_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        SynthConfig(out_dir=tmp_path, channels=("radio",))
