"""Soak: 8 concurrent good calls for 10 minutes with bad clients in between (issue 13).

Starts ``emotion-stream serve`` (real models) as a subprocess and, for ``--duration``
seconds, keeps ``--calls`` good two-party calls going at real-time pace (each slot runs
one call after another, rotating Twilio, AudioHook and raw PCM), while every
``--bad-every`` seconds one bad client from ``BAD_CLIENTS`` runs from another loopback
address: malformed frames, the wrong protocol on a route, floods (handshakes, audio
messages, an oversized message), abrupt disconnects, a subscriber that never reads, an idle
socket that never sends its handshake, a squatter that takes a live good call's id.

Measured and checked:
- lost events: every good call's utterances (the same segmenter run offline on the same
  audio path gives the expected count per channel) arrive as ``utterance.emotion`` on a
  subscriber, each channel ends with ``stream.ended``, every good call closes 1000;
- each bad client got its documented answer (close code or HTTP status), never 1011;
- the server's RSS over time (psutil, every 2 s): after ``--warmup`` seconds, the first
  and last minute's medians and the least-squares slope (MB per minute);
- the server stays up, logs no traceback, counts no ``call_errors``, stops on SIGTERM.

Usage (from the repository root; the full run the docs quote)::

    .venv/bin/python bench/soak.py --duration 600 --out bench/results/soak.json

``tests/reliability/test_soak.py`` runs a short version (``SOAK_SECONDS``, default 75).
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import (  # noqa: E402
    expected_utterances,
    free_port,
    percentiles,
    synthesize_call,
    wait_for_ready,
)
from streamer.audio.telephony import TELEPHONY_RATE, ulaw_encode  # noqa: E402
from streamer.core.config import load_config  # noqa: E402
from streamer.ingest.clients import (  # noqa: E402
    CallAudio,
    SendReport,
    client_ids,
    send_audiohook,
    send_pcm,
    send_twilio,
)
from streamer.ingest.protocol import PARSER_CLOSE_CODES  # noqa: E402
from streamer.ingest.twilio import twilio_signature  # noqa: E402

PCM_TOKEN, TWILIO_TOKEN, AUDIOHOOK_KEY = "soak-pcm", "soak-twilio", "soak-audiohook"
GOOD_ADDRESS = "127.0.0.1"
BAD_ADDRESS = "127.0.0.2"  # bad clients come from other addresses, as they would
FLOOD_ADDRESS = "127.0.0.3"  # the handshake flood has its own (its rate bucket empties)
HANDSHAKES_PER_MINUTE = 240  # the soak server's ingest.handshakes_per_minute_per_address
FLOOD_HANDSHAKES = 300  # > HANDSHAKES_PER_MINUTE: the flood meets 429
BAD_TIMEOUT_S = 60.0  # one bad client's whole run (the server is loaded)
RSS_EVERY_S = 2.0
PROTOCOLS = ("twilio", "audiohook", "pcm")


@dataclass
class SoakSettings:
    duration_s: float = 600.0
    calls: int = 8
    call_s: float = 60.0  # audio per good call; slots start a new call while one fits
    bad_every_s: float = 5.0
    stagger_s: float = 8.0  # the first calls' starts spread over this
    warmup_s: float = 60.0  # RSS before this is model and allocator warm-up
    rss_window_s: float = 60.0  # first/last window for the RSS medians
    drain_s: float = 600.0  # after the last call, wait at most this for its events
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    server_log: str = "/tmp/soak-server.log"
    note: str = ""  # what code and machine state this run was, for the results file


# --------------------------------------------------------------------- events
@dataclass
class Collector:
    """All events from one subscriber, with this client's receive time."""

    emotions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    lagged: int = 0
    closed: str = ""

    async def run(self, url: str, ready: asyncio.Event) -> None:
        try:
            async with connect(url, max_size=None, max_queue=None, open_timeout=60) as ws:
                await ws.recv()  # hello
                ready.set()
                async for raw in ws:
                    event = json.loads(raw)
                    kind = event.get("type")
                    if kind == "utterance.emotion":
                        self.emotions.append((time.monotonic(), event))
                    elif kind == "stream.ended":
                        self.ended.append(event)
                    elif kind == "subscriber.lagged":
                        self.lagged += int(event.get("dropped", 0))
        except ConnectionClosed as exc:
            self.closed = f"closed: {exc}"


# ---------------------------------------------------------------- bad clients
Outcome = str  # "close 1007", "http 401", "aborted", ...


def close_outcome(ws: ClientConnection) -> Outcome:
    return f"close {ws.close_code}"


async def bad_ws(url: str, address: str = BAD_ADDRESS, **kwargs: Any) -> ClientConnection:
    return await connect(url, local_addr=(address, 0), open_timeout=BAD_TIMEOUT_S, **kwargs)


async def until_closed(ws: ClientConnection) -> Outcome:
    try:
        async for _ in ws:
            pass
    except ConnectionClosed:
        pass
    return close_outcome(ws)


def twilio_headers(base: str) -> dict[str, str]:
    signed = "wss://" + base.split("://", 1)[1] + "/ingest/twilio"
    return {"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, signed)}


def audiohook_headers(key: str = AUDIOHOOK_KEY) -> dict[str, str]:
    return {"Audiohook-Session-Id": str(uuid.uuid4()), "X-API-KEY": key,
            "Audiohook-Correlation-Id": str(uuid.uuid4()),
            "Audiohook-Organization-Id": str(uuid.uuid4())}


def pcm_start(stream_id: str, **extra: Any) -> str:
    return json.dumps({"type": "start", "stream_id": stream_id, "sample_rate": TELEPHONY_RATE,
                       "channels": 1, "encoding": "pcm16le", **extra})


class BadClients:
    """Each method is one bad client; returns what the server answered."""

    def __init__(self, ingest: str, events: str, speech: np.ndarray,
                 live_calls: Callable[[], list[tuple[str, str]]] = list) -> None:
        self.ingest = ingest  # ws://127.0.0.1:P
        self.events = events  # ws://127.0.0.1:Q/events
        self.speech = speech  # one party's speech, 8 kHz, for the abrupt disconnects
        self.live_calls = live_calls  # (protocol, client id) of the good calls running now
        self.n = 0
        self.squats = 0

    def sid(self, kind: str) -> str:
        self.n += 1
        return f"bad-{kind}-{self.n}"

    async def pcm_not_json(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send("{not json")
            return await until_closed(ws)

    async def pcm_nested_json(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send("[" * 30_000 + "]" * 30_000)
            return await until_closed(ws)

    async def pcm_split_sample(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send(pcm_start(self.sid("split")))
            await ws.send(b"\x01\x02\x03")  # 1.5 samples of 16-bit PCM
            return await until_closed(ws)

    async def pcm_hostile_role(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send(pcm_start(self.sid("role"), roles=["\ud800"]))
            return await until_closed(ws)

    async def twilio_binary_frame(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/twilio",
                                additional_headers=twilio_headers(self.ingest)) as ws:
            await ws.send(b"\x00\x01\x02")
            return await until_closed(ws)

    async def audiohook_audio_before_open(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/audiohook",
                                additional_headers=audiohook_headers()) as ws:
            await ws.send(b"\xff" * 800)
            return await until_closed(ws)

    async def twilio_messages_on_pcm(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call",
                                      "version": "1.0.0"}))
            return await until_closed(ws)

    async def audiohook_open_on_twilio(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/twilio",
                                additional_headers=twilio_headers(self.ingest)) as ws:
            await ws.send(json.dumps({"version": "2", "id": str(uuid.uuid4()), "type": "open",
                                      "seq": 1, "serverseq": 0, "position": "PT0S",
                                      "parameters": {}}))
            return await until_closed(ws)

    async def raw_http(self, payload: bytes) -> Outcome:
        host, port = self.ingest.split("://", 1)[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port),
                                                       local_addr=(BAD_ADDRESS, 0))
        try:
            writer.write(payload)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(200), BAD_TIMEOUT_S)
        finally:
            writer.close()
        if answer.startswith(b"HTTP/1.1 "):
            return f"http {answer[9:12].decode()}"
        return "closed" if not answer else "other"

    async def plain_http_on_ingest(self) -> Outcome:
        return await self.raw_http(b"GET /ingest/pcm HTTP/1.1\r\nHost: x\r\n\r\n")

    async def tls_hello_on_plain_port(self) -> Outcome:
        return await self.raw_http(bytes.fromhex("16030100c4010000c00303") + os.urandom(200))

    async def bad_credentials(self) -> Outcome:
        statuses = []
        for url, headers in ((f"{self.ingest}/ingest/pcm?token=wrong", {}),
                             (f"{self.ingest}/ingest/twilio", {"X-Twilio-Signature": "bad"}),
                             (f"{self.ingest}/ingest/audiohook", audiohook_headers("wrong"))):
            try:
                async with await bad_ws(url, additional_headers=headers):
                    statuses.append("accepted")
            except InvalidStatus as exc:
                statuses.append(str(exc.response.status_code))
        return "http " + "/".join(statuses)

    async def oversized_message(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send(pcm_start(self.sid("big")))
            try:
                await ws.send(b"\x00" * 200_000)  # > ingest.max_message_bytes
            except ConnectionClosed:
                pass
            return await until_closed(ws)

    async def audio_message_flood(self) -> Outcome:
        """Twilio media frames as fast as the server takes them (60 s of noise in one
        burst, no pacing), then the connection is dropped without a close frame."""
        stream_sid = "MZ" + uuid.uuid4().hex
        async with await bad_ws(f"{self.ingest}/ingest/twilio",
                                additional_headers=twilio_headers(self.ingest)) as ws:
            await ws.send(json.dumps({"event": "start", "streamSid": stream_sid, "start": {
                "streamSid": stream_sid, "callSid": self.sid("flood"), "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                "channels": 1}}}))
            rng = np.random.default_rng(self.n)
            payload = base64.b64encode(ulaw_encode(
                (0.01 * rng.standard_normal(160)).astype(np.float32))).decode()
            sent = 0
            try:
                async with asyncio.timeout(15):
                    for chunk in range(3000):
                        await ws.send(json.dumps({
                            "event": "media", "streamSid": stream_sid,
                            "media": {"track": "inbound", "chunk": str(chunk + 1),
                                      "timestamp": str(chunk * 20), "payload": payload}}))
                        sent += 1
            except (TimeoutError, ConnectionClosed):
                pass
            closed = ws.close_code
            ws.transport.abort()
        return f"close {closed}" if closed is not None else "flooded, aborted"

    async def handshake_flood(self) -> Outcome:
        """FLOOD_HANDSHAKES handshakes without credentials, 30 at a time, from one address."""
        statuses: Counter[str] = Counter()
        gate = asyncio.Semaphore(30)

        async def one() -> None:
            async with gate:
                try:
                    async with await bad_ws(f"{self.ingest}/ingest/pcm",
                                            address=FLOOD_ADDRESS):
                        statuses["accepted"] += 1
                except InvalidStatus as exc:
                    statuses[str(exc.response.status_code)] += 1

        await asyncio.gather(*(one() for _ in range(FLOOD_HANDSHAKES)))
        return "http " + "+".join(sorted(statuses))

    async def speak(self, ws: ClientConnection, seconds: float = 2.5) -> None:
        """Send ``seconds`` of speech as raw PCM in real time, 100 ms a message."""
        pcm = np.clip(np.round(self.speech[: int(seconds * TELEPHONY_RATE)] * 32767),
                      -32768, 32767).astype("<i2")
        step = TELEPHONY_RATE // 10
        for start in range(0, len(pcm), step):
            await ws.send(pcm[start:start + step].tobytes())
            await asyncio.sleep(0.1)

    async def abrupt_disconnect(self) -> Outcome:
        """A real call that vanishes mid-utterance (TCP gone, no close frame)."""
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send(pcm_start(self.sid("abrupt")))
            await self.speak(ws)
            ws.transport.abort()
        return "aborted"

    async def squatter(self) -> Outcome:
        """A raw PCM client that takes the id of a live good call and speaks: on another
        route it is a call of its own (stream ids carry their route), so nothing reaches
        the good call (the accounting counts extra events); on the same route it is
        refused 1008."""
        live = [(protocol, sid) for protocol, sid in self.live_calls()
                if protocol in ("twilio", "pcm")]
        if not live:
            return "no live call"
        self.squats += 1  # alternately another route's call and a call of the same route
        wanted = ("twilio", "pcm")[self.squats % 2]
        protocol, sid = next((c for c in live if c[0] == wanted), live[0])
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send(pcm_start(sid))
            if protocol == "pcm":
                return f"pcm: {await until_closed(ws)}"
            await self.speak(ws)
            await ws.close()
            return f"{protocol}: own call, {close_outcome(ws)}"

    async def idle_socket(self) -> Outcome:
        """A TCP connection to the ingest port that never sends its handshake."""
        host, port = self.ingest.split("://", 1)[1].split(":")
        reader, writer = await asyncio.open_connection(host, int(port),
                                                       local_addr=(BAD_ADDRESS, 0))
        try:
            answer = await asyncio.wait_for(reader.read(200), BAD_TIMEOUT_S - 10)
        except TimeoutError:
            return "held"
        finally:
            writer.close()
        return "closed" if not answer else "other"

    async def started_then_silent_abort(self) -> Outcome:
        async with await bad_ws(f"{self.ingest}/ingest/pcm?token={PCM_TOKEN}") as ws:
            await ws.send(pcm_start(self.sid("silent")))
            await asyncio.sleep(1.0)
            ws.transport.abort()
        return "aborted"

    async def stalled_subscriber(self) -> Outcome:
        """A subscriber that never reads (4 KiB receive buffer), dropped after 20 s."""
        host, port = self.events.split("://", 1)[1].split("/")[0].split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((BAD_ADDRESS, 0))
        sock.connect((host, int(port)))
        sock.setblocking(False)
        ws = await connect(self.events, sock=sock, max_queue=1, open_timeout=BAD_TIMEOUT_S)
        await asyncio.sleep(20)
        closed = ws.close_code
        ws.transport.abort()
        return f"close {closed}" if closed is not None else "held 20 s, aborted"

    async def subscriber_garbage(self) -> Outcome:
        answers = []
        try:  # a control character in a query filter: refused at the handshake
            async with await bad_ws(self.events + "?streams=a%00b"):
                answers.append("accepted")
        except InvalidStatus as exc:
            answers.append(str(exc.response.status_code))
        async with await bad_ws(self.events) as ws:
            await ws.recv()  # hello
            for message in ("[" * 30_000 + "]" * 30_000, "{not json",
                            json.dumps({"type": "subscribe", "streams": ["\ud800"]})):
                await ws.send(message)
                async with asyncio.timeout(BAD_TIMEOUT_S):
                    while True:  # skip events and replay until the answer
                        reply = json.loads(await ws.recv())
                        if reply.get("type") in ("error", "subscribed"):
                            answers.append(reply["type"])
                            break
        return "/".join(answers)


def expected_outcomes() -> dict[str, Callable[[Outcome], bool]]:
    """What a bad client must get (docs/reliability.md, close codes and replies)."""
    parser = {f"close {c}" for c in PARSER_CLOSE_CODES}
    return {
        "pcm_not_json": lambda o: o == "close 1007",
        "pcm_nested_json": lambda o: o == "close 1007",
        "pcm_split_sample": lambda o: o in parser,
        "pcm_hostile_role": lambda o: o == "close 1007",
        "twilio_binary_frame": lambda o: o == "close 1003",
        "audiohook_audio_before_open": lambda o: o in parser,
        "twilio_messages_on_pcm": lambda o: o in parser,
        "audiohook_open_on_twilio": lambda o: o in parser,
        "plain_http_on_ingest": lambda o: o.startswith("http 4"),
        "tls_hello_on_plain_port": lambda o: o.startswith("http 4") or o == "closed",
        "bad_credentials": lambda o: o == "http 401/401/401",
        "oversized_message": lambda o: o == "close 1009",
        "audio_message_flood": lambda o: o == "flooded, aborted",
        "handshake_flood": lambda o: o == "http 401+429",
        "abrupt_disconnect": lambda o: o == "aborted",
        "started_then_silent_abort": lambda o: o == "aborted",
        "squatter": lambda o: o in ("twilio: own call, close 1000", "pcm: close 1008",
                                    "no live call"),
        "idle_socket": lambda o: o == "closed",
        "stalled_subscriber": lambda o: o in ("held 20 s, aborted", "close 1008"),
        "subscriber_garbage": lambda o: o == "400/error/error/error",
    }


# ---------------------------------------------------------------- the server
def start_server(port: int, events_port: int, overrides: list[str],
                 log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "streamer.cli", "serve",
           "--set", f"ingest.port={port}", "--set", f"websocket.port={events_port}",
           "--set", "stdout.enabled=false",
           "--set", f"ingest.token={PCM_TOKEN}",
           "--set", f"ingest.twilio_auth_token={TWILIO_TOKEN}",
           "--set", f"ingest.audiohook_api_key={AUDIOHOOK_KEY}",
           "--set", f"ingest.handshakes_per_minute_per_address={HANDSHAKES_PER_MINUTE}"]
    for override in overrides:
        cmd += ["--set", override]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_path.open("wb"),
                            cwd=ROOT)


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode(errors="replace")


METRICS = ("call_errors_total", "channels_ended_total", "events_dropped_total",
           "subscriber_lagged_notices_total", "subscribers_dropped_total",
           "refused_connections_total", "drain_cut_calls_total", "utterances_total",
           "calls_started_total")


def parse_metrics(text: str) -> dict[str, float]:
    """The counters of ``METRICS`` from a Prometheus /metrics page (docs/operations.md):
    ``{'emotion_stream_call_errors_total': 0.0, 'emotion_stream_channels_ended_total{
    reason="error"}': 0.0, ...}``."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0].removeprefix("emotion_stream_")
        if name in METRICS:
            try:
                found[series] = float(value)
            except ValueError:
                continue
    return found


class RssSampler:
    """The server's RSS, the calls it holds (``/healthz``) and the machine's load."""

    def __init__(self, pid: int, port: int, t0: float) -> None:
        self.proc = psutil.Process(pid)
        self.port = port
        self.t0 = t0
        self.samples: list[tuple[float, float]] = []  # (seconds since t0, MB)
        self.calls: list[tuple[float, int]] = []  # (seconds since t0, calls in the server)
        self.load: list[float] = []  # 1-minute load average

    async def run(self) -> None:
        while True:
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            now = time.monotonic() - self.t0
            self.samples.append((now, rss / 2**20))
            self.load.append(os.getloadavg()[0])
            try:
                status, body = await http_get(self.port, "/healthz")
                if status == 200:
                    self.calls.append((now, int(json.loads(body).get("calls", -1))))
            except (OSError, TimeoutError, ValueError):
                pass  # a missed sample
            await asyncio.sleep(RSS_EVERY_S)

    def calls_now(self) -> int | None:
        return self.calls[-1][1] if self.calls else None


def steady_backlog(samples: list[tuple[float, float]], held: list[tuple[float, int]],
                   after_s: float) -> dict[str, Any] | None:
    """RSS over the longest stretch (after ``after_s``) in which the most calls the server
    has held so far did not rise. A server that cannot keep up holds more calls than the
    clients run (their queued utterances, with encoder frames, are memory the allocator
    keeps), so RSS follows that high-water mark; a leak shows as growth within a stretch."""
    if not held:
        return None
    spans, high, start = [], -1, after_s
    for t, n in held:
        if n > high:
            if t >= after_s and high >= 0:
                spans.append((start, t))
            high, start = n, max(t, after_s)
    spans.append((start, held[-1][0]))
    t0, t1 = max(spans, key=lambda span: span[1] - span[0])
    inside = [(t, mb) for t, mb in samples if t0 <= t <= t1]
    if t1 - t0 < 60 or len(inside) < 10:
        return {"longest_s": round(t1 - t0, 1), "note": "no stretch of 60 s or more"}
    ts = np.array([a[0] for a in inside])
    mb = np.array([a[1] for a in inside])
    edge = min(30.0, (t1 - t0) / 4)
    return {"from_s": round(t0, 1), "to_s": round(t1, 1),
            "calls_held_high_water": max(n for at, n in held if at <= t0),
            "first_mb": round(float(np.median(mb[ts <= t0 + edge])), 1),
            "last_mb": round(float(np.median(mb[ts >= t1 - edge])), 1),
            "growth_mb": round(float(np.median(mb[ts >= t1 - edge])
                                     - np.median(mb[ts <= t0 + edge])), 1),
            "slope_mb_per_min": round(float(np.polyfit(ts / 60.0, mb, 1)[0]), 3)}


def rss_summary(samples: list[tuple[float, float]], settings: SoakSettings,
                end_s: float, held: list[tuple[float, int]] | None = None) -> dict[str, Any]:
    after = [(t, mb) for t, mb in samples if settings.warmup_s <= t <= end_s]
    if len(after) < 4:
        return {"samples": len(samples), "note": "too few samples after the warm-up"}
    t = np.array([a[0] for a in after])
    mb = np.array([a[1] for a in after])
    window = min(settings.rss_window_s, (t[-1] - t[0]) / 3)
    first = float(np.median(mb[t <= t[0] + window]))
    last = float(np.median(mb[t >= t[-1] - window]))
    slope = float(np.polyfit(t / 60.0, mb, 1)[0])
    return {
        "every_s": RSS_EVERY_S, "warmup_s": settings.warmup_s, "window_s": round(window, 1),
        "start_mb": round(samples[0][1], 1), "at_warmup_mb": round(float(mb[0]), 1),
        "first_window_median_mb": round(first, 1), "last_window_median_mb": round(last, 1),
        "growth_mb": round(last - first, 1), "slope_mb_per_min": round(slope, 3),
        "min_mb": round(float(mb.min()), 1), "peak_mb": round(max(s[1] for s in samples), 1),
        "series": [[round(ts), round(m, 1)] for ts, m in samples[:: max(1, len(samples) // 150)]],
        "calls_held_series": [[round(ts), n] for ts, n in (held or [])[
            :: max(1, len(held or []) // 150)]],
        "at_steady_backlog": steady_backlog(samples, held or [], settings.warmup_s),
    }


# ------------------------------------------------------------------ the soak
@dataclass
class GoodCall:
    stream_id: str
    protocol: str
    slot: int
    start_s: float
    report: SendReport | None = None
    error: str = ""


async def run_soak(settings: SoakSettings) -> dict[str, Any]:
    config = load_config(None, settings.overrides)
    call = synthesize_call(settings.call_s)
    expected: dict[str, dict[str, int]] = {}
    for family in ("twilio", "pcm"):  # AudioHook carries PCMU like Twilio
        expected[family] = {
            config.ingest.customer_role: len(expected_utterances(call[:, 0], family,
                                                                 config.segmenter)),
            config.ingest.agent_role: len(expected_utterances(call[:, 1], family,
                                                              config.segmenter))}
    expected["audiohook"] = expected["twilio"]
    print(f"call: {settings.call_s:.0f} s, expected utterances per call {expected}", flush=True)

    port, events_port = free_port(), free_port()
    ingest, events_url = f"ws://127.0.0.1:{port}", f"ws://127.0.0.1:{events_port}/events"
    log_path = Path(settings.server_log)
    proc = start_server(port, events_port, settings.overrides, log_path)
    load_start = os.getloadavg()
    result: dict[str, Any] = {}
    try:
        await wait_for_ready(port, proc)
        collector = Collector()
        ready = asyncio.Event()
        listen = asyncio.create_task(collector.run(events_url, ready))
        await asyncio.wait_for(ready.wait(), 60)
        t0 = time.monotonic()
        cpu0 = sum(psutil.Process(proc.pid).cpu_times()[:2])
        sampler = RssSampler(proc.pid, port, t0)
        sampling = asyncio.create_task(sampler.run())
        end = t0 + settings.duration_s
        rng = random.Random(settings.seed)

        calls: list[GoodCall] = []

        async def slot(index: int) -> None:
            await asyncio.sleep(rng.uniform(0, settings.stagger_s))
            k = 0
            while time.monotonic() + settings.call_s <= end + 1.0:
                protocol = PROTOCOLS[(index + k) % len(PROTOCOLS)]
                # AudioHook conversation ids are UUIDs
                sid = str(uuid.uuid4()) if protocol == "audiohook" else f"soak-{index}-{k}"
                good = GoodCall(sid, protocol, index, time.monotonic() - t0)
                calls.append(good)
                audio = CallAudio(sid, (call[:, 0].copy(), call[:, 1].copy()))
                try:
                    if protocol == "twilio":
                        good.report = await send_twilio(
                            f"{ingest}/ingest/twilio", audio, auth_token=TWILIO_TOKEN,
                            signed_url=f"wss://127.0.0.1:{port}/ingest/twilio")
                    elif protocol == "audiohook":
                        good.report = await send_audiohook(f"{ingest}/ingest/audiohook",
                                                           audio, api_key=AUDIOHOOK_KEY)
                    else:
                        good.report = await send_pcm(f"{ingest}/ingest/pcm", audio,
                                                     token=PCM_TOKEN)
                except Exception as exc:  # noqa: BLE001 - recorded and counted as a failure
                    good.error = f"{type(exc).__name__}: {exc}"
                k += 1

        bad = BadClients(ingest, events_url, call[:, 0][np.abs(call[:, 0]) > 0][:4 * 8000],
                         lambda: [(c.protocol, c.stream_id) for c in calls
                                  if c.report is None and not c.error])
        checks = expected_outcomes()
        kinds = list(checks)
        rng.shuffle(kinds)
        tally: dict[str, Counter[str]] = defaultdict(Counter)
        unexpected: list[dict[str, Any]] = []
        timeline: list[list[Any]] = []  # [launched at s, kind, outcome]
        bad_tasks: set[asyncio.Task[None]] = set()

        async def one_bad(kind: str, at: float) -> None:
            method: Callable[[], Awaitable[Outcome]] = getattr(bad, kind)
            try:
                outcome = await asyncio.wait_for(method(), BAD_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - an unexpected client-side failure
                outcome = f"client error {type(exc).__name__}: {exc}"[:200]
            tally[kind][outcome] += 1
            timeline.append([round(at, 1), kind, outcome])
            if not checks[kind](outcome):
                unexpected.append({"kind": kind, "at_s": round(at, 1), "outcome": outcome})

        async def bad_clients() -> None:
            i = 0
            await asyncio.sleep(settings.bad_every_s)
            while time.monotonic() < end:
                task = asyncio.create_task(one_bad(kinds[i % len(kinds)], time.monotonic() - t0))
                bad_tasks.add(task)
                task.add_done_callback(bad_tasks.discard)
                i += 1
                await asyncio.sleep(settings.bad_every_s)

        badness = asyncio.create_task(bad_clients())
        await asyncio.gather(*(slot(i) for i in range(settings.calls)))
        sent_s = time.monotonic() - t0
        await badness
        if bad_tasks:
            await asyncio.wait(bad_tasks, timeout=BAD_TIMEOUT_S + 10)

        # Event stream id -> the good call's own id: events carry <protocol>:<id>
        # (ingest.namespace_stream_ids, the default) or <id> (off).
        good_ids = {event_id: c.stream_id for c in calls
                    for event_id in client_ids(c.protocol, [c.stream_id])}
        want_ended = 2 * len(calls)
        deadline = time.monotonic() + settings.drain_s
        while time.monotonic() < deadline:  # a loaded server may still work off a backlog
            if sum(1 for e in collector.ended if e["stream_id"] in good_ids) >= want_ended:
                break
            await asyncio.sleep(0.5)
        backlog_at_end = sampler.calls_now()
        drain_s = time.monotonic() - t0 - sent_s
        await asyncio.sleep(2 * RSS_EVERY_S)
        end_s = time.monotonic() - t0
        cpu1 = sum(psutil.Process(proc.pid).cpu_times()[:2])
        _, health_text = await http_get(port, "/healthz")
        metrics_status, metrics_text = await http_get(port, "/metrics")
        if metrics_status != 200:
            metrics_status, metrics_text = await http_get(events_port, "/metrics")
        for task in (sampling, listen):  # let the connections close before SIGTERM
            task.cancel()
        await asyncio.gather(sampling, listen, return_exceptions=True)
        await asyncio.sleep(0.5)

        # ------------------------------------------------------------ accounting
        got: dict[tuple[str, str], int] = Counter()
        latency: list[tuple[float, float]] = []  # (seconds since t0, server total ms)
        for at, e in collector.emotions:
            if e["stream_id"] in good_ids:
                got[(good_ids[e["stream_id"]], e["channel"])] += 1
                latency.append((at - t0, float(e["latency"]["total_ms"])))
        ended = {(good_ids[e["stream_id"]], e["channel"]): e for e in collector.ended
                 if e["stream_id"] in good_ids}
        # Per channel of a good call: "ok"; "lost" (it ended, and fewer events arrived
        # than stream.ended counts, or a call that closed normally has fewer than the
        # offline segmenter finds); "unfinished" (no stream.ended when the drain ran out:
        # late, not lost); "cut" (the connection closed abnormally: what was received was
        # recognized, the rest of the call never arrived).
        lost = extra = 0
        channels: Counter[str] = Counter()
        problems: list[str] = []
        cut_calls: list[dict[str, Any]] = []
        per_protocol: dict[str, Counter[str]] = defaultdict(Counter)
        for c in calls:
            tally_p = per_protocol[c.protocol]
            tally_p["calls"] += 1
            close = c.report.close_code if c.report else None
            normal = close == 1000 and not c.error
            if not normal:
                cut_calls.append({"stream_id": c.stream_id, "protocol": c.protocol,
                                  "started_s": round(c.start_s, 1), "close": close,
                                  "reason": (c.report.close_reason if c.report else "")
                                  or c.error})
            for channel, want in expected[c.protocol].items():
                have = got[(c.stream_id, channel)]
                tally_p["expected"] += want
                tally_p["events"] += have
                end_event = ended.get((c.stream_id, channel))
                where = f"{c.stream_id} ({c.protocol}) {channel}"
                if end_event is None:
                    channels["unfinished"] += 1
                    problems.append(f"{where}: {have}/{want} events, no stream.ended yet")
                    continue
                published = int(end_event["utterances"])
                if have < published or (normal and have < want):
                    channels["lost"] += 1
                    lost += max(published, want if normal else 0) - have
                    problems.append(f"{where}: {have} events received, stream.ended counts "
                                    f"{published}, the offline segmenter {want}")
                elif have > want or have > published:
                    channels["extra"] += 1
                    extra += have - min(want, published)
                    problems.append(f"{where}: {have} events, expected {want}")
                elif not normal:
                    channels["cut"] += 1
                    problems.append(f"{where}: call cut (close {close}) after {have}/{want} "
                                    "utterances, all it sent was recognized")
                else:
                    channels["ok"] += 1
        minutes = []
        for m in range(int(np.ceil(end_s / 60))):
            values = [ms for at, ms in latency if m * 60 <= at < (m + 1) * 60]
            rss_m = [mb for at, mb in sampler.samples if m * 60 <= at < (m + 1) * 60]
            held = [n for at, n in sampler.calls if m * 60 <= at < (m + 1) * 60]
            minutes.append({"minute": m, "events": len(values),
                            "latency_p95_ms": percentiles(values)["p95"],
                            "rss_median_mb": round(float(np.median(rss_m)), 1) if rss_m
                            else None,
                            "server_calls_max": max(held) if held else None})
        health = json.loads(health_text) if health_text.startswith("{") else {}
        result = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_avg_at_start": [round(x, 2) for x in load_start],
                        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
                        "load_avg_1min_during": percentiles(sampler.load)},
            "settings": {**asdict(settings), "protocols": list(PROTOCOLS),
                         "handshakes_per_minute_per_address": HANDSHAKES_PER_MINUTE,
                         "expected_utterances_per_call": expected,
                         "audio": "synthesised espeak-ng two-party conversation"},
            "good_calls": {
                "calls": len(calls), "by_protocol": {p: dict(v) for p, v in
                                                     per_protocol.items()},
                "utterances_expected": sum(sum(expected[c.protocol].values()) for c in calls),
                "events": sum(got[(c.stream_id, ch)] for c in calls
                              for ch in expected[c.protocol]),
                "lost": lost, "extra": extra, "channels": dict(channels),
                "calls_cut": cut_calls,
                "stream_ended": len(ended), "stream_ended_expected": want_ended,
                "subscriber_lagged": collector.lagged, "subscriber_closed": collector.closed,
                "problems": problems[:50],
                "latency_server_ms": percentiles([ms for _, ms in latency]),
            },
            "bad_clients": {"launched": sum(sum(v.values()) for v in tally.values()),
                            "every_s": settings.bad_every_s,
                            "outcomes": {k: dict(v) for k, v in sorted(tally.items())},
                            "unexpected": unexpected,
                            "timeline": sorted(timeline)},
            "rss": rss_summary(sampler.samples, settings, end_s, sampler.calls),
            "per_minute": minutes,
            "server": {"sending_s": round(sent_s, 1), "drain_s": round(drain_s, 1),
                       "calls_held_at_end_of_drain": backlog_at_end,
                       "cpu_cores": round((cpu1 - cpu0) / end_s, 2),
                       "alive_at_end": proc.poll() is None,
                       "ingest_health": health,
                       # the server's own counters, where it has /metrics (drops to the
                       # stalled bad subscribers are expected; errors are not)
                       "metrics": parse_metrics(metrics_text) if metrics_status == 200
                       else None},
        }
    finally:
        stop_at = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:  # in a thread: the event loop must go on closing this side's connections
            await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        if result:
            result["server"]["exit_status"] = proc.returncode
            result["server"]["stop_s"] = round(time.monotonic() - stop_at, 1)
            log_text = log_path.read_text(errors="replace")  # the stop included
            result["server"]["log_tracebacks"] = log_text.count("Traceback")
            result["server"]["log_errors"] = [line[:300] for line in log_text.splitlines()
                                              if " ERROR " in line][:20]
    result["checks"] = check(result)
    result["passed"] = all(result["checks"].values())
    return result


def check(result: dict[str, Any], rss_growth_limit_mb: float = 50.0) -> dict[str, bool]:
    good, server, rss = result["good_calls"], result["server"], result["rss"]
    return {
        "no_lost_events": good["lost"] == 0 and good["extra"] == 0 and good["events"] > 0,
        "every_channel_ended": good["stream_ended"] == good["stream_ended_expected"],
        "no_good_call_cut": not good["calls_cut"],
        "no_good_call_problem": not good["problems"],
        "subscriber_not_lagged": good["subscriber_lagged"] == 0,
        "bad_clients_answered_as_documented": not result["bad_clients"]["unexpected"],
        "no_call_errors": server["ingest_health"].get("call_errors", -1) == 0,
        "no_traceback_in_log": server["log_tracebacks"] == 0,
        "server_alive_then_clean_exit": server["alive_at_end"]
        and server.get("exit_status") == 0,
        "rss_flat": "growth_mb" in rss and rss["growth_mb"] <= rss_growth_limit_mb,
        "metrics_no_errors": server["metrics"] is None or (
            server["metrics"].get("emotion_stream_call_errors_total", 0) == 0
            and server["metrics"].get('emotion_stream_channels_ended_total{reason="error"}',
                                      0) == 0),
    }


def print_summary(result: dict[str, Any]) -> None:
    good, rss, bad = result["good_calls"], result["rss"], result["bad_clients"]
    print(f"good calls {good['calls']}: {good['events']}/{good['utterances_expected']} "
          f"utterance events, lost {good['lost']}, extra {good['extra']}, stream.ended "
          f"{good['stream_ended']}/{good['stream_ended_expected']}, latency "
          f"{good['latency_server_ms']}")
    print(f"bad clients {bad['launched']}, unexpected {len(bad['unexpected'])}: "
          f"{json.dumps(bad['outcomes'])}")
    print(f"RSS after warm-up: first {rss.get('first_window_median_mb')} MB, last "
          f"{rss.get('last_window_median_mb')} MB, growth {rss.get('growth_mb')} MB, slope "
          f"{rss.get('slope_mb_per_min')} MB/min, peak {rss.get('peak_mb')} MB")
    print(f"RSS at a steady backlog: {rss.get('at_steady_backlog')}")
    print(f"good channels: {good['channels']}; calls cut: {good['calls_cut']}")
    for minute in result["per_minute"]:
        print(f"  minute {minute['minute']}: {minute['events']} events, p95 "
              f"{minute['latency_p95_ms']} ms, RSS {minute['rss_median_mb']} MB, calls held "
              f"{minute['server_calls_max']}")
    print(f"server: {json.dumps({k: v for k, v in result['server'].items() if k != 'metrics'})}")
    print(f"load average {result['machine']}")
    print("checks: " + ", ".join(f"{k}={'ok' if v else 'FAILED'}"
                                 for k, v in result["checks"].items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SoakSettings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=defaults.duration_s, help="seconds")
    p.add_argument("--calls", type=int, default=defaults.calls, help="concurrent good calls")
    p.add_argument("--call-s", type=float, default=defaults.call_s,
                   help="seconds of audio per good call")
    p.add_argument("--bad-every", type=float, default=defaults.bad_every_s,
                   help="one bad client every this many seconds")
    p.add_argument("--warmup", type=float, default=defaults.warmup_s,
                   help="RSS before this many seconds is warm-up")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the server (repeatable)")
    p.add_argument("--server-log", default=defaults.server_log)
    p.add_argument("--note", default="", help="stored in the results (code version, load)")
    p.add_argument("--out", help="write the results as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = SoakSettings(duration_s=args.duration, calls=args.calls, call_s=args.call_s,
                            bad_every_s=args.bad_every, warmup_s=args.warmup,
                            overrides=args.set, server_log=args.server_log, note=args.note)
    result = asyncio.run(run_soak(settings))
    print_summary(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
