"""Do hand-crafted prosody features transfer across corpora? eGeMAPS v02 (issue 28, exploratory)

eGeMAPS v02 functionals (88 dims, openSMILE through the ``opensmile`` wheel) per served span,
alone and concatenated with v7's audio features (every layer of Whisper base, fit window,
mean + std pooled), in the cross-corpus protocol of ``emotion-train cross-corpus``
(``offline_training.cross_corpus``): RAVDESS -> nEMO, nEMO -> RAVDESS and both with held-out
speakers (3 folds); normalisations ``none`` and ``mixed:40``, stream ``acted``, wideband,
audio only (gold transcripts behind a word gate of 2: no transcript is trusted, so the
words never reach the probe and no ASR runs).

The manifest is the encoder comparison's third of the wideband clips (docs/transfer.md,
"Encoder choice"). eGeMAPS is computed from the same audio the feature cache encodes
(``offline_training.audio.load_audio``: the span's start/end, 16 kHz mono float) and cached
in ``--egemaps`` (one row per clip id, with the time each clip took).

    python -m bench.experiments.egemaps_transfer --manifest runs/encoder-cmp.jsonl \\
        --cache runs/cache --out bench/results/egemaps_transfer.json

Variants: ``whisper`` (v7's features, the baseline), ``egemaps`` (alone, at several C: 88
standardised columns need less L2 than 7,168), ``whisper+egemaps`` (concatenated, every
column standardised alike) and ``whisper+egemaps x9`` (the eGeMAPS block weighted by
sqrt(7168 / 88) after standardisation, so its share of the L2 budget is the Whisper block's).
Needs ``pip install opensmile`` (not a runtime dependency of the streamer).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import opensmile

from bench.experiments import transfer_levers as levers
from bench.experiments.transfer_levers import summary
from offline_training import cross_corpus as cc
from offline_training.cli import data_settings

LAYER_WIDTH = 512  # Whisper base
LAYERS = 7  # hidden states: the embedding output + 6 blocks
TEXT_WIDTH = 384  # MiniLM
WHISPER_WIDTH = LAYERS * 2 * LAYER_WIDTH  # 7168 pooled columns
GATE = cc.WordGate(2.0, 1)  # no mean word probability reaches 2: audio only
EGEMAPS_WIDTH = 88
BLOCK_WEIGHT = float(np.sqrt(WHISPER_WIDTH / EGEMAPS_WIDTH))  # ~9.0


GOLD = ("--transcripts", "gold", "--word-gate", "2")  # gold transcripts, none trusted


def load_table(manifest: str, cache: str, path: Path) -> cc.Table:
    """The protocol's pooled table (Whisper base, every layer; no words trusted), from
    ``path`` when saved; the audio in float64."""
    table = levers.load_table(manifest, cache, path, GATE, GOLD)
    return replace(table, audio=table.audio.astype(np.float64))


def table_parser(doc: str | None) -> argparse.ArgumentParser:
    """An experiment's parser with the table's options (--manifest, --cache, --table)."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="runs/encoder-cmp.jsonl")
    parser.add_argument("--cache", default="runs/cache")
    parser.add_argument("--table", type=Path, default=Path("runs/encoder-cmp-base-fit-table.npz"))
    return parser


def wideband_table(args: argparse.Namespace) -> cc.Table:
    """``table_parser``'s table, its wideband rows (the protocol's headline rows)."""
    table = load_table(args.manifest, args.cache, args.table)
    return table.where(table.band == "wideband")


def egemaps_features(manifest: str, cache: str, path: Path) -> dict[str, Any]:
    """eGeMAPS v02 functionals of every clip's served span, from ``path`` when saved:
    ``ids``, ``features`` (N, 88), ``names``, ``wall_ms`` and ``cpu_ms`` per clip."""
    if not path.exists():
        from offline_training.audio import load_audio
        from offline_training.pipeline import open_corpus

        smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.Functionals)
        corpus = open_corpus(data_settings(levers.protocol_args(manifest, cache, *GOLD)))
        rows, wall, cpu, seconds = [], [], [], []
        for i, utt in enumerate(corpus.utterances):
            audio = load_audio(utt)
            started, started_cpu = time.perf_counter(), time.process_time()
            rows.append(smile.process_signal(audio, 16000).to_numpy()[0])
            wall.append(1e3 * (time.perf_counter() - started))
            cpu.append(1e3 * (time.process_time() - started_cpu))
            seconds.append(len(audio) / 16000)
            if i % 200 == 0:
                print(f"egemaps {i}/{len(corpus.utterances)}", flush=True)
        np.savez(path, ids=np.array([u.id for u in corpus.utterances]),
                 features=np.array(rows, dtype=np.float64),
                 names=np.array(smile.feature_names), wall_ms=np.array(wall),
                 cpu_ms=np.array(cpu), seconds=np.array(seconds))
    z = np.load(path, allow_pickle=False)
    return {k: z[k] for k in z.files}


@contextlib.contextmanager
def block_weight(start: int, stop: int, weight: float) -> Iterator[None]:
    """The probe pipeline with columns ``start:stop`` weighted by ``weight`` after its
    standardisation (the protocol's fit imports ``probe_pipeline`` at call time)."""
    from offline_training import train

    original = train.probe_pipeline

    def weighted(head: Any, width: int, class_weighting: bool = True, c: float = 1.0) -> Any:
        model = original(head, width, class_weighting, c)
        model.named_steps["functiontransformer"].kw_args["weight"][start:stop] *= weight
        return model

    train.probe_pipeline = weighted  # type: ignore[assignment]
    try:
        yield
    finally:
        train.probe_pipeline = original  # type: ignore[assignment]


# name: (blocks, eGeMAPS block weight, C)
VARIANTS: dict[str, tuple[str, float, float]] = {
    "whisper (v7)": ("whisper", 1.0, cc.DEFAULT_C),
    "egemaps": ("egemaps", 1.0, cc.DEFAULT_C),
    "egemaps C=0.001": ("egemaps", 1.0, 0.001),
    "egemaps C=0.1": ("egemaps", 1.0, 0.1),
    "egemaps C=1": ("egemaps", 1.0, 1.0),
    "whisper+egemaps": ("whisper+egemaps", 1.0, cc.DEFAULT_C),
    "whisper+egemaps x9": ("whisper+egemaps", BLOCK_WEIGHT, cc.DEFAULT_C),
}
CELLS = [("ravdess->nemo", "nemo"), ("nemo->ravdess", "ravdess"), ("both", "nemo"),
         ("both", "ravdess")]
CELL_NAMES = {("ravdess->nemo", "nemo"): "RAVDESS → nEMO",
              ("nemo->ravdess", "ravdess"): "nEMO → RAVDESS",
              ("both", "nemo"): "both → nEMO, held out",
              ("both", "ravdess"): "both → RAVDESS, held out"}


def markdown(out: dict[str, Any], normalisations: list[str]) -> str:
    """One row per variant, a column per setting and normalisation: UA (± fold spread),
    neutral recall in brackets; then every fold's UA of the 'both' setting."""
    head = "| variant | " + " | ".join(f"{CELL_NAMES[c]}, `{n}`" for c in CELLS
                                      for n in normalisations) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    folds = ["", "| variant | normalisation | both → nEMO folds | both → RAVDESS folds |",
             "|---|---|---|---|"]
    order = [v for v in VARIANTS if v in out["variants"]]
    for name in order + [v for v in out["variants"] if v not in VARIANTS]:
        rows = out["variants"][name]
        by = {(r["setting"], r["test"], r["normalisation"]): r for r in rows}
        cells = []
        for setting, test in CELLS:
            for n in normalisations:
                r = by.get((setting, test, n))
                if r is None:
                    cells.append("")
                    continue
                spread = f" ± {r['ua_std']:.3f}" if len(r["folds"]) > 1 else ""
                cells.append(f"{r['ua']:.3f}{spread} ({r['neutral']:.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for n in normalisations:
            parts = [", ".join(f"{u:.3f}" for u in by[("both", t, n)]["folds"])
                     if ("both", t, n) in by else "" for t in ("nemo", "ravdess")]
            folds.append(f"| {name} | `{n}` | {parts[0]} | {parts[1]} |")
    return "\n".join(lines + folds) + "\n"


def main() -> None:
    parser = table_parser(__doc__)
    parser.add_argument("--egemaps", type=Path, default=Path("runs/encoder-cmp-egemaps.npz"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/egemaps_transfer.json"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--normalisations", default="none,mixed:40")
    args = parser.parse_args()
    started = time.perf_counter()
    table = wideband_table(args)
    print(f"table: {len(table)} rows, {table.audio.shape[1]} audio columns, "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    egemaps = egemaps_features(args.manifest, args.cache, args.egemaps)
    index = {str(i): k for k, i in enumerate(egemaps["ids"].tolist())}
    prosody = egemaps["features"][[index[i] for i in table.ids]]
    if not np.isfinite(prosody).all():
        raise SystemExit("eGeMAPS features are not all finite")
    normalisations = args.normalisations.split(",")
    out: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    out.setdefault("variants", {})
    out["egemaps"] = {
        "clips": len(egemaps["ids"]), "mean_span_s": float(np.mean(egemaps["seconds"])),
        "wall_ms_median": float(np.median(egemaps["wall_ms"])),
        "wall_ms_mean": float(np.mean(egemaps["wall_ms"])),
        "cpu_ms_median": float(np.median(egemaps["cpu_ms"])),
        "cpu_ms_per_audio_s": float(np.sum(egemaps["cpu_ms"]) / np.sum(egemaps["seconds"])),
        "opensmile": opensmile.__version__, "feature_set": "eGeMAPSv02 functionals",
        "note": "one process, one thread, on a shared 2-core machine"}
    out["manifest"], out["block_weight"] = args.manifest, BLOCK_WEIGHT
    head = cc.affect_probe_head(LAYER_WIDTH, TEXT_WIDTH, LAYERS, len(table.classes))
    for name in args.variants.split(","):
        blocks, weight, c = VARIANTS[name]
        audio = {"whisper": table.audio, "egemaps": prosody,
                 "whisper+egemaps": np.concatenate([table.audio, prosody], axis=1)}[blocks]
        options = cc.Options(normalisations=tuple(normalisations), streams=("acted",),
                              chunks=(0,), cs=(c,), gate_compare="-")  # gated rows only
        variant_started, cpu_started = time.perf_counter(), time.process_time()
        context = (block_weight(WHISPER_WIDTH, WHISPER_WIDTH + EGEMAPS_WIDTH, weight)
                   if weight != 1.0 else contextlib.nullcontext())
        with context:
            results, _ = cc.run_protocol(replace(table, audio=audio), head, options,
                                         lambda _: None)
        out["variants"][name] = [summary(row, results) for row in cc.summary_rows(results)]
        for row in out["variants"][name]:
            print(f"{name:22s} {row['setting']:14s} {row['test']:8s} "
                  f"{row['normalisation']:9s} UA {row['ua']:.3f} ± {row['ua_std']:.3f} "
                  f"neutral {row['neutral']:.2f}", flush=True)
        out.setdefault("protocol_s", {})[name] = {
            "wall": round(time.perf_counter() - variant_started, 1),
            "cpu": round(time.process_time() - cpu_started, 1)}
        args.out.write_text(json.dumps(out, indent=1))
        args.out.with_suffix(".md").write_text(markdown(out, normalisations))
    print(f"done in {time.perf_counter() - started:.0f} s (pid {os.getpid()})", flush=True)


if __name__ == "__main__":
    main()
