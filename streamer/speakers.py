"""Speakers on mono audio: turn boundaries at speaker changes, and a label per utterance.

``SpeakerChange`` is the segmenter's ``ChangeDetector``: the speech before a pause and the
speech after it are embedded (``models.speaker_encoder``); a cosine below
``speakers.change_threshold`` is a change. ``SpeakerTracker`` is a sans-I/O online
clustering of one channel's utterance embeddings into labels ``S1``, ``S2``, ... that stay
stable within the stream: the nearest known speaker's running mean when its cosine is at
least ``speakers.label_threshold``, else a new speaker (after ``max_speakers``, the
nearest). Both are causal: nothing later in the stream changes an earlier label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from models.speaker_encoder import SpeakerEncoder
from streamer.config import SpeakersConfig


@dataclass
class SpeakerStats:
    """Work done for one channel (``stream.ended`` counts; bench figures)."""

    decisions: int = 0  # candidate pauses the change detector was asked about
    scans: int = 0  # windows embedded to find changes without a pause
    changes: int = 0  # of which were cut as speaker changes
    change_ms: float = 0.0  # embedding for the decisions (the segmenter's thread)
    labels: int = 0
    label_ms: float = 0.0  # embedding for the labels (the recognize loop's thread)


def timed_embed(encoder: SpeakerEncoder, *clips: np.ndarray) -> tuple[list[np.ndarray], float]:
    """The clips' embeddings and the milliseconds they took (the stats' CPU figures)."""
    started = time.perf_counter()
    embeddings = [encoder.embed(clip) for clip in clips]
    return embeddings, (time.perf_counter() - started) * 1000


class SpeakerChange:
    """The change detector for one channel's segmenter."""

    def __init__(self, encoder: SpeakerEncoder, config: SpeakersConfig,
                 stats: SpeakerStats) -> None:
        self._encoder = encoder
        self._config = config
        self.stats = stats

    @property
    def window_s(self) -> float:
        return self._config.window_s

    @property
    def before_s(self) -> float:
        return self._config.before_s

    @property
    def min_pause_ms(self) -> int:
        return self._config.min_pause_ms

    @property
    def scan_hop_s(self) -> float:
        return self._config.scan_hop_s

    @property
    def scan_distance(self) -> float:
        return 1.0 - self._config.scan_threshold

    @property
    def scan_peak_s(self) -> float:
        return self._config.scan_peak_s

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """A scan window's embedding (the segmenter compares neighbouring windows)."""
        [embedding], ms = timed_embed(self._encoder, audio)
        self.stats.change_ms += ms
        self.stats.scans += 1
        return embedding

    def changed(self, before: np.ndarray, after: np.ndarray) -> bool:
        (first, second), ms = timed_embed(self._encoder, before, after)
        similarity = float(first @ second)
        self.stats.change_ms += ms
        self.stats.decisions += 1
        change = similarity < self._config.change_threshold
        self.stats.changes += int(change)
        return change


class SpeakerTracker:
    """Online speaker labels for one channel (sans-I/O: give it embeddings)."""

    def __init__(self, threshold: float, max_speakers: int) -> None:
        self._threshold = threshold
        self._max = max_speakers
        self._sums: list[np.ndarray] = []  # per speaker, the sum of its embeddings

    @property
    def speakers(self) -> int:
        return len(self._sums)

    def assign(self, embedding: np.ndarray) -> str:
        """The label of the speaker of ``embedding`` (L2-normalised); updates its mean."""
        if self._sums:
            means = np.stack([s / np.linalg.norm(s) for s in self._sums])
            similarity = means @ embedding
            best = int(np.argmax(similarity))
            if similarity[best] >= self._threshold or len(self._sums) >= self._max:
                self._sums[best] = self._sums[best] + embedding
                return f"S{best + 1}"
        self._sums.append(embedding.astype(np.float64).copy())
        return f"S{len(self._sums)}"


class ChannelSpeakers:
    """A channel's change detector and labeller, sharing the process's encoder."""

    def __init__(self, encoder: SpeakerEncoder, config: SpeakersConfig) -> None:
        self.stats = SpeakerStats()
        self.change = SpeakerChange(encoder, config, self.stats)
        self._encoder = encoder
        self._tracker = SpeakerTracker(config.label_threshold, config.max_speakers)

    @property
    def speakers(self) -> int:
        return self._tracker.speakers

    def label(self, audio: np.ndarray) -> str:
        """The utterance's speaker; called in utterance order (one recognize loop per
        channel), so labels are causal."""
        [embedding], ms = timed_embed(self._encoder, audio)
        label = self._tracker.assign(embedding)
        self.stats.label_ms += ms
        self.stats.labels += 1
        return label
