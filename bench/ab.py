"""A/B two checkouts on one benchmark, interleaved, and report the ratios (B / A).

Runs ``bench/latency.py`` (or ``bench/loadgen.py``) from checkout A, then from B, then
A again, ... ``--rounds`` times, on the same machine in one run, so that machine noise
hits both alike; prints the median of each figure per side and B/A. Make checkout A with
``git worktree add /tmp/before <commit>``; both use this checkout's ``.venv``.

Usage (from the repository root)::

    .venv/bin/python bench/ab.py --a /tmp/before --b . --bench latency --rounds 2 \
        --out bench/results/ab-latency.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

COMMANDS = {
    "latency": ["bench/latency.py", "--repeats", "1"],
    "loadgen": ["bench/loadgen.py", "--calls", "4", "--duration", "30", "--stagger-s", "4"],
}


def figures(bench: str, result: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one benchmark result."""
    if bench == "latency":
        run = result["runs"]["speculative"]
        return {"total_p50_ms": run["total_ms"]["p50"], "total_p95_ms": run["total_ms"]["p95"],
                "after_hangover_p50_ms": run["after_hangover_ms"]["p50"],
                "shared_pass_p50_ms": result["processing_cost"]["shared_p50_ms"]}
    level = result["levels"][-1]
    return {"server_p50_ms": level["latency_server_ms"]["p50"],
            "server_p95_ms": level["latency_server_ms"]["p95"],
            "server_cpu_s_per_call_s": level["server_cpu_s_per_call_s"],
            "events": level["events"]}


def run_once(checkout: Path, bench: str, python: str, overrides: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        sets = [arg for o in overrides for arg in ("--set", o)]
        subprocess.run([python, *COMMANDS[bench], *sets, "--out", str(out)], cwd=checkout,
                       check=True, stdout=subprocess.DEVNULL)
        return figures(bench, json.loads(out.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="checkout A (before)")
    parser.add_argument("--b", type=Path, default=Path("."), help="checkout B (after)")
    parser.add_argument("--bench", choices=sorted(COMMANDS), default="latency")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for both sides, e.g. "
                        "emotion.bundle=/abs/path (the same model on both sides)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    python = sys.executable
    runs: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    for i in range(args.rounds):
        for side in ("a", "b"):
            runs[side].append(run_once(getattr(args, side).resolve(), args.bench, python,
                                       args.overrides))
            print(f"round {i + 1} {side}: {runs[side][-1]}", flush=True)
    keys = list(runs["a"][0])
    medians = {side: {k: statistics.median(r[k] for r in runs[side]) for k in keys}
               for side in runs}
    ratios = {k: medians["b"][k] / medians["a"][k] for k in keys if medians["a"][k]}
    result = {"bench": args.bench, "rounds": args.rounds, "a": str(args.a), "b": str(args.b),
              "overrides": args.overrides,
              "runs": runs, "median": medians, "ratio_b_over_a": ratios}
    print(json.dumps({"median": medians, "ratio_b_over_a": ratios}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
