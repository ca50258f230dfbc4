"""Train-serve parity on real human speech: what the trainer caches and evaluates is what
``EmotionModel.predict`` computes from the audio, for token-level and word-level heads.

RAVDESS clips from ``../shared/corpora/ravdess`` (16 kHz FLAC), ASR transcripts, one
training epoch (the weights do not matter, only that both paths compute the same)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.asr import AsrEngine, AsrOptions
from models.inference import EmotionInput, EmotionModel
from offline_training.audio import load_audio
from offline_training.corpora.manifest import load_manifest
from offline_training.dataset import build_items
from offline_training.experiment import head_class
from offline_training.export import export_bundle
from offline_training.features import FeatureCache, FeatureSpec
from offline_training.train import paper_config, predict, train_head

RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
EMOTIONS = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}

pytestmark = [pytest.mark.slow,
              pytest.mark.needs_corpus("ravdess")]


def ravdess_manifest(tmp_path: Path) -> Path:
    """Two actors x four emotions x two clips (16 clips)."""
    rows = []
    for actor in ("Actor_01", "Actor_02"):
        for path in sorted((RAVDESS / actor).glob("03-01-*.flac")):
            parts = path.stem.split("-")
            if parts[2] in EMOTIONS and parts[3] == "01" and parts[5] == "01":
                rows.append({"id": path.stem, "path": str(path), "label": EMOTIONS[parts[2]],
                             "speaker": actor})
    manifest = tmp_path / "ravdess.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(rows) == 16
    return manifest


@pytest.mark.parametrize(("head", "all_layers", "window"), [
    ("self_mha", False, "full"),  # token-level text
    ("shared_qk_mt", False, "full"),  # words + word spans
    ("context_mmt", True, "full"),  # every Whisper layer (PyTorch encoder) and every text layer
    ("linear_probe_audio", True, "full"),  # closed form, mean+std of every Whisper layer
    ("linear_probe_affect", True, "full"),  # + the GoEmotions label scores of the transcript
    ("linear_probe_affect", True, "fit"),  # the layers in a window of the utterance's length
])
def test_exported_bundle_serves_what_the_trainer_evaluated(tmp_path: Path, head: str,
                                                           all_layers: bool, window: str) -> None:
    from models.encoders.whisper import load_whisper

    corpus = load_manifest(ravdess_manifest(tmp_path))
    utterances = list(corpus.utterances)
    cls = head_class(head)
    spec = FeatureSpec(transcripts="asr", words=cls.needs_words, audio_layers=all_layers,
                       text_layers=all_layers, audio_window=window)
    features = FeatureCache(tmp_path / "cache", threads=2, progress=False).extract(
        utterances, spec)
    context = 4 if cls.needs_context else 0  # RAVDESS has no dialogs: the context is empty
    items = build_items(utterances, features, corpus.classes, cls, context_size=context)
    ids = [u.id for u in utterances]
    speakers = {u.id: u.speaker for u in utterances}
    result = train_head(paper_config(head, max_epochs=1, batch_size=8),
                        [items[i] for i in ids[:12]], [items[i] for i in ids[12:]],
                        384, 384, len(corpus.classes),
                        train_groups=[speakers[i] for i in ids[:12]],
                        valid_groups=[speakers[i] for i in ids[12:]])
    bundle = export_bundle(tmp_path / "bundle", result.head, "parity", corpus.classes, spec,
                           384, 384, context, {"head": head}, {"note": "parity test"})
    trained, _ = predict(result.head, [items[i] for i in ids], ids)

    # Serving as the streamer does: the ASR's pass gives text, word times and frames.
    whisper = load_whisper("packaged:tiny.en", cpu_threads=2)
    asr = AsrEngine(AsrOptions(), whisper)
    model = EmotionModel.load(bundle, whisper_model=whisper)
    assert model.bundle.config.audio.window == window
    inputs = []
    for utt in utterances:
        audio = load_audio(utt)
        transcript = asr.transcribe(audio, final=True)
        assert transcript.text == features.items[utt.id].transcript
        inputs.append(EmotionInput(audio=audio, text=transcript.text, words=transcript.words,
                                   whisper_frames=transcript.encoder_frames))
    assert model.uses_whisper_frames == (not all_layers)  # all layers: computed by the model
    served = model.predict(inputs)
    assert [p.labels for p in served] == [corpus.classes] * len(served)
    served_probs = np.stack([p.probabilities for p in served])
    # float16 cache vs float32 serving: equal to well under a percentage point.
    np.testing.assert_allclose(served_probs, trained.probabilities, atol=1e-2)
    assert (served_probs.argmax(1) == trained.probabilities.argmax(1)).mean() >= 0.9
