"""What to do for one channel, decided without I/O: the rules of recognition.

``ChannelPolicy`` is fed segmenter events and ASR/fusion results and answers
with commands (start a speculative final, request a partial, recognise an
utterance, publish an event). It owns the channel's state: the stream time, the
partial-transcript committer, the pending speculation, the emotion context and
the counts. ``streamer.engine.recognizer`` is the thin async driver that executes the
commands; every rule lives here and is unit-tested in tests/streamer/test_policy.py.

Times are passed in (``wall`` is ``time.monotonic()`` seconds) so that the
latency arithmetic is a pure function of what the driver measured.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields, replace

import numpy as np

from models.asr import Transcript
from models.audio import SAMPLE_RATE
from models.encoders import AudioFeatures
from models.encoders.whisper import WINDOW_FRAMES
from models.feature_stats import band_of
from models.inference import ContextItem, EmotionInput, EmotionPrediction
from streamer.audio import speech_gate
from streamer.core import events
from streamer.core.config import GateConfig
from streamer.core.messages import (
    EmotionResult,
    SegmenterEvent,
    SpeechPaused,
    SpeechProgress,
    SpeechStarted,
    Utterance,
)
from streamer.engine.partials import PartialCommitter


@dataclass(frozen=True)
class PolicyConfig:
    partials: bool = True  # publish utterance.partial while speech goes on
    speculative: bool = True  # start the final transcription at the first pause
    context_size: int = 4  # past utterances of the channel given to the fusion model
    gate: GateConfig = GateConfig()  # abstain on non-speech (streamer/audio/speech_gate.py)
    asr_window_s: float = 10.0  # the ASR's encoder window for utterances that fit in it
    redecode_loops: bool = True  # decode a looping transcript again in the 30 s window
    loop_repeats: int = 3  # a phrase this many times in a row is a loop


FULL_WINDOW_S = WINDOW_FRAMES / 100  # Whisper's own window (10 ms mel frames)
NARROWBAND_MAX_RATE = 8000  # a channel at this rate or below is telephone audio


@dataclass(frozen=True)
class ChannelRouting:
    """Where one channel's work goes, decided once from its input rate."""

    narrowband: bool  # its ASR requests go to asr.model_8k (loaded only when configured)
    band: str  # its input kind for the emotion model's statistics (models.feature_stats)
    asr_frames: bool  # the emotion model takes the ASR pass's encoder frames


def route_channel(input_rate: int | None, narrowband_model: bool,
                  uses_whisper_frames: bool) -> ChannelRouting:
    """An 8 kHz channel is transcribed by ``asr.model_8k`` when one is loaded; that model's
    encoder frames are not the emotion model's encoder's, so the emotion model then encodes
    the audio itself. The band follows the rate whatever the ASR (unknown: wideband)."""
    narrowband = narrowband_model and input_rate is not None \
        and input_rate <= NARROWBAND_MAX_RATE
    return ChannelRouting(narrowband=narrowband, band=band_of(input_rate),
                          asr_frames=uses_whisper_frames and not narrowband)


@dataclass(frozen=True)
class DetectedUtterance:
    utterance: Utterance
    stream_time: float  # stream time of the audio pushed when the end was detected
    wall: float  # monotonic seconds at detection


# ------------------------------------------------------------------ commands


@dataclass(frozen=True)
class StartSpeculation:
    """Transcribe ``audio`` as a final now; the utterance may be over."""

    utterance_index: int
    audio: np.ndarray


@dataclass(frozen=True)
class RequestPartial:
    """Transcribe the utterance so far (droppable; no word times)."""

    progress: SpeechProgress


@dataclass(frozen=True)
class Recognize:
    """Queue a finished utterance for transcription and classification, in order."""

    detected: DetectedUtterance


@dataclass(frozen=True)
class Publish:
    event: events.Event


Command = StartSpeculation | RequestPartial | Recognize | Publish


@dataclass(frozen=True)
class ReuseSpeculation:
    """The speculative final covers the whole utterance: its result is the final one."""


@dataclass(frozen=True)
class TranscribeFinal:
    """No usable speculation: transcribe the utterance's audio now."""

    audio: np.ndarray


@dataclass(frozen=True)
class Abstain:
    """Not usable audio: publish a non-speech event, transcribe and classify nothing."""

    reason: speech_gate.AbstainReason


FinalPlan = ReuseSpeculation | TranscribeFinal | Abstain


@dataclass(frozen=True)
class Redecode:
    """The final transcript loops: transcribe ``audio`` again in Whisper's full window."""

    audio: np.ndarray


@dataclass(frozen=True)
class StageTimes:
    """What the driver measured for one utterance (milliseconds)."""

    waited_ms: float  # detection -> the recognizer took the utterance
    asr_ms: float  # ASR time left after that (speculation hides the rest)
    fusion_queued_ms: float
    fusion_run_ms: float
    processing_ms: float  # detection -> now (publication)


@dataclass
class PolicyStats:
    partials_published: int = 0
    partials_dropped: int = 0  # arrived after the utterance's final
    speculations_started: int = 0
    speculations_reused: int = 0
    speculations_discarded: int = 0  # speech resumed, or a later pause replaced it
    nonspeech: int = 0  # utterances published with speech: false
    redecodes: int = 0  # looping finals decoded again in the full window
    audio_passes_ahead: int = 0  # the emotion model's audio pass reused from a speculation

    def add(self, other: PolicyStats) -> None:
        """Add ``other``'s counts to these (a recognizer's totals over its channels)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class _Speculation:
    utterance_index: int
    t_start: float
    n_samples: int  # the audio transcribed: the utterance's first n_samples


class ChannelPolicy:
    """The per-channel rules; one instance per stream/channel, dropped when it ends."""

    def __init__(self, stream_id: str, channel: str, config: PolicyConfig, model_id: str,
                 labels: tuple[str, ...]) -> None:
        self.stream_id = stream_id
        self.channel = channel
        self.config = config
        self.model_id = model_id
        self.labels = labels
        self.stream_time = 0.0
        self.utterances = 0  # emotion events published
        self.stats = PolicyStats()
        self._committer = PartialCommitter()
        self._finalized_index = -1  # partials for utterances up to here are stale
        self._speculation: _Speculation | None = None
        self._context: deque[ContextItem] = deque(maxlen=max(1, config.context_size))

    # ------------------------------------------------------------ stream events

    def started(self, source: str) -> events.Event:
        return events.stream_started(self.stream_id, self.channel, source, self.model_id,
                                     self.labels)

    def ended(self, reason: str, error: str | None = None, speakers: int | None = None,
              speaker_changes: int | None = None) -> events.Event:
        return events.stream_ended(self.stream_id, self.channel, self.stream_time,
                                   self.utterances, reason, error, self.stats.nonspeech,
                                   self.stats.redecodes, speakers, speaker_changes)

    def on_audio(self, t_end: float) -> None:
        """Audio up to stream time ``t_end`` has been pushed to the segmenter."""
        self.stream_time = t_end

    # ------------------------------------------------------------ segmenter side

    def on_segment(self, event: SegmenterEvent, asr_idle: bool, wall: float) -> list[Command]:
        if isinstance(event, Utterance):
            return [Recognize(DetectedUtterance(event, max(event.t_detected, self.stream_time),
                                                wall))]
        if isinstance(event, SpeechStarted):
            self._committer.reset()
            return []
        if isinstance(event, SpeechPaused):
            # Speculate only with an idle ASR: a wrong guess then costs no one any latency.
            if not (self.config.speculative and asr_idle):
                return []
            if self._speculation is not None:
                self.stats.speculations_discarded += 1  # an older guess, now superseded
            self._speculation = _Speculation(event.utterance_index, event.t_start,
                                             len(event.audio))
            self.stats.speculations_started += 1
            return [StartSpeculation(event.utterance_index, event.audio)]
        # SpeechProgress. Partials are droppable: start one only when the ASR has nothing
        # else to do and the speaker is mid-speech (a pause may be the end, whose final
        # must not wait behind a partial).
        if self.config.partials and asr_idle and event.trailing_silence_ms == 0:
            return [RequestPartial(event)]
        return []

    def on_partial(self, progress: SpeechProgress, text: str) -> list[Command]:
        """A partial hypothesis came back: publish it unless the final is already out."""
        if progress.utterance_index <= self._finalized_index:
            self.stats.partials_dropped += 1
            return []
        update = self._committer.push(text)
        self.stats.partials_published += 1
        return [Publish(events.utterance_partial(
            self.stream_id, self.channel, progress.utterance_index, progress.t_start,
            progress.t_end, update.text, update.stable_text))]

    # ------------------------------------------------------------ recognizer side

    def plan_final(self, utterance: Utterance) -> FinalPlan:
        """Abstain on unusable audio; else reuse the speculation if it transcribed exactly
        the utterance's audio (no speech followed the pause it started at); else transcribe.

        Reuse only on the very same samples makes speculation a latency device only: the
        final transcript is that of ``utterance.audio`` either way, so real time and
        ``--fast`` (where the ASR is rarely idle at a pause) publish the same."""
        spec, self._speculation = self._speculation, None
        reason = speech_gate.check_audio(utterance.audio, self.config.gate)
        if reason is not None:
            if spec is not None:
                self.stats.speculations_discarded += 1
            return Abstain(reason)
        if spec is not None and spec.utterance_index == utterance.utterance_index \
                and spec.t_start == utterance.t_start and spec.n_samples == len(utterance.audio):
            self.stats.speculations_reused += 1
            return ReuseSpeculation()
        if spec is not None:
            self.stats.speculations_discarded += 1
        return TranscribeFinal(utterance.audio)

    def plan_redecode(self, utterance: Utterance, transcript: Transcript) -> Redecode | None:
        """A final from the short encoder window that loops is decoded again in the full
        one (the loops of tiny.en in a padded 10 s window go away in 30 s); once."""
        if not self.config.redecode_loops or self.config.asr_window_s >= FULL_WINDOW_S \
                or len(utterance.audio) / SAMPLE_RATE >= self.config.asr_window_s:
            return None  # already decoded in the full window
        if not speech_gate.looks_looped(transcript, self.config.gate, self.config.loop_repeats):
            return None
        self.stats.redecodes += 1
        return Redecode(utterance.audio)

    @staticmethod
    def redecoded(first: Transcript, again: Transcript) -> Transcript:
        """The full-window transcript, with the first pass's encoder frames: the emotion
        model's frames come from the short window everywhere (train-serve parity)."""
        return replace(again, encoder_frames=first.encoder_frames)

    def check_transcript(self, utterance: Utterance, transcript: Transcript) -> Abstain | None:
        """After the ASR: abstain when Whisper heard no speech; marks the utterance final
        (later partials are stale)."""
        self._finalized_index = max(self._finalized_index, utterance.utterance_index)
        reason = speech_gate.check_transcript(transcript, self.config.gate)
        return None if reason is None else Abstain(reason)

    def emotion_input(self, utterance: Utterance, transcript: Transcript,
                      with_frames: bool, band: str = "wideband",
                      audio_features: AudioFeatures | None = None) -> EmotionInput:
        """The fusion model's input (``audio_features``: its audio pass, computed ahead on
        exactly ``utterance.audio``)."""
        self._finalized_index = max(self._finalized_index, utterance.utterance_index)
        return EmotionInput(
            audio=utterance.audio, text=transcript.text, words=transcript.words,
            whisper_frames=transcript.encoder_frames if with_frames else None,
            context=tuple(self._context),  # oldest first; the bundle caps what it uses
            language=transcript.language,
            band=band,
            audio_features=audio_features,
        )

    def on_prediction(self, detected: DetectedUtterance, transcript: Transcript,
                      prediction: EmotionPrediction, times: StageTimes,
                      speaker: str | None = None, overlap: float | None = None) -> Publish:
        """The utterance's emotion event; its features join the context of later ones."""
        self._context.append(prediction.context_item)
        return self._event(detected, transcript, to_result(prediction, self.model_id), times,
                           None, speaker, overlap)

    def on_abstain(self, detected: DetectedUtterance, transcript: Transcript | None,
                   abstain: Abstain, times: StageTimes) -> Publish:
        """A non-speech event: no label, no probabilities, not part of the context."""
        self.stats.nonspeech += 1
        return self._event(detected, transcript or Transcript(""),
                           events.no_claim(self.model_id), times, abstain.reason)

    def _event(self, detected: DetectedUtterance, transcript: Transcript, result: EmotionResult,
               times: StageTimes, abstain_reason: str | None,
               speaker: str | None = None, overlap: float | None = None) -> Publish:
        utt = detected.utterance
        hangover_ms = (detected.stream_time - utt.t_end) * 1000
        latency = events.Latency(
            vad_hangover_ms=hangover_ms,
            queue_ms=times.waited_ms + times.fusion_queued_ms,
            asr_ms=times.asr_ms,
            fusion_ms=times.fusion_run_ms,
            total_ms=hangover_ms + times.processing_ms,
        )
        self.utterances += 1
        return Publish(events.utterance_emotion(
            self.stream_id, self.channel, utt.utterance_index, utt.t_start, utt.t_end,
            utt.cut_reason, transcript, result, latency, abstain_reason, speaker, overlap))


def to_result(prediction: EmotionPrediction, model_id: str) -> EmotionResult:
    probs = {label: float(p) for label, p in zip(prediction.labels, prediction.probabilities,
                                                  strict=True)}
    return EmotionResult(label=prediction.label, probabilities=probs,
                         confidence=probs[prediction.label], model_id=model_id,
                         valence=prediction.valence, arousal=prediction.arousal,
                         dominance=prediction.dominance, modalities=prediction.modalities)
