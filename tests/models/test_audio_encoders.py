"""Hugging Face audio encoders (tiny random models saved to a temp dir) and prosody features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoders.hf_audio import HFAudioEncoder
from models.encoders.prosody import (
    FRAME_DIM,
    FUNCTIONALS_DIM,
    ProsodyEncoder,
    functionals,
    mel_filterbank,
)
from models.errors import ModelFileError

torch.set_num_threads(1)
SR = 16000


def _tiny(kind: str, path: Path, attention_mask: bool) -> Path:
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMModel,
    )

    classes = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "wavlm": (WavLMConfig, WavLMModel),
               "hubert": (HubertConfig, HubertModel)}
    config_cls, model_cls = classes[kind]
    torch.manual_seed(0)
    config = config_cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                        num_conv_pos_embedding_groups=2,
                        feat_extract_norm="layer" if attention_mask else "group",
                        do_stable_layer_norm=attention_mask)
    model_cls(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0,
                             do_normalize=True,
                             return_attention_mask=attention_mask).save_pretrained(path)
    return path


@pytest.mark.parametrize(("kind", "attention_mask"),
                         [("wav2vec2", False), ("wavlm", True), ("hubert", True)])
def test_hf_audio_encoder_loads_and_encodes(tmp_path: Path, kind: str,
                                            attention_mask: bool) -> None:
    encoder = HFAudioEncoder.load(str(_tiny(kind, tmp_path / kind, attention_mask)))
    assert encoder.dim == 32 and encoder.num_layers == 3
    assert encoder.batched == attention_mask
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(SR).astype(np.float32) * 0.1,
              rng.standard_normal(SR // 2).astype(np.float32) * 0.1,
              np.zeros(100, np.float32)]  # shorter than one window: padded to 400 samples
    feats = encoder.encode_items(audios, layers=True)
    assert [f.frames.shape[0] for f in feats] == [49, 24, 1]  # 20 ms frames
    for f in feats:
        assert f.frames.shape[1] == 32
        assert f.layers is not None and f.layers.shape == (3, *f.frames.shape)
    # batching does not change an utterance's frames
    alone = encoder.encode_items(audios[1:2])[0]
    torch.testing.assert_close(alone.frames, feats[1].frames, atol=1e-4, rtol=1e-3)


def test_hf_audio_bad_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="config.json"):
        HFAudioEncoder.load(str(tmp_path))


def _voice(f0: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)


@pytest.mark.parametrize("f0", [90.0, 180.0, 300.0])
def test_pitch_of_a_harmonic_tone(f0: float) -> None:
    frames = ProsodyEncoder().frames(_voice(f0, 1.0))
    assert frames.shape == (50, FRAME_DIM)
    pitch = frames[5:45, -2]
    assert torch.all((pitch - f0).abs() < 0.03 * f0), pitch
    assert frames[5:45, -1].min() > 0.9  # strongly voiced


def test_noise_and_silence_are_unvoiced() -> None:
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    assert (ProsodyEncoder().frames(noise)[:, -2] == 0).float().mean() > 0.9
    silence = ProsodyEncoder().frames(np.zeros(SR // 2, np.float32))
    assert torch.isfinite(silence).all() and (silence[:, -2] == 0).all()


def test_energy_tracks_loudness() -> None:
    quiet, loud = ProsodyEncoder().frames(_voice(150, 0.5) * 0.1), ProsodyEncoder().frames(
        _voice(150, 0.5))
    assert (loud[:, 40] - quiet[:, 40]).mean() == pytest.approx(2 * np.log(10), abs=0.05)


def test_functionals_shape_and_content() -> None:
    audio = np.concatenate([_voice(150, 0.5), np.zeros(SR // 2, np.float32)])
    f = functionals(audio)
    assert f.shape == (FUNCTIONALS_DIM,) and f.dtype == torch.float32
    assert torch.isfinite(f).all()
    voiced_fraction, duration = f[-2].item(), f[-1].item()
    assert duration == pytest.approx(1.0)
    assert 0.4 < voiced_fraction < 0.6
    pitch_mean = f[2 * 40 + 8].item()
    assert pitch_mean == pytest.approx(150, rel=0.03)
    assert functionals(np.zeros(0, np.float32)).shape == (FUNCTIONALS_DIM,)


def test_mel_filterbank_covers_the_spectrum() -> None:
    bank = mel_filterbank()
    assert bank.shape == (40, 257)
    assert (bank.sum(dim=1) > 0).all()


def test_prosody_encode_items() -> None:
    feats = ProsodyEncoder().encode_items([np.zeros(SR, np.float32)], layers=True)
    assert feats[0].frames.shape == (50, FRAME_DIM)
    assert feats[0].layers is not None and feats[0].layers.shape == (1, 50, FRAME_DIM)
