"""Feature cache keys, per-utterance reuse and the cache's refusal of mismatched settings."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from offline_training.errors import FeatureCacheError
from offline_training.features import FeatureCache, FeatureSpec, UtteranceKeys, prepare_dir
from offline_training.records import Utterance

from .conftest import TinyCorpus
from .fixtures import tone


def utterance(path: Path, uid: str | None = None) -> Utterance:
    return Utterance(id=uid or path.stem, path=str(path), text="", label="a", speaker="s")


def test_keys_follow_audio_content_and_segment_not_names(tmp_path: Path) -> None:
    wav = tone(tmp_path / "a.wav")
    before = UtteranceKeys().key(utterance(wav))
    assert UtteranceKeys().key(utterance(wav, uid="renamed")) == before
    assert UtteranceKeys().key(dataclasses.replace(utterance(wav), start=0.1)) != before
    tone(wav, seconds=0.6)  # regenerated file: new content, new key
    os.utime(wav, ns=(1, 1))
    assert UtteranceKeys().key(utterance(wav)) != before


def test_cache_dirs_follow_the_settings(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    gold, asr = FeatureSpec(transcripts="gold"), FeatureSpec(transcripts="asr")
    assert cache.audio_dir(gold) == cache.audio_dir(asr)  # frames are shared
    assert cache.text_dir(gold) == cache.text_dir(asr)  # text entries are keyed by content
    assert cache.audio_dir(FeatureSpec(audio="prosody")) != cache.audio_dir(gold)
    assert cache.audio_dir(FeatureSpec(audio_layers=True)) != cache.audio_dir(gold)
    assert cache.audio_dir(FeatureSpec(window_s=30.0)) != cache.audio_dir(gold)
    layers = FeatureSpec(audio_layers=True)
    fit = FeatureSpec(audio_layers=True, audio_window="fit")
    assert fit.audio_window_s is None and layers.audio_window_s == 10.0
    assert cache.audio_dir(fit) != cache.audio_dir(layers)
    with pytest.raises(ValueError, match="all-layer Whisper pass"):
        FeatureSpec(audio_window="fit")  # the CT2 (ASR) frames have one window
    with pytest.raises(ValueError, match="audio_window must be one of"):
        FeatureSpec(audio_layers=True, audio_window="short")


def test_a_subset_or_reordered_corpus_computes_nothing(tiny: TinyCorpus) -> None:
    """The session's tiny corpus is cached; a fresh cache object over the same root finds
    every entry for a re-ordered subset (no encoder runs: counted)."""
    utterances = list(reversed(tiny.corpus.utterances[5:20]))
    cache = FeatureCache(tiny.cache, progress=False)
    features = cache.extract(utterances, tiny.features.spec)
    assert cache.computed == {}
    assert list(features.items) == [u.id for u in utterances]
    for utt in utterances:
        assert features.items[utt.id].transcript == tiny.features.items[utt.id].transcript


def test_a_cache_written_with_other_settings_is_refused(tmp_path: Path) -> None:
    prepare_dir(tmp_path / "c", {"audio": "x"})
    prepare_dir(tmp_path / "c", {"audio": "x"})
    with pytest.raises(FeatureCacheError, match="other settings"):
        prepare_dir(tmp_path / "c", {"audio": "y"})


def test_missing_audio_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FeatureCacheError, match="cannot be read"):
        UtteranceKeys().key(utterance(tmp_path / "none.wav"))
