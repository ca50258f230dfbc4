"""The steps the CLI runs, as plain functions over frozen settings (no argparse here)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    train_fold,
    write_run,
)
from offline_training.export import export_bundle
from offline_training.features import FeatureCache, FeatureSet, FeatureSpec
from offline_training.metrics import confusion, save_confusion_png, score
from offline_training.protocols import Fold, ProtocolSpec, make_folds
from offline_training.synth import SynthConfig, generate
from offline_training.train import TrainConfig, predict


@dataclass(frozen=True)
class DataSettings:
    corpus: CorpusSpec
    features: FeatureSpec
    cache: Path
    threads: int = 1
    synth: SynthConfig | None = None  # generate the synthetic corpus first if it is missing


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
    return FeatureCache(data.cache, threads=data.threads).extract(list(corpus.utterances), spec)


def final_split(corpus: Corpus, protocol: ProtocolSpec) -> Fold:
    """Train on (nearly) everything for the exported model: the protocol's first fold's
    validation part stays out for early stopping; its test part is trained on."""
    fold = make_folds(corpus.utterances, protocol)[0]
    return Fold(name="final", train=fold.train + fold.test, valid=fold.valid, test=fold.valid)


def evaluate_heads(corpus: Corpus, features: FeatureSet, protocol: ProtocolSpec,
                   configs: Sequence[TrainConfig], out_dir: Path,
                   verbose: bool = False) -> list[HeadRun]:
    folds = make_folds(corpus.utterances, protocol)
    print(f"protocol {protocol.name}: {len(folds)} fold(s)", flush=True)
    runs = []
    for config in configs:
        runs.append(run_head(corpus, features, folds, config, out_dir, verbose))
        write_run(runs, out_dir)
    if is_main_process():
        print((out_dir / "results.md").read_text(), flush=True)
    return runs


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
        report = report_from_run(report_from, corpus, features, protocol.name, config)
    elif evaluate_first:
        run = evaluate_heads(corpus, features, protocol, [config], run_dir, verbose)[0]
        report = report_for(run, corpus, features, protocol.name, config)
    return train_and_export(corpus, features, protocol, config, bundle_dir, model_id, report,
                            verbose)


def evaluate_bundle(data: DataSettings, bundle: Path, out_dir: Path) -> dict[str, object]:
    """Score a bundle on a whole corpus with cached features from the bundle's encoders."""
    from models.bundle import load_bundle

    loaded = load_bundle(bundle)
    corpus = open_corpus(data)
    missing = sorted({u.label for u in corpus.utterances} - set(loaded.config.labels))
    if missing:
        raise TrainingError(f"corpus labels {missing} are not among the bundle's labels "
                            f"{list(loaded.config.labels)}; map them with a manifest label map")
    spec = dataclasses.replace(data.features, audio=loaded.config.audio.ref,
                               text=loaded.config.text.ref,
                               text_layers=loaded.config.text.layers == "all",
                               max_tokens=loaded.config.text.max_tokens)
    data = dataclasses.replace(data, features=spec)
    head = loaded.build_head()
    features = extract(data, corpus, [loaded.config.head])
    items = build_items(corpus.utterances, features, loaded.config.labels, type(head),
                        loaded.config.context_size)
    ids = [u.id for u in corpus.utterances]
    preds, _ = predict(head, [items[i] for i in ids], ids)
    scores = score(preds.y_true, preds.y_pred, len(loaded.config.labels))
    matrix = confusion(preds.y_true, preds.y_pred, len(loaded.config.labels))
    save_confusion_png(matrix, loaded.config.labels, out_dir / "confusion.png",
                       f"{loaded.config.model_id} on {corpus.name}, UA {scores.ua:.3f}")
    result = {"bundle": str(bundle), "corpus": corpus.name, "transcripts": spec.transcripts,
              **dataclasses.asdict(scores), "confusion": matrix.tolist()}
    (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "confusion"}, indent=1))
    return result
