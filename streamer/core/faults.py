"""Fault isolation for publishers: one bad event is logged, counted and skipped.

Every publisher (stdout, JSONL, WebSocket subscribers, MQTT) and the bus hand each event
to a ``FaultLog`` when delivering it fails, and go on with the next one. The log line
names the event type, stream and channel (escaped, so a hostile id cannot break the log)
and the error; after ``LOG_FIRST`` faults only every ``LOG_EVERY``-th is logged, the
count (``FaultLog.count``) keeps them all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streamer.core.events import Event, describe
from streamer.core.validation import shown

log = logging.getLogger(__name__)

LOG_FIRST = 20
LOG_EVERY = 1000


@dataclass
class FaultLog:
    """Faults of one publisher (``where``, e.g. "stdout sink")."""

    where: str
    count: int = 0

    def record(self, event: Event | None, exc: BaseException, action: str = "skipped it"
               ) -> None:
        self.count += 1
        if self.count <= LOG_FIRST or self.count % LOG_EVERY == 0:
            what = describe(event) if isinstance(event, dict) else shown(event)
            log.error("%s: could not deliver the %s (%s: %s); %s (%d faults so far)",
                      self.where, what, type(exc).__name__, escaped(str(exc)), action,
                      self.count, exc_info=not isinstance(exc, ValueError | OSError))


def escaped(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters, non-ASCII and controls backslash-escaped."""
    return text[:limit].encode("ascii", "backslashreplace").decode("ascii")
