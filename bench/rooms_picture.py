"""Draws docs/img/streamer-rooms.png from the code: the rooms of ``streamer/`` on their
floors (docs/design.md) and an arrow for every room that imports another, its width the
number of module imports (read with grimp, import-linter's graph; type-checking-only
imports left out, as the contracts do).

    .venv/bin/python bench/rooms_picture.py --out docs/img/streamer-rooms.png
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

FLOORS: tuple[tuple[str, ...], ...] = (
    ("core",), ("publish", "audio"), ("supervise", "engine"), ("ingest",),
    ("runtime", "sources"), ("ops", "scale"), ("apps",), ("cli",))


def room_imports() -> collections.Counter[tuple[str, str]]:
    import grimp

    graph = grimp.build_graph("streamer", exclude_type_checking_imports=True)
    rooms = {room for floor in FLOORS for room in floor}
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for module in graph.modules:
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in rooms:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            other = imported.split(".")
            if len(other) >= 2 and other[1] in rooms and other[1] != parts[1]:
                counts[(parts[1], other[1])] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/img/streamer-rooms.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    place: dict[str, tuple[float, float]] = {}
    for level, floor in enumerate(FLOORS):
        for i, room in enumerate(floor):
            place[room] = ((i + 1) / (len(floor) + 1) * 10, level * 1.6)
    fig, ax = plt.subplots(figsize=(8, 9))
    for (src, dst), n in sorted(room_imports().items()):
        (x0, y0), (x1, y1) = place[src], place[dst]
        ax.add_patch(FancyArrowPatch((x0, y0 - 0.3), (x1, y1 + 0.3), arrowstyle="-|>",
                                     mutation_scale=10, lw=0.4 + 0.25 * n ** 0.5,
                                     color="#1971c2" if y1 < y0 else "#e03131", alpha=0.55,
                                     connectionstyle="arc3,rad=0.08"))
    for room, (x, y) in place.items():
        ax.add_patch(FancyBboxPatch((x - 1.0, y - 0.3), 2.0, 0.6, boxstyle="round,pad=0.05",
                                    fc="#f1f3f5", ec="#495057"))
        ax.text(x, y, room + ("" if room in ("runtime", "cli") else "/"), ha="center",
                va="center", fontsize=11, family="monospace")
    for level in range(len(FLOORS)):
        ax.text(-0.4, level * 1.6, f"floor {level + 1}", ha="right", va="center", fontsize=9,
                color="#868e96")
    ax.set_xlim(-1.8, 10.2)
    ax.set_ylim(-0.8, (len(FLOORS) - 1) * 1.6 + 0.8)
    ax.axis("off")
    ax.set_title("streamer/ rooms: arrows = imports (width ~ modules), all downward",
                 fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
