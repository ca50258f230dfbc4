"""One call: per party a bounded audio feed into ``Recognizer.run_channel``.

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

from streamer.ingest.protocol import CallStart
from streamer.messages import AudioChunk
from streamer.recognizer import Recognizer
from streamer.telephony import ChannelUpsampler

log = logging.getLogger(__name__)


class ChannelFeed:
    """One party's audio, upsampled once to 16 kHz, queued for its recognizer channel.

    The queue holds at most ``maxsize`` chunks (``maxsize * chunk_ms`` of audio).
    Overflow policy: ``push`` waits while the queue is full. The connection handler then
    stops reading the WebSocket, the library's own receive buffer (a few messages) fills,
    and TCP flow control pushes back on the sender: memory stays bounded and audio is
    never silently dropped. ``blocked_s`` counts how long the feed waited.
    """

    def __init__(self, stream_id: str, channel: str, in_rate: int, chunk_ms: int,
                 maxsize: int) -> None:
        self.channel = channel
        self._upsampler = ChannelUpsampler(stream_id, channel, in_rate, chunk_ms)
        self._queue: asyncio.Queue[AudioChunk | None] = asyncio.Queue(maxsize=maxsize)
        self._in_rate = in_rate
        self._closed = False
        self.blocked_s = 0.0

    async def push(self, samples: np.ndarray) -> None:
        for chunk in self._upsampler.push(samples):
            await self._put(chunk)

    async def push_silence(self, seconds: float) -> None:
        await self.push(np.zeros(int(seconds * self._in_rate), dtype=np.float32))

    async def close(self) -> None:
        """End of this party's audio; idempotent."""
        if self._closed:
            return
        self._closed = True
        for chunk in self._upsampler.flush():
            await self._put(chunk)
        await self._put(None)

    async def _put(self, item: AudioChunk | None) -> None:
        if self._queue.full():
            started = time.monotonic()
            await self._queue.put(item)
            self.blocked_s += time.monotonic() - started
        else:
            self._queue.put_nowait(item)

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    @property
    def seconds(self) -> float:
        return self._upsampler.seconds


class CallSession:
    """The recognizer channels of one call. ``run()`` returns utterances per channel."""

    def __init__(self, recognizer: Recognizer, start: CallStart, chunk_ms: int,
                 queue_chunks: int, pause_silence_s: float) -> None:
        self.recognizer = recognizer
        self.start = start
        self.stream_id = start.stream_id
        self.pause_silence_s = pause_silence_s
        self.feeds = {role: ChannelFeed(start.stream_id, role, start.sample_rate, chunk_ms,
                                        queue_chunks) for role in start.channels}
        self.ended = False
        self.end_reason = "end_of_input"  # or "client_closed": gone without ending the call

    async def run(self) -> dict[str, int]:
        """Run every party's recognizer channel to its end (after ``end()``)."""
        async with asyncio.TaskGroup() as tg:
            tasks = {role: tg.create_task(
                self.recognizer.run_channel(feed.chunks(), self.stream_id, role,
                                            f"{self.start.source} party {role}",
                                            end_reason=lambda: self.end_reason),
                name=f"call:{self.stream_id}:{role}") for role, feed in self.feeds.items()}
        return {role: task.result() for role, task in tasks.items()}

    async def audio(self, channel: str, samples: np.ndarray) -> None:
        await self.feeds[channel].push(samples)

    async def pause(self) -> None:
        """Audio stops for a while (hold): feed enough silence to end open utterances."""
        for feed in self.feeds.values():
            await feed.push_silence(self.pause_silence_s)

    async def end(self, reason: str = "end_of_input") -> None:
        """No more audio: each party's recognizer finishes what it has, then stops."""
        if not self.ended:
            self.end_reason = reason
        self.ended = True
        for feed in self.feeds.values():
            await feed.close()

    @property
    def blocked_s(self) -> float:
        return sum(feed.blocked_s for feed in self.feeds.values())
