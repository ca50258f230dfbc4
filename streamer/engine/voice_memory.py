"""The voices a channel has heard so far, to tell two windows' speakers apart (sans-I/O).

A change decision compares two short windows (about 1 s each). Two voices of the same sex
are often about as close, window to window, as one voice in two moods, so a fixed
threshold on their cosine misses many changes (docs/conversations.md). After a few turns
the channel has heard both voices for many seconds, and their means are far more reliable
than any one window. ``VoiceMemory`` keeps those means: an online clustering of the
change detector's own window embeddings (each joins the nearest voice whose mean it is at
least ``threshold`` close to, else starts a new one, up to ``max_voices``). Its
``evidence`` for two windows is how far apart they lie along the line between two known
voices: near 0 when both sit on the same side (one voice), up to about the distance
between the voices when they sit on opposite sides (a change). The change detector
subtracts it from the windows' cosine (``streamer.engine.speakers.SpeakerChange``).

Until two voices have ``min_windows`` windows each the evidence is 0, so the first turns
of a call are decided on the cosine alone, as without the memory. Only windows the
segmenter itself embeds are added, in the order it embeds them, so the same audio gives
the same decisions at any pace (live equals offline). Memory is bounded: a sum and a count
per voice.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def unit_means(sums: Sequence[np.ndarray]) -> np.ndarray:
    """The L2-normalised means of running sums of embeddings, one row each."""
    stacked = np.stack(sums)
    return stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)


def nearest_or_new(sums: Sequence[np.ndarray], embedding: np.ndarray, threshold: float,
                   most: int) -> int | None:
    """Which running sum an L2-normalised embedding joins in an online clustering: the
    nearest mean when its cosine is at least ``threshold`` or ``most`` are kept already;
    None when it starts a new one (``SpeakerTracker``'s labels, ``VoiceMemory``'s voices)."""
    if not sums:
        return None
    similarity = unit_means(sums) @ embedding
    best = int(np.argmax(similarity))
    return best if similarity[best] >= threshold or len(sums) >= most else None


class VoiceMemory:
    """Running means of the voices in one channel's change-detector windows."""

    def __init__(self, threshold: float, min_windows: int, max_voices: int) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine in [-1, 1]; got {threshold}")
        if min_windows < 1 or max_voices < 2:
            raise ValueError("min_windows must be >= 1 and max_voices >= 2")
        self._threshold = threshold
        self._min_windows = min_windows
        self._max_voices = max_voices
        self._sums: list[np.ndarray] = []
        self._counts: list[int] = []

    @property
    def voices(self) -> int:
        """Voices with at least ``min_windows`` windows (those the evidence uses)."""
        return sum(count >= self._min_windows for count in self._counts)

    def add(self, embedding: np.ndarray) -> None:
        """One window's L2-normalised embedding joins its nearest voice (or a new one)."""
        best = nearest_or_new(self._sums, embedding, self._threshold, self._max_voices)
        if best is None:
            self._sums.append(embedding.astype(np.float64))
            self._counts.append(1)
        else:
            self._sums[best] = self._sums[best] + embedding
            self._counts[best] += 1

    def evidence(self, first: np.ndarray, second: np.ndarray) -> float:
        """How far apart two windows lie along the line between two known voices (the
        largest over pairs of voices); 0 until two voices have ``min_windows`` each."""
        if self.voices < 2:
            return 0.0
        means = unit_means(self._sums)
        known = [means[i] for i, count in enumerate(self._counts)
                 if count >= self._min_windows]
        difference = (first - second).astype(np.float64)
        best = 0.0
        for a, b in itertools.combinations(known, 2):
            axis = a - b
            norm = float(np.linalg.norm(axis))
            if norm > 1e-9:
                best = max(best, abs(float(difference @ axis)) / norm)
        return best
