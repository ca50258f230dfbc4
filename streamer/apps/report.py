"""``emotion-stream report``: recorded calls in, one folder of review files per call out.

Each input file runs through the same pipeline as ``run --fast`` (``pipeline.run_pipeline``
with ``source.realtime=false``), so its labels are the live path's. The published events
are collected from the bus and everything else is built from them by pure functions:
``utterances.csv``, ``captions.vtt``/``.srt``, ``summary.json`` and ``report.html``.

Alerts are not taken from the run: ``--fast`` compresses wall time, which would shorten
cool-downs and hide silences. Instead the events are replayed, in stream time, through the
same ``alerts.AlertEngine`` and ``summary.CallSummaries`` the supervisor feeds live
(``with_alerts``), so the report shows the alerts a live call would have raised.

Files are independent: every file starts from the emotion model's statistics as loaded
(``run --fast`` on that file alone gives the same labels), and a file that cannot be read
is reported on one line while the others go on.
"""

from __future__ import annotations

import asyncio
import colorsys
import csv
import dataclasses
import functools
import hashlib
import html
import io
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.core.alert_rules import Rule, describe_rule, load_rules, parse_rules
from streamer.core.config import AppConfig
from streamer.core.errors import StreamerError
from streamer.core.events import Event, to_json
from streamer.core.validation import TOPIC_RESERVED
from streamer.publish.bus import EventBus, Subscription
from streamer.publish.sinks import JSONL_MODE, LOSSLESS_QUEUE
from streamer.publish.ws_server import WebSocketServer
from streamer.sources.local import BUILTIN_SAMPLES, make_source, resolve_source_path
from streamer.supervise.alerts import AlertEngine
from streamer.supervise.summary import CallSummaries

if TYPE_CHECKING:  # streamer.runtime loads torch: only when a report runs
    from streamer.engine.loading import Models

log = logging.getLogger(__name__)

# What a folder is searched for (top level only); a file named on the command line is
# tried whatever its name.
AUDIO_SUFFIXES = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
    ".au", ".snd", ".caf", ".w64", ".rf64"})
OUTPUTS = ("events.jsonl", "utterances.csv", "captions.vtt", "captions.srt", "summary.json",
           "report.html")
CSV_COLUMNS = ("start", "end", "party", "speaker", "text", "label", "confidence")
MAX_NAME_CHARS = 100  # a call folder's name (and stream id), before a "-2" suffix

# Used when the config names no rules (alerts.rules and alerts.rules_file unset), so that a
# report shows something worth a look; docs/alerts.md explains each kind. Rules on a label
# the model does not have are left out. alerts.rules: [] means none.
REPORT_DEFAULT_RULES: tuple[dict[str, Any], ...] = (
    {"id": "angry", "kind": "label_count", "label": "angry", "min_confidence": 0.7,
     "k": 2, "n": 3, "severity": "critical"},
    {"id": "both-angry", "kind": "both_parties", "label": "angry", "min_confidence": 0.6},
    {"id": "souring", "kind": "valence_trend", "window_s": 60, "max_slope_per_min": -0.3},
    {"id": "dead-air", "kind": "silence", "min_s": 30, "severity": "info"},
)


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ReportInput:
    """One recording and the name of its output folder (also its stream id)."""

    path: Path
    name: str


@dataclass(frozen=True)
class InputProblem:
    """A command-line input that gives no recording (missing path, empty folder)."""

    path: str
    message: str


def safe_name(stem: str) -> str:
    """A folder name and stream id from a file stem: printable, no ``/ + #`` (the edge rule
    for stream ids), no leading dot (hidden, or ``..``), bounded."""
    cleaned = "".join(c if c.isprintable() and c not in TOPIC_RESERVED and c != "\\" else "_"
                      for c in stem).strip().lstrip(".")
    return cleaned[:MAX_NAME_CHARS] or "call"


def unique_names(stems: Sequence[str]) -> list[str]:
    """``safe_name`` of each stem, made unique (``call``, ``call-2``, ...); compared
    case-insensitively, as some file systems do."""
    taken: set[str] = set()
    out = []
    for stem in stems:
        base = candidate = safe_name(stem)
        n = 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


def collect_inputs(args: Sequence[str]) -> tuple[list[ReportInput], list[InputProblem]]:
    """The recordings named by ``args`` (files, folders: their audio files, sorted, top
    level; ``builtin:sample...``) with unique folder names, and the arguments that give
    none. A file is not opened here: decoding errors come with its run."""
    paths: list[Path] = []
    problems: list[InputProblem] = []
    for arg in args:
        path = resolve_source_path(arg) if arg in BUILTIN_SAMPLES else Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                           and not p.name.startswith("."))
            if not found:
                problems.append(InputProblem(arg, f"folder '{arg}' holds no audio files "
                                             f"({', '.join(sorted(AUDIO_SUFFIXES))}); give "
                                             "a folder of recordings or the files themselves"))
            paths += found
        elif path.exists():
            paths.append(path)
        else:
            problems.append(InputProblem(arg, f"'{arg}' does not exist; check the path"))
    names = unique_names([p.stem for p in paths])
    return [ReportInput(p, n) for p, n in zip(paths, names, strict=True)], problems


# ---------------------------------------------------------------- utterances


@dataclass(frozen=True)
class Utterance:
    """One final ``utterance.emotion`` event, as the tables and captions show it."""

    start: float
    end: float
    party: str  # the event's channel: mono, or a role with --roles
    speaker: str | None  # speakers.enabled: S1, S2, ... or an enrolled name
    text: str
    label: str
    confidence: float
    speech: bool  # False: not speech (label unknown, no claim)

    @classmethod
    def of(cls, event: Event) -> Utterance:
        return cls(float(event["t_start"]), float(event["t_end"]), str(event["channel"]),
                   event.get("speaker"), str(event.get("text") or ""), str(event["label"]),
                   float(event["confidence"]), event.get("speech") is not False)


def utterances(events: Iterable[Event]) -> list[Utterance]:
    """The final utterances in time order (parties interleaved), each with its speaker as
    last revised (``speaker.revised`` events, applied in order)."""
    events = list(events)
    speaker: dict[str, str] = {}
    for event in events:
        if event.get("type") == "speaker.revised":
            speaker.update({r["utterance_id"]: r["revised"] for r in event["revisions"]})
    found = [dataclasses.replace(u, speaker=speaker.get(str(e["utterance_id"]), u.speaker))
             for e in events if e.get("type") == "utterance.emotion" for u in [Utterance.of(e)]]
    return sorted(found, key=lambda u: (u.start, u.end, u.party))


def cell(text: str) -> str:
    """A text cell a spreadsheet will not run: transcripts and names are untrusted, and a
    leading ``=``, ``+``, ``-``, ``@``, tab or carriage return starts a formula (OWASP's
    "CSV injection"); a leading apostrophe keeps it text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(utts: Sequence[Utterance]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for u in utts:
        writer.writerow([f"{u.start:.3f}", f"{u.end:.3f}", cell(u.party), cell(u.speaker or ""),
                         cell(u.text), u.label, f"{u.confidence:.4f}"])
    return out.getvalue()


def timestamp(seconds: float, decimal: str = ".") -> str:
    """``00:01:02.345`` (WebVTT) or, with ``decimal=","``, ``00:01:02,345`` (SRT)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def caption(u: Utterance) -> str:
    """``[angry 0.82] text``: the label and its calibrated confidence, then the words."""
    return f"[{u.label} {u.confidence:.2f}] {' '.join(u.text.split())}".rstrip()


def _captioned(utts: Sequence[Utterance]) -> list[Utterance]:
    # Non-speech utterances make no emotion claim and usually have no words: no cue.
    return [u for u in utts if u.speech]


def vtt_text(utts: Sequence[Utterance]) -> str:
    """WebVTT cues in time order; each party is a voice (``<v agent>``)."""
    lines = ["WEBVTT", ""]
    for i, u in enumerate(_captioned(utts), 1):
        voice = html.escape(u.speaker and f"{u.party} {u.speaker}" or u.party, quote=False)
        lines += [str(i), f"{timestamp(u.start)} --> {timestamp(u.end)}",
                  f"<v {voice}>{html.escape(caption(u), quote=False)}", ""]
    return "\n".join(lines)


def srt_text(utts: Sequence[Utterance]) -> str:
    """SubRip cues; the party leads the text when the call has more than one."""
    cues = _captioned(utts)
    several = len({u.party for u in utts}) > 1
    blocks = []
    for i, u in enumerate(cues, 1):
        who = f"{u.party}: " if several else ""
        blocks.append(f"{i}\n{timestamp(u.start, ',')} --> {timestamp(u.end, ',')}\n"
                      f"{who}{caption(u)}\n")
    return "\n".join(blocks)


# ---------------------------------------------------------------- alerts in stream time


def report_rules(config: AppConfig, labels: tuple[str, ...]) -> tuple[Rule, ...]:
    """The configured rules, or ``REPORT_DEFAULT_RULES`` when none are configured; () when
    alerts are off."""
    alerts = config.alerts
    if not alerts.enabled:
        return ()
    if alerts.rules is None and alerts.rules_file is None:
        usable = [r for r in REPORT_DEFAULT_RULES if "label" not in r or r["label"] in labels]
        return parse_rules(usable, where="report default rules", labels=labels)
    return load_rules(alerts.rules, alerts.rules_file, labels)


def stream_time(event: Event) -> float | None:
    """When a live subscriber would have seen ``event``, in seconds from the call's start
    (None: an event of no time of its own)."""
    kind = event.get("type")
    if kind == "stream.started":
        return 0.0
    if kind == "utterance.partial":
        return float(event["t_end"])
    if kind == "utterance.emotion":
        # When the end of speech was known. Not the latency's total: under --fast the ASR
        # queue holds several utterances, a wait a live call does not have.
        latency = event.get("latency") or {}
        return float(event["t_end"]) + float(latency.get("vad_hangover_ms", 0.0)) / 1000.0
    if kind == "stream.ended":
        return float(event["duration_s"])
    return None


def speaking(event: Event, every_s: float) -> list[tuple[float, Event]]:
    """Marks of speech in progress during an utterance, from its start to its end every
    ``every_s``, fed to the alert engine only: live, the partial transcripts a speaker gets
    about every second end a silence as soon as speech starts; a ``--fast`` run publishes
    few, so without these a long turn would count as silence until its event."""
    t0, t1 = float(event["t_start"]), float(event["t_end"])
    n = math.ceil((t1 - t0) / every_s) if every_s > 0 else 0
    times = [t0 + i * every_s for i in range(n)] + [t1]
    return [(t, {"type": "utterance.partial", "stream_id": event["stream_id"],
                 "channel": event["channel"]}) for t in times]


def with_alerts(events: Sequence[Event], rules: Sequence[Rule], tick_s: float = 0.5,
                summary_interval_s: float = 5.0, queue_pattern: str | None = None,
                speech_every_s: float = 1.0) -> list[Event]:
    """``events`` in live order (by ``stream_time``) with the ``alert``, ``alert.cleared``
    and ``call.summary`` events a live supervisor would have added, on a clock that runs
    in stream time from the call's start (``wall_time`` = start + stream time).

    Mirrors ``Supervisor.handle`` per event and ``Supervisor._tick`` every ``tick_s``;
    ``speaking`` marks stand in for live partials every ``speech_every_s``."""
    engine = AlertEngine(rules)
    summaries = CallSummaries(summary_interval_s, queue_pattern=queue_pattern)
    recognised = [e for e in events if e.get("type") not in
                  ("alert", "alert.cleared", "call.summary")]
    starts = [float(e["wall_time"]) for e in recognised if e.get("type") == "stream.started"]
    origin = min(starts, default=0.0)
    timed: list[tuple[float, int, Event, bool]] = []  # time, order, event, published
    last = 0.0
    by_channel: dict[object, float] = {}
    for i, event in enumerate(recognised):
        at = stream_time(event)
        last = last if at is None else at
        # A channel's events stay in publication order: its last utterance, published
        # after the audio ended, still comes before its stream.ended.
        channel = event.get("channel")
        last = by_channel[channel] = max(last, by_channel.get(channel, 0.0))
        timed.append((last, i, event, True))
        if event.get("type") == "utterance.emotion" and event.get("speech") is not False:
            timed += [(t, i, mark, False) for t, mark in speaking(event, speech_every_s)]
    timed.sort(key=lambda item: (item[0], item[1], item[3]))

    out: list[Event] = []
    next_tick = tick_s
    for at, _, event, published in timed:
        while tick_s > 0 and next_tick <= at:  # time alone: silences, cool-downs ending
            now = origin + next_tick
            for alert in engine.tick(now):
                summaries.feed(alert, now)
                out.append(alert)
            out += summaries.due(now)
            next_tick += tick_s
        now = origin + at
        if published:
            out.append(event)
        for alert in engine.feed(event, now):
            summaries.feed(alert, now)
            out.append(alert)
        if published:
            out += summaries.feed(event, now)
    return out


# ---------------------------------------------------------------- summary


@dataclass(frozen=True)
class AlertSpan:
    """One alert from firing to clearing, in stream seconds."""

    rule_id: str
    kind: str
    channel: str  # a party, or "call" for call-wide rules
    severity: str
    message: str
    t_start: float  # the first utterance behind it (or when it fired)
    t_end: float  # when it cleared (or the call's end)
    fired_at: float
    cleared_at: float | None
    clear_reason: str | None


def alert_spans(timeline: Sequence[Event], duration_s: float) -> list[AlertSpan]:
    """The alerts of a ``with_alerts`` timeline, each with its clearing."""
    starts = [float(e["wall_time"]) for e in timeline if e.get("type") == "stream.started"]
    origin = min(starts, default=0.0)
    cleared = {e["alert_id"]: e for e in timeline if e.get("type") == "alert.cleared"}
    spans = []
    for e in timeline:
        if e.get("type") != "alert":
            continue
        fired = float(e["wall_time"]) - origin
        end = cleared.get(e["alert_id"])
        cleared_at = float(end["wall_time"]) - origin if end is not None else None
        start = float(e["t_start"]) if e.get("t_start") is not None else fired
        spans.append(AlertSpan(
            str(e["rule_id"]), str(e["kind"]), str(e["channel"]), str(e["severity"]),
            str(e["message"]), round(start, 3),
            round(max(start, cleared_at if cleared_at is not None else duration_s), 3),
            round(fired, 3), None if cleared_at is None else round(cleared_at, 3),
            None if end is None else str(end["reason"])))
    return spans


def duration_of(events: Iterable[Event]) -> float:
    """The call's length: the longest channel, or the last utterance's end."""
    ends = [float(e["duration_s"]) if e.get("type") == "stream.ended" else float(e["t_end"])
            for e in events if e.get("type") in ("stream.ended", "utterance.emotion")]
    return max(ends, default=0.0)


def parties_of(events: Iterable[Event]) -> list[str]:
    """The call's parties (channels) in the order they appeared."""
    seen: dict[str, None] = {}
    for e in events:
        if e.get("type") in ("stream.started", "utterance.emotion"):
            seen.setdefault(str(e["channel"]), None)
    return list(seen)


def build_summary(timeline: Sequence[Event], source: str, rules: Sequence[Rule]
                  ) -> dict[str, Any]:
    """``summary.json``: per party the label shares by speech time (the final
    ``call.summary``), utterance counts per label, and the alerts."""
    final = next((e for e in reversed(timeline) if e.get("type") == "call.summary"
                  and e.get("reason") == "ended"), None)
    shared: dict[str, Any] = final["parties"] if final is not None else {}
    utts = utterances(timeline)
    started = next((e for e in timeline if e.get("type") == "stream.started"), {})
    duration = duration_of(timeline)
    parties: dict[str, Any] = {}
    for party in parties_of(timeline):
        mine = [u for u in utts if u.party == party]
        counts: dict[str, int] = {}
        for u in mine:
            if u.speech:
                counts[u.label] = counts.get(u.label, 0) + 1
        state = shared.get(party, {})
        parties[party] = {
            "utterances": len(mine), "speech_utterances": sum(counts.values()),
            "nonspeech_utterances": sum(not u.speech for u in mine),
            "speech_s": state.get("speech_s", 0.0), "share": state.get("share", {}),
            "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "mean_confidence": round(sum(u.confidence for u in mine if u.speech)
                                     / max(1, sum(counts.values())), 4)}
    return {"source": source, "stream_id": started.get("stream_id"),
            "model_id": started.get("model_id"), "labels": started.get("labels", []),
            "duration_s": round(duration, 3), "parties": parties,
            "rules": [{"id": r.id, "kind": r.kind, "description": describe_rule(r)}
                      for r in rules],
            "alerts": [dataclasses.asdict(a) for a in alert_spans(timeline, duration)],
            "call_summary": final}


# ---------------------------------------------------------------- HTML



@functools.cache
def label_colours() -> dict[str, str]:
    """The dashboard's label colours (streamer/web/palette.js, a JSON object after '='), so
    a report and the live dashboard colour a label alike."""
    text = (resources.files("streamer") / "web" / "palette.js").read_text("utf-8")
    return dict(json.loads(text.split("=", 1)[1].strip().rstrip(";")))
SEVERITY_COLOURS = {"info": "#1f77b4", "warning": "#ff7f0e", "critical": "#d62728"}
LANE_H, LANE_GAP, LEFT, RIGHT, TOP = 34, 10, 110, 20, 24
WIDTH = 1100


def colour(label: str) -> str:
    """A fixed colour per label; labels not listed get a stable one from their name."""
    known = label_colours().get(label.lower())
    if known is not None:
        return known
    hue = int(hashlib.sha256(label.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(hue, 0.5, 0.6)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def tick_step(duration_s: float) -> float:
    """A round axis step giving at most about 12 ticks."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration_s / step <= 12:
            return float(step)
    return 3600.0 * math.ceil(duration_s / 3600 / 12)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def timeline_svg(utts: Sequence[Utterance], spans: Sequence[AlertSpan], parties: Sequence[str],
                 duration_s: float) -> str:
    """One lane per party on one time axis: each utterance a box coloured by its label
    (opacity and caption by confidence), alerts as outlined spans over their party's lane
    (call-wide ones over all lanes). Hover titles carry the details."""
    scale = (WIDTH - LEFT - RIGHT) / max(duration_s, 1.0)
    lanes = {p: TOP + i * (LANE_H + LANE_GAP) for i, p in enumerate(parties)}
    height = TOP + max(1, len(parties)) * (LANE_H + LANE_GAP) + 20

    def x(t: float) -> float:
        return LEFT + t * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
             f'width="100%" role="img" aria-label="timeline">']
    step = tick_step(duration_s)
    t = 0.0
    while t <= duration_s + 1e-9:
        parts.append(f'<line x1="{x(t):.1f}" y1="{TOP - 4}" x2="{x(t):.1f}" '
                     f'y2="{height - 20}" stroke="#eee"/>'
                     f'<text x="{x(t):.1f}" y="{TOP - 8}" font-size="10" text-anchor="middle" '
                     f'fill="#666">{timestamp(t)[:8] if duration_s >= 60 else f"{t:g} s"}</text>')
        t += step
    for party, lane_y in lanes.items():
        parts.append(f'<text x="{LEFT - 8}" y="{lane_y + LANE_H / 2 + 4}" font-size="12" '
                     f'text-anchor="end">{_e(party)}</text>'
                     f'<rect x="{LEFT}" y="{lane_y}" width="{WIDTH - LEFT - RIGHT}" '
                     f'height="{LANE_H}" fill="#fafafa" stroke="#ddd"/>')
    for u in utts:
        if u.party not in lanes:
            continue
        y = lanes[u.party]
        w = max(1.0, (u.end - u.start) * scale)
        opacity = 0.35 + 0.65 * u.confidence if u.speech else 0.6
        title = (f"{timestamp(u.start)}–{timestamp(u.end)} {u.party}"
                 f"{' ' + u.speaker if u.speaker else ''}: {u.label} "
                 f"{u.confidence:.2f}{'' if u.speech else ' (not speech)'} — {u.text}")
        parts.append(f'<g><title>{_e(title)}</title><rect x="{x(u.start):.1f}" y="{y + 3}" '
                     f'width="{w:.1f}" height="{LANE_H - 6}" rx="3" fill="{colour(u.label)}" '
                     f'fill-opacity="{opacity:.2f}"/>')
        text = f"{u.label} {u.confidence:.2f}"
        if w >= 7 * len(text):  # caption only where it fits
            parts.append(f'<text x="{x(u.start) + 4:.1f}" y="{y + LANE_H / 2 + 4}" '
                         f'font-size="11">{_e(text)}</text>')
        parts.append("</g>")
    for span in spans:
        rows = [lanes[span.channel]] if span.channel in lanes else list(lanes.values())
        if not rows:
            continue
        top, bottom = min(rows), max(rows) + LANE_H
        stroke = SEVERITY_COLOURS.get(span.severity, "#000")
        tip = f"{span.severity} {span.rule_id} ({span.channel}): {span.message}"
        parts.append(f'<g><title>{_e(tip)}</title>'
                     f'<rect x="{x(span.t_start):.1f}" y="{top}" '
                     f'width="{max(2.0, (span.t_end - span.t_start) * scale):.1f}" '
                     f'height="{bottom - top}" fill="{stroke}" fill-opacity="0.08" '
                     f'stroke="{stroke}" stroke-width="2" stroke-dasharray="6 3"/></g>')
    parts.append("</svg>")
    return "".join(parts)


PAGE_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px}
th{background:#f4f4f4}.num{text-align:right}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin:0 4px 0 12px;
vertical-align:middle}
"""


def report_html(timeline: Sequence[Event], summary: dict[str, Any]) -> str:
    """``report.html``: one self-contained page (inline CSS and SVG, no script, font or
    image from elsewhere); every text from the events is escaped."""
    utts = utterances(timeline)
    duration = float(summary["duration_s"])
    spans = [AlertSpan(**a) for a in summary["alerts"]]
    parties = list(summary["parties"])
    labels = list(dict.fromkeys([*summary.get("labels", []), *(u.label for u in utts)]))
    legend = "".join(f'<span class="sw" style="background:{colour(label)}"></span>{_e(label)}'
                     for label in labels)
    head = ("<tr><th>party</th><th>utterances</th><th>not speech</th><th>speech s</th>"
            "<th>mean confidence</th>"
            + "".join(f"<th>{_e(label)} share (count)</th>" for label in labels) + "</tr>")
    rows = []
    for party, p in summary["parties"].items():
        cells = "".join(
            f'<td class="num">{100 * p["share"].get(label, 0.0):.0f} % '
            f'({p["counts"].get(label, 0)})</td>' for label in labels)
        rows.append(f'<tr><td>{_e(party)}</td><td class="num">{p["utterances"]}</td>'
                    f'<td class="num">{p["nonspeech_utterances"]}</td>'
                    f'<td class="num">{p["speech_s"]:.1f}</td>'
                    f'<td class="num">{p["mean_confidence"]:.2f}</td>{cells}</tr>')
    alert_rows = "".join(
        f"<tr><td>{timestamp(a.t_start)}</td><td>{timestamp(a.t_end)}</td>"
        f"<td>{_e(a.severity)}</td><td>{_e(a.rule_id)}</td><td>{_e(a.channel)}</td>"
        f"<td>{_e(a.message)}</td></tr>" for a in spans)
    alerts = ("<table><tr><th>from</th><th>to</th><th>severity</th><th>rule</th>"
              f"<th>party</th><th>what</th></tr>{alert_rows}</table>" if spans
              else "<p>No alert would have fired.</p>")
    rules = ", ".join(f"{_e(r['id'])} ({_e(r['description'])})" for r in summary["rules"])
    utt_rows = "".join(
        f'<tr><td>{timestamp(u.start)}</td><td>{timestamp(u.end)}</td><td>{_e(u.party)}</td>'
        f'<td>{_e(u.speaker or "")}</td><td><span class="sw" style="margin-left:0;'
        f'background:{colour(u.label)}"></span>{_e(u.label)}</td>'
        f'<td class="num">{u.confidence:.2f}</td><td>{_e(u.text)}</td></tr>' for u in utts)
    title = f"Emotion report: {summary['source']}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{PAGE_STYLE}</style></head><body>"
            f"<h1>{_e(title)}</h1><p>{duration:.1f} s, model {_e(summary['model_id'])}, "
            f"{len(utts)} utterances.</p><h2>Timeline</h2><p>{legend}</p>"
            f"{timeline_svg(utts, spans, parties, duration)}"
            f"<p>Box colour: label; opacity: confidence. Dashed spans: alerts.</p>"
            f"<h2>Summary</h2><table>{head}{''.join(rows)}</table>"
            f"<h2>Alerts</h2><p>Rules: {rules or 'none'}.</p>{alerts}"
            f"<h2>Utterances</h2><table><tr><th>start</th><th>end</th><th>party</th>"
            f"<th>speaker</th><th>label</th><th>confidence</th><th>text</th></tr>"
            f"{utt_rows}</table></body></html>\n")


def render(timeline: Sequence[Event], source: str, rules: Sequence[Rule]) -> dict[str, str]:
    """Every output file's text, by name (``OUTPUTS``), from the call's timeline."""
    utts = utterances(timeline)
    summary = build_summary(timeline, source, rules)
    return {"events.jsonl": "".join(to_json(e) + "\n" for e in timeline),
            "utterances.csv": csv_text(utts), "captions.vtt": vtt_text(utts),
            "captions.srt": srt_text(utts),
            "summary.json": json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
            "report.html": report_html(timeline, summary)}


# ---------------------------------------------------------------- the shell


@dataclass(frozen=True)
class FileResult:
    path: Path
    out_dir: Path | None  # None: failed
    error: str | None = None
    utterances: int = 0


@dataclass(frozen=True)
class ReportResult:
    files: tuple[FileResult, ...]
    problems: tuple[InputProblem, ...]

    @property
    def failed(self) -> int:
        return len(self.problems) + sum(f.error is not None for f in self.files)


def write_private(path: Path, text: str) -> None:
    """Write ``text``; a new file is readable by its owner only (transcripts)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, JSONL_MODE)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def file_config(config: AppConfig, item: ReportInput) -> AppConfig:
    """``run --fast`` on this file, publishing nowhere but the bus, without the live
    supervisor (alerts are replayed in stream time instead)."""
    return dataclasses.replace(
        config,
        source=dataclasses.replace(config.source, kind="file", path=str(item.path),
                                   realtime=False, stream_id=item.name),
        websocket=dataclasses.replace(config.websocket, enabled=False),
        mqtt=dataclasses.replace(config.mqtt, enabled=False),
        jsonl=dataclasses.replace(config.jsonl, path=None),
        stdout=dataclasses.replace(config.stdout, enabled=False),
        alerts=dataclasses.replace(config.alerts, enabled=False))


async def recognise(config: AppConfig, models: Models) -> list[Event]:
    """Every event the pipeline publishes for ``config.source``, in publication order."""
    from streamer.apps.pipeline import run_pipeline  # loads torch; only when a report runs

    source = make_source(config.source)  # opens the file: a bad one fails here, clearly
    subs: list[Subscription] = []

    async def attach(bus: EventBus, server: WebSocketServer | None) -> None:
        subs.append(bus.subscribe("report", maxsize=LOSSLESS_QUEUE))

    await run_pipeline(config, source, models, on_ready=attach)
    events = []
    while (event := subs[0].get_nowait()) is not None:
        events.append(event)
    if subs[0].dropped:
        raise StreamerError(f"{subs[0].dropped} events of '{config.source.path}' were "
                            f"dropped (more than {LOSSLESS_QUEUE}); split the recording")
    return events


def one_line(message: str) -> str:
    return " ".join(message.split())


def failure(path: str, exc: BaseException) -> str:
    """A one-line message that names the file."""
    message = one_line(str(exc))
    return message if path in message else f"'{path}': {message}"


def report_file(config: AppConfig, models: Models, item: ReportInput, out: Path,
                rules: Sequence[Rule], initial_state: bytes | None) -> FileResult:
    """Run one file and write its folder; a ``StreamerError`` (also from inside the
    pipeline's task group) becomes the result's error, anything else is a bug and raises.

    ``initial_state``: the emotion model's feature statistics as loaded, restored first so
    that the file starts where ``run --fast`` on it alone would (not from the previous
    file's)."""
    if initial_state is not None:
        models.emotion.load_adaptation_state(initial_state, "report")
    run_config = file_config(config, item)
    try:
        events = asyncio.run(recognise(run_config, models))
    except StreamerError as exc:
        return FileResult(item.path, None, failure(str(item.path), exc))
    except BaseExceptionGroup as group:
        errors, others = group.split(StreamerError)
        if errors is None or others is not None:
            raise
        first = errors.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        return FileResult(item.path, None, failure(str(item.path), first))
    timeline = with_alerts(events, rules, config.alerts.tick_s,
                           config.alerts.summary_interval_s, config.alerts.queue_pattern,
                           config.segmenter.partial_interval_s)
    folder = out / item.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in render(timeline, str(item.path), rules).items():
            write_private(folder / name, text)
    except OSError as exc:
        return FileResult(item.path, None, f"'{item.path}': cannot write its report to "
                          f"'{folder}' ({one_line(str(exc))}); free space or fix permissions")
    return FileResult(item.path, folder, None, len(utterances(timeline)))


def run_report(config: AppConfig, args: Sequence[str], out: Path,
               models: Models | None = None,
               on_error: Callable[[str], None] | None = None) -> ReportResult:
    """Report every recording ``args`` name into ``out``; ``models`` are loaded when not
    given. ``on_error`` gets each failure's one line as it happens."""
    from tqdm import tqdm

    from streamer.engine.loading import load_models

    say = on_error or (lambda line: tqdm.write(line, file=sys.stderr))
    inputs, problems = collect_inputs(args)
    for problem in problems:
        say(problem.message)
    if not inputs:
        return ReportResult((), tuple(problems))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StreamerError(f"cannot create the output folder '{out}' ({exc}); give "
                            "--out a folder you can write to") from exc
    if models is None:
        log.info("loading models ...")
        models = load_models(config)
    initial_state = models.emotion.adaptation_state()
    rules = report_rules(config, models.emotion.labels)
    results = []
    for item in tqdm(inputs, desc="report", unit="file", file=sys.stderr, disable=None):
        result = report_file(config, models, item, out, rules, initial_state)
        if result.error is not None:
            say(result.error)
        results.append(result)
    return ReportResult(tuple(results), tuple(problems))


__all__ = ["AUDIO_SUFFIXES", "OUTPUTS", "AlertSpan", "FileResult", "InputProblem",
           "ReportInput", "ReportResult", "Utterance", "build_summary",
           "caption", "collect_inputs", "csv_text", "report_html", "render", "run_report",
           "srt_text", "timestamp", "unique_names", "utterances", "vtt_text", "with_alerts"]
