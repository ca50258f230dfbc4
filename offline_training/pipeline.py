"""The steps the CLI runs, as plain functions over frozen settings (no argparse here)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offline_training.corpora import CorpusSpec, load_corpus
from offline_training.corpora.base import Corpus
from offline_training.dataset import build_items
from offline_training.distributed import is_main_process
from offline_training.errors import TrainingError
from offline_training.experiment import (
    HeadRun,
    head_class,
    report_for,
    report_from_run,
    run_head,
    start_run,
    train_fold,
    write_run,
)
from offline_training.export import export_bundle
from offline_training.features import FeatureCache, FeatureSet, FeatureSpec, digest
from offline_training.metrics import confusion, confusion_text, save_confusion_png, score
from offline_training.protocols import Fold, ProtocolSpec, make_folds, with_copies
from offline_training.synth import SynthConfig, generate
from offline_training.train import TrainConfig, predict

if TYPE_CHECKING:
    from models.bundle import BundleConfig


@dataclass(frozen=True)
class DataSettings:
    corpus: CorpusSpec
    features: FeatureSpec
    cache: Path
    threads: int = 1
    synth: SynthConfig | None = None  # generate the synthetic corpus first if it is missing
    progress: bool = True  # progress bars while features are extracted


def open_corpus(data: DataSettings) -> Corpus:
    root = data.corpus.root
    synth_missing = (data.corpus.kind == "synth" and data.synth is not None
                     and not root.is_file() and not (root / "manifest.jsonl").is_file())
    if synth_missing and data.synth is not None:
        print(f"synthetic corpus not found in {root}: generating it", flush=True)
        generate(dataclasses.replace(data.synth, out_dir=root))
    corpus = load_corpus(data.corpus)
    counts = ", ".join(f"{k} {v}" for k, v in corpus.label_counts().items())
    print(f"corpus {corpus.name}: {len(corpus)} utterances ({counts})", flush=True)
    return corpus


def feature_spec_for(spec: FeatureSpec, heads: Sequence[str]) -> FeatureSpec:
    """``spec`` extended with what the heads need (word vectors, all text layers)."""
    from models.heads import head_spec

    classes = [head_spec(h).head_cls for h in heads]
    return dataclasses.replace(
        spec, words=spec.words or any(getattr(c, "needs_words", False) for c in classes),
        text_layers=spec.text_layers or any(getattr(c, "needs_text_layers", False)
                                            for c in classes),
        functionals=spec.functionals or any(getattr(c, "needs_functionals", False)
                                            for c in classes))


def extract(data: DataSettings, corpus: Corpus, heads: Sequence[str] = ()) -> FeatureSet:
    spec = feature_spec_for(data.features, heads)
    cache = FeatureCache(data.cache, threads=data.threads, progress=data.progress)
    return cache.extract(list(corpus.utterances), spec)


def final_split(corpus: Corpus, protocol: ProtocolSpec) -> Fold:
    """Train on (nearly) everything for the exported model: the protocol's first fold's
    validation part stays out for early stopping; its test part is trained on."""
    fold = make_folds(corpus.utterances, protocol)[0]
    train = with_copies(fold.train + fold.test, corpus.utterances)  # the test part's copies
    return Fold(name="final", train=train, valid=fold.valid, test=fold.valid)


def evaluate_heads(corpus: Corpus, features: FeatureSet, protocol: ProtocolSpec,
                   configs: Sequence[TrainConfig], out_dir: Path, verbose: bool = False,
                   resume: bool = False, progress: bool = False,
                   corpus_spec: CorpusSpec | None = None) -> list[HeadRun]:
    """Every head under the protocol; results.md/json rewritten after every fold. With
    ``resume``, ``out_dir`` must hold a run of the same options (its run.json) and the
    folds it finished are read instead of trained again."""
    folds = make_folds(corpus.utterances, protocol)
    print(f"protocol {protocol.name}: {len(folds)} fold(s)", flush=True)
    start_run(out_dir, run_record(corpus, features, protocol, configs, corpus_spec), resume)
    runs: list[HeadRun] = []
    for config in configs:
        def write_partial(partial: HeadRun) -> None:
            write_run([*runs, partial], out_dir)

        runs.append(run_head(corpus, features, folds, config, out_dir, verbose, resume=resume,
                             progress=progress, on_fold=write_partial))
    if is_main_process():
        print((out_dir / "results.md").read_text(), flush=True)
    return runs


def run_record(corpus: Corpus, features: FeatureSet, protocol: ProtocolSpec,
               configs: Sequence[TrainConfig], corpus_spec: CorpusSpec | None
               ) -> dict[str, object]:
    """The options that decide a run's results (what --resume checks): the corpus (its
    utterances, labels and speakers as a digest), features, protocol and each head's
    training settings. Threads, progress and the cache location are not among them."""
    source: dict[str, object] = {}
    if corpus_spec is not None:
        source = {"kind": corpus_spec.kind, "root": str(corpus_spec.root.resolve()),
                  "classes": corpus_spec.classes,
                  "label_map": (None if corpus_spec.label_map is None
                                else str(corpus_spec.label_map.resolve()))}
    contents = digest([[u.id, u.label, u.speaker, u.session] for u in corpus.utterances])
    return {"corpus": {**source, "name": corpus.name, "classes": list(corpus.classes),
                       "utterances": len(corpus), "digest": contents},
            "features": dataclasses.asdict(features.spec),
            "protocol": dataclasses.asdict(protocol),
            "heads": [dataclasses.asdict(c) for c in configs]}


def train_and_export(corpus: Corpus, features: FeatureSet, protocol: ProtocolSpec,
                     config: TrainConfig, bundle_dir: Path, model_id: str,
                     report: dict[str, object], verbose: bool = False) -> Path:

    fold = final_split(corpus, protocol)
    items = build_items(corpus.utterances, features, corpus.classes, head_class(config.head),
                        config.context_size)
    trained, result = train_fold(corpus, features, fold, config, items, verbose)
    training = {**dataclasses.asdict(config), "corpus": corpus.name,
                "utterances": len(corpus), "protocol": protocol.name,
                "final_model": {"train": len(fold.train), "valid": len(fold.valid),
                                "best_epoch": result.best_epoch,
                                "valid_scores": dataclasses.asdict(result.valid)},
                "features": dataclasses.asdict(features.spec)}
    if not is_main_process():
        return bundle_dir
    path = export_bundle(bundle_dir, trained.head, model_id, corpus.classes, features.spec,
                         features.audio_dim, features.text_dim, config.context_size,
                         training, report)
    print(f"bundle written to {path} (final model: best epoch {result.best_epoch}, "
          f"validation UA {result.valid.ua:.3f})", flush=True)
    return path


def export(data: DataSettings, protocol: ProtocolSpec, config: TrainConfig, bundle_dir: Path,
           model_id: str, run_dir: Path, evaluate_first: bool = True,
           report_from: Path | None = None, verbose: bool = False) -> Path:
    """Evaluate under the protocol (or take that evaluation from an earlier run), train the
    final model and write the bundle."""
    corpus = open_corpus(data)
    features = extract(data, corpus, [config.head])
    report: dict[str, object] = {}
    if report_from is not None:
        report = report_from_run(report_from, corpus, features, protocol.name, config,
                                 expected_folds=len(make_folds(corpus.utterances, protocol)))
    elif evaluate_first:
        run = evaluate_heads(corpus, features, protocol, [config], run_dir, verbose,
                             progress=data.progress, corpus_spec=data.corpus)[0]
        report = report_for(run, corpus, features, protocol.name, config)
    return train_and_export(corpus, features, protocol, config, bundle_dir, model_id, report,
                            verbose)


@dataclass(frozen=True)
class FeatureOverrides:
    """Feature settings given on the command line for ``evaluate``; None = the bundle's."""

    audio: str | None = None
    text: str | None = None
    transcripts: str | None = None
    audio_layers: bool | None = None
    audio_window: str | None = None
    asr: str | None = None
    words: bool = False

    def given(self) -> dict[str, Any]:
        """The settings given (``words`` only when asked for)."""
        fields = dataclasses.asdict(self)
        return {k: v for k, v in fields.items()
                if v is not None and not (k == "words" and v is False)}


def bundle_feature_spec(config: BundleConfig, overrides: FeatureOverrides) -> FeatureSpec:
    """The features a bundle's head was trained on: its encoders, and the transcripts, ASR
    model, window and layers its training recorded (``training.features``), then what
    ``overrides`` gives. Older bundles without a record get the defaults (ASR transcripts)."""
    names = {f.name for f in dataclasses.fields(FeatureSpec)}
    raw = config.training.get("features", {})
    recorded = {k: v for k, v in raw.items() if k in names} if isinstance(raw, dict) else {}
    spec = dataclasses.replace(
        FeatureSpec(**{"transcripts": "asr", **recorded}), audio=config.audio.ref,
        text=config.text.ref, audio_layers=config.audio.layers == "all",
        audio_window=config.audio.window,
        text_layers=config.text.layers == "all", max_tokens=config.text.max_tokens)
    try:
        return dataclasses.replace(spec, **overrides.given())
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc


def restrict_to_classes(corpus: Corpus, classes: Sequence[str], label_map: Path | None
                        ) -> Corpus:
    """``corpus`` (after its label map) with the bundle's class list; a label outside it is
    an error that says how to map or drop it."""
    counts = corpus.label_counts()
    outside = {label: n for label, n in counts.items() if label not in classes}
    if outside:
        listed = ", ".join(f"{label} ({n})" for label, n in outside.items())
        example = json.dumps({label: (label if label in classes else None) for label in counts})
        how = (f"the label map {label_map} leaves them" if label_map is not None
               else "no --label-map was given")
        raise TrainingError(
            f"{corpus.name}: labels {listed} are not among the bundle's classes "
            f"{list(classes)} ({how}); pass --label-map FILE mapping every corpus label to a "
            f"bundle class or to null (drop), e.g. {example} (RAVDESS: "
            "configs/label_maps/ravdess-4class-calm-as-neutral.json)")
    return Corpus(name=corpus.name, classes=tuple(classes), utterances=corpus.utterances)


def evaluate_bundle(data: DataSettings, bundle: Path, out_dir: Path,
                    overrides: FeatureOverrides = FeatureOverrides()) -> dict[str, object]:
    """Score a bundle on a whole corpus (restricted to the bundle's classes) with cached
    features of the settings the bundle was trained with, unless ``overrides`` says
    otherwise; prints the scores and the confusion matrix and writes them to ``out_dir``
    (evaluation.json, confusion.txt, confusion.png). ``data.features`` is not used."""
    from models.bundle import load_bundle
    from models.errors import BundleError

    try:
        loaded = load_bundle(str(bundle))  # a directory, or builtin:default etc.
        head = loaded.build_head()
    except BundleError as exc:
        raise TrainingError(str(exc)) from exc
    labels = loaded.config.labels
    corpus = restrict_to_classes(open_corpus(data), labels, data.corpus.label_map)
    spec = bundle_feature_spec(loaded.config, overrides)
    print(f"features: audio {spec.audio} ({'all layers' if spec.audio_layers else 'last layer'}), "
          f"text {spec.text}, transcripts {spec.transcripts}", flush=True)
    features = extract(dataclasses.replace(data, features=spec), corpus, [loaded.config.head])
    items = build_items(corpus.utterances, features, labels, type(head),
                        loaded.config.context_size)
    ids = [u.id for u in corpus.utterances]
    preds, _ = predict(head, [items[i] for i in ids], ids)
    scores = score(preds.y_true, preds.y_pred, len(labels))
    matrix = confusion(preds.y_true, preds.y_pred, len(labels))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_confusion_png(matrix, labels, out_dir / "confusion.png",
                       f"{loaded.config.model_id} on {corpus.name}, UA {scores.ua:.3f}")
    table = confusion_text(matrix, labels)
    (out_dir / "confusion.txt").write_text(table, encoding="utf-8")
    result = {"bundle": str(bundle), "model_id": loaded.config.model_id,
              "corpus": corpus.name, "classes": list(labels),
              "label_map": None if data.corpus.label_map is None else str(data.corpus.label_map),
              "transcripts": spec.transcripts, "features": dataclasses.asdict(features.spec),
              **dataclasses.asdict(scores), "confusion": matrix.tolist()}
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    print(f"{loaded.config.model_id} on {corpus.name} ({scores.n} utterances): WA "
          f"{scores.wa:.3f} UA {scores.ua:.3f} WF1 {scores.wf1:.3f} UWF1 {scores.uwf1:.3f}")
    print(f"confusion matrix (rows: reference, columns: predicted):\n{table}", end="")
    print(f"written to {out_dir}: evaluation.json, confusion.txt, confusion.png", flush=True)
    return result
