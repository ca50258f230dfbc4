"""Two levers measured apart, together (issue 28, exploratory): pooling layers 2-6 of Whisper
base instead of all 7 hidden states (+3 points held-out nEMO, -1 RAVDESS:
``transfer_levers.py``) and corpus-balanced sample weights (+2 held-out RAVDESS:
``neutral_fallback.py``). The served recipe otherwise (``mixed:40``, the probe
``linear_probe_affect``, causal deployment statistics over the acted stream) on the encoder
comparison's table (1,314 wideband clips, audio only). Candidate recipe for the next
bundle; the bundle itself needs the whole protocol's features (docs/transfer.md).

    python -m bench.experiments.recipe_combo --out bench/results/recipe_combo.json
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.experiments.egemaps_transfer import (
    LAYER_WIDTH,
    TEXT_WIDTH,
    table_parser,
    wideband_table,
)
from bench.experiments.neutral_fallback import fit, predict, runs, ua
from bench.experiments.transfer_levers import columns
from offline_training import cross_corpus as cc

NORMALISATION = "mixed:40"
VARIANTS: dict[str, tuple[range, bool]] = {  # name: (layers, corpus-balanced weights)
    "all layers (v7)": (range(0, 7), False),
    "layers 2-6": (range(2, 7), False),
    "all layers, balanced": (range(0, 7), True),
    "layers 2-6, balanced": (range(2, 7), True),
}


def main() -> None:
    parser = table_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/recipe_combo.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    table = wideband_table(args)
    neutral = table.classes.index("neutral")
    rows: list[dict[str, Any]] = []
    for name, (layers, balanced) in VARIANTS.items():
        sub = replace(table, audio=table.audio[:, columns(layers, "mean+std")])
        head = cc.affect_probe_head(LAYER_WIDTH, TEXT_WIDTH, len(layers), len(table.classes))
        for run in runs(sub):
            train, test = sub.where(run.train), sub.where(run.test)
            prior = cc.population_prior(train)
            model = fit(head, train, NORMALISATION, balanced, prior)
            for corpus in sorted(set(test.corpus.tolist())):
                y, p = predict(model, test.where(test.corpus == corpus), NORMALISATION,
                               prior, "acted", args.seed)
                predicted = p.argmax(axis=1)
                rows.append({"variant": name, "setting": run.setting, "fold": run.fold,
                             "test": corpus, "ua": ua(y, predicted, len(table.classes)),
                             "neutral_recall": float(np.mean(predicted[y == neutral] == neutral))})
                print(f"{name:22s} {run.setting:14s} {run.fold:6s} {corpus:8s} "
                      f"UA {rows[-1]['ua']:.3f} neutral {rows[-1]['neutral_recall']:.2f}",
                      flush=True)
    summary: dict[str, dict[str, str]] = {}
    for name in VARIANTS:
        cells: dict[str, str] = {}
        for setting, tested in (("ravdess->nemo", "nemo"), ("nemo->ravdess", "ravdess"),
                                ("both", "nemo"), ("both", "ravdess")):
            part = [r for r in rows if r["variant"] == name and r["setting"] == setting
                    and r["test"] == tested]
            uas = [r["ua"] for r in part]
            spread = f" ± {np.std(uas):.3f}" if len(uas) > 1 else ""
            cells[f"{setting} {tested}"] = (f"{np.mean(uas):.3f}{spread} "
                                          f"({np.mean([r['neutral_recall'] for r in part]):.2f})")
        summary[name] = cells
        print(name, cells, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"normalisation": NORMALISATION, "summary": summary,
                                    "rows": rows,
                                    "seconds": round(time.perf_counter() - started)},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
