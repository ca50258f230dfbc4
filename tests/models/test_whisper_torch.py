"""The PyTorch Whisper encoder read from the CTranslate2 model.bin gives CTranslate2's output.

Checked on real speech (two RAVDESS clips) against faster-whisper loaded in float32 (tight)
and in its default int8 (loose: int8 activations move the output, not the weights). A
multilingual Whisper base is checked too when ``EMOTION_STREAM_WHISPER_BASE`` names a
CTranslate2 directory of it (docs/layer_probe.md says how to assemble one).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from models.encoders.whisper import (
    WhisperEncoder,
    _padded,
    load_whisper,
    n_output_frames,
    window_seconds,
)
from models.encoders.whisper_torch import (
    _CT2_DTYPES,
    WhisperTorchEncoder,
    load_whisper_torch,
    read_ct2_variables,
)
from models.errors import ModelError, ModelFileError
from models.paths import resolve_whisper

RAVDESS = Path(os.environ.get("EMOTION_STREAM_RAVDESS", "/work/shared/corpora/ravdess"))
CLIPS = ("Actor_01/03-01-05-01-01-01-01.flac", "Actor_12/03-01-03-02-02-01-12.flac")


pytestmark = pytest.mark.needs_corpus("ravdess")


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    import soundfile as sf

    return [sf.read(RAVDESS / clip, dtype="float32")[0] for clip in CLIPS]


def _compare(reference: np.ndarray, ours: np.ndarray) -> tuple[float, float, float]:
    """max abs diff, mean and min per-frame cosine."""
    cos = (reference * ours).sum(1) / (np.linalg.norm(reference, axis=1)
                                        * np.linalg.norm(ours, axis=1))
    return float(np.abs(reference - ours).max()), float(cos.mean()), float(cos.min())


def _check_against_ct2(ref: str, speech: list[np.ndarray], n_layers: int, dim: int) -> None:
    encoder = WhisperTorchEncoder.load(ref)
    assert (encoder.config.n_layers, encoder.dim) == (n_layers, dim)
    ours = encoder.encode_batch(speech)
    ct2_f32 = WhisperEncoder(load_whisper(ref, compute_type="float32", cpu_threads=1))
    ct2_int8 = WhisperEncoder(load_whisper(ref, cpu_threads=1))  # the default compute_type
    for audio, encoding in zip(speech, ours, strict=True):
        states = encoding.hidden_states
        assert states.dtype == np.float32
        assert states.shape == (n_layers + 1, n_output_frames(len(audio)), dim)
        max_abs, cos_mean, cos_min = _compare(ct2_f32.encode(audio).frames, encoding.last)
        print(f"{ref} vs CT2 float32: max abs {max_abs:.1e}, cosine mean {cos_mean:.7f} "
              f"min {cos_min:.7f}")
        assert max_abs < 5e-3 and cos_min > 0.99999
        max_abs, cos_mean, cos_min = _compare(ct2_int8.encode(audio).frames, encoding.last)
        print(f"{ref} vs CT2 int8: max abs {max_abs:.2f}, cosine mean {cos_mean:.4f} "
              f"min {cos_min:.4f}")
        assert cos_mean > 0.9  # int8 activations are coarse (base has outlier frames)


def test_tiny_en_matches_ctranslate2(speech: list[np.ndarray]) -> None:
    _check_against_ct2("packaged:tiny.en", speech, n_layers=4, dim=384)


def test_multilingual_base_matches_ctranslate2(speech: list[np.ndarray]) -> None:
    # The packaged multilingual base (the dev extra installs it), or another directory.
    base = os.environ.get("EMOTION_STREAM_WHISPER_BASE", "packaged:base")
    _check_against_ct2(base, speech, n_layers=6, dim=512)


def test_batch_matches_single_and_short_audio(speech: list[np.ndarray]) -> None:
    encoder = WhisperTorchEncoder.load("packaged:tiny.en")
    short = np.zeros(500, dtype=np.float32)
    batch = encoder.encode_batch([speech[0], short, speech[1]], batch_size=2)
    assert batch[1].hidden_states.shape == (5, 2, 384)
    np.testing.assert_allclose(encoder.encode(speech[1]).hidden_states,
                               batch[2].hidden_states, atol=1e-4)


def test_fit_window_is_the_utterance_length_in_whole_seconds(speech: list[np.ndarray]) -> None:
    """window_s None ("fit"): each utterance in a window of its own length rounded up to whole
    seconds, batched per width; the frames are the utterance's, close to the 10 s window's."""
    encoder = WhisperTorchEncoder.load("packaged:tiny.en")
    assert window_seconds("fit") is None and window_seconds("full") == 10.0
    mel = encoder.feature_extractor(speech[0])
    assert _padded(mel, None).shape[2] == -(-mel.shape[1] // 100) * 100 < 1000
    assert _padded(mel[:, :20], None).shape[2] == 100  # at least one second
    fit = encoder.encode_batch([speech[0], speech[1][:8000]], window_s=None)
    assert fit[1].hidden_states.shape == (5, n_output_frames(8000), 384)
    np.testing.assert_allclose(encoder.encode(speech[0], None).hidden_states,
                               fit[0].hidden_states, atol=1e-4)
    full = encoder.encode(speech[0])
    _, cos_mean, _ = _compare(full.last, fit[0].last)
    assert fit[0].last.shape == full.last.shape and cos_mean > 0.8
    assert not np.allclose(full.last, fit[0].last, atol=1e-3)  # a different window, truly


def _write_model_bin(path: Path, variables: dict[str, np.ndarray],
                     aliases: dict[str, str]) -> None:
    """A model.bin in CTranslate2's binary version 6 layout (ModelSpec._serialize)."""
    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    with open(path, "wb") as f:
        f.write(struct.pack("<I", 6) + string("WhisperSpec"))
        f.write(struct.pack("<II", 3, len(variables)))  # spec revision, variable count
        for name, v in variables.items():
            f.write(string(name) + struct.pack(f"<B{v.ndim}I", v.ndim, *v.shape))
            f.write(struct.pack("<BI", _CT2_DTYPES.index(v.dtype.name), v.nbytes) + v.tobytes())
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            f.write(string(alias) + string(target))


def test_int8_weights_load_as_ctranslate2_dequantises_them(
        speech: list[np.ndarray], tmp_path: Path) -> None:
    """tiny.en with its encoder weights quantised as the CT2 converter does (int8, one scale per
    output row): CTranslate2 in float32 and this loader must agree on the result."""
    source = Path(resolve_whisper("packaged:tiny.en"))
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(source / name, tmp_path / name)
    variables: dict[str, np.ndarray] = {}
    for name, value in read_ct2_variables(source / "model.bin", prefix="").items():
        if name.startswith("encoder/") and name.endswith("weight") and value.ndim >= 2:
            rows = value.astype(np.float32).reshape(value.shape[0], -1)
            scale = (127.0 / np.abs(rows).max(axis=1)).astype(np.float32)  # ModelSpec._quantize
            variables[name] = np.rint(rows * scale[:, None]).astype(np.int8).reshape(value.shape)
            variables[name + "_scale"] = scale
        else:
            variables[name] = value
    _write_model_bin(tmp_path / "model.bin", variables,
                     {"decoder/projection/weight": "decoder/embeddings/weight"})
    ours = WhisperTorchEncoder.load(str(tmp_path)).encode(speech[0]).last
    ct2 = WhisperEncoder(load_whisper(str(tmp_path), compute_type="float32", cpu_threads=1))
    max_abs, _, cos_min = _compare(ct2.encode(speech[0]).frames, ours)
    assert max_abs < 5e-3 and cos_min > 0.99999


def _model_bin(path: Path, version: int = 6, spec: str = "WhisperSpec") -> Path:
    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    path.mkdir(parents=True, exist_ok=True)
    data = struct.pack("<I", version) + string(spec) + struct.pack("<II", 3, 1)
    data += string("encoder/num_heads") + struct.pack("<BBI", 0, 2, 2) + struct.pack("<h", 6)
    (path / "model.bin").write_bytes(data + struct.pack("<I", 0))
    return path


def test_layouts_that_are_not_understood_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="binary version 9"):
        load_whisper_torch(str(_model_bin(tmp_path / "v9", version=9)))
    with pytest.raises(ModelFileError, match="'TransformerSpec' model; expected 'WhisperSpec'"):
        load_whisper_torch(str(_model_bin(tmp_path / "mt", spec="TransformerSpec")))
    with pytest.raises(ModelFileError, match="lacks Whisper encoder variables"):
        load_whisper_torch(str(_model_bin(tmp_path / "empty")))
    truncated = _model_bin(tmp_path / "cut") / "model.bin"
    truncated.write_bytes(truncated.read_bytes()[:30])
    with pytest.raises(ModelFileError, match="cut/model.bin"):
        load_whisper_torch(str(truncated.parent))
    with pytest.raises(ModelFileError, match="no local model.bin"):
        load_whisper_torch(str(tmp_path / "nothing-here"))


def test_layer_mask_keeps_padding_out_of_attention() -> None:
    # Fine-tuning a layer on padded batches (bench/experiments/partial_finetune.py) passes a
    # mask: a short item's frames must come out as if it were alone.
    import torch

    from models.encoders.whisper_torch import _Layer

    torch.manual_seed(0)
    layer = _Layer(dim=8, n_heads=2).eval()
    x = torch.randn(2, 7, 8)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    with torch.no_grad():
        padded, alone = layer(x, mask), layer(x[1:, :4])
        torch.testing.assert_close(padded[1, :4], alone[0])
        torch.testing.assert_close(layer(x), layer(x, torch.ones(2, 7, dtype=torch.bool)))


def test_int8_layers_stay_close_to_float32_on_speech(speech: list[np.ndarray]) -> None:
    # emotion.audio_int8: the linear layers on int8 weights; each layer's mean over time
    # (what the default head pools) stays within a few percent of float32's.
    full = WhisperTorchEncoder.load("packaged:tiny.en")
    int8 = WhisperTorchEncoder.load("packaged:tiny.en", int8=True)
    assert any("quantized" in type(m).__module__ for m in int8.module.modules())
    for clip in speech:
        a = full.encode(clip, window_s=None).hidden_states.mean(axis=1)  # (L + 1, D)
        b = int8.encode(clip, window_s=None).hidden_states.mean(axis=1)
        assert a.shape == b.shape
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cos[0] > 0.9999  # the input to the layers: convolutions stay float32
        assert cos.min() > 0.95, cos


def test_int8_is_refused_off_the_cpu() -> None:
    with pytest.raises(ModelError, match="CPU only"):
        WhisperTorchEncoder.load("packaged:tiny.en", device="cuda", int8=True)
