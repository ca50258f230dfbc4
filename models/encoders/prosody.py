"""Cheap prosody features: log-mel, pitch and energy frames, and their statistics.

For CPU-only deployments (``prosody`` as the bundle's audio encoder) and as
the handcrafted branch of cm_roberta (``functionals``). Pure torch, no model
files. Frames: 25 ms windows every 20 ms (50 per second, like the other
audio encoders); frame t covers samples [320 t, 320 t + 400).

Per frame (``ProsodyEncoder``, FRAME_DIM = N_MELS + 3):
  log-mel energies (N_MELS), log energy, pitch in Hz (0 when unvoiced),
  voicing strength (normalised autocorrelation peak, 0..1).
Per utterance (``functionals``, FUNCTIONALS_DIM = 2 N_MELS + 20):
  mean and std of each log-mel band; mean, std, min, max, 10/50/90th
  percentiles and slope (per second) of log energy and of pitch over voiced
  frames; mean and std of voicing; voiced fraction; duration in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from models.audio import FRAMES_PER_SECOND, SAMPLE_RATE, SAMPLES_PER_FRAME
from models.encoders import AudioFeatures

HOP = SAMPLES_PER_FRAME  # 20 ms: one frame per encoder frame of the other encoders
WINDOW = 400  # 25 ms
N_FFT = 512
N_MELS = 40
PITCH_WINDOW = 800  # 50 ms: two periods of a 40 Hz voice
MIN_F0, MAX_F0 = 60.0, 400.0
VOICING_THRESHOLD = 0.45
FRAME_DIM = N_MELS + 3
FUNCTIONALS_DIM = 2 * N_MELS + 20


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                   f_min: float = 0.0, f_max: float | None = None) -> Tensor:
    """Triangular HTK-mel filters, (n_mels, n_fft // 2 + 1)."""
    f_max = sample_rate / 2 if f_max is None else f_max

    def hz_to_mel(f: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m: Tensor) -> Tensor:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    mels = torch.linspace(float(hz_to_mel(torch.tensor(f_min))),
                          float(hz_to_mel(torch.tensor(f_max))), n_mels + 2)
    hz = mel_to_hz(mels)  # (n_mels + 2,)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)  # (F,)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)  # (n_mels, F)


def _frames(audio: Tensor, n_frames: int, width: int, offset: int) -> Tensor:
    """Windows of ``width`` samples starting at HOP * t + offset (zero padded). -> (T, width)."""
    left = max(0, -offset)
    needed = HOP * (n_frames - 1) + offset + left + width
    padded = torch.nn.functional.pad(audio, (left, max(0, needed - audio.shape[0] - left)))
    start = offset + left
    return padded[start:].unfold(0, width, HOP)[:n_frames]


def n_frames_for(n_samples: int) -> int:
    return max(1, math.ceil(n_samples / HOP))


class ProsodyEncoder:
    """Frame-level prosody features (50 frames per second)."""

    kind = "prosody"
    dim = FRAME_DIM
    num_layers = 1

    def __init__(self) -> None:
        self.window = torch.hann_window(WINDOW)
        self.mel = mel_filterbank()

    def frames(self, audio: np.ndarray) -> Tensor:
        """(N,) float32 16 kHz -> (T, FRAME_DIM)."""
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        if x.ndim != 1:
            raise ValueError(f"audio must be 1-D mono samples, got shape {tuple(x.shape)}")
        t = n_frames_for(x.shape[0])
        windows = _frames(x, t, WINDOW, 0) * self.window  # (T, 400)
        power = torch.fft.rfft(windows, n=N_FFT).abs() ** 2  # (T, 257)
        log_mel = torch.log(power @ self.mel.T + 1e-8)  # (T, n_mels)
        log_energy = torch.log((windows**2).mean(dim=1) + 1e-8)  # (T,)
        pitch, voicing = self._pitch(x, t)  # (T,), (T,)
        return torch.cat([log_mel, log_energy[:, None], pitch[:, None], voicing[:, None]], dim=1)

    def _pitch(self, x: Tensor, n_frames: int) -> tuple[Tensor, Tensor]:
        """Autocorrelation pitch. -> f0 in Hz (0 if unvoiced) (T,), voicing 0..1 (T,)."""
        centre_offset = WINDOW // 2 - PITCH_WINDOW // 2  # centre the long window on the frame
        windows = _frames(x, n_frames, PITCH_WINDOW, centre_offset)  # (T, 800)
        windows = windows - windows.mean(dim=1, keepdim=True)
        spectrum = torch.fft.rfft(windows, n=2 * PITCH_WINDOW)
        autocorr = torch.fft.irfft(spectrum.abs() ** 2)[:, :PITCH_WINDOW]  # (T, 800)
        min_lag, max_lag = int(SAMPLE_RATE / MAX_F0), int(SAMPLE_RATE / MIN_F0)
        # unbiased: divide by the number of overlapping samples at each lag
        overlap = torch.arange(PITCH_WINDOW, 0, -1, dtype=autocorr.dtype)
        normalised = (autocorr / overlap) / (autocorr[:, :1] / PITCH_WINDOW + 1e-10)
        search = normalised[:, min_lag:max_lag + 1]  # (T, lags)
        peak = search.max(dim=1).values  # (T,)
        # first local maximum close to the best one: avoids picking a multiple of the period
        padded = torch.nn.functional.pad(search, (1, 1), value=float("-inf"))
        local_max = (search >= padded[:, :-2]) & (search >= padded[:, 2:])
        candidate = local_max & (search >= 0.9 * peak[:, None])
        lag = candidate.float().argmax(dim=1)  # (T,)
        voicing = peak.clamp(0.0, 1.0)
        f0 = SAMPLE_RATE / (lag + min_lag).float()
        return torch.where(voicing >= VOICING_THRESHOLD, f0, torch.zeros_like(f0)), voicing

    def encode_items(self, audios: Sequence[np.ndarray], layers: bool = False
                     ) -> list[AudioFeatures]:
        """One AudioFeatures per utterance; ``layers`` gives the frames as a single layer."""
        out = []
        for audio in audios:
            frames = self.frames(audio)
            out.append(AudioFeatures(frames=frames, layers=frames[None] if layers else None))
        return out


def _stats(values: Tensor, frame_rate: float) -> Tensor:
    """mean, std, min, max, p10, p50, p90, slope per second of a 1-D series (zeros if empty)."""
    if values.numel() == 0:
        return torch.zeros(8)
    quantiles = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9]))
    if values.numel() > 1:
        t = torch.arange(values.numel(), dtype=values.dtype) / frame_rate
        t = t - t.mean()
        slope = (t * (values - values.mean())).sum() / (t**2).sum()
    else:
        slope = torch.tensor(0.0)
    return torch.cat([
        torch.stack([values.mean(), values.std(unbiased=False), values.min(), values.max()]),
        quantiles, slope.reshape(1),
    ])


def functionals(audio: np.ndarray, encoder: ProsodyEncoder | None = None) -> Tensor:
    """Utterance-level prosody statistics, (FUNCTIONALS_DIM,) float32."""
    encoder = ProsodyEncoder() if encoder is None else encoder
    frames = encoder.frames(audio)  # (T, FRAME_DIM)
    log_mel = frames[:, :N_MELS]
    log_energy, pitch, voicing = frames[:, N_MELS], frames[:, N_MELS + 1], frames[:, N_MELS + 2]
    voiced = pitch > 0
    return torch.cat([
        log_mel.mean(dim=0), log_mel.std(dim=0, unbiased=False),
        _stats(log_energy, FRAMES_PER_SECOND),
        _stats(pitch[voiced], FRAMES_PER_SECOND),
        torch.stack([voicing.mean(), voicing.std(unbiased=False)]),
        torch.tensor([voiced.float().mean().item(), len(audio) / SAMPLE_RATE]),
    ]).float()
