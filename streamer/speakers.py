"""Speakers on mono audio: turn boundaries at speaker changes, and a label per utterance.

``SpeakerChange`` is the segmenter's ``ChangeDetector``: the speech before a pause and the
speech after it are embedded (``models.speaker_encoder``); a cosine below
``speakers.change_threshold`` is a change. ``SpeakerTracker`` is a sans-I/O online
clustering of one channel's utterance embeddings into labels ``S1``, ``S2``, ... that stay
stable within the stream: the nearest known speaker's running mean when its cosine is at
least ``speakers.label_threshold``, else a new speaker (after ``max_speakers``, the
nearest). Both are causal: nothing later in the stream changes an earlier label.

``speakers.enrol`` names known parties: each is a ``Party``, the mean embedding of
recordings of their voice, that the tracker starts with, so their utterances are labelled
with their name; other voices still get S1, S2, ...
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.speaker_encoder import SpeakerEncoder
from streamer.config import SpeakersConfig


@dataclass(frozen=True)
class Party:
    """An enrolled speaker: their name and the mean of their recordings' embeddings."""

    name: str
    embedding: np.ndarray  # L2-normalised
    recordings: int  # how many were averaged: the weight the mean starts with


def enrol(encoder: SpeakerEncoder, name: str, recordings: Sequence[np.ndarray]) -> Party:
    """The party ``name`` from 16 kHz recordings of their voice alone."""
    mean = np.mean([encoder.embed(audio) for audio in recordings], axis=0)
    return Party(name, mean / np.linalg.norm(mean), len(recordings))


@dataclass(frozen=True)
class Voices:
    """What ``speakers.enabled`` loads once per process: the encoder and the enrolled
    parties, shared by every channel."""

    encoder: SpeakerEncoder
    parties: tuple[Party, ...] = ()


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

    def __init__(self, threshold: float, max_speakers: int,
                 parties: Sequence[Party] = ()) -> None:
        self._threshold = threshold
        self._max = max_speakers
        # per speaker, the label and the sum of its embeddings; enrolled parties first,
        # weighted by their recordings so that a few utterances adapt but do not replace them
        self._labels = [party.name for party in parties]
        self._sums = [party.embedding.astype(np.float64) * party.recordings
                      for party in parties]
        self._enrolled = len(parties)
        self._given: set[str] = set()

    @property
    def speakers(self) -> int:
        """The labels given so far (an enrolled party counts once they have spoken)."""
        return len(self._given)

    def assign(self, embedding: np.ndarray) -> str:
        """The label of the speaker of ``embedding`` (L2-normalised); updates its mean."""
        if self._sums:
            means = np.stack([s / np.linalg.norm(s) for s in self._sums])
            similarity = means @ embedding
            best = int(np.argmax(similarity))
            if similarity[best] >= self._threshold or len(self._sums) >= self._max:
                self._sums[best] = self._sums[best] + embedding
                self._given.add(self._labels[best])
                return self._labels[best]
        self._labels.append(f"S{len(self._labels) - self._enrolled + 1}")
        self._sums.append(embedding.astype(np.float64).copy())
        self._given.add(self._labels[-1])
        return self._labels[-1]


class ChannelSpeakers:
    """A channel's change detector and labeller, sharing the process's encoder."""

    def __init__(self, encoder: SpeakerEncoder, config: SpeakersConfig,
                 parties: Sequence[Party] = ()) -> None:
        self.stats = SpeakerStats()
        self.change = SpeakerChange(encoder, config, self.stats)
        self._encoder = encoder
        self._tracker = SpeakerTracker(config.label_threshold, config.max_speakers, parties)

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
