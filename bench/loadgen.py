"""Load generator: N concurrent calls over the real ingest protocols, at real-time pace.

Starts ``emotion-stream serve`` as a subprocess (or uses ``--ingest-url`` /
``--events-url`` of a running one), subscribes to its events, and for each load level
replays N copies of a stereo call recording (channel 0 = customer, channel 1 = agent;
default: a synthesised two-party conversation) over Twilio Media Streams, AudioHook or
raw PCM, with call starts staggered. Per utterance it records the end-of-speech-to-event
latency twice: from the event's own ``latency.total_ms`` (server clock) and from this
client's clock (event received minus the moment the end of speech was sent). It reports
p50/p95/p99, dropped utterances (expected from running the same segmenter offline on the
same audio), late events, and the server's CPU and memory per call (psutil).

Usage (from the repository root)::

    .venv/bin/python bench/loadgen.py --calls 4 8 16 --duration 60 \
        --out bench/results/loadgen.json

Everything runs on this machine: the load generator's own CPU use is reported too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import soundfile as sf
import soxr
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.net import free_port  # noqa: E402
from streamer.audio.segmenter import Segmenter  # noqa: E402
from streamer.audio.telephony import TELEPHONY_RATE, ulaw_decode, ulaw_encode  # noqa: E402
from streamer.core.config import SegmenterConfig, load_config  # noqa: E402
from streamer.core.messages import Utterance  # noqa: E402
from streamer.ingest.clients import (  # noqa: E402
    CallAudio,
    SendReport,
    client_ids,
    send_audiohook,
    send_pcm,
    send_twilio,
)

LATE_MS = 1000.0


# ------------------------------------------------------------------ audio
def synthesize_call(seconds: float) -> np.ndarray:
    """A two-party espeak-ng conversation, (N, 2) float32 at 8 kHz, about ``seconds`` long."""
    from harness.speech import Turn, synthesize

    lines = [
        ("Hello, I am calling because my internet has been down since yesterday.", 0),
        ("I am sorry to hear that. Can you tell me your account number please?", 1),
        ("Yes, it is four five six seven. This is the third time this month!", 0),
        ("Thank you. I can see an outage in your area, it should be fixed today.", 1),
        ("Today? I work from home, I cannot wait that long, this is ridiculous.", 0),
        ("I understand. Let me send a technician this afternoon at no cost.", 1),
        ("Oh, that would be great, thank you so much for your help.", 0),
        ("You are welcome. Is there anything else I can do for you today?", 1),
    ]
    voices = [("en-us+m3", 60), ("en-us+f2", 50)]
    parts: list[np.ndarray] = []
    gap = np.zeros((int(0.9 * TELEPHONY_RATE), 2), np.float32)
    while sum(len(p) for p in parts) < seconds * TELEPHONY_RATE:
        for text, who in lines:
            voice, pitch = voices[who]
            speech = soxr.resample(synthesize(Turn(text, voice, pitch)), 16000, TELEPHONY_RATE)
            block = np.zeros((len(speech), 2), np.float32)
            block[:, who] = speech
            parts += [block, gap]
    return np.concatenate(parts)[: int(seconds * TELEPHONY_RATE)]


def load_call(path: str, seconds: float) -> np.ndarray:
    """A stereo recording as (N, 2) float32 at 8 kHz, looped or cut to ``seconds``."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    if audio.shape[1] < 2:
        raise SystemExit(f"{path} has {audio.shape[1]} channel(s); a call needs 2 "
                         "(customer left, agent right)")
    audio = soxr.resample(audio[:, :2], rate, TELEPHONY_RATE).astype(np.float32)
    reps = int(np.ceil(seconds * TELEPHONY_RATE / len(audio)))
    return np.tile(audio, (reps, 1))[: int(seconds * TELEPHONY_RATE)]


def expected_utterances(party: np.ndarray, protocol: str, config: SegmenterConfig
                        ) -> list[Utterance]:
    """What the server's segmenter will find: the same audio path (mu-law, upsampling)."""
    if protocol == "pcm":
        decoded = np.round(party * 32767).astype(np.float32) / 32768
    else:
        decoded = ulaw_decode(ulaw_encode(party)).astype(np.float32) / 32768
    audio = soxr.resample(decoded, TELEPHONY_RATE, 16000, quality="HQ").astype(np.float32)
    seg = Segmenter(config)
    found = [e for e in seg.push(audio) if isinstance(e, Utterance)]
    return found + [e for e in seg.flush() if isinstance(e, Utterance)]


# ----------------------------------------------------------------- server
def start_server(overrides: list[str], ingest_port: int, events_port: int,
                 log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "streamer.cli", "serve", "--set", f"ingest.port={ingest_port}",
           "--set", f"websocket.port={events_port}", "--set", "stdout.enabled=false",
           "--set", "ingest.max_calls=1000", "--set", "bus.subscriber_queue=100000"]
    for o in overrides:
        cmd += ["--set", o]
    log = log_path.open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


async def wait_for_ready(port: int, proc: subprocess.Popen[bytes] | None,
                          timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}; see its log")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # ready, not just alive: models loaded and warmed (streamer/ops/health.py)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await reader.read(4096)
            writer.close()
            if b"200 OK" in data:
                return
        except OSError:
            pass  # not listening yet
        await asyncio.sleep(0.5)
    raise SystemExit(f"no ready ingest server on port {port} after {timeout:.0f} s")


# ---------------------------------------------------------------- measuring
@dataclass
class Collector:
    """Events from the subscriber WebSocket, with this client's receive time."""

    emotions: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    lagged: int = 0

    async def run(self, url: str, ready: asyncio.Event) -> None:
        async with connect(url, max_size=None, max_queue=None) as ws:
            await ws.recv()  # hello
            ready.set()
            async for raw in ws:
                now = time.monotonic()
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "utterance.emotion":
                    self.emotions.append((now, event))
                elif kind == "stream.ended":
                    self.ended.append(event)
                elif kind == "subscriber.lagged":
                    self.lagged += int(event.get("dropped", 0))


class ResourceSampler:
    def __init__(self, pid: int | None) -> None:
        self.proc = psutil.Process(pid) if pid else None
        self.me = psutil.Process()
        self.rss: list[int] = []

    def cpu(self) -> tuple[float, float]:
        server = sum(self.proc.cpu_times()[:2]) if self.proc else 0.0
        return server, sum(self.me.cpu_times()[:2])

    async def run(self) -> None:
        while self.proc is not None:
            self.rss.append(self.proc.memory_info().rss)
            await asyncio.sleep(0.5)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 1),
            "p95": round(float(np.percentile(a, 95)), 1),
            "p99": round(float(np.percentile(a, 99)), 1), "max": round(float(a.max()), 1)}


async def run_level(n: int, call: np.ndarray, args: argparse.Namespace,
                    expected: dict[str, int], server: Server, level_tag: str) -> dict[str, Any]:
    ingest, collector, sampler = server.ingest_url.rstrip("/"), server.collector, server.sampler
    rng = random.Random(n)
    stagger = min(args.stagger_s, call.shape[0] / TELEPHONY_RATE / 2)
    ids = [f"{level_tag}c{i:03d}" for i in range(n)]
    if args.protocol == "audiohook":
        ids = [f"00000000-0000-4000-8000-{level_tag}{i:04d}".ljust(36, "0")[:36] for i in
               range(n)]
    reports: dict[str, SendReport] = {}
    # Event stream id -> the call's id: events carry <protocol>:<id> (ingest.namespace_
    # stream_ids, the default) or <id> (off); either is matched.
    of_call = client_ids(args.protocol, ids)

    async def one(stream_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        audio = CallAudio(stream_id, (call[:, 0].copy(), call[:, 1].copy()))
        if args.protocol == "twilio":
            reports[stream_id] = await send_twilio(f"{ingest}/ingest/twilio", audio, args.pace)
        elif args.protocol == "audiohook":
            reports[stream_id] = await send_audiohook(f"{ingest}/ingest/audiohook", audio,
                                                      args.pace, api_key=args.api_key)
        else:
            reports[stream_id] = await send_pcm(f"{ingest}/ingest/pcm", audio, args.pace,
                                                token=args.token)

    first_event = len(collector.emotions)
    first_ended = len(collector.ended)
    rss_from = len(sampler.rss)
    rss_idle = sampler.proc.memory_info().rss if sampler.proc else 0
    cpu0, me0, wall0 = *sampler.cpu(), time.monotonic()
    await asyncio.gather(*(one(s, rng.uniform(0, stagger)) for s in ids))
    cpu1, me1, wall1 = *sampler.cpu(), time.monotonic()
    deadline = time.monotonic() + args.drain_s
    while (sum(1 for e in collector.ended[first_ended:] if e["stream_id"] in of_call) < 2 * n
           and time.monotonic() < deadline):
        await asyncio.sleep(0.2)
    cpu2, wall2 = sampler.cpu()[0], time.monotonic()  # the server may still be catching up

    events = [(t, e) for t, e in collector.emotions[first_event:] if e["stream_id"] in of_call]
    server_ms = [float(e["latency"]["total_ms"]) for _, e in events]
    client_ms = [(t - (reports[of_call[e["stream_id"]]].t0 + e["t_end"] / args.pace)) * 1000
                 for t, e in events]
    got: dict[tuple[str, str], int] = defaultdict(int)
    for _, e in events:
        got[(of_call[e["stream_id"]], e["channel"])] += 1
    dropped = sum(max(0, want - got[(s, ch)]) for s in ids for ch, want in expected.items())
    extra = sum(max(0, got[(s, ch)] - want) for s in ids for ch, want in expected.items())
    late = sum(1 for v in server_ms if v > args.late_ms)
    rss = sampler.rss[rss_from:] or [rss_idle]
    wall = wall1 - wall0
    call_s = call.shape[0] / TELEPHONY_RATE
    closes = [r.close_code for r in reports.values()]
    return {
        "calls": n, "protocol": args.protocol, "call_seconds": call_s, "pace": args.pace,
        "wall_s": round(wall, 1),
        "utterances_expected": sum(expected.values()) * n, "events": len(events),
        "dropped": dropped, "extra": extra, "late": late,
        "abnormal_closes": sum(1 for c in closes if c not in (1000, None)),
        "latency_server_ms": percentiles(server_ms),
        "latency_client_ms": percentiles(client_ms),
        "queue_ms": percentiles([float(e["latency"]["queue_ms"]) for _, e in events]),
        "asr_ms": percentiles([float(e["latency"]["asr_ms"]) for _, e in events]),
        "fusion_ms": percentiles([float(e["latency"]["fusion_ms"]) for _, e in events]),
        "drain_s": round(wall2 - wall1, 1),
        "server_cpu_cores": round((cpu1 - cpu0) / wall, 2),
        "server_cpu_cores_per_call": round((cpu1 - cpu0) / wall / n, 3),
        # CPU seconds the server spent per second of call audio, until the last event:
        # 2 free cores / this = how many real-time calls the CPU could sustain at all.
        "server_cpu_s_per_call_s": round((cpu2 - cpu0) / (n * call_s), 3),
        "loadgen_cpu_cores": round((me1 - me0) / wall, 2),
        "server_rss_mb_idle": round(rss_idle / 2**20, 1),
        "server_rss_mb_peak": round(max(rss) / 2**20, 1),
        "server_rss_mb_per_call": round(max(0, max(rss) - rss_idle) / 2**20 / n, 2),
        "subscriber_lagged": collector.lagged,
    }


def print_table(levels: list[dict[str, Any]]) -> None:
    head = (f"{'calls':>5} {'utts':>5} {'drop':>4} {'late':>4} | {'server p50/p95/p99 ms':>22} | "
            f"{'client p50/p95/p99 ms':>22} | {'CPU cores':>9} {'s/call-s':>8} | "
            f"{'RSS MB':>7} {'/call':>6}")
    print(head)
    print("-" * len(head))
    for r in levels:
        s, c = r["latency_server_ms"], r["latency_client_ms"]
        print(f"{r['calls']:>5} {r['events']:>5} {r['dropped']:>4} {r['late']:>4} | "
              f"{s['p50']!s:>6} {s['p95']!s:>7} {s['p99']!s:>7} | "
              f"{c['p50']!s:>6} {c['p95']!s:>7} {c['p99']!s:>7} | "
              f"{r['server_cpu_cores']:>9} {r.get('server_cpu_s_per_call_s', '-')!s:>8} | "
              f"{r['server_rss_mb_peak']:>7} {r['server_rss_mb_per_call']:>6}")


@dataclass
class Server:
    """A server under load: where calls go, its events, its CPU and memory."""

    ingest_url: str
    events_url: str
    proc: subprocess.Popen[bytes] | None
    collector: Collector
    sampler: ResourceSampler
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, args: argparse.Namespace, overrides: list[str],
                    log_path: Path) -> Server:
        """A fresh ``serve`` with these overrides, or ``--ingest-url``'s running one."""
        proc, ingest_url, events_url = None, args.ingest_url, args.events_url
        if ingest_url is None:
            ingest_port, events_port = free_port(), free_port()
            ingest_url = f"ws://127.0.0.1:{ingest_port}"
            events_url = f"ws://127.0.0.1:{events_port}/events"
            overrides = list(overrides)
            if args.token:
                overrides.append(f"ingest.token={args.token}")
            if args.api_key:
                overrides.append(f"ingest.audiohook_api_key={args.api_key}")
            proc = start_server(overrides, ingest_port, events_port, log_path)
        server = cls(ingest_url, events_url, proc, Collector(),
                     ResourceSampler(proc.pid if proc else args.server_pid))
        try:
            await wait_for_ready(int(ingest_url.rsplit(":", 1)[1].split("/")[0]), proc)
            ready = asyncio.Event()
            server.tasks.append(asyncio.create_task(server.collector.run(events_url, ready)))
            await asyncio.wait_for(ready.wait(), 30)
            server.tasks.append(asyncio.create_task(server.sampler.run()))
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(None, args.set)
    call = load_call(args.audio, args.duration) if args.audio else synthesize_call(args.duration)
    expected = {
        config.ingest.customer_role: len(expected_utterances(call[:, 0], args.protocol,
                                                             config.segmenter)),
        config.ingest.agent_role: len(expected_utterances(call[:, 1], args.protocol,
                                                          config.segmenter)),
    }
    print(f"call: {call.shape[0] / TELEPHONY_RATE:.0f} s, expected utterances per call "
          f"{expected}", flush=True)
    servers: dict[str, Server] = {}
    levels: list[dict[str, Any]] = []
    compared: list[dict[str, Any]] = []
    try:
        servers["main"] = await Server.start(args, args.set, Path(args.server_log))
        if args.compare:
            servers["compare"] = await Server.start(
                args, [*args.set, *args.compare], Path(args.server_log).with_suffix(".compare.log"))
        for i, n in enumerate(args.calls):
            # With --compare, each level runs on both servers back to back (the same
            # machine state for both), the compared one first.
            for name, server in sorted(servers.items()):
                label = "" if name == "main" else f" (compare: {' '.join(args.compare)})"
                print(f"--- {n} concurrent calls ({args.protocol}){label} ...", flush=True)
                result = await run_level(n, call, args, expected, server,
                                         f"L{i}{name[0]}")
                (levels if name == "main" else compared).append(result)
                print_table([result])
                await asyncio.sleep(2)
    finally:
        for server in servers.values():
            server.stop()
    ok = [r for r in levels if r["dropped"] == 0 and r["latency_server_ms"]["p95"] is not None
          and r["latency_server_ms"]["p95"] < args.late_ms
          and r["latency_client_ms"]["p95"] < args.late_ms]
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_at_end": os.getloadavg()},
        "settings": {"protocol": args.protocol, "duration_s": args.duration, "pace": args.pace,
                     "stagger_s": args.stagger_s, "overrides": args.set,
                     "audio": args.audio or "synthesised espeak-ng conversation",
                     "expected_utterances_per_call": expected},
        "levels": levels,
        "max_calls_p95_under_1s": max((r["calls"] for r in ok), default=0),
        **({"compare": {"overrides": args.compare, "levels": compared,
                        "cpu_s_per_call_s_ratio": [
                            round(a["server_cpu_s_per_call_s"] / b["server_cpu_s_per_call_s"], 3)
                            for a, b in zip(levels, compared, strict=True)]}}
           if args.compare else {}),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, nargs="+", default=[1, 2, 4, 8],
                   help="load levels: numbers of concurrent calls, run one after another")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of audio per call")
    p.add_argument("--protocol", choices=["twilio", "audiohook", "pcm"], default="twilio")
    p.add_argument("--audio", help="stereo recording (left customer, right agent); default: "
                                   "a synthesised conversation (needs espeak-ng)")
    p.add_argument("--pace", type=float, default=1.0, help="1.0 = real time")
    p.add_argument("--stagger-s", type=float, default=8.0,
                   help="call starts are spread uniformly over this many seconds")
    p.add_argument("--late-ms", type=float, default=LATE_MS)
    p.add_argument("--drain-s", type=float, default=60.0,
                   help="after sending, wait at most this long for the last events")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the spawned server (repeatable)")
    p.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE",
                   help="also run every level on a second server with these overrides on top "
                        "(repeatable; e.g. asr.max_batch=1): both servers run in this process's "
                        "run, level by level, so the ratios come from one machine state")
    p.add_argument("--ingest-url", help="use a running server, e.g. ws://127.0.0.1:8766")
    p.add_argument("--events-url", help="its subscriber URL, e.g. ws://127.0.0.1:8765/events")
    p.add_argument("--server-pid", type=int, help="pid of that server (CPU and memory)")
    p.add_argument("--token", default="loadgen-token", help="raw PCM ingest token")
    p.add_argument("--api-key", default="loadgen-token", help="AudioHook X-API-KEY")
    p.add_argument("--server-log", default="/tmp/loadgen-server.log")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.ingest_url and not args.events_url:
        p.error("--ingest-url needs --events-url")
    if args.ingest_url and args.compare:
        p.error("--compare starts its own servers: leave out --ingest-url")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    print()
    print_table(result["levels"])
    print(f"\nlargest load with p95 < {args.late_ms:.0f} ms and nothing dropped: "
          f"{result['max_calls_p95_under_1s']} concurrent calls")
    if "compare" in result:
        print(f"\ncompared ({' '.join(args.compare)}):")
        print_table(result["compare"]["levels"])
        print(f"CPU-s per call-s, this build / compared: "
              f"{result['compare']['cpu_s_per_call_s_ratio']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
