"""Typed messages passed between pipeline stages (frozen dataclasses, never tuples)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.audio import SAMPLE_RATE


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 audio at 16 kHz, ``t_start`` seconds from stream start."""

    stream_id: str
    channel: str
    samples: np.ndarray  # (N,) float32 in [-1, 1]
    t_start: float

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class AudioPause:
    """The audio stops for a while (a hold): close the open utterance now.

    Stream time does not advance; the audio after the pause continues the stream.
    """


@dataclass(frozen=True)
class SpeechStarted:
    t_start: float
    utterance_index: int


@dataclass(frozen=True)
class SpeechProgress:
    """Emitted periodically while speech goes on: the utterance's audio so far."""

    utterance_index: int
    t_start: float
    t_end: float
    audio: np.ndarray  # (N,) float32
    trailing_silence_ms: int = 0  # unvoiced time at the end (0: the speaker is mid-speech)


@dataclass(frozen=True)
class SpeechPaused:
    """The first unvoiced frames after speech: the utterance may be over.

    The recognizer starts the final transcription speculatively on ``audio``; if no
    speech follows before the hangover ends, that result is the final one.
    """

    utterance_index: int
    t_start: float
    t_end: float  # end of ``audio`` (stream time)
    audio: np.ndarray  # (N,) float32, the utterance so far


@dataclass(frozen=True)
class Utterance:
    """A finished speech segment, with the timing needed for latency accounting."""

    utterance_index: int
    t_start: float  # seconds from stream start (includes pre-roll)
    t_end: float  # end of the last voiced frame (end of speech)
    # (N,) float32: pre-roll included; at a pause it ends speculative_pause_ms after the
    # speech (the SpeechPaused audio), the rest of the hangover excluded
    audio: np.ndarray
    # "pause" | "max_length" | "end_of_stream" | "speaker_change" (an AudioPause: "pause")
    cut_reason: str
    t_detected: float  # stream time at which the segmenter decided the utterance ended


SegmenterEvent = SpeechStarted | SpeechProgress | SpeechPaused | Utterance


@dataclass(frozen=True)
class EmotionResult:
    label: str
    probabilities: dict[str, float]
    confidence: float
    model_id: str
    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    modalities: tuple[str, ...] = ()  # what the label came from: ("audio",), ("audio", "text")
