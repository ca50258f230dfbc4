"""Feature cache keys and the cache's refusal of mismatched settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offline_training.errors import FeatureCacheError
from offline_training.features import FeatureCache, FeatureSpec, corpus_fingerprint, prepare_dir
from offline_training.records import Utterance

from .fixtures import tone


def utterance(path: Path) -> Utterance:
    return Utterance(id=path.stem, path=str(path), text="", label="a", speaker="s")


def test_fingerprint_changes_when_audio_is_regenerated(tmp_path: Path) -> None:
    wav = tone(tmp_path / "a.wav")
    before = corpus_fingerprint([utterance(wav)])
    assert corpus_fingerprint([utterance(wav)]) == before
    tone(wav, seconds=0.6)
    os.utime(wav, ns=(1, 1))
    assert corpus_fingerprint([utterance(wav)]) != before


def test_cache_keys_follow_the_settings(tmp_path: Path) -> None:
    utts = [utterance(tone(tmp_path / "a.wav"))]
    cache = FeatureCache(tmp_path / "cache")
    gold, asr = FeatureSpec(transcripts="gold"), FeatureSpec(transcripts="asr")
    assert cache.audio_dir(gold, utts) == cache.audio_dir(asr, utts)  # frames are shared
    assert cache.text_dir(gold, utts) != cache.text_dir(asr, utts)
    assert cache.audio_dir(FeatureSpec(audio="prosody"), utts) != cache.audio_dir(gold, utts)


def test_a_cache_written_with_other_settings_is_refused(tmp_path: Path) -> None:
    prepare_dir(tmp_path / "c", {"audio": "x"})
    prepare_dir(tmp_path / "c", {"audio": "x"})
    with pytest.raises(FeatureCacheError, match="other settings"):
        prepare_dir(tmp_path / "c", {"audio": "y"})


def test_missing_audio_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FeatureCacheError, match="cannot be read"):
        corpus_fingerprint([utterance(tmp_path / "none.wav")])
