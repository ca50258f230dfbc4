"""CAM++ (3D-Speaker, Apache-2.0): a speaker-embedding network, and its Kaldi fbank features.

The network is 3D-Speaker's own definition (``speakerlab/models/campplus``), rewritten here
so that only its weights are needed: a 2-D convolutional front (FCM) over 80 log-mel bands,
a strided TDNN layer, three densely connected TDNN blocks with context-aware masking (CAM),
statistics pooling (mean and standard deviation over time) and a dense layer to a 192-d
embedding, batch-normalised without affine parameters. No ReLU follows that last layer:
3D-Speaker has none; a wrapper that adds one throws away the negative half of every
dimension and separates speakers less well.

Features are Kaldi's fbank as ``torchaudio.compliance.kaldi.fbank`` computes it with
3D-Speaker's settings (80 bins, 16 kHz, no dither; defaults otherwise: 25 ms Povey windows,
10 ms hop, DC removal, pre-emphasis 0.97, 512-point power spectrum, mel bands from 20 Hz
to 8 kHz, log), then the mean over time subtracted. Written with torch here: torchaudio
has no build for this torch.

Served with onnxruntime (``CamPlusOnnx``): the torch network, once its weights are checked,
is exported to ONNX at load (a dynamic batch and time axis) and run on one thread: 0.51x
the CPU of torch's eager network on one thread over the speaker path's windows
(bench/speaker_cpu.py; docs/conversations.md):
torch runs CAM++'s 1-D convolutions through its im2col path one small op at a time, while
onnxruntime fuses each convolution with its batch norm and ReLU.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ModelFileError

SAMPLE_RATE = 16000
MEL_BINS = 80
EMBEDDING_DIM = 192
FRAME = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512  # the frame zero-padded to a power of two, as Kaldi does
PREEMPHASIS = 0.97
LOW_HZ = 20.0
# 3 frames: the strided TDNN then leaves 2, the fewest the (unbiased) std pooling needs
MIN_SAMPLES = FRAME + 2 * HOP


# ---- features ----------------------------------------------------------------------------

def _mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)


def mel_banks() -> torch.Tensor:
    """(80, 257) triangular filters over the power spectrum's bins, Kaldi's (no VTLN):
    triangles equally spaced on the mel scale, evaluated at each bin's mel frequency; the
    Nyquist bin gets no weight."""
    low, high = _mel(np.array(LOW_HZ)), _mel(np.array(SAMPLE_RATE / 2))
    delta = (high - low) / (MEL_BINS + 1)
    left = low + np.arange(MEL_BINS)[:, None] * delta
    centre, right = left + delta, left + 2 * delta
    mel = _mel(np.arange(FFT // 2) * SAMPLE_RATE / FFT)[None, :]
    up, down = (mel - left) / (centre - left), (right - mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return torch.from_numpy(np.pad(banks, ((0, 0), (0, 1))).astype(np.float32))


class Fbank:
    """Mean-normalised 80-d Kaldi fbank of 16 kHz mono audio (float, -1..1)."""

    def __init__(self) -> None:
        self._window = torch.hann_window(FRAME, periodic=False, dtype=torch.float64) \
            .pow(0.85).float()  # Kaldi's "povey" window
        self._banks = mel_banks()

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """(frames, 80); frames = 1 + (samples - 400) // 160 (Kaldi's snip_edges)."""
        if audio.ndim != 1 or len(audio) < FRAME:
            raise ValueError(f"fbank needs 1-D audio of >= {FRAME} samples, got "
                             f"{tuple(audio.shape)}")
        frames = audio.float().unfold(0, FRAME, HOP)
        frames = frames - frames.mean(dim=1, keepdim=True)
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)  # first sample repeated
        frames = (frames - PREEMPHASIS * previous) * self._window
        power = torch.fft.rfft(frames, n=FFT).abs().pow(2)
        eps = torch.tensor(torch.finfo(torch.float32).eps)
        feats = torch.maximum(power @ self._banks.T, eps).log()
        return feats - feats.mean(dim=0, keepdim=True)


# ---- the network -------------------------------------------------------------------------

def _bn_relu(channels: int) -> nn.Sequential:
    """3D-Speaker's "batchnorm-relu" (the module names are the checkpoint's keys)."""
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels),
                                     relu=nn.ReLU(inplace=True)))


class BasicResBlock(nn.Module):
    """A 2-D residual block; stride applies to frequency only (time keeps its resolution)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    """The front: 2-D convolutions over (frequency, time), frequency reduced 8x, then the
    channels and remaining bands flattened into 32 * 10 = 320 TDNN input channels."""

    def __init__(self, channels: int = 32, feat_dim: int = MEL_BINS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(BasicResBlock(channels, channels, 2),
                                    BasicResBlock(channels, channels, 1))
        self.layer2 = nn.Sequential(BasicResBlock(channels, channels, 2),
                                    BasicResBlock(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        return out.flatten(1, 2)  # (B, C * F, T)


class TDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                                padding=(kernel_size - 1) // 2, bias=False)
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """A TDNN convolution gated per channel and frame by context: the utterance mean plus
    the mean of the frame's 100-frame segment, through a small bottleneck and a sigmoid."""

    SEGMENT = 100

    def __init__(self, bn_channels: int, out_channels: int, kernel_size: int,
                 dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(bn_channels, out_channels, kernel_size,
                                      padding=(kernel_size - 1) // 2 * dilation,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // 2, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_channels // 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The context is one vector per segment, so the gate is computed per segment and
        # then spread over its frames: the same numbers as gating every frame's context,
        # with the bottleneck run on a column per segment instead of one per frame.
        segments = F.avg_pool1d(x, kernel_size=self.SEGMENT, stride=self.SEGMENT,
                                ceil_mode=True)  # the last segment may be shorter
        context = x.mean(-1, keepdim=True) + segments
        mask = torch.sigmoid(self.linear2(self.relu(self.linear1(context))))
        # nearest-neighbour upsampling by an integer factor repeats each column exactly;
        # it exports to one Resize where repeat_interleave gives a chain of Tile and
        # Reshape (5 % of onnxruntime's time on a 1 s window)
        mask = F.interpolate(mask, scale_factor=float(self.SEGMENT),
                             mode="nearest")[..., :x.shape[-1]]
        return self.linear_local(x) * mask


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bn_channels: int,
                 kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleList):
    """Densely connected: each layer's output is appended to its input's channels."""

    def __init__(self, layers: int, in_channels: int, growth: int, bn_channels: int,
                 kernel_size: int, dilation: int) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(f"tdnnd{i + 1}", CAMDenseTDNNLayer(
                in_channels + i * growth, growth, bn_channels, kernel_size, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # dim=1, not -1: the ONNX exporter resolves -1 against the input's rank
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=1)


class DenseLayer(nn.Module):
    """The embedding: a linear map of the pooled statistics, batch-normalised without
    affine parameters (3D-Speaker's "batchnorm_"), and no ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(
            batchnorm=nn.BatchNorm1d(out_channels, affine=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """(B, T, 80) fbank -> (B, 192) embedding (not normalised)."""

    BLOCKS = ((12, 3, 1), (24, 3, 2), (16, 3, 2))  # (layers, kernel size, dilation)

    def __init__(self, feat_dim: int = MEL_BINS, embedding_dim: int = EMBEDDING_DIM,
                 growth: int = 32, bn_size: int = 4, init_channels: int = 128) -> None:
        super().__init__()
        self.head = FCM(feat_dim=feat_dim)
        self.xvector = nn.Sequential(OrderedDict(
            tdnn=TDNNLayer(self.head.out_channels, init_channels, 5, stride=2)))
        channels = init_channels
        for i, (layers, kernel_size, dilation) in enumerate(self.BLOCKS, start=1):
            self.xvector.add_module(f"block{i}", CAMDenseTDNNBlock(
                layers, channels, growth, bn_size * growth, kernel_size, dilation))
            channels += layers * growth
            self.xvector.add_module(f"transit{i}", TransitLayer(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(channels))
        self.xvector.add_module("stats", StatsPool())
        self.xvector.add_module("dense", DenseLayer(channels * 2, embedding_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.xvector(self.head(feats.transpose(1, 2)))


def load_campplus(path: Path) -> CAMPPlus:
    """CAM++ in eval mode with the state dict saved at ``path``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or pickled code
        raise ModelFileError(f"'{path}' is not a CAM++ checkpoint (a torch state dict saved "
                             f"with torch.save): {exc}") from exc
    return campplus_from_state(state, path)


def campplus_from_state(state: object, path: Path) -> CAMPPlus:
    """CAM++ in eval mode with ``state`` (read from ``path``); every tensor must fit, no
    key may be missing or left over."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelFileError(f"'{path}' is not a CAM++ state dict (a dict of tensors, keys "
                             f"such as 'head.conv1.weight'); it holds a {type(state).__name__}")
    model = CAMPPlus()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing, unexpected or misshapen keys: not this network
        raise ModelFileError(f"'{path}' does not fit 3D-Speaker's CAM++ (80 mel bins, "
                             f"192-d embedding): {exc}") from exc
    return model.eval()


# ---- serving: the network in onnxruntime --------------------------------------------------

def export_onnx(model: CAMPPlus) -> bytes:
    """The network as ONNX bytes: (batch, frames, 80) fbank -> (batch, 192). Written to a
    temporary file (the exporter's typed target), read back and removed."""
    example = torch.zeros(1, 150, MEL_BINS)
    # the TorchScript exporter warns that it is deprecated (for torch.export's, which needs
    # onnxscript); it needs only the onnx package
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with tempfile.TemporaryDirectory(prefix="campplus-onnx-") as folder:
            path = Path(folder) / "campplus.onnx"
            torch.onnx.export(model, (example,), path, input_names=["feats"],
                              output_names=["embedding"], opset_version=17, dynamo=False,
                              dynamic_axes={"feats": {0: "batch", 1: "frames"}})
            return path.read_bytes()


# The convolutions kept in float32 by ``quantize_convs``: quantising the first (the FCM
# front end on the fbank) and the last ones moved the embeddings most (cosine to float32
# 0.98 with them, 0.99 without; docs/conversations.md).
FLOAT_CONVS_FIRST, FLOAT_CONVS_LAST = 6, 3


def quantize_convs(network: bytes, calibration: Sequence[np.ndarray]) -> bytes:
    """``network`` (``export_onnx``'s) with its convolutions on int8, static (QDQ): weights
    per output channel, activations uint8 with ranges calibrated on ``calibration``
    ((1, frames, 80) fbank windows of real speech); the first ``FLOAT_CONVS_FIRST`` and last
    ``FLOAT_CONVS_LAST`` convolutions and every other operator stay float32."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("quantize_convs needs calibration windows of real speech")
    windows = iter(calibration)

    class Windows(CalibrationDataReader):  # type: ignore[misc]
        def get_next(self) -> dict[str, np.ndarray] | None:
            window = next(windows, None)
            return None if window is None else {"feats": window.astype(np.float32)}

    with tempfile.TemporaryDirectory(prefix="campplus-int8-") as folder:
        plain, prepared, quantised = (Path(folder) / n for n in ("f.onnx", "p.onnx", "q.onnx"))
        plain.write_bytes(network)
        # the frame axis is dynamic: onnxruntime's symbolic shape inference cannot finish it
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
        quantize_static(str(prepared), str(quantised), Windows(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"],
                        nodes_to_exclude=convs[:FLOAT_CONVS_FIRST] + convs[-FLOAT_CONVS_LAST:])
        return quantised.read_bytes()


class CamPlusOnnx:
    """CAM++ in onnxruntime on one thread: ``(B, T, 80)`` fbank -> ``(B, 192)``, the torch
    network's numbers to about 1e-5 (equal-length windows batch exactly: it pools over
    each one's frames). With ``calibration`` (fbank windows of real speech) most of its
    convolutions run on int8 (``quantize_convs``): about 0.66x the time, embeddings within
    a cosine of about 0.97 of float32's."""

    def __init__(self, model: CAMPPlus, calibration: Sequence[np.ndarray] = ()) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # one thread: ~100 frames per call is too little work to split, and the fusion
        # model needs the other core
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        network = export_onnx(model)
        self.int8 = bool(calibration)
        if self.int8:
            network = quantize_convs(network, calibration)
        self._session: Any = ort.InferenceSession(network, options,
                                                  providers=["CPUExecutionProvider"])

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        return np.asarray(self._session.run(None, {"feats": feats})[0])
