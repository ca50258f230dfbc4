"""The Ray Serve path against the single-process ``serve``, on this machine, in one run.

For each setup it replays N concurrent two-party calls at real-time pace over Twilio Media
Streams with ``bench/loadgen.py``'s load levels (``run_level``: the same calls, the same
latency and CPU accounting) and records per level p50/p95 of end of speech -> event (the
server's own ``latency.total_ms`` and this client's clock) and CPU seconds per call-second.

- ``single``: ``emotion-stream serve`` (one process; events from its own /events).
- ``ray-<k>``: a one-node Ray cluster (``ray start --head``), ``emotion-stream serve --ray``
  with k ingest replicas, one ASR and one fusion replica, a Mosquitto broker and
  ``emotion-stream gateway`` (events from the gateway's /events, so the client clock
  includes MQTT and the gateway). CPU: every process of the cluster (raylet, GCS, Serve
  controller, proxy, replicas), the ``serve --ray`` driver, the gateway and the broker.

Usage (from the repository root; about 8 minutes with the defaults)::

    .venv/bin/python bench/ray_overhead.py --out bench/results/ray_overhead.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import loadgen  # noqa: E402  (bench/loadgen.py, beside this file)

from harness.broker import Broker  # noqa: E402
from harness.net import wait_for_port  # noqa: E402
from streamer.core.config import load_config  # noqa: E402
from streamer.scale.ray_app import PREFER_LOCAL_ENV, PROXY_CALLBACK, PROXY_CALLBACK_ENV  # noqa: E402

RAY_ENV = {PROXY_CALLBACK_ENV: PROXY_CALLBACK, PREFER_LOCAL_ENV: "0",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def component(proc: psutil.Process) -> str:
    """Which part of the Ray setup a process is, from its command line."""
    line = " ".join(proc.cmdline())
    for key, name in (("ServeReplica:emotion-stream:asr", "asr"),
                      ("ServeReplica:emotion-stream:fusion", "fusion"),
                      ("ServeReplica:emotion-stream:ingest", "ingest"),
                      ("ProxyActor", "proxy"), ("ServeController", "controller"),
                      ("mosquitto", "broker"), ("streamer.cli gateway", "gateway"),
                      ("streamer.cli serve", "serve-driver"), ("raylet", "ray-system"),
                      ("gcs_server", "ray-system"), ("ray start", "ray-system"),
                      ("dashboard", "ray-system"), ("log_monitor", "ray-system"),
                      ("runtime_env", "ray-system")):
        if key in line:
            return name
    return "other"


@dataclass(frozen=True)
class Memory:
    rss: int


class TreeSampler(loadgen.ResourceSampler):
    """``loadgen.ResourceSampler`` over several process trees (CPU and RSS summed)."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(None)
        self.roots = [psutil.Process(pid) for pid in pids]
        self.proc = self  # type: ignore[assignment]  # run_level reads proc.memory_info()
        self._gone_cpu: dict[int, float] = {}  # last CPU seen of processes that ended
        self._kind: dict[int, str] = {}

    def _procs(self) -> list[psutil.Process]:
        out = []
        for root in self.roots:
            try:
                out += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return out

    def cpu(self) -> tuple[float, float]:
        for proc in self._procs():
            try:
                times = proc.cpu_times()
                self._gone_cpu[proc.pid] = times.user + times.system
                if proc.pid not in self._kind:
                    self._kind[proc.pid] = component(proc)
            except psutil.NoSuchProcess:
                continue
        total = sum(self._gone_cpu.values())  # ended processes keep their last figure
        return total, sum(self.me.cpu_times()[:2])

    def by_component(self) -> dict[str, float]:
        """CPU seconds so far per component (see ``component``)."""
        self.cpu()
        out: dict[str, float] = {}
        for pid, seconds in self._gone_cpu.items():
            kind = self._kind.get(pid, "other")
            out[kind] = out.get(kind, 0.0) + seconds
        return out

    def memory_info(self) -> Memory:
        rss = 0
        for proc in self._procs():
            try:
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return Memory(rss)

    async def run(self) -> None:
        while True:
            self.rss.append(self.memory_info().rss)
            await asyncio.sleep(1.0)


@dataclass
class BrokerTraffic:
    """Messages and payload bytes on ``<prefix>/#`` (what one consumer of everything gets)."""

    messages: int = 0
    payload_bytes: int = 0
    by_type: dict[str, int] = field(default_factory=dict)

    async def run(self, port: int, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe("emotion/#", qos=1)
            ready.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.messages += 1
                self.payload_bytes += len(payload)
                kind = str(message.topic).rsplit("/", 1)[-1]
                self.by_type[kind] = self.by_type.get(kind, 0) + 1


def wait_for_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            args = proc.args if isinstance(proc.args, list) else [proc.args]
            raise SystemExit(f"{' '.join(map(str, args[3:5]))} exited with {proc.returncode}; "
                             f"see {path}")
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(1.0)
    raise SystemExit(f"'{text}' not in {path} after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group (start_new_session)
        proc.wait(timeout=10)


async def ray_levels(args: argparse.Namespace, replicas: int, calls: list[int],
                     call: Any, expected: dict[str, int], workdir: Path,
                     direct: bool = False) -> dict[str, Any]:
    """``direct``: calls go to the ingest replicas' own port (``ray.direct_ingest``), not
    through Serve's proxy."""
    env = {**os.environ, **RAY_ENV}
    name = f"ray-{replicas}" + ("-direct" if direct else "")
    py, ray_bin = sys.executable, str(Path(sys.executable).parent / "ray")
    broker = Broker(workdir).start()
    gcs, http, events = loadgen.free_port(), loadgen.free_port(), loadgen.free_port()
    logs = {part: workdir / f"{part}-{name}.log" for part in ("ray", "serve", "gateway")}
    ingest_port = loadgen.free_port()
    common = ["--set", "mqtt.enabled=true", "--set", f"mqtt.port={broker.port}"]
    procs = []
    try:
        procs.append(subprocess.Popen(
            [ray_bin, "start", "--head", "--block", f"--port={gcs}",
             f"--num-cpus={args.ray_cpus}", f"--num-gpus={args.ray_gpus}",
             "--include-dashboard=false", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
             f"--temp-dir={tempfile.mkdtemp(prefix='rb', dir='/tmp')}"],
            env=env, stdout=logs["ray"].open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True))
        wait_for_port(gcs, 120)
        overrides = [*common, "--set", f"ray.address=127.0.0.1:{gcs}",
                     "--set", f"ray.http_port={http}", "--set", f"ray.ingest_replicas={replicas}",
                     "--set", "ingest.max_calls=1000", "--set", "ingest.token=loadgen-token",
                     "--set", "ingest.audiohook_api_key=loadgen-token"]
        if direct:
            overrides += ["--set", "ray.direct_ingest=true", "--set", f"ingest.port={ingest_port}"]
        for o in args.set:
            overrides += ["--set", o]
        procs.append(subprocess.Popen(
            [py, "-m", "streamer.cli", "serve", "--ray", *overrides], env=env,
            stdout=logs["serve"].open("wb"), stderr=subprocess.STDOUT, start_new_session=True))
        procs.append(subprocess.Popen(
            [py, "-m", "streamer.cli", "gateway", *common, "--set", f"websocket.port={events}",
             "--set", "bus.subscriber_queue=100000"], env=env,
            stdout=logs["gateway"].open("wb"), stderr=subprocess.STDOUT, start_new_session=True))
        wait_for_log(logs["serve"], "emotion-stream on Ray Serve", procs[1], 600)
        if direct:
            wait_for_port(ingest_port, 120)  # the replica's own listener opens after start
        wait_for_port(events, 60)
        args.ingest_url = f"ws://127.0.0.1:{ingest_port if direct else http}"
        args.events_url = f"ws://127.0.0.1:{events}/events"
        collector, ready = loadgen.Collector(), asyncio.Event()
        listen = asyncio.create_task(collector.run(args.events_url, ready))
        await asyncio.wait_for(ready.wait(), 30)
        assert broker.proc is not None
        sampler = TreeSampler([p.pid for p in procs] + [broker.proc.pid])
        sampling = asyncio.create_task(sampler.run())
        server = loadgen.Server(args.ingest_url, args.events_url, None, collector, sampler)
        await asyncio.sleep(5)  # the cluster settles after deploying
        traffic, heard = BrokerTraffic(), asyncio.Event()
        counting = asyncio.create_task(traffic.run(broker.port, heard))
        await asyncio.wait_for(heard.wait(), 30)
        levels = []
        for i, n in enumerate(calls):
            print(f"--- {name}: {n} concurrent calls ...", flush=True)
            before = (traffic.messages, traffic.payload_bytes, dict(traffic.by_type))
            parts0 = sampler.by_component()
            level = await loadgen.run_level(n, call, args, expected, server,
                                            f"R{replicas}{'D' if direct else ''}L{i}")
            call_s = n * level["call_seconds"]
            parts1 = sampler.by_component()
            level["cpu_s_per_call_s_by_component"] = {
                k: round((v - parts0.get(k, 0.0)) / call_s, 4) for k, v in sorted(parts1.items())}
            level["mqtt"] = {
                "messages": traffic.messages - before[0],
                "payload_bytes": traffic.payload_bytes - before[1],
                "messages_per_call_s": round((traffic.messages - before[0]) / call_s, 3),
                "payload_bytes_per_call_s": round((traffic.payload_bytes - before[1]) / call_s, 1),
                "by_type": {k: v - before[2].get(k, 0) for k, v in traffic.by_type.items()}}
            levels.append(level)
            loadgen.print_table([levels[-1]])
            await asyncio.sleep(2)
        listen.cancel()
        sampling.cancel()
        counting.cancel()
        return {"setup": name, "ingest_replicas": replicas, "direct_ingest": direct,
                "levels": levels}
    finally:
        for proc in reversed(procs):  # serve --ray deletes the app, then the cluster stops
            stop(proc)
        broker.stop()


async def single_levels(args: argparse.Namespace, calls: list[int], call: Any,
                        expected: dict[str, int], workdir: Path) -> dict[str, Any]:
    ingest, events = loadgen.free_port(), loadgen.free_port()
    overrides = list(args.set) + ["ingest.token=loadgen-token",
                                  "ingest.audiohook_api_key=loadgen-token"]
    proc = loadgen.start_server(overrides, ingest, events, workdir / "single.log")
    try:
        await loadgen.wait_for_ready(ingest, proc)
        args.ingest_url = f"ws://127.0.0.1:{ingest}"
        args.events_url = f"ws://127.0.0.1:{events}/events"
        collector, ready = loadgen.Collector(), asyncio.Event()
        listen = asyncio.create_task(collector.run(args.events_url, ready))
        await asyncio.wait_for(ready.wait(), 30)
        sampler = loadgen.ResourceSampler(proc.pid)
        sampling = asyncio.create_task(sampler.run())
        server = loadgen.Server(args.ingest_url, args.events_url, proc, collector, sampler)
        levels = []
        for i, n in enumerate(calls):
            print(f"--- single process: {n} concurrent calls ...", flush=True)
            levels.append(await loadgen.run_level(n, call, args, expected, server, f"S{i}"))
            loadgen.print_table([levels[-1]])
            await asyncio.sleep(2)
        listen.cancel()
        sampling.cancel()
        return {"setup": "single", "levels": levels}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(None, args.set)
    call = loadgen.synthesize_call(args.duration)
    expected = {
        config.ingest.customer_role: len(loadgen.expected_utterances(
            call[:, 0], args.protocol, config.segmenter)),
        config.ingest.agent_role: len(loadgen.expected_utterances(
            call[:, 1], args.protocol, config.segmenter))}
    print(f"call: {args.duration:.0f} s, expected utterances per call {expected}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    setups = []
    if not args.ray_only:
        setups.append(await single_levels(args, args.calls, call, expected, workdir))
    setups.append(await ray_levels(args, 1, args.calls, call, expected, workdir))
    if args.direct:
        setups.append(await ray_levels(args, 1, args.calls, call, expected, workdir,
                                       direct=True))
    for replicas in args.scaling_replicas:
        setups.append(await ray_levels(args, replicas, [args.scaling_calls], call, expected,
                                       workdir))
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_at_end": os.getloadavg(),
                    "note": "shared machine: other processes ran beside the benchmark"},
        "settings": {"protocol": args.protocol, "duration_s": args.duration, "pace": args.pace,
                     "stagger_s": args.stagger_s, "overrides": args.set,
                     "expected_utterances_per_call": expected, "logs": str(workdir)},
        "setups": setups,
    }


def summary(result: dict[str, Any]) -> list[str]:
    lines = [f"{'setup':>8} {'calls':>5} {'events':>6} {'drop':>4} | {'server p50/p95 ms':>17} | "
             f"{'client p50/p95 ms':>17} | {'CPU s/call-s':>12}"]
    for setup in result["setups"]:
        for r in setup["levels"]:
            s, c = r["latency_server_ms"], r["latency_client_ms"]
            lines.append(f"{setup['setup']:>8} {r['calls']:>5} {r['events']:>6} "
                         f"{r['dropped']:>4} | {s['p50']!s:>7} {s['p95']!s:>9} | "
                         f"{c['p50']!s:>7} {c['p95']!s:>9} | {r['server_cpu_s_per_call_s']:>12}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, nargs="+", default=[4, 8])
    p.add_argument("--scaling-calls", type=int, default=8,
                   help="the level run again with each of --scaling-replicas ingest replicas")
    p.add_argument("--scaling-replicas", type=int, nargs="*", default=[2],
                   help="ingest replica counts for the scaling run (none: skip it)")
    p.add_argument("--ray-only", action="store_true", help="skip the single-process setup")
    p.add_argument("--direct", action="store_true",
                   help="also run ray-1 with ray.direct_ingest (calls on the ingest replica's "
                        "own port, not through Serve's proxy)")
    p.add_argument("--ray-cpus", type=int, default=4,
                   help="logical CPUs of the Ray node (replicas reserve ray.*_num_cpus)")
    p.add_argument("--ray-gpus", type=int, default=0,
                   help="GPUs of the Ray node (with --set asr.device=cuda "
                        "--set ray.asr_num_gpus=1 ...: docs/scaling.md)")
    p.add_argument("--duration", type=float, default=40.0, help="seconds of audio per call")
    p.add_argument("--set", action="append", default=["stdout.enabled=false"],
                   metavar="KEY=VALUE", help="config override for both setups (repeatable)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    # The load generator's own options, at its defaults (Twilio, real time, 8 s stagger).
    lg = loadgen.parse_args(["--duration", str(args.duration)])
    for key in ("protocol", "pace", "stagger_s", "late_ms", "drain_s", "token", "api_key"):
        setattr(args, key, getattr(lg, key))
    result = asyncio.run(main_async(args))
    print("\n".join(["", *summary(result)]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
