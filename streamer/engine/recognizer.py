"""The async driver of recognition: runs each channel's ``ChannelPolicy`` commands.

``Recognizer`` holds what is shared by all channels: the bus and an ``Inference``, its
ASR and fusion stages (``LocalInference``: the models in this process on ``BatchWorker``
threads; ``streamer.scale.ray_app``: Ray Serve deployments batching across replicas).
``run_channel`` processes one channel (any ``streamer.core.channel.Channel``: a file, the
microphone, stdin, a call's party); the rules (speculation, partials, context, latency)
are in ``streamer.engine.policy``, this module only executes them.

Per channel there are two tasks: the segmenter (fed by the channel) and the
recognizer loop (ASR then fusion, one utterance at a time, in order). Between
them a bounded queue of ``UTTERANCE_QUEUE`` finished utterances; overflow
policy: the segmenter waits, which pushes back on the source (a file source
slows down; live sources buffer in their own bounded queues).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from models.asr import AsrEngine, Transcript
from models.encoders import AudioFeatures
from models.inference import EmotionInput, EmotionModel, EmotionPrediction
from streamer.audio.segmenter import Segmenter
from streamer.core import events
from streamer.core.channel import Channel
from streamer.core.config import AppConfig
from streamer.core.messages import AudioPause, SegmenterEvent, SpeechProgress
from streamer.engine.batcher import BatchWorker, Timed
from streamer.engine.policy import (
    FULL_WINDOW_S,
    Abstain,
    ChannelPolicy,
    ChannelRouting,
    Command,
    DetectedUtterance,
    PolicyConfig,
    PolicyStats,
    Publish,
    Recognize,
    RequestPartial,
    ReuseSpeculation,
    StageTimes,
    StartSpeculation,
    TranscribeFinal,
    route_channel,
)
from streamer.engine.speakers import ChannelSpeakers, Voices
from streamer.publish.bus import EventBus

log = logging.getLogger(__name__)

UTTERANCE_QUEUE = 8
# Channels whose source audio is at most this rate are transcribed by asr.model_8k.
In = TypeVar("In", contravariant=True)
Out = TypeVar("Out")


@dataclass(frozen=True)
class AsrRequest:
    audio: np.ndarray
    final: bool
    full_window: bool = False  # Whisper's 30 s encoder window (a loop's re-decode)
    narrowband: bool = False  # an 8 kHz channel's: transcribed by asr.model_8k when loaded


class _ChannelRun:
    """One channel's driver state: its policy, segmenter, queue and speculation task."""

    def __init__(self, policy: ChannelPolicy, segmenter: Segmenter, tg: asyncio.TaskGroup,
                 routing: ChannelRouting, speakers: ChannelSpeakers | None = None) -> None:
        self.policy = policy
        self.routing = routing  # 8 kHz model, band, whose encoder frames (policy.route_channel)
        self.segmenter = segmenter
        self.speakers = speakers  # speaker turns and labels (speakers.enabled)
        self.tg = tg
        self.queue: asyncio.Queue[DetectedUtterance | None] = asyncio.Queue(UTTERANCE_QUEUE)
        self.speculation: asyncio.Task[Timed[Transcript]] | None = None
        # The emotion model's audio pass on the same speculative audio (audio_worker).
        self.audio_speculation: asyncio.Task[Timed[AudioFeatures]] | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What the driver needs to know of the models, wherever they run."""

    model_id: str
    labels: tuple[str, ...]
    uses_whisper_frames: bool  # fusion takes the ASR's encoder frames
    asr_window_s: float
    # asr.model_8k is loaded: 8 kHz channels are transcribed by it, and the emotion model
    # encodes their audio itself (its frames come from asr.model's encoder).
    narrowband_model: bool = False


class Stage(Protocol[In, Out]):
    """Where a request is computed: a ``BatchWorker`` here, or a remote deployment."""

    @property
    def idle(self) -> bool: ...

    @property
    def queued(self) -> int:
        """Requests waiting or not yet answered (the metrics' queue depth)."""
        ...

    async def submit(self, item: In) -> Timed[Out]: ...


class Inference(Protocol):
    """The ASR and fusion stages of a recognizer and the facts of their models."""

    # Read-only (properties) so that any Stage implementation satisfies the protocol.
    @property
    def facts(self) -> ModelFacts: ...

    @property
    def asr_worker(self) -> Stage[AsrRequest, Transcript]: ...

    @property
    def emotion_worker(self) -> Stage[EmotionInput, EmotionPrediction]: ...

    @property
    def audio_worker(self) -> Stage[np.ndarray, AudioFeatures] | None:
        """The emotion model's own audio encoder pass, computed ahead on the speculative
        final's audio (None: not available, e.g. remote stages)."""
        ...

    async def run(self) -> None:
        """Run whatever the stages need in this process until cancelled."""
        ...


class AsrBatch:
    """Transcribes ``AsrRequest`` batches on one loaded model (here and in a deployment),
    and narrowband requests on ``asr_8k`` (asr.model_8k) when it is given."""

    def __init__(self, asr: AsrEngine, asr_8k: AsrEngine | None = None) -> None:
        self.asr = asr
        # The same loaded model, decoding from the full window (re-decodes of loops).
        self.asr_full = AsrEngine(dataclasses.replace(asr.config, window_s=FULL_WINDOW_S),
                                  asr.model)
        self.asr_8k = asr_8k
        self.asr_8k_full = None if asr_8k is None else AsrEngine(
            dataclasses.replace(asr_8k.config, window_s=FULL_WINDOW_S), asr_8k.model)
        self.narrowband_requests = 0  # transcribed by asr_8k

    def _engine(self, request: AsrRequest) -> AsrEngine:
        if request.narrowband and self.asr_8k is not None and self.asr_8k_full is not None:
            self.narrowband_requests += 1
            return self.asr_8k_full if request.full_window else self.asr_8k
        return self.asr_full if request.full_window else self.asr

    def __call__(self, requests: Sequence[AsrRequest]) -> list[Transcript]:
        """Requests for the same engine and kind (final or partial) are transcribed as one
        batch (``AsrEngine.transcribe_batch``: each result as ``transcribe`` gives it);
        finals first."""
        groups: dict[tuple[AsrEngine, bool], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((self._engine(request), request.final), []).append(i)
        out: list[Transcript | None] = [None] * len(requests)
        for (engine, final), index in sorted(groups.items(), key=lambda g: not g[0][1]):
            results = engine.transcribe_batch([requests[i].audio for i in index], final=final)
            for i, transcript in zip(index, results, strict=True):
                out[i] = transcript
        return [t for t in out if t is not None]


def model_facts(asr: AsrEngine, emotion: EmotionModel,
                asr_8k: AsrEngine | None = None) -> ModelFacts:
    return ModelFacts(emotion.model_id, emotion.labels, emotion.uses_whisper_frames,
                      asr.config.window_s, narrowband_model=asr_8k is not None)


class LocalInference:
    """The models in this process, on the worker threads of two ``BatchWorker``s."""

    def __init__(self, config: AppConfig, asr: AsrEngine, emotion: EmotionModel,
                 asr_8k: AsrEngine | None = None) -> None:
        self.asr = asr
        self.emotion = emotion
        self.facts = model_facts(asr, emotion, asr_8k)
        # ASR: asr.workers calls at once, each on the utterances that queued while the
        # previous ran, up to asr.max_batch (never waited for: an idle service transcribes
        # each utterance at once; under load a batch halves the decoding per utterance).
        self.asr_batch = AsrBatch(asr, asr_8k)
        self.asr_worker: BatchWorker[AsrRequest, Transcript] = BatchWorker(
            "asr", self.asr_batch, max_batch=config.asr.max_batch, max_wait_ms=0,
            concurrency=config.asr.workers)
        self.emotion_worker: BatchWorker[EmotionInput, EmotionPrediction] = BatchWorker(
            "fusion", emotion.predict, max_batch=config.emotion.max_batch,
            max_wait_ms=config.emotion.max_wait_ms)
        # A model that runs its own audio encoder pass (the default bundle: every Whisper
        # layer) runs it beside the ASR: from the first pause with the speculative final (the
        # end-of-speech hangover hides it), else beside the final pass; on its own thread.
        self.audio_worker: BatchWorker[np.ndarray, AudioFeatures] | None = BatchWorker(
            "audio", emotion.encode_audio, max_batch=1, max_wait_ms=0) \
            if emotion.encodes_audio else None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.asr_worker.run(), name="asr-worker")
            tg.create_task(self.emotion_worker.run(), name="fusion-worker")
            if self.audio_worker is not None:
                tg.create_task(self.audio_worker.run(), name="audio-worker")


class Recognizer:
    """Runs channels on an ``Inference``: ``LocalInference`` (``run``, ``serve``) or the
    remote deployments of ``streamer.scale`` (``serve --ray``)."""

    def __init__(self, config: AppConfig, inference: Inference, bus: EventBus,
                 speakers: Voices | None = None) -> None:
        self.config = config
        self.voices = speakers
        self.inference = inference
        self.facts = inference.facts
        self.bus = bus
        self.policy_config = PolicyConfig(partials=config.asr.partials,
                                          speculative=config.asr.speculative,
                                          context_size=config.emotion.context_size,
                                          gate=config.gate,
                                          asr_window_s=inference.facts.asr_window_s,
                                          redecode_loops=config.asr.redecode_loops,
                                          loop_repeats=config.asr.loop_repeats)
        self.stats = PolicyStats()  # totals over the channels that have ended
        self.asr_worker = inference.asr_worker
        self.emotion_worker = inference.emotion_worker

    async def run_workers(self) -> None:
        """Run the shared inference workers until cancelled."""
        await self.inference.run()

    async def run_channel(self, channel: Channel) -> int:
        """Process one channel to its end; returns the number of utterances published."""
        policy = ChannelPolicy(channel.stream_id, channel.channel, self.policy_config,
                               self.facts.model_id, self.facts.labels)
        self.bus.publish(policy.started(channel.describe()))
        routing = route_channel(channel.input_rate, self.facts.narrowband_model,
                                self.facts.uses_whisper_frames)
        # a telephone-band channel gets the speaker thresholds fitted at 8 kHz
        speakers = None if self.voices is None else \
            ChannelSpeakers(self.voices.encoder, self.config.speakers.for_band(routing.band),
                            self.voices.parties, self.voices.segmentation)
        reason, error = "end_of_input", None
        try:
            async with asyncio.TaskGroup() as tg:
                segmenter = Segmenter(self.config.segmenter,
                                      change=speakers.change if speakers else None)
                run = _ChannelRun(policy, segmenter, tg, routing, speakers)
                tg.create_task(self._recognize_loop(run), name=f"recognize:{channel.stream_id}")
                await self._segment_loop(run, channel)
                await run.queue.put(None)  # end of channel: the recognizer finishes the queue
            reason = channel.end_reason
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        except BaseExceptionGroup as group:
            reason, error = "error", "; ".join(str(e) for e in group.exceptions)
            raise
        finally:
            if speakers is not None:
                stats = speakers.stats
                log.info("%s/%s speakers: %d change decisions (%d cuts, %.0f ms), %d labels "
                         "(%.0f ms), %d revised (%.0f ms)", channel.stream_id, channel.channel,
                         stats.decisions, stats.changes, stats.change_ms, stats.labels,
                         stats.label_ms, stats.revisions, stats.revise_ms)
                if speakers.segmenting:
                    log.info("%s/%s segmentation: %d windows for changes (%.0f ms), %d for "
                             "overlap (%.0f ms)", channel.stream_id, channel.channel,
                             stats.segment_runs, stats.segment_ms, stats.overlap_runs,
                             stats.overlap_ms)
            self.bus.publish(policy.ended(reason, error) if speakers is None else
                             policy.ended(reason, error, speakers.speakers,
                                          speakers.stats.changes))
            self.stats.add(policy.stats)
        return policy.utterances

    async def _segment_loop(self, run: _ChannelRun, channel: Channel) -> None:
        async for item in channel.chunks():
            if isinstance(item, AudioPause):
                segments = await self._segment(run, run.segmenter.pause)
            else:
                run.policy.on_audio(item.t_start + item.duration)
                segments = await self._segment(run, run.segmenter.push, item.samples)
            for event in segments:
                await self._execute(run, run.policy.on_segment(
                    event, asr_idle=self.asr_worker.idle, wall=time.monotonic()))
        for event in await self._segment(run, run.segmenter.flush):
            await self._execute(run, run.policy.on_segment(
                event, asr_idle=self.asr_worker.idle, wall=time.monotonic()))

    @staticmethod
    async def _segment(run: _ChannelRun, step: Callable[..., list[SegmenterEvent]],
                       *args: np.ndarray) -> list[SegmenterEvent]:
        """A segmenter step; on a worker thread when it may embed speakers (milliseconds
        of CPU that must not stall the event loop's other streams)."""
        if run.speakers is None:
            return step(*args)
        return await asyncio.to_thread(step, *args)

    async def _execute(self, run: _ChannelRun, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Publish):
                self.bus.publish(command.event)
            elif isinstance(command, Recognize):
                await run.queue.put(command.detected)
            elif isinstance(command, StartSpeculation):
                run.speculation = run.tg.create_task(
                    self.asr_worker.submit(AsrRequest(command.audio, final=True,
                                                      narrowband=run.routing.narrowband)))
                audio_worker = self.inference.audio_worker
                run.audio_speculation = None if audio_worker is None else \
                    run.tg.create_task(audio_worker.submit(command.audio))
            elif isinstance(command, RequestPartial):
                run.tg.create_task(self._partial(run, command.progress))

    async def _partial(self, run: _ChannelRun, progress: SpeechProgress) -> None:
        timed = await self.asr_worker.submit(AsrRequest(progress.audio, final=False,
                                                        narrowband=run.routing.narrowband))
        await self._execute(run, run.policy.on_partial(progress, timed.value.text))

    async def _recognize_loop(self, run: _ChannelRun) -> None:
        while (detected := await run.queue.get()) is not None:
            await self._recognize(run, detected)

    async def _recognize(self, run: _ChannelRun, detected: DetectedUtterance) -> None:
        utt = detected.utterance
        waited_ms = (time.monotonic() - detected.wall) * 1000
        asr_started = time.monotonic()

        def times(asr_ms: float, fusion: Timed[EmotionPrediction] | None = None) -> StageTimes:
            return StageTimes(waited_ms=waited_ms, asr_ms=asr_ms,
                              fusion_queued_ms=fusion.queued_ms if fusion else 0.0,
                              fusion_run_ms=fusion.run_ms if fusion else 0.0,
                              processing_ms=(time.monotonic() - detected.wall) * 1000)

        plan = run.policy.plan_final(utt)
        speculation, run.speculation = run.speculation, None
        # Discarded with the transcript's speculation (it then ran to its end for nothing).
        audio_speculation, run.audio_speculation = run.audio_speculation, None
        if isinstance(plan, Abstain):
            self.bus.publish(run.policy.on_abstain(detected, None, plan, times(0.0)).event)
            return
        reused = speculation if isinstance(plan, ReuseSpeculation) else None
        # The emotion model's own audio pass: the speculation's when it covered exactly these
        # samples (its final is reused), else started now, beside the final ASR pass (it
        # does not need the transcript).
        audio_worker = self.inference.audio_worker
        audio_pass = audio_speculation
        if reused is None:
            audio_pass = None if audio_worker is None else \
                run.tg.create_task(audio_worker.submit(utt.audio))
        if reused is not None:
            transcript = (await reused).value
        else:  # a discarded speculation still runs to its end; its result is dropped
            audio = plan.audio if isinstance(plan, TranscribeFinal) else utt.audio
            transcript = (await self.asr_worker.submit(
                AsrRequest(audio, final=True, narrowband=run.routing.narrowband))).value
        redecode = run.policy.plan_redecode(utt, transcript)
        if redecode is not None:
            again = await self.asr_worker.submit(AsrRequest(redecode.audio, final=True,
                                                            full_window=True,
                                                            narrowband=run.routing.narrowband))
            log.info("%s/%s utterance %d looped (%r); decoded again in the full window: %r",
                     run.policy.stream_id, run.policy.channel, utt.utterance_index,
                     transcript.text[:80], again.value.text[:80])
            transcript = run.policy.redecoded(transcript, again.value)
        asr_ms = (time.monotonic() - asr_started) * 1000
        abstain = run.policy.check_transcript(utt, transcript)
        if abstain is not None:
            self.bus.publish(run.policy.on_abstain(detected, transcript, abstain,
                                                   times(asr_ms)).event)
            return
        # The speaker label is embedded while the fusion model runs (no added latency); it is
        # awaited before the next utterance of the channel, so labels (and the revisions of
        # earlier ones, speakers.revise_window) stay in order.
        labelling = None if run.speakers is None else \
            run.tg.create_task(asyncio.to_thread(run.speakers.label_utterance, utt.audio,
                                                 utt.utterance_index))
        # overlapped speech (speakers.segmentation), measured alongside, likewise
        overlapping = None if run.speakers is None or not run.speakers.segmenting else \
            run.tg.create_task(asyncio.to_thread(run.speakers.overlap_s, utt.audio))
        features = None if audio_pass is None else (await audio_pass).value
        if features is not None and reused is not None:
            run.policy.stats.audio_passes_ahead += 1
        fusion = await self.emotion_worker.submit(run.policy.emotion_input(
            utt, transcript,
            with_frames=run.routing.asr_frames, band=run.routing.band,
            audio_features=features))
        labelled = None if labelling is None else await labelling
        overlap = None if overlapping is None else await overlapping
        self.bus.publish(run.policy.on_prediction(
            detected, transcript, fusion.value, times(asr_ms, fusion),
            None if labelled is None else labelled.speaker, overlap).event)
        if labelled is not None and labelled.revisions:
            # right after the event whose arrival revised them
            self.bus.publish(events.speaker_revised(
                run.policy.stream_id, run.policy.channel,
                [(r.key, r.speaker, r.revised) for r in labelled.revisions]))


__all__ = ["AsrBatch", "AsrRequest", "Inference", "LocalInference",
           "ModelFacts", "Recognizer", "Stage", "Timed", "model_facts"]
