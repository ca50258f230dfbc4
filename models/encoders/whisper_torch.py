"""Whisper encoder in PyTorch, loaded from a CTranslate2 (faster-whisper) model.bin.

CTranslate2 returns only the last encoder layer; this module reads the same packaged weights
into a plain PyTorch encoder so that every layer's hidden states are available (SUPERB-style
layer weighting, partial fine-tuning, GPU batching). Inputs are the log-mel features
faster-whisper computes, padded to the window ``models.encoders.whisper`` uses, so the last
layer matches ``WhisperEncoder.encode(audio).frames`` (tests/models/test_whisper_torch.py).

model.bin layout (CTranslate2 ``ModelSpec._serialize``, binary version 4 to 6), little endian:
  u32 binary_version; str spec_name; u32 spec_revision; u32 n_variables;
  n_variables x (str name; u8 rank; rank x u32 dim; u8 dtype_id; u32 n_bytes; bytes);
  u32 n_aliases; n_aliases x (str alias; str target)
where str is u16 length (including a trailing NUL) followed by the bytes.
"""

from __future__ import annotations

import math
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.encoders.whisper import DEFAULT_WINDOW_S, _padded, n_output_frames
from models.errors import ModelError, ModelFileError
from models.paths import resolve_whisper

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_SUPPORTED_BINARY_VERSIONS = (4, 5, 6)  # dtype ids and aliases are in the file from version 4
_LAYER_KEY = re.compile(r"^encoder/layer_(\d+)/")


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Shape of a Whisper encoder, read from the weights themselves."""

    n_mels: int
    dim: int
    n_heads: int
    n_layers: int
    n_positions: int  # encoder frames of the 30 s window (1500)


@dataclass(frozen=True)
class LayerEncoding:
    """All hidden states of one utterance."""

    # (L + 1, T, D) float32: [0] conv + positions, [i] output of layer i for i < L,
    # [L] final layer norm of layer L's output (= CTranslate2's encoder output).
    hidden_states: np.ndarray

    @property
    def last(self) -> np.ndarray:
        return self.hidden_states[-1]


# --- model.bin reader -------------------------------------------------------------------------


def _read(f: BinaryIO, fmt: str, path: Path) -> int:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ModelFileError(f"'{path}' ends early: not a complete CTranslate2 model.bin")
    return int(struct.unpack("<" + fmt, data)[0])


def _read_string(f: BinaryIO, path: Path) -> str:
    length = _read(f, "H", path)
    data = f.read(length)
    if len(data) != length or not data.endswith(b"\0"):
        raise ModelFileError(f"'{path}': a name is not NUL-terminated; layout not understood")
    return data[:-1].decode("utf-8")


def _decode(raw: bytes, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype_name == "bfloat16":  # numpy has no bfloat16: widen the top 16 bits of float32
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(dtype_name).newbyteorder("<")).reshape(shape)


def read_ct2_variables(model_bin: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 model.bin whose names start with ``prefix`` (others are
    skipped without being read), as stored (float16, int8, ...)."""
    path = Path(model_bin)
    if not path.is_file():
        raise ModelFileError(f"'{path}' not found: expected a CTranslate2 model.bin")
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        version = _read(f, "I", path)
        if version not in _SUPPORTED_BINARY_VERSIONS:
            raise ModelFileError(
                f"'{path}' has CTranslate2 binary version {version}; this reader understands "
                f"versions {', '.join(map(str, _SUPPORTED_BINARY_VERSIONS))}"
            )
        spec = _read_string(f, path)
        if spec != "WhisperSpec":
            raise ModelFileError(f"'{path}' holds a '{spec}' model; expected 'WhisperSpec'")
        _read(f, "I", path)  # spec revision: the encoder variables are the same in 1 to 3
        for _ in range(_read(f, "I", path)):
            name = _read_string(f, path)
            shape = tuple(_read(f, "I", path) for _ in range(_read(f, "B", path)))
            type_id = _read(f, "B", path)
            n_bytes = _read(f, "I", path)
            if type_id >= len(_CT2_DTYPES):
                raise ModelFileError(f"'{path}': variable '{name}' has unknown dtype id {type_id}")
            if not name.startswith(prefix):
                f.seek(n_bytes, 1)
                continue
            dtype_name = _CT2_DTYPES[type_id]
            expected = math.prod(shape) * (2 if dtype_name == "bfloat16"
                                           else np.dtype(dtype_name).itemsize)
            if n_bytes != expected:
                raise ModelFileError(
                    f"'{path}': variable '{name}' of shape {shape} {dtype_name} has {n_bytes} "
                    f"bytes, expected {expected}; layout not understood"
                )
            raw = f.read(n_bytes)
            if len(raw) != n_bytes:
                raise ModelFileError(f"'{path}' ends inside variable '{name}'")
            out[name] = _decode(raw, dtype_name, shape)
    return out


def _float_weights(raw: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """float32 copies; int8/int16 weights are dequantised with their ``weight_scale``
    (CTranslate2 stores ``round(w * scale)``, one scale per output row for int8)."""
    out: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if name.endswith("weight_scale"):
            continue
        if value.dtype in (np.int8, np.int16) and name.endswith("weight"):
            scale = raw.get(name + "_scale")
            if scale is None:
                raise ModelFileError(f"'{path}': quantised '{name}' has no '{name}_scale'")
            scale = scale.astype(np.float32)
            if scale.ndim == 1:
                scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            out[name] = value.astype(np.float32) / scale
        else:
            out[name] = value.astype(np.float32)
    return out


# --- PyTorch encoder --------------------------------------------------------------------------


class _Layer(nn.Module):
    """Pre-LN transformer layer, as CTranslate2's TransformerEncoderLayer with pre_norm."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # CT2 fuses q, k, v; k has no bias (zeros stored)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn_in = nn.Linear(dim, 4 * dim)
        self.ffn_out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) -> (B, T, D). ``mask`` (B, T), True at real frames, keeps padding out of
        the attention (fine-tuning on padded batches); the encoder's window needs none."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])
        x = x + self.out(attended.transpose(1, 2).reshape(b, t, d))
        return x + self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x))))


class WhisperTorchModule(nn.Module):
    """Whisper encoder: two convolutions with GELU, sinusoidal positions, pre-LN layers and a
    final layer norm. ``forward`` returns every hidden state."""

    positions: torch.Tensor  # (n_positions, D) sinusoids, stored in model.bin

    def __init__(self, config: WhisperEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.conv1 = nn.Conv1d(config.n_mels, config.dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.dim, config.dim, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(config.n_positions, config.dim))
        self.layers = nn.ModuleList(_Layer(config.dim, config.n_heads)
                                    for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, W) log-mel -> (L + 1, B, W // 2, D) hidden states."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        if x.shape[1] > self.config.n_positions:
            raise ValueError(f"{mel.shape[2]} mel frames exceed Whisper's window "
                             f"({2 * self.config.n_positions})")
        # A shorter window takes the first positions, as CTranslate2 does.
        x = x + self.positions[: x.shape[1]]
        states = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            states.append(self.norm(x) if i == len(self.layers) - 1 else x)
        return torch.stack(states)


def _config_from(weights: dict[str, np.ndarray], path: Path) -> WhisperEncoderConfig:
    required = ("encoder/conv1/weight", "encoder/position_encodings/encodings",
                "encoder/num_heads", "encoder/layer_norm/gamma")
    missing = [name for name in required if name not in weights]
    if missing:
        raise ModelFileError(f"'{path}' lacks Whisper encoder variables {missing}")
    layers = {int(m.group(1)) for name in weights if (m := _LAYER_KEY.match(name))}
    if layers != set(range(len(layers))) or not layers:
        raise ModelFileError(f"'{path}': encoder layers {sorted(layers)} are not 0..N-1")
    dim, n_mels, _ = weights["encoder/conv1/weight"].shape
    return WhisperEncoderConfig(
        n_mels=int(n_mels), dim=int(dim), n_heads=int(weights["encoder/num_heads"]),
        n_layers=len(layers),
        n_positions=int(weights["encoder/position_encodings/encodings"].shape[0]),
    )


def _state_dict(weights: dict[str, np.ndarray], config: WhisperEncoderConfig,
                path: Path) -> dict[str, torch.Tensor]:
    names = {"conv1.weight": "encoder/conv1/weight", "conv1.bias": "encoder/conv1/bias",
             "conv2.weight": "encoder/conv2/weight", "conv2.bias": "encoder/conv2/bias",
             "positions": "encoder/position_encodings/encodings",
             "norm.weight": "encoder/layer_norm/gamma", "norm.bias": "encoder/layer_norm/beta"}
    per_layer = {"attn_norm.weight": "self_attention/layer_norm/gamma",
                 "attn_norm.bias": "self_attention/layer_norm/beta",
                 "qkv.weight": "self_attention/linear_0/weight",
                 "qkv.bias": "self_attention/linear_0/bias",
                 "out.weight": "self_attention/linear_1/weight",
                 "out.bias": "self_attention/linear_1/bias",
                 "ffn_norm.weight": "ffn/layer_norm/gamma", "ffn_norm.bias": "ffn/layer_norm/beta",
                 "ffn_in.weight": "ffn/linear_0/weight", "ffn_in.bias": "ffn/linear_0/bias",
                 "ffn_out.weight": "ffn/linear_1/weight", "ffn_out.bias": "ffn/linear_1/bias"}
    for i in range(config.n_layers):
        names.update({f"layers.{i}.{ours}": f"encoder/layer_{i}/{theirs}"
                      for ours, theirs in per_layer.items()})
    missing = [theirs for theirs in names.values() if theirs not in weights]
    if missing:
        raise ModelFileError(f"'{path}' lacks Whisper encoder variables {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}")
    return {ours: torch.from_numpy(np.ascontiguousarray(weights[theirs]))
            for ours, theirs in names.items()}


def load_whisper_torch(ref: str, device: str = "cpu",
                       dtype: torch.dtype = torch.float32) -> WhisperTorchModule:
    """The encoder of a CTranslate2 Whisper model (a reference as in models.paths, or a
    directory with model.bin), in eval mode on ``device``."""
    path = Path(resolve_whisper(ref)) / "model.bin"
    if not path.is_file():
        raise ModelFileError(f"Whisper reference '{ref}' has no local model.bin at '{path}'; "
                             "expected a CTranslate2 model directory")
    weights = _float_weights(read_ct2_variables(path), path)
    config = _config_from(weights, path)
    module = WhisperTorchModule(config)
    state = _state_dict(weights, config, path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shapes disagree with what the spec implies
        raise ModelFileError(f"'{path}': encoder weights do not fit {config}: {exc}") from exc
    return module.to(device=device, dtype=dtype).eval()


def quantize_int8(module: WhisperTorchModule) -> WhisperTorchModule:
    """``module`` (on the CPU) with int8 linear layers (dynamic quantisation, weights per
    output channel: closer to float32 than per tensor, at the same cost)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # torch.ao's eager quantisation warns that it moves to the torchao package in a later
    # release; torch is pinned (2.13), so the warning would only repeat at every start.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantiz", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*quantiz", category=DeprecationWarning)
        quantised = quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig},
                                     dtype=torch.qint8)
    assert isinstance(quantised, WhisperTorchModule)
    return quantised


class WhisperTorchEncoder:
    """All-layer Whisper features, with the input pipeline of models.encoders.whisper."""

    kind = "whisper_torch"

    def __init__(self, module: WhisperTorchModule, device: str = "cpu") -> None:
        from faster_whisper.feature_extractor import FeatureExtractor

        self.module = module
        self.device = device
        self.config = module.config
        self.dim = module.config.dim
        # Hidden states incl. the conv + positions input, as the other encoders count layers.
        self.num_layers = module.config.n_layers + 1
        # faster-whisper's default extractor, sized to the model (80 mels; 128 for large-v3).
        self.feature_extractor = FeatureExtractor(feature_size=module.config.n_mels)

    @classmethod
    def load(cls, ref: str, device: str = "cpu", dtype: torch.dtype = torch.float32,
             int8: bool = False) -> WhisperTorchEncoder:
        """``int8``: the linear layers (nearly all of the encoder's multiply-adds) run on
        int8 weights, quantised per output channel, activations per call (PyTorch's dynamic
        quantisation; CPU only). 0.4x the CPU time; the default bundle keeps 94 % of its
        labels on held-out speakers, at the same UA (bench/experiments/audio_int8.py)."""
        if int8 and device != "cpu":
            raise ModelError(f"int8 Whisper layers run on the CPU only, not on '{device}'; "
                             "leave int8 off on a GPU (it has float16)")
        module = load_whisper_torch(ref, device=device, dtype=dtype)
        return cls(quantize_int8(module) if int8 else module, device=device)

    def encode(self, audio: np.ndarray, window_s: float | None = DEFAULT_WINDOW_S
               ) -> LayerEncoding:
        """Hidden states of ``audio`` (16 kHz float32, at most 30 s); ``window_s`` None: a
        window of the audio's own length in whole seconds (``window_seconds("fit")``)."""
        return self.encode_batch([audio], window_s=window_s)[0]

    @torch.inference_mode()
    def encode_batch(self, audios: list[np.ndarray], window_s: float | None = DEFAULT_WINDOW_S,
                     batch_size: int = 16) -> list[LayerEncoding]:
        """Hidden states for several utterances; one forward per window length and batch."""
        padded = [_padded(self.feature_extractor(a), window_s)[0] for a in audios]
        out: list[LayerEncoding | None] = [None] * len(audios)
        dtype = next(self.module.parameters()).dtype
        for width in sorted({p.shape[1] for p in padded}):
            index = [i for i, p in enumerate(padded) if p.shape[1] == width]
            for start in range(0, len(index), batch_size):
                chunk = index[start: start + batch_size]
                mel = torch.from_numpy(np.stack([padded[i] for i in chunk]))
                states = self.module(mel.to(device=self.device, dtype=dtype))
                states = states.float().cpu().numpy()  # (L + 1, B, W // 2, D)
                for row, i in enumerate(chunk):
                    frames = n_output_frames(len(audios[i]))
                    out[i] = LayerEncoding(np.ascontiguousarray(states[:, row, :frames]))
        return [encoding for encoding in out if encoding is not None]
