"""Audio sources: file replay, microphone (sounddevice) and raw PCM on stdin.

Each source is a ``streamer.channel.Channel``: ``AudioChunk``s (16 kHz mono float32) for
one stream and channel. Resampling happens here, once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from models.audio import SAMPLE_RATE
from streamer.audio_io import MonoResampler, iter_file_blocks, open_audio_file, pcm16_to_float
from streamer.channel import EndReason
from streamer.config import SourceConfig
from streamer.errors import AudioInputError
from streamer.messages import AudioChunk

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


class FileSource:
    """Replays an audio file, paced at real time or as fast as possible."""

    end_reason: EndReason = "end_of_input"  # these sources only end normally

    def __init__(self, config: SourceConfig, path: str | None = None) -> None:
        self.path = resolve_source_path(path or config.path)
        self.realtime = config.realtime
        self.stream_id = config.stream_id
        self.channel = config.channel
        self.chunk_s = config.chunk_ms / 1000
        open_audio_file(self.path).close()  # fail now, with a clear message, not mid-pipeline

    def describe(self) -> str:
        return f"file:{self.path}"

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        chunker = _Chunker(self.stream_id, self.channel, int(self.chunk_s * SAMPLE_RATE))
        t0 = time.monotonic()
        blocks = iter_file_blocks(self.path, block_s=self.chunk_s)
        for block in blocks:
            for chunk in chunker.push(block):
                if self.realtime:
                    # Pace by the chunk's end: audio is "available" once it has been spoken.
                    delay = t0 + chunk.t_start + chunk.duration - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0)  # let the rest of the pipeline run
                yield chunk
        for chunk in chunker.push(np.zeros(0, dtype=np.float32), final=True):
            yield chunk


class StdinSource:
    """Raw little-endian int16 PCM from a binary stream (stdin by default)."""

    end_reason: EndReason = "end_of_input"  # these sources only end normally

    def __init__(self, config: SourceConfig, stream: BinaryIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.channels = config.stdin_channels
        self.resampler = MonoResampler(config.stdin_sample_rate)
        self.stream_id = config.stream_id
        self.channel = config.channel
        self.read_bytes = max(2 * self.channels, int(
            config.stdin_sample_rate * config.chunk_ms / 1000) * 2 * self.channels)

    def describe(self) -> str:
        return f"stdin:pcm16le/{self.resampler.in_rate}Hz/{self.channels}ch"

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        chunker = _Chunker(self.stream_id, self.channel, int(SAMPLE_RATE * 0.1))
        leftover = b""
        while True:
            data = await asyncio.to_thread(self.stream.read, self.read_bytes)
            last = not data
            data = leftover + (data or b"")
            frame_bytes = 2 * self.channels
            usable = len(data) - len(data) % frame_bytes
            leftover = data[usable:]
            block = self.resampler.push(pcm16_to_float(data[:usable], self.channels), last=last)
            for chunk in chunker.push(block, final=last):
                yield chunk
            if last:
                if leftover:
                    log.warning("stdin ended inside a PCM frame; %d trailing bytes ignored",
                                len(leftover))
                return


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
        self.sample_rate = self._negotiate_rate(config.mic_sample_rate)
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
                self.sd.check_input_settings(device=self.device, channels=1, samplerate=rate,
                                             dtype="float32")
                return int(rate)
            except (ValueError, self.sd.PortAudioError) as exc:
                errors.append(f"{rate} Hz: {exc}")
        raise AudioInputError(
            f"microphone '{self.info['name']}' accepts none of the sample rates tried "
            f"({'; '.join(errors)}); set source.mic_sample_rate to one it supports")

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=self.QUEUE_BLOCKS)
        put = _drop_oldest_put(queue, self._count_drop)

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            if status:
                log.warning("microphone status: %s", status)
            loop.call_soon_threadsafe(put, indata[:, 0].copy())

        resampler = MonoResampler(self.sample_rate)
        chunker = _Chunker(self.stream_id, self.channel, int(SAMPLE_RATE * 0.1))
        with self.sd.InputStream(device=self.device, channels=1, samplerate=self.sample_rate,
                                 blocksize=self.block_frames, dtype="float32",
                                 callback=callback):
            while True:
                block = await queue.get()
                for chunk in chunker.push(resampler.push(block)):
                    yield chunk

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


def make_source(config: SourceConfig) -> AudioSource:
    if config.kind == "file":
        return FileSource(config)
    if config.kind == "stdin":
        return StdinSource(config)
    return MicSource(config)
