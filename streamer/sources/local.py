"""Audio sources: file replay, microphone (sounddevice) and raw PCM on stdin.

Each source reads (N, C) blocks at 16 kHz with its input channels kept apart
(``blocks()``); resampling happens here, once. By default a source is one
``streamer.core.channel.Channel`` whose ``chunks()`` mix the channels to mono. With
``source.channels: split`` ``make_source`` wraps it in a ``SplitSource``: one channel
per input channel (named by ``source.channel_names``), all of one stream, fed by one
reader (``SplitSource.run``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from models.audio import SAMPLE_RATE
from streamer.audio.audio_io import (
    Resampler,
    iter_file_blocks,
    open_audio_file,
    pcm16_to_float,
    to_mono,
)
from streamer.core.channel import Channel, EndReason
from streamer.core.config import SourceConfig
from streamer.core.errors import AudioInputError
from streamer.core.messages import AudioChunk

log = logging.getLogger(__name__)

BUILTIN_SAMPLE = "builtin:sample"
# builtin:sample: 8 acted RAVDESS clips (4 actors the default model never trained on;
# CC BY-NC-SA 4.0, truth in sample_ravdess.json); builtin:sample-synthetic: the espeak-ng
# call-center conversation (emotion carried by words and synthetic prosody).
BUILTIN_SAMPLES = {BUILTIN_SAMPLE: "sample_ravdess.flac",
                   "builtin:sample-synthetic": "sample_conversation.wav"}


def resolve_source_path(path: str) -> Path:
    """``builtin:sample`` / ``builtin:sample-synthetic``: the samples shipped with the package."""
    if path in BUILTIN_SAMPLES:
        return Path(str(resources.files("streamer") / "assets" / BUILTIN_SAMPLES[path]))
    return Path(path)


class _Chunker:
    """Cuts a stream of mono blocks into fixed-size AudioChunks with running timestamps."""

    def __init__(self, stream_id: str, channel: str, chunk_samples: int) -> None:
        self.stream_id = stream_id
        self.channel = channel
        self.chunk_samples = chunk_samples
        self._buffer = np.zeros(0, dtype=np.float32)
        self._emitted = 0

    def push(self, block: np.ndarray, final: bool = False) -> list[AudioChunk]:
        self._buffer = np.concatenate([self._buffer, block])
        chunks: list[AudioChunk] = []
        while len(self._buffer) >= self.chunk_samples or (final and len(self._buffer)):
            piece = self._buffer[: self.chunk_samples]
            self._buffer = self._buffer[len(piece) :]
            chunks.append(
                AudioChunk(self.stream_id, self.channel, piece, self._emitted / SAMPLE_RATE)
            )
            self._emitted += len(piece)
        return chunks


async def _mono_chunks(blocks: AsyncIterator[np.ndarray], stream_id: str, channel: str,
                       chunk_samples: int) -> AsyncIterator[AudioChunk]:
    """(N, C) blocks mixed to mono and cut into AudioChunks."""
    chunker = _Chunker(stream_id, channel, chunk_samples)
    async for block in blocks:
        for chunk in chunker.push(to_mono(block)):
            yield chunk
    for chunk in chunker.push(np.zeros(0, dtype=np.float32), final=True):
        yield chunk


class FileSource:
    """Replays an audio file, paced at real time or as fast as possible."""

    end_reason: EndReason = "end_of_input"  # these sources only end normally

    def __init__(self, config: SourceConfig, path: str | None = None) -> None:
        self.path = resolve_source_path(path or config.path)
        self.realtime = config.realtime
        self.stream_id = config.stream_id
        self.channel = config.channel
        self.chunk_s = config.chunk_ms / 1000
        # Opening it fails now, with a clear message, not mid-pipeline.
        with open_audio_file(self.path) as f:
            self.n_channels = int(f.channels)
            self.input_rate = int(f.samplerate)  # before resampling (picks asr.model_8k)

    def describe(self) -> str:
        return f"file:{self.path}"

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        """(N, C) 16 kHz blocks of ``chunk_ms``, each yielded once it has been "spoken"
        (real time) or at once (fast)."""
        t0 = time.monotonic()
        emitted = 0
        for block in iter_file_blocks(self.path, block_s=self.chunk_s, keep_channels=True):
            emitted += len(block)
            if self.realtime:
                delay = t0 + emitted / SAMPLE_RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let the rest of the pipeline run
            yield block

    def chunks(self) -> AsyncIterator[AudioChunk]:
        return _mono_chunks(self.blocks(), self.stream_id, self.channel,
                            int(self.chunk_s * SAMPLE_RATE))


class StdinSource:
    """Raw little-endian int16 PCM from a binary stream (stdin by default)."""

    end_reason: EndReason = "end_of_input"  # these sources only end normally

    def __init__(self, config: SourceConfig, stream: BinaryIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.n_channels = config.stdin_channels
        self.in_rate = config.stdin_sample_rate
        self.input_rate = self.in_rate  # picks asr.model_8k (streamer.engine.recognizer)
        self.stream_id = config.stream_id
        self.channel = config.channel
        self.read_bytes = max(2 * self.n_channels, int(
            config.stdin_sample_rate * config.chunk_ms / 1000) * 2 * self.n_channels)

    def describe(self) -> str:
        return f"stdin:pcm16le/{self.in_rate}Hz/{self.n_channels}ch"

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        """(N, C) 16 kHz blocks as they arrive."""
        resampler = Resampler(self.in_rate, self.n_channels)
        frame_bytes = 2 * self.n_channels
        leftover = b""
        while True:
            data = await asyncio.to_thread(self.stream.read, self.read_bytes)
            last = not data
            data = leftover + (data or b"")
            usable = len(data) - len(data) % frame_bytes
            leftover = data[usable:]
            block = resampler.push(pcm16_to_float(data[:usable], self.n_channels), last=last)
            if len(block):
                yield block
            if last:
                if leftover:
                    log.warning("stdin ended inside a PCM frame; %d trailing bytes ignored",
                                len(leftover))
                return

    def chunks(self) -> AsyncIterator[AudioChunk]:
        return _mono_chunks(self.blocks(), self.stream_id, self.channel, int(SAMPLE_RATE * 0.1))


class MicSource:
    """Live microphone via sounddevice (PortAudio).

    The PortAudio callback runs on its own thread and hands blocks to the event
    loop through a bounded queue (about 10 s of audio). Overflow policy: if the
    pipeline falls that far behind, the oldest block is dropped and counted,
    because live audio cannot be paused.
    """

    end_reason: EndReason = "end_of_input"  # these sources only end normally

    QUEUE_BLOCKS = 100

    def __init__(self, config: SourceConfig, sd: Any | None = None) -> None:
        self.sd = sd if sd is not None else _import_sounddevice()
        self.device = _parse_device(config.mic_device)
        self.info = self._find_input_device()
        # Mixed: the first input channel, as before. Split: one per name, else all inputs.
        self.n_channels = 1 if config.channels == "mix" else (
            len(config.channel_names.split(",")) if config.channel_names
            else int(self.info["max_input_channels"]))
        if self.n_channels > int(self.info["max_input_channels"]):
            raise AudioInputError(
                f"microphone '{self.info['name']}' has {self.info['max_input_channels']} input "
                f"channel(s), {self.n_channels} asked for; give as many source.channel_names")
        self.sample_rate = self._negotiate_rate(config.mic_sample_rate)
        self.input_rate = self.sample_rate  # picks asr.model_8k (streamer.engine.recognizer)
        self.stream_id = config.stream_id
        self.channel = config.channel
        self.block_frames = int(self.sample_rate * config.chunk_ms / 1000)
        self.dropped_blocks = 0

    def describe(self) -> str:
        return f"mic:{self.info['name']}@{self.sample_rate}Hz"

    def _find_input_device(self) -> dict[str, Any]:
        try:
            info = self.sd.query_devices(self.device, kind="input")
        except (ValueError, self.sd.PortAudioError) as exc:
            available = [
                f"{i}: {d['name']}" for i, d in enumerate(self.sd.query_devices())
                if d.get("max_input_channels", 0) > 0
            ]
            hint = ("available inputs: " + "; ".join(available)) if available else (
                "this machine has no audio input device; use a file (source.kind=file) "
                "or raw PCM on stdin (source.kind=stdin) instead")
            raise AudioInputError(f"no usable microphone '{self.device}': {exc}. {hint}") from exc
        if int(info.get("max_input_channels", 0)) < 1:
            raise AudioInputError(f"device '{info['name']}' has no input channels")
        return dict(info)

    def _negotiate_rate(self, wanted: int | None) -> int:
        candidates = [wanted] if wanted else [
            SAMPLE_RATE, int(self.info["default_samplerate"]), 48000, 44100]
        errors = []
        for rate in candidates:
            try:
                self.sd.check_input_settings(device=self.device, channels=self.n_channels,
                                             samplerate=rate,
                                             dtype="float32")
                return int(rate)
            except (ValueError, self.sd.PortAudioError) as exc:
                errors.append(f"{rate} Hz: {exc}")
        raise AudioInputError(
            f"microphone '{self.info['name']}' accepts none of the sample rates tried "
            f"({'; '.join(errors)}); set source.mic_sample_rate to one it supports")

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        """(N, C) 16 kHz blocks as the device delivers them."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=self.QUEUE_BLOCKS)
        put = _drop_oldest_put(queue, self._count_drop)

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status:
                log.warning("microphone status: %s", status)
            loop.call_soon_threadsafe(put, indata.copy())

        resampler = Resampler(self.sample_rate, self.n_channels)
        with self.sd.InputStream(device=self.device, channels=self.n_channels,
                                 samplerate=self.sample_rate, blocksize=self.block_frames,
                                 dtype="float32", callback=callback):
            while True:
                block = resampler.push(await queue.get())
                if len(block):
                    yield block

    def chunks(self) -> AsyncIterator[AudioChunk]:
        return _mono_chunks(self.blocks(), self.stream_id, self.channel, int(SAMPLE_RATE * 0.1))

    def _count_drop(self) -> None:
        self.dropped_blocks += 1
        log.warning("microphone audio dropped: pipeline is %d blocks behind (total dropped %d)",
                    self.QUEUE_BLOCKS, self.dropped_blocks)


def _drop_oldest_put(queue: asyncio.Queue[np.ndarray],
                     on_drop: Callable[[], None]) -> Callable[[np.ndarray], None]:
    def put(item: np.ndarray) -> None:
        if queue.full():
            queue.get_nowait()
            on_drop()
        queue.put_nowait(item)

    return put


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:
        raise AudioInputError(
            f"the microphone source needs the PortAudio library ({exc}); install it: "
            "apt-get install libportaudio2"
        ) from exc
    return sounddevice


def _parse_device(device: str | None) -> int | str | None:
    if device is None:
        return None
    return int(device) if device.isdigit() else device


AudioSource = FileSource | StdinSource | MicSource


class MultiChannelInput(Protocol):
    """What ``SplitSource`` reads: a source's (N, C) 16 kHz blocks."""

    stream_id: str
    n_channels: int
    input_rate: int

    def describe(self) -> str: ...

    def blocks(self) -> AsyncIterator[np.ndarray]: ...


class SplitChannel:
    """One input channel of a ``SplitSource``: a ``streamer.core.channel.Channel``."""

    end_reason: EndReason = "end_of_input"

    def __init__(self, stream_id: str, channel: str, source: str, maxsize: int,
                 input_rate: int | None = None) -> None:
        self.stream_id = stream_id
        self.channel = channel
        self._source = source
        self.input_rate = input_rate  # the split source's rate (picks asr.model_8k)
        self.queue: asyncio.Queue[AudioChunk | None] = asyncio.Queue(maxsize)

    def describe(self) -> str:
        return self._source

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk


class SplitSource:
    """A multi-channel input as one channel per input channel, all of one stream.

    ``run()`` reads the input once and feeds each channel's bounded queue
    (``QUEUE_CHUNKS`` chunks). Overflow policy: the reader waits for the slowest channel,
    which pushes back on the input as for a mono source (a file slows down; the
    microphone drops its oldest blocks, counted, in its own queue).
    """

    QUEUE_CHUNKS = 50

    def __init__(self, source: MultiChannelInput, names: tuple[str, ...], chunk_ms: int) -> None:
        if len(names) != source.n_channels:
            raise AudioInputError(
                f"{source.describe()} has {source.n_channels} channel(s) but "
                f"{len(names)} channel name(s) were given ({','.join(names)}); give one name "
                "per channel with --channel-names (source.channel_names)")
        self.source = source
        self.stream_id = source.stream_id
        self.chunk_samples = int(SAMPLE_RATE * chunk_ms / 1000)
        self.channels: tuple[SplitChannel, ...] = tuple(
            SplitChannel(source.stream_id, name, f"{source.describe()}#ch{i}",
                         self.QUEUE_CHUNKS, source.input_rate) for i, name in enumerate(names))

    def describe(self) -> str:
        return self.source.describe()

    async def run(self) -> None:
        """Read the input to its end, feeding every channel; then end each channel."""
        chunkers = [_Chunker(self.stream_id, ch.channel, self.chunk_samples)
                    for ch in self.channels]
        async for block in self.source.blocks():
            for i, (channel, chunker) in enumerate(zip(self.channels, chunkers, strict=True)):
                for chunk in chunker.push(np.ascontiguousarray(block[:, i])):
                    await channel.queue.put(chunk)
        for channel, chunker in zip(self.channels, chunkers, strict=True):
            for chunk in chunker.push(np.zeros(0, dtype=np.float32), final=True):
                await channel.queue.put(chunk)
            await channel.queue.put(None)


def channel_names(config: SourceConfig, n_channels: int) -> tuple[str, ...]:
    """``source.channel_names`` as a tuple, or ch0, ch1, ... for ``n_channels``."""
    if not config.channel_names:
        return tuple(f"ch{i}" for i in range(n_channels))
    names = tuple(n.strip() for n in config.channel_names.split(","))
    if len(set(names)) != len(names):
        raise AudioInputError(f"source.channel_names has a name twice: {config.channel_names}")
    return names


def make_source(config: SourceConfig) -> Channel | SplitSource:
    """The configured source: one (mixed) channel, or a ``SplitSource`` of channels."""
    source: AudioSource
    if config.kind == "file":
        source = FileSource(config)
    elif config.kind == "stdin":
        source = StdinSource(config)
    else:
        source = MicSource(config)
    if config.channels == "mix":
        return source
    return SplitSource(source, channel_names(config, source.n_channels), config.chunk_ms)
