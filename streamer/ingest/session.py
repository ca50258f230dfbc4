"""One call: per party a bounded audio feed, a ``streamer.core.channel.Channel`` for
``Recognizer.run_channel``.

``CallSession`` owns everything a call needs (resamplers, queues, the per-channel
recognizer tasks); it is created when the protocol says the call started and dropped
when the connection handler returns, so a call's state is freed when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from streamer.audio.telephony import ChannelUpsampler
from streamer.core.channel import EndReason
from streamer.core.messages import AudioChunk, AudioPause
from streamer.engine.recognizer import Recognizer
from streamer.ingest.protocol import CallStart

log = logging.getLogger(__name__)


class ChannelFeed:
    """One party's audio, upsampled once to 16 kHz, queued for its recognizer channel.

    The queue holds at most ``maxsize`` chunks (``maxsize * chunk_ms`` of audio).
    Overflow policy: ``push`` waits while the queue is full. The connection handler then
    stops reading the WebSocket, the library's own receive buffer (a few messages) fills,
    and TCP flow control pushes back on the sender: memory stays bounded and audio is
    never silently dropped. ``blocked_s`` counts how long the feed waited.
    """

    def __init__(self, stream_id: str, channel: str, source: str, in_rate: int,
                 chunk_ms: int, maxsize: int) -> None:
        self.stream_id = stream_id
        self.channel = channel
        self._source = source
        self.input_rate = in_rate  # the call's rate (picks asr.model_8k: engine.recognizer)
        self._upsampler = ChannelUpsampler(stream_id, channel, in_rate, chunk_ms)
        self._queue: asyncio.Queue[AudioChunk | AudioPause | None] = asyncio.Queue(maxsize)
        self._closed = False
        self._end_reason: EndReason = "end_of_input"
        self.blocked_s = 0.0

    def describe(self) -> str:
        return self._source

    @property
    def end_reason(self) -> EndReason:
        return self._end_reason

    async def push(self, samples: np.ndarray) -> None:
        for chunk in self._upsampler.push(samples):
            await self._put(chunk)

    async def pause(self) -> None:
        """The audio stops for a while: the recognizer closes the open utterance."""
        for chunk in self._upsampler.drain():
            await self._put(chunk)
        await self._put(AudioPause())

    async def close(self, reason: EndReason = "end_of_input") -> None:
        """End of this party's audio; idempotent (the first reason counts)."""
        if self._closed:
            return
        self._closed = True
        self._end_reason = reason
        for chunk in self._upsampler.flush():
            await self._put(chunk)
        await self._put(None)

    async def _put(self, item: AudioChunk | AudioPause | None) -> None:
        if self._queue.full():
            started = time.monotonic()
            await self._queue.put(item)
            self.blocked_s += time.monotonic() - started
        else:
            self._queue.put_nowait(item)

    async def chunks(self) -> AsyncIterator[AudioChunk | AudioPause]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    @property
    def seconds(self) -> float:
        return self._upsampler.seconds

    @property
    def queued(self) -> int:
        """Chunks waiting for the recognizer (a metrics gauge)."""
        return self._queue.qsize()


class CallSession:
    """The recognizer channels of one call. ``run()`` returns utterances per channel."""

    def __init__(self, recognizer: Recognizer, start: CallStart, chunk_ms: int,
                 queue_chunks: int) -> None:
        self.recognizer = recognizer
        self.start = start
        self.stream_id = start.stream_id
        self.feeds = {role: ChannelFeed(start.stream_id, role, f"{start.source} party {role}",
                                        start.sample_rate, chunk_ms, queue_chunks)
                      for role in start.channels}
        self.ended = False
        self.connection: object | None = None  # the connection that carries this call

    async def run(self) -> dict[str, int]:
        """Run every party's recognizer channel to its end (after ``end()``)."""
        async with asyncio.TaskGroup() as tg:
            tasks = {role: tg.create_task(self.recognizer.run_channel(feed),
                                          name=f"call:{self.stream_id}:{role}")
                     for role, feed in self.feeds.items()}
        return {role: task.result() for role, task in tasks.items()}

    async def audio(self, channel: str, samples: np.ndarray) -> None:
        await self.feeds[channel].push(samples)

    async def pause(self) -> None:
        """Audio stops for a while (hold): every party's open utterance ends now."""
        for feed in self.feeds.values():
            await feed.pause()

    async def end(self, reason: EndReason = "end_of_input") -> None:
        """No more audio: each party's recognizer finishes what it has, then stops."""
        self.ended = True
        for feed in self.feeds.values():
            await feed.close(reason)

    @property
    def blocked_s(self) -> float:
        return sum(feed.blocked_s for feed in self.feeds.values())

    @property
    def queued_chunks(self) -> int:
        return sum(feed.queued for feed in self.feeds.values())
