from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.asr import Word
from models.bundle import AudioEncoderSpec, BundleConfig, TextEncoderSpec, save_bundle
from models.errors import ModelError
from models.features import word_frames
from models.heads import build_head, make_config
from models.inference import ContextItem, EmotionInput, EmotionModel

torch.set_num_threads(1)
LABELS = ("ang", "hap", "neu", "sad")
AUDIO_DIM = 24


def make_bundle(tmp_path: Path, text_dir: Path, head: str = "cross_mha", past_context: int = 0,
                regression: bool = False, audio_ref: str = "whisper:packaged:tiny.en",
                audio_dim: int = AUDIO_DIM, keep_text_layers: str = "last",
                **settings: object) -> Path:
    cfg = make_config(head, audio_dim=audio_dim, text_dim=32, num_classes=len(LABELS),
                      regression=regression, **settings)
    torch.manual_seed(0)
    config = BundleConfig(model_id=f"test-{head}", head=head, head_config=dataclasses.asdict(cfg),
                          labels=LABELS, audio=AudioEncoderSpec(ref=audio_ref, dim=audio_dim),
                          text=TextEncoderSpec(ref=str(text_dir), dim=32, layers=keep_text_layers),
                          context_size=past_context)
    return save_bundle(tmp_path / head, config, build_head(head, cfg))


def utterance(seconds: float, text: str, seed: int = 0) -> EmotionInput:
    rng = np.random.default_rng(seed)
    n_frames = max(1, int(seconds * 50))
    return EmotionInput(audio=np.zeros(int(seconds * 16000), np.float32), text=text,
                        whisper_frames=rng.standard_normal((n_frames, AUDIO_DIM), dtype=np.float32))


def test_predict_with_whisper_frames(tmp_path: Path, tiny_text_dir: Path) -> None:
    model = EmotionModel.load(make_bundle(tmp_path, tiny_text_dir, model_dim=32, num_heads=2))
    assert model.uses_whisper_frames and model.labels == LABELS
    assert model.model_id == "test-cross_mha"
    batch = [utterance(3.0, "I can't believe it", 0), utterance(0.4, "", 1),
             utterance(1.2, "fine", 2)]
    preds = model.predict(batch)
    assert len(preds) == 3
    for pred in preds:
        assert pred.probabilities.shape == (4,)
        assert abs(float(pred.probabilities.sum()) - 1.0) < 1e-5
        assert pred.valence is None and pred.label in LABELS
        assert pred.context_item.audio_embedding.shape == (AUDIO_DIM,)
        assert pred.context_item.text_embedding.shape == (32,)
    # batching with padding gives the same answer as one at a time
    for inp, pred in zip(batch, preds, strict=True):
        alone = model.predict([inp])[0]
        np.testing.assert_allclose(alone.probabilities, pred.probabilities, atol=1e-5)


def test_features_batch_shapes(tmp_path: Path, tiny_text_dir: Path) -> None:
    model = EmotionModel.load(make_bundle(tmp_path, tiny_text_dir, model_dim=32, num_heads=2,
                                          keep_text_layers="all"))
    hb = model.features([utterance(1.0, "hello"), utterance(2.0, "hello there you")])
    assert hb.audio.shape == (2, 100, AUDIO_DIM) and hb.audio_mask.sum(1).tolist() == [50, 100]
    assert hb.text.shape[0] == 2 and hb.text.shape[2] == 32
    # A head gets what it declares it needs, as in training (models.features.head_item):
    # cross_mha reads no text layers, so it gets none though the bundle keeps them all.
    assert hb.text_layers is None
    assert hb.labels is None


def test_a_head_that_needs_text_layers_gets_them(tmp_path: Path, tiny_text_dir: Path) -> None:
    model = EmotionModel.load(make_bundle(tmp_path, tiny_text_dir, head="context_mmt",
                                          past_context=4, keep_text_layers="all",
                                          text_layers=3))
    hb = model.features([utterance(1.0, "hello"), utterance(2.0, "hello there you")])
    assert hb.text_layers is not None and hb.text_layers.shape[1] == 3
    # no past utterances yet: context is given, all of it masked
    assert hb.context_mask is not None and not hb.context_mask.any()


def test_regression_outputs(tmp_path: Path, tiny_text_dir: Path) -> None:
    model = EmotionModel.load(make_bundle(tmp_path, tiny_text_dir, head="text_only",
                                          regression=True, model_dim=32, num_heads=2))
    pred = model.predict([utterance(1.0, "wow")])[0]
    assert all(isinstance(v, float) for v in (pred.valence, pred.arousal, pred.dominance))


def test_wrong_frame_width_is_explained(tmp_path: Path, tiny_text_dir: Path) -> None:
    model = EmotionModel.load(make_bundle(tmp_path, tiny_text_dir, model_dim=32, num_heads=2))
    bad = EmotionInput(audio=np.zeros(1600, np.float32), text="x",
                       whisper_frames=np.zeros((5, 384), np.float32))
    with pytest.raises(ModelError, match=r"expects \(T, 24\)"):
        model.predict([bad])


def test_text_encoder_override_must_match_width(tmp_path: Path, tiny_text_dir: Path) -> None:
    path = make_bundle(tmp_path, tiny_text_dir, model_dim=32, num_heads=2)
    with pytest.raises(ModelError, match="encoders.text.dim"):
        EmotionModel.load(path, text_encoder="packaged:all-MiniLM-L6-v2")


def test_bad_audio_ref(tmp_path: Path, tiny_text_dir: Path) -> None:
    path = make_bundle(tmp_path, tiny_text_dir, audio_ref="mystery", model_dim=32, num_heads=2)
    with pytest.raises(ModelError, match="encoders.audio.ref 'mystery'"):
        EmotionModel.load(path)


def test_word_frames_from_times_and_fallback() -> None:
    inp = EmotionInput(audio=np.zeros(16000, np.float32), text=" hi there",
                       words=(Word(" hi", 0.1, 0.3), Word(" there", 0.36, 0.9)))
    words, spans = word_frames(inp, 50)
    assert words == ["hi", "there"] and spans.tolist() == [[5, 15], [18, 45]]
    words, spans = word_frames(dataclasses.replace(inp, words=()), 50)
    assert words == ["hi", "there"] and spans.tolist() == [[0, 25], [25, 50]]
    assert word_frames(dataclasses.replace(inp, words=(), text=""), 50)[0] == []


def test_context_item_round_trips(tmp_path: Path, tiny_text_dir: Path) -> None:
    model = EmotionModel.load(make_bundle(tmp_path, tiny_text_dir, model_dim=32, num_heads=2))
    first = model.predict([utterance(1.0, "one")])[0].context_item
    assert isinstance(first, ContextItem) and first.text == "one"
    np.testing.assert_allclose(first.audio_embedding,
                               utterance(1.0, "one").whisper_frames.mean(0), rtol=1e-5)


def _settings_for(name: str) -> dict[str, object]:
    from head_inputs import TINY

    from models.encoders.prosody import FUNCTIONALS_DIM
    from models.heads import head_spec

    settings = dict(TINY.get(name, {}))
    head_cls = head_spec(name).head_cls
    if "audio_layers" in settings:
        settings["audio_layers"] = 1  # Whisper frames: last layer only
    if "text_layers" in settings:
        settings["text_layers"] = 3  # tiny BERT: embeddings + 2 layers
    if head_cls.needs_functionals:
        settings["functionals_dim"] = FUNCTIONALS_DIM
    return settings


@pytest.mark.parametrize("name", sorted(__import__("models.heads").heads.HEADS))
def test_every_head_serves_from_a_bundle(tmp_path: Path, tiny_text_dir: Path, name: str) -> None:
    from models.heads import head_spec

    head_cls = head_spec(name).head_cls
    path = make_bundle(tmp_path, tiny_text_dir, head=name, past_context=2, regression=True,
                       keep_text_layers="all" if head_cls.needs_text_layers else "last",
                       **_settings_for(name))
    model = EmotionModel.load(path)
    first = model.predict([utterance(1.0, "hello")])[0]
    words = (Word(" I", 0.0, 0.2), Word(" am", 0.2, 0.5), Word(" here", 0.6, 1.4))
    batch = [
        dataclasses.replace(utterance(1.5, " I am here", 1), words=words,
                            context=(first.context_item,)),
        utterance(0.3, "", 2),
        dataclasses.replace(utterance(2.0, "no word times here", 3),
                            context=(first.context_item, first.context_item,
                                     first.context_item)),
    ]
    preds = model.predict(batch)
    for inp, pred in zip(batch, preds, strict=True):
        assert abs(float(pred.probabilities.sum()) - 1.0) < 1e-5
        assert pred.valence is not None
        alone = model.predict([inp])[0]
        np.testing.assert_allclose(alone.probabilities, pred.probabilities, atol=1e-5)
    hb = model.features(batch)
    assert (hb.word_text is not None) == head_cls.needs_words
    assert (hb.context_text is not None) == head_cls.needs_context
    assert (hb.functionals is not None) == head_cls.needs_functionals
    assert (hb.ctc_targets is not None) == head_cls.needs_ctc


def test_prosody_audio_encoder_bundle(tmp_path: Path, tiny_text_dir: Path) -> None:
    from models.encoders.prosody import FRAME_DIM

    path = make_bundle(tmp_path, tiny_text_dir, head="self_mha", audio_ref="prosody",
                       audio_dim=FRAME_DIM, model_dim=32, num_heads=2)
    model = EmotionModel.load(path)
    assert not model.uses_whisper_frames
    rng = np.random.default_rng(0)
    inp = EmotionInput(audio=rng.standard_normal(16000).astype(np.float32) * 0.1, text="hey")
    pred = model.predict([inp])[0]
    assert pred.context_item.audio_embedding.shape == (FRAME_DIM,)


def test_audio_features_computed_ahead_serve_as_computed_with_the_batch(
        tmp_path: Path, tiny_text_dir: Path) -> None:
    """The recognizer computes a model's own audio pass ahead (at the first pause):
    ``encode_audio`` then ``predict`` with them gives what ``predict`` computes itself, also
    in a batch where only some inputs have them; a model on the ASR's frames does not."""
    from models.encoders.prosody import FRAME_DIM

    path = make_bundle(tmp_path, tiny_text_dir, head="self_mha", audio_ref="prosody",
                       audio_dim=FRAME_DIM, model_dim=32, num_heads=2)
    model = EmotionModel.load(path)
    assert model.encodes_audio
    rng = np.random.default_rng(0)
    inputs = [EmotionInput(audio=rng.standard_normal(n).astype(np.float32) * 0.1, text=t)
              for n, t in ((16000, "hey"), (24000, "so angry"))]
    ahead = model.encode_audio([inp.audio for inp in inputs])
    assert [f.frames.shape[1] for f in ahead] == [FRAME_DIM, FRAME_DIM]
    computed = model.predict(inputs)
    given = model.predict([inputs[0], dataclasses.replace(inputs[1], audio_features=ahead[1])])
    for a, b in zip(computed, given, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    frames_model = EmotionModel.load(make_bundle(tmp_path / "frames", tiny_text_dir))
    assert frames_model.uses_whisper_frames and not frames_model.encodes_audio


def test_whisper_frames_computed_when_missing(tmp_path: Path, tiny_text_dir: Path) -> None:
    """With the packaged tiny.en (384-d), frames are computed if the ASR did not pass them."""
    from models.encoders.whisper import WhisperEncoder, load_whisper

    whisper = load_whisper("packaged:tiny.en", cpu_threads=1)
    path = make_bundle(tmp_path, tiny_text_dir, audio_dim=384, model_dim=32, num_heads=2)
    model = EmotionModel.load(path, whisper_model=whisper)
    audio = (0.1 * np.sin(2 * np.pi * 200 * np.arange(24000) / 16000)).astype(np.float32)
    computed = model.predict([EmotionInput(audio=audio, text="hi")])[0]
    frames = WhisperEncoder(whisper).encode(audio).frames
    assert frames.shape == (75, 384)
    given = model.predict([EmotionInput(audio=audio, text="hi", whisper_frames=frames)])[0]
    np.testing.assert_allclose(computed.probabilities, given.probabilities, atol=1e-4)


def test_layer_count_mismatch_is_explained(tmp_path: Path, tiny_text_dir: Path) -> None:
    settings = _settings_for("context_mmt")
    settings["text_layers"] = 13  # e.g. trained on BERT-base features
    path = make_bundle(tmp_path, tiny_text_dir, head="context_mmt", past_context=2,
                       keep_text_layers="all", **settings)
    with pytest.raises(ModelError, match="text_layers=13 but the text encoder gives 3"):
        EmotionModel.load(path)


def test_train_on_features_then_serve_the_bundle(tmp_path: Path, tiny_text_dir: Path) -> None:
    """The trainer's path: features -> train a head -> save_bundle -> EmotionModel.predict."""
    path = make_bundle(tmp_path, tiny_text_dir, head="mmer", model_dim=16, num_heads=2,
                       ff_dim=32, dropout=0.0)
    model = EmotionModel.load(path)
    texts = ["I am furious", "what a lovely day", "it is fine", "I miss her so much"]
    batch = [utterance(1.0 + 0.2 * i, text, seed=i) for i, text in enumerate(texts)]
    features = dataclasses.replace(model.features(batch), labels=torch.arange(4))
    head = model.head.train()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        loss = head.loss(features, head(features))
        loss.backward()
        optimizer.step()
    bundle = model.bundle
    served_dir = save_bundle(tmp_path / "trained", bundle.config, head.eval(),
                             report={"train_loss": loss.item()})
    served = EmotionModel.load(served_dir)
    assert [p.label for p in served.predict(batch)] == list(LABELS)


def domain_bundle(tmp_path: Path, text_dir: Path, **text: object) -> Path:
    """A linear probe trained on per-corpus standardised audio (as v6), random weights."""
    cfg = make_config("linear_probe_audio", audio_dim=AUDIO_DIM, text_dim=32,
                      num_classes=len(LABELS), domain_standardise=True)
    torch.manual_seed(0)
    head = build_head("linear_probe_audio", cfg)
    config = BundleConfig(model_id="test-domain", head="linear_probe_audio",
                          head_config=dataclasses.asdict(cfg), labels=LABELS,
                          audio=AudioEncoderSpec(dim=AUDIO_DIM),
                          text=TextEncoderSpec(ref=str(text_dir), dim=32, **text))  # type: ignore
    return save_bundle(tmp_path / "domain", config, head)


def test_deployment_statistics_follow_what_the_service_hears(tmp_path: Path,
                                                              tiny_text_dir: Path) -> None:
    from models.feature_stats import AdaptationSettings

    settings = AdaptationSettings(prior_weight=1, window=100)
    model = EmotionModel.load(domain_bundle(tmp_path, tiny_text_dir), adaptation=settings)
    assert model.adaptation is not None
    probe = utterance(2.0, "", 7)
    before = model.predict([probe])[0].probabilities
    # A deployment whose audio sits far off the training population (another microphone).
    shifted = [dataclasses.replace(utterance(2.0, "", s), whisper_frames=utterance(
        2.0, "", s).whisper_frames + 3.0) for s in range(30)]  # type: ignore[operator]
    model.predict(shifted)
    assert model.adaptation.observed() == {"wideband": 31, "telephone": 0}
    after = model.predict([probe])[0].probabilities
    assert np.abs(after - before).max() > 1e-3
    # The telephone band keeps the training population: a telephone copy of the probe is
    # labelled as the probe was before the wideband stream moved.
    telephone = model.predict([dataclasses.replace(probe, band="telephone")])[0].probabilities
    np.testing.assert_allclose(telephone, before, atol=1e-5)
    # Saved and loaded into a fresh model, the statistics give the same labels.
    state = model.adaptation_state()
    assert state is not None
    again = EmotionModel.load(domain_bundle(tmp_path, tiny_text_dir), adaptation=settings)
    again.load_adaptation_state(state, "state.npz")
    next_probe = utterance(2.0, "", 8)
    np.testing.assert_allclose(again.predict([next_probe])[0].probabilities,
                               model.predict([next_probe])[0].probabilities, atol=1e-6)


def test_fixed_statistics_when_adaptation_is_off(tmp_path: Path, tiny_text_dir: Path) -> None:
    from models.feature_stats import AdaptationSettings

    model = EmotionModel.load(domain_bundle(tmp_path, tiny_text_dir),
                              adaptation=AdaptationSettings(follow=False))
    probe = utterance(2.0, "", 7)
    before = model.predict([probe])[0].probabilities
    model.predict([utterance(2.0, "", s) for s in range(20)])
    np.testing.assert_allclose(model.predict([probe])[0].probabilities, before, atol=1e-6)
    # Without deployment statistics the head's own forward serves the wideband prior.
    plain = model.head(model.features([probe]))
    np.testing.assert_allclose(torch.softmax(plain.logits, -1)[0].detach().numpy(), before,
                               atol=1e-5)


def test_untrusted_words_do_not_reach_the_text_branch(tmp_path: Path,
                                                      tiny_text_dir: Path) -> None:
    from models.inference import text_trusted

    bundle = make_bundle(tmp_path, tiny_text_dir, head="linear_probe")
    model = EmotionModel.load(bundle)
    cfg = model.bundle.config
    gated = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, min_word_probability=0.5,
                                                              min_words=2))
    model.bundle = dataclasses.replace(model.bundle, config=gated)
    sure = (Word("I", 0.0, 0.2, 0.9), Word("am", 0.2, 0.4, 0.8), Word("fine", 0.4, 0.8, 0.95))
    unsure = tuple(dataclasses.replace(w, probability=0.2) for w in sure)
    base = utterance(1.0, "I am fine", 3)
    trusted = model.predict([dataclasses.replace(base, words=sure)])[0]
    dropped = model.predict([dataclasses.replace(base, words=unsure)])[0]
    empty = model.predict([dataclasses.replace(base, text="", words=())])[0]
    assert trusted.modalities == ("audio", "text")
    assert dropped.modalities == ("audio",)
    np.testing.assert_allclose(dropped.probabilities, empty.probabilities, atol=1e-6)
    assert not np.allclose(trusted.probabilities, empty.probabilities, atol=1e-6)
    # Too few words, and the thresholds' edges.
    assert not text_trusted(sure[:1], 0.5, 2)
    assert text_trusted(sure, 0.0, 0) and text_trusted((), 0.9, 0)
    assert text_trusted(sure, float(np.mean([0.9, 0.8, 0.95])), 3)
