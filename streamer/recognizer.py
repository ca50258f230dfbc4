"""Shared models and per-channel recognition: segment, transcribe, classify, publish.

``Recognizer`` holds what is loaded once and shared by all streams (the ASR
worker, the emotion worker, the bus). ``run_channel`` processes one
stream/channel: its state lives in one ``ChannelState`` and is freed when the
channel ends.

Per channel there are two tasks: the segmenter (fed by the source) and the
recognizer loop (ASR then fusion, one utterance at a time, in order). Between
them a bounded queue of ``UTTERANCE_QUEUE`` finished utterances; overflow
policy: the segmenter waits, which pushes back on the source (a file source
slows down; live sources buffer in their own bounded queues).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.inference import ContextItem, EmotionInput, EmotionModel, EmotionPrediction, WordSpan
from streamer import events
from streamer.asr import AsrEngine, PartialCommitter
from streamer.batcher import BatchWorker, Timed
from streamer.bus import EventBus
from streamer.config import AppConfig
from streamer.messages import (
    AudioChunk,
    EmotionResult,
    SegmenterEvent,
    SpeechPaused,
    SpeechProgress,
    SpeechStarted,
    Transcript,
    Utterance,
)
from streamer.segmenter import Segmenter

log = logging.getLogger(__name__)

UTTERANCE_QUEUE = 8


@dataclass(frozen=True)
class AsrRequest:
    audio: np.ndarray
    final: bool


@dataclass(frozen=True)
class DetectedUtterance:
    utterance: Utterance
    stream_time: float  # stream time of the audio pushed when the end was detected
    wall: float  # time.monotonic() at detection


@dataclass(frozen=True)
class Speculation:
    """A final transcription started at a pause, before the utterance was known to end."""

    utterance_index: int
    t_end: float  # stream time up to which audio was transcribed
    task: asyncio.Task[Timed[Transcript]]


@dataclass
class ChannelState:
    """Everything one stream/channel needs; dropped when the channel ends."""

    stream_id: str
    channel: str
    segmenter: Segmenter
    context: deque[ContextItem]
    committer: PartialCommitter = field(default_factory=PartialCommitter)
    utterances: int = 0
    stream_time: float = 0.0
    finalized_index: int = -1  # partials for utterances up to here are stale
    speculation: Speculation | None = None


class Recognizer:
    def __init__(self, config: AppConfig, asr: AsrEngine, emotion: EmotionModel,
                 bus: EventBus) -> None:
        self.config = config
        self.asr = asr
        self.emotion = emotion
        self.bus = bus
        # ASR: one utterance per call, asr.workers calls at once (batching Whisper on CPU
        # gains nothing: docs/ingest.md).
        self.asr_worker: BatchWorker[AsrRequest, Transcript] = BatchWorker(
            "asr", self._transcribe_batch, max_batch=1, max_wait_ms=0,
            concurrency=config.asr.workers)
        self.emotion_worker: BatchWorker[EmotionInput, EmotionPrediction] = BatchWorker(
            "fusion", emotion.predict, max_batch=config.emotion.max_batch,
            max_wait_ms=config.emotion.max_wait_ms)

    def _transcribe_batch(self, requests: Sequence[AsrRequest]) -> list[Transcript]:
        return [self.asr.transcribe(r.audio, final=r.final) for r in requests]

    async def run_workers(self) -> None:
        """Run the shared inference workers until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.asr_worker.run(), name="asr-worker")
            tg.create_task(self.emotion_worker.run(), name="fusion-worker")

    async def run_channel(self, chunks: AsyncIterator[AudioChunk], stream_id: str,
                          channel: str, source: str,
                          end_reason: Callable[[], str] | None = None) -> int:
        """Process one channel to its end; returns the number of utterances published.

        ``end_reason`` tells, once the chunks run out, why they did ("end_of_input" when
        not given, "client_closed" when an ingest client went away without ending).
        """
        state = ChannelState(
            stream_id=stream_id, channel=channel, segmenter=Segmenter(self.config.segmenter),
            context=deque(maxlen=max(1, self.config.emotion.context_size)),
        )
        self.bus.publish(events.stream_started(stream_id, channel, source, self.emotion.model_id,
                                               self.emotion.labels))
        queue: asyncio.Queue[DetectedUtterance | None] = asyncio.Queue(maxsize=UTTERANCE_QUEUE)
        reason, error = "end_of_input", None
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._recognize_loop(state, queue), name=f"recognize:{stream_id}")
                await self._segment_loop(state, chunks, queue, tg)
                await queue.put(None)  # end of channel: the recognizer finishes what is queued
                if end_reason is not None:
                    reason = end_reason()
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        except BaseExceptionGroup as group:
            reason, error = "error", "; ".join(str(e) for e in group.exceptions)
            raise
        finally:
            self.bus.publish(events.stream_ended(stream_id, channel, state.stream_time,
                                                 state.utterances, reason, error))
        return state.utterances

    async def _segment_loop(self, state: ChannelState, chunks: AsyncIterator[AudioChunk],
                            queue: asyncio.Queue[DetectedUtterance | None],
                            tg: asyncio.TaskGroup) -> None:
        async for chunk in chunks:
            state.stream_time = chunk.t_start + chunk.duration
            for event in state.segmenter.push(chunk.samples):
                await self._on_segment_event(state, event, queue, tg)
        for event in state.segmenter.flush():
            await self._on_segment_event(state, event, queue, tg)

    async def _on_segment_event(self, state: ChannelState,
                                event: SegmenterEvent,
                                queue: asyncio.Queue[DetectedUtterance | None],
                                tg: asyncio.TaskGroup) -> None:
        if isinstance(event, Utterance):
            await queue.put(DetectedUtterance(event, max(event.t_detected, state.stream_time),
                                              time.monotonic()))
        elif isinstance(event, SpeechStarted):
            state.committer.reset()
        elif isinstance(event, SpeechPaused):
            if self.config.asr.speculative and self.asr_worker.idle:
                # Speculate only with an idle ASR: a wrong guess then costs no one any latency.
                task = tg.create_task(self.asr_worker.submit(AsrRequest(event.audio, final=True)))
                state.speculation = Speculation(event.utterance_index, event.t_end, task)
        elif (isinstance(event, SpeechProgress) and self.config.asr.partials
              and self.asr_worker.idle and state.segmenter.trailing_silence_ms == 0):
            # Partials are droppable: start one only when the ASR has nothing else to do and
            # the speaker is mid-speech (a pause may be the end, whose final must not wait).
            tg.create_task(self._partial(state, event))

    async def _partial(self, state: ChannelState, progress: SpeechProgress) -> None:
        timed = await self.asr_worker.submit(AsrRequest(progress.audio, final=False))
        if progress.utterance_index <= state.finalized_index:
            return  # the final transcript is already out
        update = state.committer.push(timed.value.text)
        self.bus.publish(events.utterance_partial(
            state.stream_id, state.channel, progress.utterance_index, progress.t_start,
            progress.t_end, update.text, update.stable_text))

    async def _recognize_loop(self, state: ChannelState,
                              queue: asyncio.Queue[DetectedUtterance | None]) -> None:
        while (detected := await queue.get()) is not None:
            await self._recognize(state, detected)

    async def _final_transcript(self, state: ChannelState, utt: Utterance) -> Timed[Transcript]:
        """The speculative result if no speech followed the pause it started at, else a new one."""
        spec, state.speculation = state.speculation, None
        if spec is not None and spec.utterance_index == utt.utterance_index \
                and utt.t_end <= spec.t_end:
            return await spec.task
        return await self.asr_worker.submit(AsrRequest(utt.audio, final=True))

    async def _recognize(self, state: ChannelState, detected: DetectedUtterance) -> None:
        utt = detected.utterance
        waited_ms = (time.monotonic() - detected.wall) * 1000
        asr_started = time.monotonic()
        asr = await self._final_transcript(state, utt)
        asr_wait_ms = (time.monotonic() - asr_started) * 1000
        transcript = asr.value
        state.finalized_index = utt.utterance_index
        fusion = await self.emotion_worker.submit(EmotionInput(
            audio=utt.audio, text=transcript.text,
            words=tuple(WordSpan(w.word, w.start, w.end) for w in transcript.words),
            whisper_frames=transcript.encoder_frames if self.emotion.uses_whisper_frames
            else None,
            context=tuple(state.context),
        ))
        prediction = fusion.value
        state.context.append(prediction.context_item)
        hangover_ms = (detected.stream_time - utt.t_end) * 1000
        processing_ms = (time.monotonic() - detected.wall) * 1000
        latency = events.Latency(
            vad_hangover_ms=hangover_ms,
            queue_ms=waited_ms + fusion.queued_ms,
            asr_ms=asr_wait_ms,  # ASR time left after detection (speculation hides the rest)
            fusion_ms=fusion.run_ms,
            total_ms=hangover_ms + processing_ms,
        )
        self.bus.publish(events.utterance_emotion(
            state.stream_id, state.channel, utt.utterance_index, utt.t_start, utt.t_end,
            utt.cut_reason, transcript, to_result(prediction, self.emotion.model_id), latency))
        state.utterances += 1


def to_result(prediction: EmotionPrediction, model_id: str) -> EmotionResult:
    probs = {label: float(p) for label, p in zip(prediction.labels, prediction.probabilities,
                                                  strict=True)}
    label = max(probs, key=lambda k: probs[k])
    return EmotionResult(label=label, probabilities=probs, confidence=probs[label],
                         model_id=model_id, valence=prediction.valence,
                         arousal=prediction.arousal, dominance=prediction.dominance)


__all__ = ["Recognizer", "ChannelState", "AsrRequest", "Timed"]
