"""Rolling per-call summaries, sans I/O: events in, ``call.summary`` events out.

A wall view or a CRM integration reads one small event per call instead of replaying its
history: per party the current label, the share of speech time per label, valence and
arousal (latest, trend, recent values for a sparkline), and the call's active alerts.

``CallSummaries.feed(event, now)`` follows the same events subscribers see (alerts
included) and returns the final summary when a call ends; ``due(now)`` returns the
periodic ones (a call at most every ``interval_s``, and only when it changed since its
last summary); ``summaries(streams, now)`` answers a request. A call where nobody spoke
and no alert fired has no periodic or final summary (a request still lists it). State is
bounded per call
(``RECENT_VALUES`` values per series) and dropped when the call ends.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import regex

from streamer.core.alert_rules import CALL_CHANNEL, SEVERITY_RANK
from streamer.core.events import SCHEMA_VERSION, Event
from streamer.supervise.alerts import slope_per_min

log = logging.getLogger(__name__)

QUEUE_MATCH_TIMEOUT_S = 0.05  # alerts.queue_pattern on one stream id, at most

RECENT_VALUES = 30  # per party and dimension: what a sparkline shows
Reason = Literal["interval", "request", "ended"]


@dataclass
class Series:
    """One dimension (valence or arousal) of one party: (stream time, value), bounded."""

    points: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_VALUES))

    def as_dict(self, window_s: float) -> dict[str, object]:
        last = self.points[-1] if self.points else None
        recent = [p for p in self.points if last is not None and p[0] >= last[0] - window_s]
        slope = (slope_per_min([t for t, _ in recent], [v for _, v in recent])
                 if len(recent) >= 2 else None)
        return {"last": round(last[1], 4) if last else None,
                "slope_per_min": round(slope, 4) if slope is not None else None,
                "recent": [round(v, 3) for _, v in self.points]}


@dataclass
class Party:
    active: bool = True
    label: str | None = None
    confidence: float | None = None
    t_end: float | None = None
    utterances: int = 0
    speech_s: float = 0.0
    seconds_per_label: dict[str, float] = field(default_factory=dict)
    valence: Series = field(default_factory=Series)
    arousal: Series = field(default_factory=Series)
    # Labels of the latest speech utterances, oldest first: a strip on the wall for models
    # without valence.
    recent_labels: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_VALUES))

    def add(self, event: Event) -> None:
        self.utterances += 1
        self.t_end = float(event["t_end"])
        if event.get("speech") is False:
            return
        label = str(event["label"])
        duration = max(0.0, float(event["t_end"]) - float(event["t_start"]))
        self.label, self.confidence = label, float(event["confidence"])
        self.speech_s += duration
        self.seconds_per_label[label] = self.seconds_per_label.get(label, 0.0) + duration
        self.recent_labels.append(label)
        for name, series in (("valence", self.valence), ("arousal", self.arousal)):
            value = event.get(name)
            if isinstance(value, int | float):
                series.points.append((float(event["t_end"]), float(value)))

    def as_dict(self, window_s: float) -> dict[str, object]:
        total = self.speech_s
        share = {k: round(v / total, 4) for k, v in self.seconds_per_label.items()} \
            if total > 0 else {}
        return {"active": self.active, "label": self.label,
                "confidence": round(self.confidence, 4) if self.confidence is not None
                else None,
                "t_end": self.t_end, "utterances": self.utterances,
                "speech_s": round(self.speech_s, 3), "share": share,
                "recent_labels": list(self.recent_labels),
                "valence": self.valence.as_dict(window_s),
                "arousal": self.arousal.as_dict(window_s)}


@dataclass(frozen=True)
class ActiveAlert:
    alert_id: str
    rule_id: str
    channel: str
    severity: str
    message: str
    since: float

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class Call:
    queue: str | None
    parties: dict[str, Party] = field(default_factory=dict)
    alerts: dict[str, ActiveAlert] = field(default_factory=dict)  # by alert_id
    t_end: float = 0.0
    # Nothing to summarise until a party spoke or an alert fired (a silent stream: none).
    changed: bool = False
    said_anything: bool = False
    last_sent: float | None = None

    def party(self, channel: str) -> Party:
        return self.parties.setdefault(channel, Party())

    @property
    def severity(self) -> str:
        ranks = [SEVERITY_RANK[a.severity] for a in self.alerts.values()]
        best = max(ranks, default=0)
        return next((k for k, v in SEVERITY_RANK.items() if v == best), "none")


class CallSummaries:
    def __init__(self, interval_s: float = 5.0, trend_window_s: float = 60.0,
                 queue_pattern: str | None = None) -> None:
        self.interval_s = interval_s  # 0: no periodic summaries
        self.trend_window_s = trend_window_s
        self._queue = regex.compile(queue_pattern) if queue_pattern else None
        self.calls: dict[str, Call] = {}
        self.queue_timeouts = 0  # stream ids the pattern took too long on (no queue)

    def queue_of(self, stream_id: str) -> str | None:
        """The queue ``alerts.queue_pattern`` finds in the stream id. A pattern that
        backtracks catastrophically (ReDoS: '(a+)+$' on a client's id) is stopped after
        QUEUE_MATCH_TIMEOUT_S, so one id costs at most that, once per call."""
        if self._queue is None:
            return None
        try:
            match = self._queue.search(stream_id, timeout=QUEUE_MATCH_TIMEOUT_S)
        except TimeoutError:
            self.queue_timeouts += 1
            log.warning("alerts.queue_pattern took more than %.0f ms on a stream id (%d so "
                        "far); that call has no queue. Simplify the pattern (no nested "
                        "repetition such as '(a+)+')", QUEUE_MATCH_TIMEOUT_S * 1000,
                        self.queue_timeouts)
            return None
        return match.group("queue") if match else None

    def _call(self, stream_id: str) -> Call:
        call = self.calls.get(stream_id)
        if call is None:
            call = self.calls[stream_id] = Call(self.queue_of(stream_id))
        return call

    def feed(self, event: Event, now: float | None = None) -> list[Event]:
        """Update the call ``event`` belongs to; the final summary when the call ended."""
        now = time.time() if now is None else now
        kind, sid, channel = event.get("type"), event.get("stream_id"), event.get("channel")
        if not isinstance(sid, str) or not isinstance(channel, str):
            return []
        if kind == "stream.started":
            self._call(sid).party(channel).active = True
            return []
        elif kind == "utterance.emotion":
            call = self._call(sid)
            call.party(channel).add(event)
            call.t_end = max(call.t_end, float(event["t_end"]))
        elif kind == "alert":
            alert = ActiveAlert(str(event["alert_id"]), str(event["rule_id"]), channel,
                                str(event["severity"]), str(event["message"]),
                                float(event["wall_time"]))
            self._call(sid).alerts[alert.alert_id] = alert
        elif kind == "alert.cleared":
            known = self.calls.get(sid)
            if known is None:
                return []
            known.alerts.pop(str(event["alert_id"]), None)
        elif kind == "stream.ended":
            if sid not in self.calls:
                return []
            call = self.calls[sid]
            call.party(channel).active = False
            if any(p.active for p in call.parties.values()):
                call.changed = call.said_anything
                return []
            del self.calls[sid]
            return [self._summary(sid, call, now, "ended")] if call.said_anything else []
        else:
            return []
        call = self.calls[sid]
        call.changed = call.said_anything = True
        return []

    def due(self, now: float | None = None) -> list[Event]:
        """Periodic summaries: calls that changed and were not summarised for interval_s."""
        now = time.time() if now is None else now
        if self.interval_s <= 0:
            return []
        out = []
        for sid, call in self.calls.items():
            if call.changed and (call.last_sent is None
                                 or now - call.last_sent >= self.interval_s):
                out.append(self._summary(sid, call, now, "interval"))
        return out

    def summaries(self, streams: set[str] | None = None, now: float | None = None
                  ) -> list[Event]:
        """A summary of each active call (of ``streams``; None: all), for a request."""
        now = time.time() if now is None else now
        return [self._summary(sid, call, now, "request", mark_sent=False)
                for sid, call in self.calls.items() if streams is None or sid in streams]

    def _summary(self, sid: str, call: Call, now: float, reason: Reason,
                 mark_sent: bool = True) -> Event:
        if mark_sent:
            call.changed, call.last_sent = False, now
        return {"schema": SCHEMA_VERSION, "type": "call.summary", "stream_id": sid,
                "channel": CALL_CHANNEL, "wall_time": now, "reason": reason,
                "active": reason != "ended", "queue": call.queue,
                "t_end": round(call.t_end, 3), "severity": call.severity,
                "parties": {ch: p.as_dict(self.trend_window_s)
                            for ch, p in call.parties.items()},
                "alerts": [a.as_dict() for a in sorted(call.alerts.values(),
                                                       key=lambda a: a.since)]}
