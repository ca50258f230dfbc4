"""Which encoder layers and statistics transfer across corpora? (issue 28, exploratory)

Pools the cross-corpus protocol's features once (the default v7's: every layer of Whisper
base, fit window, ASR transcripts; cached in ``--table``), then reruns the protocol's
settings (RAVDESS -> nEMO, nEMO -> RAVDESS, both with held-out speakers) on subsets of the
pooled audio statistics: layer ranges, means only. Same probe (linear_probe_affect,
C = 0.01), same word gate (0.688), same normalisations as ``emotion-train cross-corpus``.

    python -m bench.experiments.transfer_levers --manifest runs/transfer-v6.jsonl \
        --cache runs/cache --out bench/results/transfer_levers.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from offline_training import cross_corpus as cc
from offline_training.cli import build_parser, data_settings

LAYER_WIDTH = 512  # Whisper base
LAYERS = 7  # hidden states: the embedding output + 6 blocks
TEXT_WIDTH = 384  # MiniLM
GATE = cc.WordGate(0.688, 1)


def protocol_args(manifest: str, cache: str, *extra: str) -> argparse.Namespace:
    """``emotion-train cross-corpus``'s arguments for v7's features (``extra``: more flags,
    e.g. gold transcripts)."""
    return build_parser().parse_args([
        "cross-corpus", "--corpus", "manifest", "--root", manifest, "--label-map",
        "configs/label_maps/ravdess-4class-calm-as-neutral.json", "--audio-layers", "all",
        "--audio-encoder", "whisper:packaged:base", "--audio-window", "fit", *extra,
        "--cache", cache, "--threads", "2", "--quiet", "--out", "/tmp/unused"])


def load_table(manifest: str, cache: str, path: Path, gate: cc.WordGate = GATE,
               extra: tuple[str, ...] = ()) -> cc.Table:
    """The pooled table (words trusted by ``gate``), saved to ``path`` on the first run and
    read from there (float32 audio, so every run fits the same numbers)."""
    if not path.exists():
        from offline_training.pipeline import open_corpus

        data = data_settings(protocol_args(manifest, cache, *extra))
        table, _, words = cc.pooled_table(data, open_corpus(data))
        np.savez(path, ids=np.array(table.ids), audio=table.audio.astype(np.float32),
                 affect=table.affect, empty_affect=table.empty_affect,
                 trusted=np.array([gate.trusted(words[i]) for i in table.ids]),
                 word_probability=table.word_probability, labels=table.labels,
                 corpus=table.corpus, band=table.band, speaker=table.speaker,
                 classes=np.array(table.classes))
    z = np.load(path, allow_pickle=False)
    return cc.Table(ids=tuple(z["ids"].tolist()), audio=z["audio"], affect=z["affect"],
                    empty_affect=z["empty_affect"], trusted=z["trusted"],
                    word_probability=z["word_probability"], labels=z["labels"],
                    corpus=z["corpus"], band=z["band"], speaker=z["speaker"],
                    classes=tuple(z["classes"].tolist()))


def columns(layers: range, stats: str) -> np.ndarray:
    """Pooled columns of ``layers``: per layer [mean (512), std (512)]."""
    parts = []
    for layer in layers:
        base = layer * 2 * LAYER_WIDTH
        if stats in ("mean+std", "mean"):
            parts.append(np.arange(base, base + LAYER_WIDTH))
        if stats in ("mean+std", "std"):
            parts.append(np.arange(base + LAYER_WIDTH, base + 2 * LAYER_WIDTH))
    return np.concatenate(parts)


VARIANTS: dict[str, tuple[range, str]] = {
    "all layers (v7)": (range(0, 7), "mean+std"),
    "layers 0-3": (range(0, 4), "mean+std"),
    "layers 1-4": (range(1, 5), "mean+std"),
    "layers 2-5": (range(2, 6), "mean+std"),
    "layers 3-6": (range(3, 7), "mean+std"),
    "layers 0-2": (range(0, 3), "mean+std"),
    "all layers means only": (range(0, 7), "mean"),
    "layers 2-6": (range(2, 7), "mean+std"),
    "layers 3-5": (range(3, 6), "mean+std"),
    "layers 2-4": (range(2, 5), "mean+std"),
    "all layers std only": (range(0, 7), "std"),
    "layers 2-6 std only": (range(2, 7), "std"),
}


def summary(row: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """A summary row's UA, its spread and neutral recall, and each fold's UA."""
    key = (row["setting"], row["test"], row["normalisation"])
    return {**{k: row[k] for k in ("setting", "test", "normalisation", "ua", "ua_std")},
            "neutral": row["recall"].get("neutral"),
            "folds": [r.ua for r in results
                      if (r.setting, r.test_corpus, r.normalisation) == key]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="runs/transfer-v6.jsonl")
    parser.add_argument("--cache", default="runs/cache")
    parser.add_argument("--table", type=Path, default=Path("runs/transfer-v7-table.npz"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/transfer_levers.json"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--normalisations", default="none,mixed:40")
    parser.add_argument("--c", type=float, default=cc.DEFAULT_C, help="the probe's C")
    parser.add_argument("--suffix", default="", help="appended to each variant's name")
    args = parser.parse_args()
    started = time.perf_counter()
    table = load_table(args.manifest, args.cache, args.table)
    table = table.where(table.band == "wideband")  # the protocol's headline rows
    print(f"table: {len(table)} rows, {table.audio.shape[1]} audio columns, "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    options = cc.Options(normalisations=tuple(args.normalisations.split(",")),
                         streams=("acted",), chunks=(0,), cs=(args.c,))
    out: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    # Only the head's affect column weighting matters to the probe's fit.
    head = cc.affect_probe_head(LAYER_WIDTH, TEXT_WIDTH, LAYERS, len(table.classes))
    for name in args.variants.split(","):
        layers, stats = VARIANTS[name]
        sub = replace(table, audio=table.audio[:, columns(layers, stats)])
        results, _ = cc.run_protocol(sub, head, options, lambda _: None)
        kept = [r for r in results if r.gate]
        label = name + args.suffix
        out[label] = [summary(row, kept) for row in cc.summary_rows(kept)]
        for row in out[label]:
            print(f"{label:28s} {row['setting']:14s} {row['test']:8s} "
                  f"{row['normalisation']:9s} UA {row['ua']:.3f} ± {row['ua_std']:.3f} "
                  f"neutral {row['neutral']:.2f}", flush=True)
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
