"""Corpus adapters by name; each returns a ``Corpus`` of labelled utterances.

``load_corpus(CorpusSpec(kind="iemocap", root=Path(...), classes="4"))``. Kinds: iemocap,
meld, cremad, ravdess, emodb, nemo, manifest (CSV/JSONL), synth (a manifest written by
``offline_training.synth``, with the synthetic corpus' class order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from offline_training.corpora.base import Corpus, LabelMap, map_labels
from offline_training.corpora.filename_coded import load_cremad, load_emodb, load_ravdess
from offline_training.corpora.iemocap import load_iemocap
from offline_training.corpora.manifest import load_manifest
from offline_training.corpora.meld import load_meld
from offline_training.corpora.nemo import load_nemo
from offline_training.errors import CorpusError
from offline_training.synth_sentences import EMOTIONS

KINDS = ("iemocap", "meld", "cremad", "ravdess", "emodb", "nemo", "manifest", "synth")


@dataclass(frozen=True)
class CorpusSpec:
    """Which corpus to read. ``root`` is a directory, or the manifest file for manifest/synth
    (a synth directory is accepted too: its manifest.jsonl is used)."""

    kind: str
    root: Path
    classes: str = ""  # iemocap: "4" or "7"; manifest: comma list of classes (optional)
    label_map: Path | None = None  # JSON file {label: class or null}; any corpus kind


def read_label_map(path: Path) -> LabelMap:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CorpusError(f"label map '{path}' could not be read as JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(
            isinstance(v, str | None) for v in data.values()):
        raise CorpusError(f"label map '{path}' must be a JSON object {{raw label: class or null}}")
    return data


def manifest_path(root: Path) -> Path:
    return root / "manifest.jsonl" if root.is_dir() else root


def load_corpus(spec: CorpusSpec) -> Corpus:
    if spec.kind not in KINDS:
        raise CorpusError(f"unknown corpus kind '{spec.kind}'; use one of {', '.join(KINDS)}")
    if spec.label_map is not None and spec.kind != "manifest":
        # The corpus' own classes mapped again, e.g. RAVDESS's 8 onto 4.
        return relabel(load_corpus(replace(spec, label_map=None)),
                       read_label_map(spec.label_map))
    if spec.kind == "iemocap":
        return load_iemocap(spec.root, spec.classes or "4")
    if spec.kind == "meld":
        return load_meld(spec.root)
    if spec.kind == "cremad":
        return load_cremad(spec.root)
    if spec.kind == "ravdess":
        return load_ravdess(spec.root)
    if spec.kind == "emodb":
        return load_emodb(spec.root)
    if spec.kind == "nemo":
        return load_nemo(spec.root)
    if spec.kind == "synth":
        return load_manifest(manifest_path(spec.root), classes=EMOTIONS, name="synth")
    classes = [c.strip() for c in spec.classes.split(",") if c.strip()] or None
    label_map = read_label_map(spec.label_map) if spec.label_map is not None else None
    return load_manifest(manifest_path(spec.root), classes=classes, label_map=label_map)


def relabel(corpus: Corpus, label_map: LabelMap) -> Corpus:
    """``corpus`` with its classes mapped (class -> new class, or null to drop); the new
    classes are the map's targets in the map's order."""
    classes = tuple(dict.fromkeys(v for v in label_map.values() if v is not None))
    mapped = map_labels(corpus.utterances, label_map, classes, corpus.name)
    return Corpus(name=f"{corpus.name}-{len(classes)}class", classes=classes,
                  utterances=tuple(mapped))


__all__ = ["KINDS", "Corpus", "CorpusSpec", "load_corpus"]
