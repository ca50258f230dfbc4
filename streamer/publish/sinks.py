"""Local sinks: a JSONL file and stdout.

Both read from a bus subscription sized to hold every event of a long run
(``LOSSLESS_QUEUE``); they are fast, so in practice the queue stays short.

Fault isolation: an event a sink cannot write (not encodable as JSON, a malformed event,
a write error) is logged with its stream and channel, counted (``faults.count``) and
skipped; the sink goes on with the next event. The JSONL file is created with mode 0600
(it holds transcripts: personal data).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

from streamer.core.errors import PublisherError
from streamer.core.events import Event, to_json
from streamer.core.faults import FaultLog
from streamer.publish.bus import EventBus, Subscription

log = logging.getLogger(__name__)

LOSSLESS_QUEUE = 100_000
JSONL_MODE = 0o600


def open_private(path: Path) -> TextIO:
    """Open ``path`` for appending; a new file is created readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, JSONL_MODE)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o077:
        log.warning("JSONL output %s is readable by others (mode %o); it holds transcripts: "
                    "chmod 600 it", path, mode)
    return os.fdopen(fd, "a", encoding="utf-8")


class LocalSink:
    """What both sinks share: a lossless bus subscription, the fault bulkhead around each
    event, and the count of events written."""

    def __init__(self, sub: Subscription, faults: FaultLog) -> None:
        self._sub = sub
        self.faults = faults
        self.written = 0

    def emit(self, event: Event) -> None:
        """Write one event (the sink's own format and target); may raise."""
        raise NotImplementedError

    def write(self, event: Event) -> None:
        """Write ``event``; one that cannot be written is logged, counted and skipped."""
        try:
            self.emit(event)
        except Exception as exc:  # the bulkhead: one event never stops the sink
            self.faults.record(event, exc)
            return
        self.written += 1

    def drain_now(self) -> None:
        while (event := self._sub.get_nowait()) is not None:
            self.write(event)


class JsonlSink(LocalSink):
    """Appends every event as one JSON line; flushes after each line."""

    def __init__(self, path: str, bus: EventBus) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: TextIO = open_private(self.path)
        except OSError as exc:
            raise PublisherError(f"cannot open JSONL output '{path}': {exc}") from exc
        super().__init__(bus.subscribe("jsonl", maxsize=LOSSLESS_QUEUE),
                         FaultLog(f"JSONL sink {path}"))

    async def run(self) -> None:
        try:
            while True:
                self.write(await self._sub.get())
        finally:
            self.drain_now()
            self._file.close()

    def emit(self, event: Event) -> None:
        self._file.write(to_json(event) + "\n")
        self._file.flush()


def format_pretty(event: Event) -> str | None:
    kind = event["type"]
    where = f"[{event['stream_id']}/{event['channel']}]"
    if kind == "utterance.emotion":
        lat = event["latency"]
        top = sorted(event["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        probs = " ".join(f"{k}={v:.2f}" for k, v in top)
        if not event.get("speech", True):
            probs = f"not speech: {event.get('abstain_reason')}"
        return (f"{where} {event['t_start']:7.2f}-{event['t_end']:7.2f}s  "
                f"{event['label'].upper():8s} ({probs})  \"{event['text']}\"  "
                f"[{lat['total_ms']:.0f} ms after speech end]")
    if kind == "utterance.partial":
        return f"{where} ... {event['text']}"
    if kind == "stream.started":
        return f"{where} stream started: {event['source']} (model {event['model_id']})"
    if kind == "stream.ended":
        nonspeech = event.get("nonspeech_utterances", 0)
        return (f"{where} stream ended ({event['reason']}): {event['utterances']} utterances "
                f"({nonspeech} not speech) in {event['duration_s']:.1f} s")
    return None


class StdoutSink(LocalSink):
    """Prints every event (or, pretty, a line per utterance and stream) to stdout."""

    def __init__(self, bus: EventBus, pretty: bool, include_partials: bool,
                 out: TextIO | None = None) -> None:
        self.pretty = pretty
        self.out = out or sys.stdout
        accept = (lambda e: True) if include_partials else (
            lambda e: e["type"] != "utterance.partial")
        super().__init__(bus.subscribe("stdout", accept=accept, maxsize=LOSSLESS_QUEUE),
                         FaultLog("stdout sink"))

    async def run(self) -> None:
        try:
            while True:
                self.write(await self._sub.get())
                await asyncio.sleep(0)
        finally:
            self.drain_now()

    def emit(self, event: Event) -> None:
        text = to_json(event)  # refuses NaN/inf and lone surrogates, pretty or not
        line = format_pretty(event) if self.pretty else text
        if line is not None:
            print(line, file=self.out, flush=True)
