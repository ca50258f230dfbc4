"""Speakers on mono audio: turn boundaries at speaker changes, and a label per utterance.

``SpeakerChange`` is the segmenter's ``ChangeDetector``: the speech before a pause and the
speech after it are embedded (``models.speaker_encoder``); a cosine below
``speakers.change_threshold`` is a change (the segmenter cuts at the lowest cosine among
the pauses near it). ``SpeakerTracker`` is a sans-I/O online
clustering of one channel's utterance embeddings into labels ``S1``, ``S2``, ... that stay
stable within the stream: the nearest known speaker's running mean when its cosine is at
least ``speakers.label_threshold``, else a new speaker (after ``max_speakers``, the
nearest). Both are causal. With ``speakers.revise_window`` (> 0) the tracker's
``SpeakerReviser`` (``streamer/engine/speaker_clusters.py``) clusters the channel's last utterances
again after each one and revises the labels of those it now places with another speaker
(``Labelled.revisions``; the ``speaker.revised`` event).

With ``speakers.memory_weight`` (> 0) the detector also remembers the voices it has
embedded so far (``streamer.engine.voice_memory.VoiceMemory``) and lowers a decision's
cosine by how far its two windows lie apart along the line between two known voices. With
well-learnt voice means that halves the same-sex error rate; held out it found a few more
changes on wideband talk and fewer at 8 kHz, so it is off by default (docs/conversations.md).

``speakers.enrol`` names known parties: each is a ``Party``, the mean embedding of
recordings of their voice, that the tracker starts with, so their utterances are labelled
with their name; other voices still get S1, S2, ...

``speakers.segmentation`` adds pyannote segmentation-3.0 (``models.speaker_segmentation``):
the segmenter asks ``SpeakerChange.segment`` for the speaker changes in the last 10 s of
an utterance every ``segmentation_hop_s`` (cut where the encoder confirms one) and, when a
pause looks like a change, which of the pauses near it the model places the change at;
``ChannelSpeakers.overlap_s`` measures each utterance's overlapped speech for its event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.speaker_encoder import SpeakerEncoder
from models.speaker_segmentation import FRAME_SIZE, SpeakerSegmentation
from streamer.core.config import SpeakersConfig
from streamer.engine.speaker_clusters import Anchor, Revision, SpeakerReviser
from streamer.engine.voice_memory import VoiceMemory, nearest_or_new


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
    segmentation: SpeakerSegmentation | None = None  # speakers.segmentation


@dataclass
class SpeakerStats:
    """Work done for one channel (``stream.ended`` counts; bench figures)."""

    decisions: int = 0  # candidate pauses the change detector was asked about
    scans: int = 0  # windows embedded to find changes without a pause
    changes: int = 0  # utterances cut at a speaker change (at a pause or by the scan)
    change_ms: float = 0.0  # embedding for the decisions (the segmenter's thread)
    labels: int = 0
    label_ms: float = 0.0  # embedding for the labels (the recognize loop's thread)
    segment_runs: int = 0  # segmentation-3.0 calls for changes (the segmenter's thread)
    segment_ms: float = 0.0
    overlap_runs: int = 0  # segmentation-3.0 calls for overlap (the recognize loop's)
    overlap_ms: float = 0.0
    revisions: int = 0  # earlier utterances relabelled (speakers.revise_window)
    revise_ms: float = 0.0  # clustering the window again (the recognize loop's thread)


@dataclass(frozen=True)
class Labelled:
    """An utterance's speaker, and the earlier utterances of the channel whose label its
    arrival revised (``Revision.key``: their utterance index), oldest first."""

    speaker: str
    revisions: tuple[Revision, ...] = ()


def timed_embed(encoder: SpeakerEncoder, *clips: np.ndarray) -> tuple[list[np.ndarray], float]:
    """The clips' embeddings and the milliseconds they took (the stats' CPU figures)."""
    started = time.perf_counter()
    embeddings = [encoder.embed(clip) for clip in clips]
    return embeddings, (time.perf_counter() - started) * 1000


class SpeakerChange:
    """The change detector for one channel's segmenter."""

    def __init__(self, encoder: SpeakerEncoder, config: SpeakersConfig,
                 stats: SpeakerStats, segmentation: SpeakerSegmentation | None = None
                 ) -> None:
        self._encoder = encoder
        self._config = config
        self.stats = stats
        self._segmentation = segmentation
        # speakers.memory_weight > 0: the voices heard so far sharpen every decision
        self._memory = VoiceMemory(config.memory_threshold, config.memory_min_windows,
                                   config.memory_voices) if config.memory_weight > 0 else None

    @property
    def segment_hop_s(self) -> float:
        """0: no segmentation model."""
        return self._config.segmentation_hop_s if self._segmentation is not None else 0.0

    def segment(self, audio: np.ndarray) -> tuple[float, ...]:
        """The speaker changes in ``audio`` (seconds from its start) by segmentation-3.0."""
        assert self._segmentation is not None
        result = self._segmentation(audio)
        self.stats.segment_runs += result.windows
        self.stats.segment_ms += result.ms
        return result.changes

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
        if self._memory is not None:
            self._memory.add(embedding)
        return embedding

    @property
    def memory_voices(self) -> int:
        """Voices the memory knows well enough to use (0 without the memory)."""
        return 0 if self._memory is None else self._memory.voices

    def distance(self, first: np.ndarray, second: np.ndarray) -> float:
        """The scan's distance between two neighbouring windows' embeddings: 1 - cosine,
        plus the memory's evidence that they are two known voices."""
        return 1.0 - float(first @ second) + self._evidence(first, second)

    @property
    def change_cosine(self) -> float:
        return self._config.change_threshold

    def cosine(self, before: np.ndarray, after: np.ndarray) -> float:
        """The voices' cosine, less the memory's evidence that they are two known voices
        (the speech before the pause then joins the memory)."""
        (first, second), ms = timed_embed(self._encoder, before, after)
        self.stats.change_ms += ms
        self.stats.decisions += 1
        cosine = float(first @ second) - self._evidence(first, second)
        if self._memory is not None:
            self._memory.add(first)
        return cosine

    def _evidence(self, first: np.ndarray, second: np.ndarray) -> float:
        if self._memory is None:
            return 0.0
        return self._config.memory_weight * self._memory.evidence(first, second)

    def note_cut(self) -> None:
        self.stats.changes += 1


class SpeakerTracker:
    """Online speaker labels for one channel (sans-I/O: give it embeddings).

    ``revise_window`` > 0: a ``SpeakerReviser`` re-clusters the last that many labelled
    utterances after each one (``label``), and the utterances whose label it changes move
    between the speakers' running means; a label left with no utterance is dropped (its
    number is not given again)."""

    def __init__(self, threshold: float, max_speakers: int,
                 parties: Sequence[Party] = (), revise_window: int = 0) -> None:
        self._threshold = threshold
        self._max = max_speakers
        # per speaker, the label, the sum of its embeddings and its utterances; enrolled
        # parties first, weighted by their recordings so that a few utterances adapt but do
        # not replace them
        self._labels = [party.name for party in parties]
        self._sums = [party.embedding.astype(np.float64) * party.recordings
                      for party in parties]
        self._counts = [0] * len(parties)
        self._parties = frozenset(self._labels)
        self._numbered = 0  # S labels given so far (S1, S2, ...; never given twice)
        self._reviser = None if revise_window <= 0 else SpeakerReviser(
            revise_window, threshold, max_speakers,
            [Anchor(party.name, party.embedding, float(party.recordings)) for party in parties])

    @property
    def speakers(self) -> int:
        """The labels that hold utterances (an enrolled party counts once they have
        spoken; a label that revisions emptied does not count)."""
        return sum(count > 0 for count in self._counts)

    def assign(self, embedding: np.ndarray) -> str:
        """The label of the speaker of ``embedding`` (L2-normalised); updates its mean."""
        best = nearest_or_new(self._sums, embedding, self._threshold, self._max)
        if best is not None:
            self._sums[best] = self._sums[best] + embedding
            self._counts[best] += 1
            return self._labels[best]
        label = self._new_label()
        self._labels.append(label)
        self._sums.append(embedding.astype(np.float64).copy())
        self._counts.append(1)
        return label

    def label(self, embedding: np.ndarray, key: int) -> tuple[str, list[Revision]]:
        """The label of utterance ``key`` (keys increase) and, with a revise window, the
        earlier utterances whose label changed (``SpeakerReviser``)."""
        label = self.assign(embedding)
        if self._reviser is None:
            return label, []
        totals = dict(zip(self._labels, self._counts, strict=True))
        revisions = self._reviser.add(key, embedding, label, totals, self._new_label)
        for revision in revisions:
            self._move(self._reviser.embedding(revision.key), revision.speaker,
                       revision.revised)
        self._drop_empty()
        final = next((r.revised for r in revisions if r.key == key), label)
        return final, [r for r in revisions if r.key != key]

    def _new_label(self) -> str:
        self._numbered += 1
        return f"S{self._numbered}"

    def _move(self, embedding: np.ndarray, old: str, new: str) -> None:
        if new not in self._labels:
            self._labels.append(new)
            self._sums.append(np.zeros_like(self._sums[self._labels.index(old)]))
            self._counts.append(0)
        source, target = self._labels.index(old), self._labels.index(new)
        self._sums[source] = self._sums[source] - embedding
        self._counts[source] -= 1
        self._sums[target] = self._sums[target] + embedding
        self._counts[target] += 1

    def _drop_empty(self) -> None:
        keep = [i for i, label in enumerate(self._labels)
                if self._counts[i] > 0 or label in self._parties]
        self._labels = [self._labels[i] for i in keep]
        self._sums = [self._sums[i] for i in keep]
        self._counts = [self._counts[i] for i in keep]


class ChannelSpeakers:
    """A channel's change detector and labeller, sharing the process's encoder."""

    def __init__(self, encoder: SpeakerEncoder, config: SpeakersConfig,
                 parties: Sequence[Party] = (),
                 segmentation: SpeakerSegmentation | None = None) -> None:
        self.stats = SpeakerStats()
        self.change = SpeakerChange(encoder, config, self.stats, segmentation)
        self._encoder = encoder
        self._tracker = SpeakerTracker(config.label_threshold, config.max_speakers, parties,
                                       config.revise_window)
        self._segmentation = segmentation
        self._overlap_min_s = config.overlap_min_s

    @property
    def speakers(self) -> int:
        return self._tracker.speakers

    @property
    def segmenting(self) -> bool:
        """Whether the segmentation model is on (``overlap_s`` measures)."""
        return self._segmentation is not None

    def label(self, audio: np.ndarray, index: int | None = None) -> str:
        """The utterance's speaker (``label_utterance`` without the revisions)."""
        return self.label_utterance(audio, index).speaker

    def label_utterance(self, audio: np.ndarray, index: int | None = None) -> Labelled:
        """The speaker of the utterance numbered ``index`` (default: the next number) and
        the earlier ones whose label changed; called in utterance order (one recognize loop
        per channel), so the labels and revisions depend only on the channel's audio."""
        [embedding], ms = timed_embed(self._encoder, audio)
        started = time.perf_counter()
        key = self.stats.labels if index is None else index
        label, revisions = self._tracker.label(embedding, key)
        self.stats.revise_ms += (time.perf_counter() - started) * 1000
        self.stats.label_ms += ms
        self.stats.labels += 1
        self.stats.revisions += len(revisions)
        return Labelled(label, tuple(revisions))

    def overlap_s(self, audio: np.ndarray) -> float | None:
        """Seconds of the utterance where two people talk at once (runs of at least
        ``overlap_min_s``: shorter ones are mostly wrong); None without segmentation."""
        if self._segmentation is None:
            return None
        if len(audio) < FRAME_SIZE:
            return 0.0
        result = self._segmentation(audio)
        self.stats.overlap_runs += result.windows
        self.stats.overlap_ms += result.ms
        spans = result.overlap_spans(self._overlap_min_s)
        return float(sum(end - start for start, end in spans))
