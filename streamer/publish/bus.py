"""Fan-out event bus with one bounded queue per subscriber.

Publishing never blocks the pipeline. Overflow policy: when a subscriber's
queue is full, its OLDEST event is dropped and counted (``Subscription.dropped``);
the subscriber learns how many it missed from ``take_dropped()``. A slow
dashboard therefore loses old events instead of stalling recognition for
everyone. Publishers that must not lose events (MQTT, JSONL) size their
queue for that and keep their own retry buffer.

Fault isolation: a subscriber whose filter raises on an event misses that event only
(logged and counted in ``EventBus.faults``); the other subscribers still get it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field

from streamer.core.events import Event
from streamer.core.faults import FaultLog
from streamer.core.redaction import redact_event

EventFilter = Callable[[Event], bool]


def accept_all(event: Event) -> bool:
    return True


class Subscription:
    """One consumer's view of the bus. ``get()`` is cancel-safe (nothing is lost)."""

    def __init__(self, bus: EventBus, name: str, maxsize: int, accept: EventFilter) -> None:
        self.name = name
        self.accept = accept
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0
        self._unreported = 0

    def offer(self, event: Event) -> None:
        if not self.accept(event):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            self._unreported += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def take_dropped(self) -> int:
        """Events dropped since the last call (for 'you lagged' notices)."""
        n, self._unreported = self._unreported, 0
        return n

    def qsize(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._bus.unsubscribe(self)


@dataclass
class StreamDirectory:
    """Active streams and their channels (for WebSocket hello messages and dashboards)."""

    channels: dict[str, list[str]] = field(default_factory=dict)

    def update(self, event: Event) -> None:
        sid, ch = event.get("stream_id"), event.get("channel")
        if sid is None or ch is None:
            return
        if event.get("type") == "stream.started":
            chans = self.channels.setdefault(sid, [])
            if ch not in chans:
                chans.append(ch)
        elif event.get("type") == "stream.ended":
            chans = self.channels.get(sid, [])
            if ch in chans:
                chans.remove(ch)
            if not chans:
                self.channels.pop(sid, None)

    def as_list(self) -> list[dict[str, object]]:
        return [{"stream_id": s, "channels": list(c)} for s, c in self.channels.items()]


class EventBus:
    def __init__(self, default_queue_size: int = 1000,
                 redact_digit_runs: int | None = None, replay_events: int = 0) -> None:
        self.default_queue_size = default_queue_size
        # The last events (partials excepted) for new subscribers (``recent_events``).
        self._recent: collections.deque[Event] = collections.deque(maxlen=replay_events)
        self.redact_digit_runs = redact_digit_runs  # see streamer.core.redaction
        self._subscribers: list[Subscription] = []
        self.streams = StreamDirectory()
        self.published = 0
        self.faults = FaultLog("event bus")
        # Called with every published event before the subscribers (metrics); must be cheap.
        self.observers: list[Callable[[Event], None]] = []

    def subscribe(self, name: str, accept: EventFilter = accept_all,
                  maxsize: int | None = None) -> Subscription:
        sub = Subscription(self, name, maxsize or self.default_queue_size, accept)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber; never blocks (see module overflow policy)."""
        if self.redact_digit_runs:
            event = redact_event(event, self.redact_digit_runs)
        self.streams.update(event)
        self.published += 1
        if self._recent.maxlen and event.get("type") != "utterance.partial":
            self._recent.append(event)
        for observe in self.observers:
            try:
                observe(event)
            except Exception as exc:  # a metrics bug must not stop recognition
                self.faults.record(event, exc, "an observer missed it")
        for sub in list(self._subscribers):
            try:
                sub.offer(event)
            except Exception as exc:  # one subscriber's filter must not starve the others
                self.faults.record(event, exc, f"subscriber {sub.name} misses it")

    def recent_events(self) -> list[Event]:
        """The last ``replay_events`` published events (partials excepted), oldest first."""
        return list(self._recent)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The current subscriptions (for counters: ``dropped``, ``qsize()``)."""
        return tuple(self._subscribers)
