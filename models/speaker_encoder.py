"""A speaker encoder whose weights ship in a PyPI package: Resemblyzer's GE2E d-vector.

Resemblyzer 0.1.4 (Apache-2.0) carries ``resemblyzer/pretrained.pt`` in its wheel: a 3-layer
LSTM (40 mel bands -> 256) and a linear layer, trained with the generalised end-to-end loss
on LibriSpeech, VoxCeleb 1 and 2. Only the weights are read: its own code imports an old
webrtcvad and a SciPy module that newer SciPy removed, so it is installed without its
dependencies (``pip install --no-deps resemblyzer==0.1.4``) and the network is rebuilt here
from its hyper-parameters. Mel features come from librosa with Resemblyzer's settings
(25 ms windows, 10 ms hop, 40 bands, power spectrum; not log), the same call it makes.

``embed(audio)`` gives an L2-normalised 256-d vector; the cosine of two is their similarity.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from models.audio import SAMPLE_RATE
from models.errors import ModelFileError

PACKAGED_SPEAKER = "packaged:resemblyzer"
PIP_HINT = "pip install 'emotion-stream[speakers]' && pip install --no-deps resemblyzer==0.1.4"
MEL_BANDS = 40
HOP = SAMPLE_RATE // 100  # 10 ms
WINDOW = SAMPLE_RATE * 25 // 1000  # 25 ms
PARTIAL_FRAMES = 160  # 1.6 s: the length the encoder was trained on
PARTIAL_STEP = 80  # a long stretch is embedded as half-overlapping 1.6 s partials, averaged
TARGET_DBFS = -30.0  # Resemblyzer raises quiet audio to this level (never lowers it)


def resolve_speaker_weights(ref: str) -> Path:
    """``packaged:resemblyzer`` (the weights in the Resemblyzer wheel) or a ``.pt`` file."""
    if ref == PACKAGED_SPEAKER:
        spec = importlib.util.find_spec("resemblyzer")  # located, not imported (see above)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(f"speaker encoder '{ref}' needs Resemblyzer's weights: "
                                 f"{PIP_HINT}")
        path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    else:
        path = Path(ref).expanduser()
    if not path.is_file():
        raise ModelFileError(f"speaker encoder weights '{path}' not found ({PIP_HINT}, or "
                             "give the path of a Resemblyzer-format .pt file)")
    return path


class SpeakerEncoder:
    """Resemblyzer's network on CPU, one thread: about 16 ms per 1-second window here."""

    def __init__(self, ref: str = PACKAGED_SPEAKER) -> None:
        import torch

        try:
            import librosa  # noqa: F401  (checked here: a clear error, not one at the first call)
        except ImportError as exc:
            raise ModelFileError(f"the speaker encoder needs librosa: {PIP_HINT}") from exc
        path = resolve_speaker_weights(ref)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            state = checkpoint["model_state"]
        except Exception as exc:  # a corrupt or foreign file: say which and what is expected
            raise ModelFileError(f"'{path}' is not a Resemblyzer checkpoint (a dict with "
                                 f"'model_state'): {exc}") from exc
        self._lstm = torch.nn.LSTM(MEL_BANDS, 256, 3, batch_first=True)
        self._linear = torch.nn.Linear(256, 256)
        self._lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[7:]: v for k, v in state.items()
                                      if k.startswith("linear.")})
        self._lstm.eval()
        self._torch = torch

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 40) mel power spectrogram with Resemblyzer's volume normalisation."""
        import librosa

        wav = np.nan_to_num(audio.astype(np.float32, copy=False))
        rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0
        if rms > 0:
            gain = 10 ** ((TARGET_DBFS - 20 * np.log10(rms)) / 20)
            wav = wav * np.float32(max(gain, 1.0))
        frames = librosa.feature.melspectrogram(y=wav, sr=SAMPLE_RATE, n_fft=WINDOW,
                                                hop_length=HOP, n_mels=MEL_BANDS)
        return frames.astype(np.float32).T

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """L2-normalised embedding of 16 kHz mono audio (any length >= 25 ms)."""
        if len(audio) < WINDOW:
            raise ValueError(f"speaker embedding needs >= {WINDOW} samples, got {len(audio)}")
        mel = self.mel(audio)
        n = len(mel)
        starts = list(range(0, max(1, n - PARTIAL_FRAMES + 1), PARTIAL_STEP))
        if n > PARTIAL_FRAMES and starts[-1] + PARTIAL_FRAMES < n:
            starts.append(n - PARTIAL_FRAMES)  # the last partial ends with the audio
        batch = np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts])
        torch = self._torch
        # A small LSTM over ~100 steps: on 2 threads it is 2-3x slower than on one (thread
        # hand-offs at every step). The count is per calling thread, so it is set and
        # restored around the call and the fusion model's threads are left as they are.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                _, (hidden, _) = self._lstm(torch.from_numpy(batch))
                partial = torch.relu(self._linear(hidden[-1]))
                partial = partial / partial.norm(dim=1, keepdim=True).clamp_min(1e-9)
        finally:
            torch.set_num_threads(threads)
        mean = partial.mean(0).numpy()
        return mean / max(float(np.linalg.norm(mean)), 1e-9)
