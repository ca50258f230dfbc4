"""A tiny synthetic corpus and its cached features (ASR transcripts), once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from offline_training.corpora import CorpusSpec, load_corpus
from offline_training.corpora.base import Corpus
from offline_training.features import FeatureCache, FeatureSet, FeatureSpec
from offline_training.synth import SynthConfig, generate


@dataclass(frozen=True)
class TinyCorpus:
    root: Path
    cache: Path
    corpus: Corpus
    features: FeatureSet  # ASR transcripts, word vectors, text layers, functionals


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyCorpus:
    """3 speakers in 3 sessions x 4 classes x 3 utterances = 36 utterances."""
    base = tmp_path_factory.mktemp("tiny_synth")
    root, cache = base / "corpus", base / "cache"
    generate(SynthConfig(out_dir=root, speakers=3, speakers_per_session=1, per_class=3,
                         dialog_turns=4), progress=False)
    corpus = load_corpus(CorpusSpec("synth", root))
    spec = FeatureSpec(transcripts="asr", words=True, text_layers=True, functionals=True)
    features = FeatureCache(cache, threads=2, progress=False).extract(
        list(corpus.utterances), spec)
    return TinyCorpus(root=root, cache=cache, corpus=corpus, features=features)
