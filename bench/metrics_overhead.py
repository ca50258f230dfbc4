"""Cost of the metrics on the hot path: ``ServiceMetrics.observe_event`` per published
event (an utterance.emotion, a partial), and one ``/metrics`` exposition.

    .venv/bin/python bench/metrics_overhead.py [--events 200000]

Figures in docs/operations.md.
"""

from __future__ import annotations

import argparse
import time

from streamer.ops.metrics import ServiceMetrics

UTTERANCE = {"type": "utterance.emotion", "speech": True, "abstain_reason": None,
             "latency": {"vad_hangover_ms": 300.0, "queue_ms": 12.0, "asr_ms": 210.0,
                         "fusion_ms": 35.0, "total_ms": 560.0}}
PARTIAL = {"type": "utterance.partial", "text": "hello"}


def per_call_us(fn, event: dict, n: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(n):
        fn(event)
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    metrics = ServiceMetrics()
    for name, event in (("utterance.emotion", UTTERANCE), ("utterance.partial", PARTIAL)):
        print(f"observe_event {name}: "
              f"{per_call_us(metrics.observe_event, event, args.events):.2f} us")
    started = time.perf_counter()
    for _ in range(100):
        body = metrics.exposition()
    print(f"exposition (hot-path metrics only, {len(body)} bytes): "
          f"{(time.perf_counter() - started) / 100 * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
