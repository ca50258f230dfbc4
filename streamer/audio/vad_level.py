"""A gain for what the VAD hears, so that quiet streams are not lost below its energy floor.

webrtcvad calls a frame unvoiced when its energy is under a fixed floor, whatever the
speech in it: a recording 20 dB quieter than RAVDESS loses whole turns and the soft ends of
others (docs/performance.md, "Quiet speech"). ``VadLevel`` raises the frames the VAD sees
(never the audio the models get) so that the loudest frame of the last ``window_s``
reaches ``target_dbfs``, by at most ``max_gain_db``; a stream that is already that loud
gets no gain, so it is segmented exactly as without this. Sans-I/O and deterministic:
the gain of a frame depends only on the samples so far, so live equals offline.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from streamer.audio.speech_gate import rms_dbfs

SILENT_DBFS = -120.0  # the level of a frame of digital silence
MIN_RANGE_DB = 15.0  # speech stands this far above the noise floor; steady noise does not
NOISE_PERCENTILE = 10  # of the window's (non-silent) frame levels: its noise floor


def frame_dbfs(frame: np.ndarray) -> float:
    """The gate's RMS level of ``frame`` (DC removed), at least SILENT_DBFS."""
    if len(frame) == 0:
        return SILENT_DBFS
    return max(SILENT_DBFS, rms_dbfs(frame.astype(np.float64) - float(np.mean(frame))))


class VadLevel:
    """The gain for each frame the VAD classifies (call ``gain`` once per frame, in order)."""

    def __init__(self, target_dbfs: float, max_gain_db: float, window_frames: int,
                 min_range_db: float = MIN_RANGE_DB) -> None:
        if max_gain_db < 0 or window_frames < 1:
            raise ValueError("max_gain_db must be >= 0 and window_frames >= 1")
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        self.min_range_db = min_range_db
        self._levels: deque[float] = deque(maxlen=window_frames)

    def gain(self, frame: np.ndarray) -> float:
        """The linear gain for ``frame``: the loudest frame of the window, this one
        included, raised to the target, within [0, max_gain_db] dB; none while the window
        holds only steady noise (its loudest frame less than ``min_range_db`` above its
        noise floor), so background noise before anyone speaks is never raised."""
        self._levels.append(frame_dbfs(frame))
        heard = [level for level in self._levels if level > SILENT_DBFS]
        if not heard:
            return 1.0
        loudest = max(heard)
        if loudest - float(np.percentile(heard, NOISE_PERCENTILE)) < self.min_range_db:
            return 1.0
        gain_db = min(self.max_gain_db, max(0.0, self.target_dbfs - loudest))
        return float(10.0 ** (gain_db / 20.0))


__all__ = ["VadLevel", "frame_dbfs"]
