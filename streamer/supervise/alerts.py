"""Alert rules on sustained emotion, sans I/O: events in, ``alert`` / ``alert.cleared`` out.

``AlertEngine.feed(event, now)`` takes the events every subscriber sees (``stream.started``,
``utterance.partial``, ``utterance.emotion``, ``stream.ended``) and returns the alert events
they cause; ``tick(now)`` evaluates what time alone changes (silence, cool-downs ending).
``now`` is wall-clock seconds (the shell passes ``time.time()``; tests pass numbers).

Rule kinds (docs/alerts.md has the configuration):

- ``label_count``: a party's label with calibrated confidence >= ``min_confidence`` in
  ``k`` of its last ``n`` speech utterances (non-speech utterances do not count);
- ``valence_trend``: the least-squares slope of a party's valence over the last
  ``window_s`` seconds of its speech is <= ``max_slope_per_min`` (valence units per minute);
- ``both_parties``: the latest speech utterance of every party (at least two) has the label
  with confidence >= ``min_confidence``, ending within ``within_s`` of each other;
- ``silence``: nobody in the call has spoken for ``min_s`` seconds (from the end of the
  last speech, or the call's start).

A rule scoped to parties (``channels``) evaluates each party of a call on its own and its
alert carries that party's channel; ``both_parties`` and ``silence`` are call-wide and carry
``channel: "call"``. An alert clears (``alert.cleared``) when its condition no longer holds,
when the call ends, or when its rule is removed or changed by a reload. Cool-down: after an
alert clears, the same rule on the same call and party does not fire again for
``cooldown_s`` seconds.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from streamer.core.alert_rules import (
    CALL_CHANNEL,
    CALL_WIDE,
    HISTORY_PER_PARTY,
    BothParties,
    LabelCount,
    Rule,
    Silence,
    ValenceTrend,
    describe_rule,
)
from streamer.core.events import SCHEMA_VERSION, Event

MAX_CITED_TEXT = 1000  # characters of an utterance's transcript an alert cites
ClearReason = Literal["condition_ended", "stream_ended", "rule_removed", "rule_changed"]


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class Utterance:
    """What the rules need of one speech utterance, and what an alert cites of it."""

    utterance_id: str
    channel: str
    label: str
    confidence: float
    valence: float | None
    t_start: float
    t_end: float
    text: str  # at most MAX_CITED_TEXT characters

    @classmethod
    def of(cls, event: Event) -> Utterance:
        valence = event.get("valence")
        return cls(str(event["utterance_id"]), str(event["channel"]), str(event["label"]),
                   float(event["confidence"]),
                   float(valence) if isinstance(valence, int | float) else None,
                   float(event["t_start"]), float(event["t_end"]),
                   str(event.get("text") or "")[:MAX_CITED_TEXT])

    def cited(self) -> dict[str, Any]:
        """The utterance as an alert event lists it (``utterances``)."""
        return {"utterance_id": self.utterance_id, "channel": self.channel, "text": self.text,
                "label": self.label, "confidence": self.confidence, "t_start": self.t_start,
                "t_end": self.t_end}


@dataclass
class CallState:
    channels: set[str] = field(default_factory=set)  # parties with an open stream
    history: dict[str, collections.deque[Utterance]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # parties in the order first seen
    last_speech: float = 0.0  # wall time speech was last heard (or the call started)

    def party(self, channel: str) -> collections.deque[Utterance]:
        if channel not in self.history:
            self.history[channel] = collections.deque(maxlen=HISTORY_PER_PARTY)
            self.order.append(channel)
        return self.history[channel]


@dataclass
class ActiveAlert:
    alert_id: str
    rule: Rule
    stream_id: str
    channel: str
    fired_at: float


@dataclass(frozen=True)
class Finding:
    """A rule's condition holding for one call (and party)."""

    channel: str
    utterances: tuple[Utterance, ...]
    value: float
    detail: str


Key = tuple[str, str, str]  # rule id, stream id, channel


class AlertEngine:
    """Evaluates the rules over every call; holds only bounded per-call state."""

    def __init__(self, rules: Iterable[Rule] = (), run_id: str = "") -> None:
        """``run_id``: put in every alert id, so ids stay unique across restarts where
        alerts are kept (the alert store); "" for none."""
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.run_id = run_id
        self.calls: dict[str, CallState] = {}
        self.active: dict[Key, ActiveAlert] = {}
        self._cleared_at: dict[Key, float] = {}  # for cool-downs; pruned with their calls
        self._serial = 0
        self.fired = 0
        self.cleared = 0

    # -- input

    def feed(self, event: Event, now: float | None = None) -> list[Event]:
        """The alert events ``event`` causes (usually none)."""
        now = time.time() if now is None else now
        kind, sid, channel = event.get("type"), event.get("stream_id"), event.get("channel")
        if not isinstance(sid, str) or not isinstance(channel, str):
            return []
        if kind == "stream.started":
            call = self.calls.get(sid)
            if call is None:
                call = self.calls[sid] = CallState(last_speech=now)
            call.channels.add(channel)
            call.party(channel)
            return []
        call = self.calls.get(sid)
        if call is None:  # events of a call that started before us: track it from here
            call = self.calls[sid] = CallState(channels={channel}, last_speech=now)
        if kind == "utterance.partial":
            call.last_speech = max(call.last_speech, now)  # someone is speaking now
            return self._evaluate(sid, call, now, event)
        if kind == "utterance.emotion":
            call.channels.add(channel)
            history = call.party(channel)
            if event.get("speech") is False:
                return []
            history.append(Utterance.of(event))
            latency_s = float((event.get("latency") or {}).get("total_ms", 0.0)) / 1000.0
            call.last_speech = max(call.last_speech, now - latency_s)  # the end of speech
            return self._evaluate(sid, call, now, event)
        if kind == "stream.ended":
            call.channels.discard(channel)
            if call.channels:
                return self._evaluate(sid, call, now, event)
            return self._end_call(sid, now)
        return []

    def tick(self, now: float | None = None) -> list[Event]:
        """What time alone changes: silence, and conditions that held during a cool-down."""
        now = time.time() if now is None else now
        out: list[Event] = []
        for sid, call in list(self.calls.items()):
            out += self._evaluate(sid, call, now, None)
        return out

    def set_rules(self, rules: Iterable[Rule], now: float | None = None) -> list[Event]:
        """Replace the rules (a reload): alerts of removed or changed rules clear."""
        now = time.time() if now is None else now
        new = {r.id: r for r in rules}
        out = []
        for key, alert in list(self.active.items()):
            if alert.rule.id not in new:
                out.append(self._clear(key, now, "rule_removed"))
            elif new[alert.rule.id] != alert.rule:
                out.append(self._clear(key, now, "rule_changed"))
        self.rules = tuple(new.values())
        return out

    # -- evaluation

    def _evaluate(self, sid: str, call: CallState, now: float,
                  trigger: Event | None) -> list[Event]:
        out: list[Event] = []
        for rule in self.rules:
            found = {f.channel: f for f in findings(rule, call, now)}
            for channel in scope(rule, call):
                key = (rule.id, sid, channel)
                finding = found.get(channel)
                if finding is None:
                    if key in self.active:
                        out.append(self._clear(key, now, "condition_ended"))
                elif key not in self.active and not self._cooling(key, rule, now):
                    out.append(self._fire(key, rule, finding, now, trigger))
        return out

    def _cooling(self, key: Key, rule: Rule, now: float) -> bool:
        cleared = self._cleared_at.get(key)
        return cleared is not None and now - cleared < rule.cooldown_s

    def _fire(self, key: Key, rule: Rule, finding: Finding, now: float,
              trigger: Event | None) -> Event:
        rule_id, sid, channel = key
        self._serial += 1
        serial = f"{self.run_id}.{self._serial}" if self.run_id else str(self._serial)
        alert = ActiveAlert(f"{rule_id}/{sid}/{channel}/{serial}", rule, sid, channel, now)
        self.active[key] = alert
        self.fired += 1
        utts = finding.utterances
        trigger_time = trigger.get("wall_time") if trigger is not None else None
        return {"schema": SCHEMA_VERSION, "type": "alert", "stream_id": sid,
                "channel": channel, "wall_time": now, "alert_id": alert.alert_id,
                "rule_id": rule_id, "kind": rule.kind, "severity": rule.severity,
                "message": f"{describe_rule(rule)}: {finding.detail}",
                "value": round(finding.value, 4),
                "utterance_ids": [u.utterance_id for u in utts],
                "utterances": [u.cited() for u in utts],
                "t_start": min((u.t_start for u in utts), default=None),
                "t_end": max((u.t_end for u in utts), default=None),
                "trigger_wall_time": trigger_time if isinstance(trigger_time, int | float)
                else None}

    def _clear(self, key: Key, now: float, reason: ClearReason) -> Event:
        alert = self.active.pop(key)
        self._cleared_at[key] = now
        self.cleared += 1
        return {"schema": SCHEMA_VERSION, "type": "alert.cleared",
                "stream_id": alert.stream_id, "channel": alert.channel, "wall_time": now,
                "alert_id": alert.alert_id, "rule_id": alert.rule.id, "kind": alert.rule.kind,
                "severity": alert.rule.severity, "reason": reason,
                "active_s": round(max(0.0, now - alert.fired_at), 3)}

    def _end_call(self, sid: str, now: float) -> list[Event]:
        out = [self._clear(key, now, "stream_ended") for key in list(self.active)
               if key[1] == sid]
        self.calls.pop(sid, None)
        for key in [k for k in self._cleared_at if k[1] == sid]:
            del self._cleared_at[key]
        return out

    def active_alerts(self, stream_id: str) -> list[ActiveAlert]:
        return [a for a in self.active.values() if a.stream_id == stream_id]


def scope(rule: Rule, call: CallState) -> Iterator[str]:
    """The channels a rule's alerts can carry in this call."""
    if isinstance(rule, CALL_WIDE):
        yield CALL_CHANNEL
        return
    for channel in call.order:
        if rule.channels is None or channel in rule.channels:
            yield channel


def findings(rule: Rule, call: CallState, now: float) -> list[Finding]:
    """Where ``rule``'s condition holds in ``call`` now."""
    if isinstance(rule, Silence):
        quiet = now - call.last_speech
        if call.channels and quiet >= rule.min_s:
            return [Finding(CALL_CHANNEL, (), quiet, f"nobody spoke for {quiet:.0f} s")]
        return []
    if isinstance(rule, BothParties):
        return both_parties(rule, call)
    out = []
    for channel in scope(rule, call):
        history = call.history.get(channel) or ()
        finding = (label_count(rule, channel, tuple(history)) if isinstance(rule, LabelCount)
                   else valence_trend(rule, channel, tuple(history)))
        if finding is not None:
            out.append(finding)
    return out


def label_count(rule: LabelCount, channel: str, history: tuple[Utterance, ...]
                ) -> Finding | None:
    last = history[-rule.n:]
    hits = tuple(u for u in last if u.label == rule.label
                 and u.confidence >= rule.min_confidence)
    if len(hits) < rule.k:
        return None
    return Finding(channel, hits, float(len(hits)),
                   "confidence " + ", ".join(f"{u.confidence:.2f}" for u in hits))


def valence_trend(rule: ValenceTrend, channel: str, history: tuple[Utterance, ...]
                  ) -> Finding | None:
    rated = [u for u in history if u.valence is not None]
    if not rated:
        return None
    window = tuple(u for u in rated if u.t_end >= rated[-1].t_end - rule.window_s)
    if len(window) < rule.min_utterances:
        return None
    slope = slope_per_min([u.t_end for u in window], [u.valence or 0.0 for u in window])
    if slope is None or slope > rule.max_slope_per_min:
        return None
    return Finding(channel, window, slope, f"{slope:+.2f}/min over {len(window)} utterances")


def slope_per_min(ts: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ys over ts (seconds), per minute; None if ts do not vary."""
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var <= 1e-9:
        return None
    return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def both_parties(rule: BothParties, call: CallState) -> list[Finding]:
    parties = [c for c in call.order if rule.channels is None or c in rule.channels]
    wanted = len(rule.channels) if rule.channels is not None else 2
    latest = [call.history[c][-1] for c in parties if call.history.get(c)]
    if len(parties) < wanted or len(latest) < len(parties):
        return []
    if not all(u.label == rule.label and u.confidence >= rule.min_confidence for u in latest):
        return []
    spread = max(u.t_end for u in latest) - min(u.t_end for u in latest)
    if spread > rule.within_s:
        return []
    return [Finding(CALL_CHANNEL, tuple(latest), min(u.confidence for u in latest),
                    f"{', '.join(parties)} all {rule.label}")]

