"""Feature cache, ASR transcripts, a 2-epoch training run per head, export and serving."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.heads import HEADS
from offline_training.audio import load_audio
from offline_training.dataset import build_items, context_index
from offline_training.experiment import head_class
from offline_training.export import export_bundle
from offline_training.features import FeatureCache, FeatureSpec
from offline_training.protocols import ProtocolSpec, make_folds
from offline_training.train import class_weights, paper_config, predict, train_head

from .conftest import TinyCorpus


def test_asr_transcripts_and_cached_features(tiny: TinyCorpus) -> None:
    items = tiny.features.items
    assert set(items) == {u.id for u in tiny.corpus.utterances}
    utt = tiny.corpus.utterances[0]
    feats = items[utt.id]
    assert feats.audio.shape[1] == 384 and feats.text.shape[1] == 384
    seconds = len(load_audio(utt)) / 16000
    assert abs(feats.audio.shape[0] - seconds * 50) <= 1  # 20 ms frames of the utterance
    assert feats.word_spans is not None and feats.word_text is not None
    assert feats.word_spans.shape[0] == feats.word_text.shape[0]
    assert feats.text_layers is not None and feats.text_layers.shape[0] == 7  # MiniLM: 6 + emb
    # ASR recovers most gold words of the synthetic speech
    gold = " ".join(u.text.lower() for u in tiny.corpus.utterances).split()
    heard = set(" ".join(items[u.id].transcript.lower()
                         for u in tiny.corpus.utterances).replace(".", "").replace(",", "")
                .split())
    assert sum(w in heard for w in gold) / len(gold) > 0.6


def test_gold_transcripts_reuse_the_cached_audio(tiny: TinyCorpus) -> None:
    cache = FeatureCache(tiny.cache, progress=False)
    spec = FeatureSpec(transcripts="gold")
    utterances = list(tiny.corpus.utterances)
    assert cache.audio_dir(spec) == cache.audio_dir(tiny.features.spec)
    gold = cache.extract(utterances, spec)  # Whisper is not run again (frames are cached)
    assert cache.computed["frames"] == 0 and cache.computed["asr"] == 0
    utt = utterances[0]
    assert gold.items[utt.id].transcript == utt.text
    assert torch.equal(gold.items[utt.id].audio, tiny.features.items[utt.id].audio)


def test_context_is_past_utterances_of_the_dialog(tiny: TinyCorpus) -> None:
    past = context_index(tiny.corpus.utterances, size=2)
    by_id = {u.id: u for u in tiny.corpus.utterances}
    for utt_id, ids in past.items():
        assert len(ids) == min(2, by_id[utt_id].order)
        assert all(by_id[i].dialog_id == by_id[utt_id].dialog_id for i in ids)
        assert all(by_id[i].order < by_id[utt_id].order for i in ids)


def test_class_weights() -> None:
    weights = class_weights([0, 0, 0, 1], 3)
    assert weights.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])


# Closed-form heads (linear_probe) have no epochs: tests/offline_training/test_linear_probe.py
BASE_HEADS = sorted(name for name, spec in HEADS.items()
                    if not name.endswith(("_nosp", "_cls"))
                    and not getattr(spec.head_cls, "closed_form", False))


@pytest.mark.parametrize("head", BASE_HEADS)
def test_two_epoch_training_per_head(tiny: TinyCorpus, head: str) -> None:
    cls = head_class(head)
    corpus = tiny.corpus
    items = build_items(corpus.utterances, tiny.features, corpus.classes, cls, context_size=2)
    fold = make_folds(corpus.utterances, ProtocolSpec("loso"))[0]
    config = paper_config(head, max_epochs=2, lr=1e-3, batch_size=8)
    result = train_head(config, [items[i] for i in fold.train], [items[i] for i in fold.valid],
                        384, 384, len(corpus.classes))
    assert len(result.history) == 2
    assert all(np.isfinite(h.train_loss) for h in result.history)
    preds, loss = predict(result.head, [items[i] for i in fold.test], fold.test)
    assert preds.probabilities.shape == (len(fold.test), 4) and np.isfinite(loss)


def test_training_is_reproducible(tiny: TinyCorpus) -> None:
    corpus = tiny.corpus
    items = list(build_items(corpus.utterances, tiny.features, corpus.classes,
                             head_class("self_mha")).values())
    config = paper_config("self_mha", max_epochs=2, batch_size=8)
    first = train_head(config, items[:24], items[24:], 384, 384, 4)
    second = train_head(config, items[:24], items[24:], 384, 384, 4)
    assert [h.train_loss for h in first.history] == [h.train_loss for h in second.history]


def test_exported_bundle_serves_the_same_features(tiny: TinyCorpus, tmp_path: Path,
                                                  whisper_model: object) -> None:
    """The streamer's EmotionModel, given the ASR words and frames, builds the features the
    trainer cached, and its prediction equals the trainer's."""
    from models.inference import EmotionInput, EmotionModel
    from offline_training.transcripts import WhisperAsr

    corpus, features = tiny.corpus, tiny.features
    spec = dataclasses.replace(features.spec, words=False, text_layers=False, functionals=False)
    plain = FeatureCache(tiny.cache, progress=False).extract(list(corpus.utterances), spec)
    items = build_items(corpus.utterances, plain, corpus.classes, head_class("cross_mha"))
    config = paper_config("cross_mha", max_epochs=1, batch_size=8)
    ids = [u.id for u in corpus.utterances]
    result = train_head(config, [items[i] for i in ids[:30]], [items[i] for i in ids[30:]],
                        384, 384, 4)
    bundle = export_bundle(tmp_path / "bundle", result.head, "tiny", corpus.classes, spec, 384,
                           384, 0, {"head": "cross_mha"}, {"note": "test"})
    model = EmotionModel.load(bundle, whisper_model=whisper_model)
    utt = corpus.utterances[0]
    asr = WhisperAsr(whisper_model).run(load_audio(utt))
    served = model.predict([EmotionInput(
        audio=load_audio(utt), text=asr.transcript.text, whisper_frames=asr.frames,
        words=asr.transcript.words)])[0]
    trained, _ = predict(result.head, [items[utt.id]], [utt.id])
    assert asr.transcript.text == plain.items[utt.id].transcript
    np.testing.assert_allclose(served.probabilities, trained.probabilities[0], atol=2e-2)
    assert served.labels == corpus.classes


def test_training_through_accelerate(tiny: TinyCorpus) -> None:
    """The accelerate path in a single process (what each process of a launch runs)."""
    pytest.importorskip("accelerate")
    corpus = tiny.corpus
    items = list(build_items(corpus.utterances, tiny.features, corpus.classes,
                             head_class("text_only")).values())
    config = paper_config("text_only", max_epochs=2, batch_size=8, accelerate=True)
    result = train_head(config, items[:24], items[24:], 384, 384, 4)
    assert len(result.history) == 2 and np.isfinite(result.history[-1].train_loss)
