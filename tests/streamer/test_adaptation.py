"""The deployment statistics' file: where it lives, kept across restarts, refused when bad."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.bundle import AudioEncoderSpec, BundleConfig, TextEncoderSpec, save_bundle
from models.feature_stats import AdaptationSettings
from models.heads import build_head, make_config
from models.inference import EmotionInput, EmotionModel
from streamer.core.config import load_config
from streamer.core.errors import ConfigError, ModelLoadError
from streamer.engine.adaptation import AdaptationStore, open_store, state_path

LABELS = ("angry", "happy", "neutral", "sad")


def test_auto_is_the_state_directory_for_serve_and_nothing_for_run(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    config = load_config()
    assert config.emotion.adaptation_state == "auto"
    assert state_path(config, "v6/model:1", persist_by_default=True) == \
        tmp_path / "emotion-stream" / "feature-stats-v6_model_1.npz"
    assert state_path(config, "m", persist_by_default=False) is None
    explicit = load_config(overrides=[f"emotion.adaptation_state={tmp_path / 's.npz'}"])
    assert state_path(explicit, "m", persist_by_default=False) == tmp_path / "s.npz"
    off = load_config(overrides=["emotion.adaptation_state=null"])
    assert state_path(off, "m", persist_by_default=True) is None


@pytest.mark.parametrize(("override", "message"), [
    ("emotion.adaptation_prior_weight=0", "adaptation_prior_weight must be >= 1"),
    ("emotion.adaptation_window=10", "adaptation_prior_weight must be >= 1 and <="),
    ("emotion.adaptation_save_s=0", "adaptation_save_s must be > 0"),
])
def test_bad_settings_are_explained(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


@pytest.fixture()
def model(tmp_path: Path, tiny_text_dir: Path) -> EmotionModel:
    cfg = make_config("linear_probe_audio", audio_dim=24, text_dim=32, num_classes=4,
                      domain_standardise=True)
    torch.manual_seed(0)
    config = BundleConfig(model_id="test-domain", head="linear_probe_audio",
                          head_config=dataclasses.asdict(cfg), labels=LABELS,
                          audio=AudioEncoderSpec(dim=24),
                          text=TextEncoderSpec(ref=str(tiny_text_dir), dim=32))
    bundle = save_bundle(tmp_path / "bundle", config, build_head("linear_probe_audio", cfg))
    return EmotionModel.load(bundle, adaptation=AdaptationSettings(prior_weight=1, window=50))


def heard(model: EmotionModel, n: int, offset: float) -> None:
    rng = np.random.default_rng(n)
    model.predict([EmotionInput(audio=np.zeros(16000, np.float32), text="",
                                whisper_frames=rng.standard_normal((50, 24)).astype(np.float32)
                                + offset) for _ in range(n)])


def test_statistics_survive_a_restart(model: EmotionModel, tmp_path: Path,
                                      tiny_text_dir: Path) -> None:
    path = tmp_path / "state" / "stats.npz"
    store = AdaptationStore(model, path, save_every_s=60)
    assert not store.load()  # nothing yet: the training population
    heard(model, 20, 2.0)
    store.save()
    assert path.is_file() and not path.with_name("stats.npz.tmp").exists()
    assert model.adaptation is not None
    mean = model.adaptation.bands["wideband"].mean.copy()
    restarted = EmotionModel.load(model.bundle.path,
                                  adaptation=AdaptationSettings(prior_weight=1, window=50))
    assert AdaptationStore(restarted, path, 60).load()
    assert restarted.adaptation is not None
    np.testing.assert_allclose(restarted.adaptation.bands["wideband"].mean, mean)


def test_a_damaged_file_stops_the_start_with_what_to_do(model: EmotionModel,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "stats.npz"
    path.write_bytes(b"not numpy")
    with pytest.raises(ModelLoadError, match="delete it to start again"):
        AdaptationStore(model, path, 60).load()


def test_open_store_only_for_adapting_models_with_a_file(model: EmotionModel,
                                                         tmp_path: Path) -> None:
    config = load_config(overrides=[f"emotion.adaptation_state={tmp_path / 'x.npz'}"])
    store = open_store(config, model, persist_by_default=False)
    assert store is not None and store.path == tmp_path / "x.npz"
    assert open_store(load_config(), model, persist_by_default=False) is None
    # emotion.adaptation=false, as load_emotion loads it: nothing read or kept.
    fixed = EmotionModel.load(model.bundle.path, adaptation=AdaptationSettings(follow=False))
    assert open_store(config, fixed, persist_by_default=True) is None
