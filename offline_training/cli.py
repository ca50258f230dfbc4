"""``emotion-train``: prepare corpora, extract features, train, evaluate, export, ablate.

Every subcommand has ``--help``. Typical use::

    emotion-train prepare synth --out data/synth
    emotion-train extract --corpus synth --root data/synth --transcripts asr
    emotion-train ablate --corpus synth --root data/synth --transcripts asr --out runs/ablation
    emotion-train export --corpus synth --root data/synth --transcripts asr --head self_mha \\
        --out models/synthetic_bundle
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from offline_training import cross_corpus, synth
from offline_training.augment import AugmentConfig
from offline_training.corpora import KINDS, CorpusSpec, load_corpus
from offline_training.errors import TrainingError
from offline_training.features import FeatureSpec
from offline_training.protocols import PROTOCOLS, ProtocolSpec, read_groups
from offline_training.records import write_manifest
from offline_training.train import SELECT, TrainConfig, paper_config

DEFAULT_ABLATION = ("text_only", "audio_only", "self_mha", "cross_mha")
# The floors every head must beat: in every ablation table unless --no-probe.
PROBES = ("linear_probe_audio", "linear_probe")


def add_corpus_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("corpus")
    group.add_argument("--corpus", choices=KINDS, required=True,
                       help="corpus kind (synth = a directory written by 'prepare synth')")
    group.add_argument("--root", type=Path, required=True,
                       help="corpus directory (IEMOCAP: the one holding Session1..5; MELD: "
                            "MELD.Raw) or manifest file (manifest/synth)")
    group.add_argument("--classes", default="",
                       help="iemocap: 4 (default) or 7; manifest: comma list of classes")
    group.add_argument("--label-map", type=Path, default=None,
                       help="JSON file {label: class or null to drop}, any corpus; e.g. "
                            "configs/label_maps/ravdess-4class.json")
    group.add_argument("--synth-speakers", type=int, default=10,
                       help="synth: if the corpus is missing, generate it with this many "
                            "speakers (default 10)")
    group.add_argument("--synth-per-class", type=int, default=12,
                       help="synth: utterances per speaker and class when generating "
                            "(default 12)")
    group.add_argument("--synth-seed", type=int, default=0, help="synth: generator seed")


def default_cache_dir() -> Path:
    """$EMOTION_STREAM_CACHE, else the user cache directory (XDG), never the checkout."""
    import os

    if os.environ.get("EMOTION_STREAM_CACHE"):
        return Path(os.environ["EMOTION_STREAM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emotion-stream" / "features"


def add_feature_args(parser: argparse.ArgumentParser, from_bundle: bool = False) -> None:
    """Feature options; ``from_bundle`` (evaluate): their defaults are the bundle's."""
    group = parser.add_argument_group(
        "features" + (" (default: what the bundle was trained with)" if from_bundle else ""))

    def option(flag: str, value: str, text: str, choices: Sequence[str] | None = None) -> None:
        group.add_argument(flag, choices=choices, default=None if from_bundle else value,
                           help=text + (" (default: the bundle's)" if from_bundle
                                        else f" (default {value})"))

    group.add_argument("--cache", type=Path, default=default_cache_dir(),
                       help="feature cache directory (default: $EMOTION_STREAM_CACHE, else "
                            "the user cache directory, e.g. ~/.cache/emotion-stream/features)")
    option("--audio-layers", "last", "audio encoder layers to cache: the last, or all hidden "
           "layers (Whisper via its PyTorch copy; for layer-weighting heads and all-layer "
           "probes)", choices=("last", "all"))
    option("--audio-window", "full", "window of the all-layer Whisper pass: full (as the ASR "
           "encodes, 10 s) or fit (each utterance's own length in whole seconds; cheaper)",
           choices=("full", "fit"))
    option("--audio-encoder", "whisper:packaged:tiny.en", "audio encoder: whisper:<ref>, "
           "hf:<id or dir>, prosody (whisper:packaged:tiny.en is the streamer's)")
    option("--text-encoder", "packaged:all-MiniLM-L6-v2", "Hugging Face text encoder reference")
    option("--transcripts", "asr", "text to use: faster-whisper ASR transcripts (what the "
           "streamer has; cached) or the corpus' gold transcripts", choices=("gold", "asr"))
    option("--asr-model", "packaged:tiny.en", "faster-whisper model for --transcripts asr "
           "(packaged:tiny.en is the streamer's)")
    group.add_argument("--words", action="store_true",
                       help="also cache word vectors and word spans (automatic for word heads)")
    group.add_argument("--threads", type=int, default=1,
                       help="CPU threads for the encoders and training (default 1)")
    group.add_argument("--quiet", action="store_true",
                       help="no progress bars (they are shown only when stderr is a terminal)")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars: on a terminal, unless --quiet."""
    return not args.quiet and sys.stderr.isatty()


def add_train_args(parser: argparse.ArgumentParser, head: bool = True) -> None:
    group = parser.add_argument_group("training (defaults: the head's paper, see "
                                      "offline_training/train.py PAPER_DEFAULTS)")
    if head:
        group.add_argument("--head", default="self_mha",
                           help="fusion head registry name (default self_mha)")
    group.add_argument("--protocol", choices=PROTOCOLS, default="loso",
                       help="loso (leave one session out), loso-speaker, fixed (train/dev/test "
                            "sessions, e.g. MELD), kfold, speaker-groups (folds of whole "
                            "speakers; RAVDESS with 6 folds: EmoBox's actor groups) "
                            "(default loso)")
    group.add_argument("--folds", type=int, default=0,
                       help="kfold / speaker-groups: number of folds (default: the --groups "
                            "file's or the corpus' published grouping, else 5)")
    group.add_argument("--groups", type=Path, default=None,
                       help="speaker-groups: file with one fold's speakers per line (comma or "
                            "space separated)")
    group.add_argument("--max-folds", type=int, default=0,
                       help="run only the first N folds (0 = all)")
    group.add_argument("--only-folds", default="",
                       help="comma list of 1-based fold numbers to run, e.g. 1,3")
    group.add_argument("--lr", type=float, default=None, help="learning rate")
    group.add_argument("--batch-size", type=int, default=None)
    group.add_argument("--epochs", type=int, default=None, help="maximum epochs")
    group.add_argument("--weight-decay", type=float, default=None,
                       help="L2 / decoupled weight decay (default: the head paper's)")
    group.add_argument("--time-masks", type=int, default=0,
                       help="augmentation: zeroed stretches of encoder frames per training "
                            "utterance, each up to 15%% of it (default 0)")
    group.add_argument("--channel-masks", type=int, default=0,
                       help="augmentation: zeroed bands of up to 40 feature channels per "
                            "training utterance (default 0)")
    group.add_argument("--text-swap", type=float, default=0.0,
                       help="augmentation: probability that a training utterance gets another "
                            "one's words (teaches fusion heads that words can be wrong)")
    group.add_argument("--stop-patience", type=int, default=None,
                       help="early stopping: epochs without validation-loss improvement")
    group.add_argument("--select", choices=SELECT, default=None,
                       help="validation metric whose best epoch is kept (default ua, or "
                            "the head paper's choice in PAPER_DEFAULTS)")
    group.add_argument("--no-class-weights", action="store_true",
                       help="do not weight the loss by inverse class frequency")
    group.add_argument("--head-setting", action="append", default=[], metavar="KEY=VALUE",
                       help="head config field, e.g. model_dim=96 (repeatable; JSON values); "
                            "applies to the heads whose config has the field")
    group.add_argument("--context-size", type=int, default=4,
                       help="past utterances for context-aware heads (default 4)")
    group.add_argument("--probe-cs", default="",
                       help="linear probes: comma list of logistic-regression C values for the "
                            "inner speaker-grouped CV (default 1e-3,3e-3,1e-2,3e-2,1e-1; fewer "
                            "values train faster)")
    group.add_argument("--probe-inner-folds", type=int, default=None,
                       help="linear probes: speaker-grouped inner folds (default 5)")
    group.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    group.add_argument("--device", default="cpu", help="torch device (default cpu)")
    group.add_argument("--accelerate", action="store_true",
                       help="data-parallel training with Hugging Face accelerate; run under "
                            "'accelerate launch -m offline_training.cli ...' after 'extract' "
                            "(pip install 'emotion-stream[train]')")
    group.add_argument("--verbose", action="store_true", help="print every epoch")


def add_resume_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped run in --out: folds it finished are read, "
                             "not trained again; the options must be the ones recorded in its "
                             "run.json")


def parse_settings(pairs: Sequence[str]) -> dict[str, object]:
    import json

    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise TrainingError(f"--head-setting '{pair}' must be KEY=VALUE")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value  # a plain string value, e.g. variant=nosp
    return settings


def corpus_spec(args: argparse.Namespace) -> CorpusSpec:
    return CorpusSpec(kind=args.corpus, root=args.root, classes=args.classes,
                      label_map=args.label_map)


def data_settings(args: argparse.Namespace):  # -> DataSettings
    from offline_training.pipeline import DataSettings

    synth_config = None
    if args.corpus == "synth":
        synth_config = synth.SynthConfig(out_dir=args.root, seed=args.synth_seed,
                                         speakers=args.synth_speakers,
                                         per_class=args.synth_per_class)
    features = FeatureSpec(audio=args.audio_encoder, text=args.text_encoder,
                           transcripts=args.transcripts, words=args.words, asr=args.asr_model,
                           audio_layers=args.audio_layers == "all",
                           audio_window=args.audio_window)
    return DataSettings(corpus=corpus_spec(args), features=features, cache=args.cache,
                        threads=args.threads, synth=synth_config, progress=show_progress(args))


def parse_cs(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise TrainingError(f"--probe-cs '{text}' must be comma-separated numbers") from exc
    if not values or min(values) <= 0:
        raise TrainingError(f"--probe-cs '{text}' must list positive C values")
    return values


def parse_folds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise TrainingError(f"--only-folds '{text}' must be comma-separated fold numbers") \
            from exc


def protocol_spec(args: argparse.Namespace) -> ProtocolSpec:
    if args.groups is not None and args.protocol != "speaker-groups":
        raise TrainingError("--groups applies to --protocol speaker-groups only")
    return ProtocolSpec(name=args.protocol, k=args.folds, max_folds=args.max_folds,
                        only_folds=parse_folds(args.only_folds),
                        groups=read_groups(args.groups) if args.groups is not None else (),
                        seed=args.seed)


def config_fields(head: str) -> set[str]:
    from models.heads import head_spec

    return {f.name for f in dataclasses.fields(head_spec(head).head_cls.config_cls)}


def settings_per_head(pairs: Sequence[str], heads: Sequence[str]) -> dict[str, dict[str, object]]:
    """--head-setting values for each head: a setting applies to the heads whose config has
    that field; one that no head has is an error (a typo, most likely)."""
    settings = parse_settings(pairs)
    fields = {head: config_fields(head) for head in heads}
    unused = [k for k in settings if not any(k in f for f in fields.values())]
    if unused:
        raise TrainingError(f"--head-setting {unused}: none of the heads {list(heads)} has such "
                            "a config field; see models/heads/<head>.py for the fields")
    return {head: {k: v for k, v in settings.items() if k in fields[head]} for head in heads}


def train_configs(args: argparse.Namespace, heads: Sequence[str]) -> list[TrainConfig]:
    per_head = settings_per_head(args.head_setting, heads)
    try:
        return [train_config(args, head, per_head[head]) for head in heads]
    except ValueError as exc:  # a training option out of range, e.g. --text-swap 2
        raise TrainingError(str(exc)) from exc


def train_config(args: argparse.Namespace, head: str,
                 head_settings: dict[str, object]) -> TrainConfig:
    overrides = {"lr": args.lr, "batch_size": args.batch_size, "max_epochs": args.epochs,
                 "weight_decay": args.weight_decay,
                 "stop_patience": args.stop_patience, "select": args.select,
                 "probe_inner_folds": args.probe_inner_folds,
                 "probe_cs": parse_cs(args.probe_cs) if args.probe_cs else None}
    return paper_config(head, **{k: v for k, v in overrides.items() if v is not None},
                        head_settings=head_settings,
                        class_weighting=not args.no_class_weights,
                        context_size=args.context_size, seed=args.seed, device=args.device,
                        accelerate=args.accelerate,
                        augment=AugmentConfig(time_masks=args.time_masks,
                                              channel_masks=args.channel_masks,
                                              text_swap=args.text_swap))


def cmd_prepare(args: argparse.Namespace) -> int:
    if args.kind == "synth":
        utterances = synth.generate(synth.config_from_args(args))
        print(f"wrote {len(utterances)} utterances to {args.out / 'manifest.jsonl'}")
        return 0
    corpus = load_corpus(CorpusSpec(kind=args.kind, root=args.root, classes=args.classes))
    # Absolute paths: the adapter's are relative to the working directory, while a manifest's
    # relative paths are read against the manifest's own directory.
    write_manifest([dataclasses.replace(u, path=str(Path(u.path).resolve()))
                    for u in corpus.utterances], args.out)
    print(f"{corpus.name}: wrote {len(corpus)} utterances to {args.out} "
          f"({corpus.label_counts()})")
    return 0


def cmd_cross_corpus(args: argparse.Namespace) -> int:
    return cross_corpus.command(args, data_settings(args))


def cmd_extract(args: argparse.Namespace) -> int:
    from offline_training.pipeline import extract, open_corpus

    data = data_settings(args)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    features = extract(data, open_corpus(data), heads)
    print(f"features for {len(features.items)} utterances cached under {data.cache}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from offline_training.pipeline import evaluate_heads, extract, open_corpus

    torch.set_num_threads(args.threads)
    configs = train_configs(args, [args.head])  # bad options fail before any extraction
    data = data_settings(args)
    corpus = open_corpus(data)
    features = extract(data, corpus, [args.head])
    evaluate_heads(corpus, features, protocol_spec(args), configs, args.out, args.verbose,
                   resume=args.resume, progress=data.progress, corpus_spec=data.corpus)
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    import torch

    from offline_training.pipeline import evaluate_heads, extract, open_corpus

    torch.set_num_threads(args.threads)
    heads = ablation_heads(args.heads, with_probes=not args.no_probe)
    configs = train_configs(args, heads)  # bad options fail before any extraction
    data = data_settings(args)
    corpus = open_corpus(data)
    features = extract(data, corpus, heads)
    evaluate_heads(corpus, features, protocol_spec(args), configs, args.out, args.verbose,
                   resume=args.resume, progress=data.progress, corpus_spec=data.corpus)
    return 0


def ablation_heads(names: str, with_probes: bool) -> list[str]:
    """The heads asked for, after the probes (the floor each row is read against)."""
    heads = [h.strip() for h in names.split(",") if h.strip()]
    probes = [p for p in PROBES if with_probes and p not in heads]
    return probes + heads


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from offline_training.pipeline import export

    torch.set_num_threads(args.threads)
    export(data_settings(args), protocol_spec(args), train_configs(args, [args.head])[0], args.out,
           args.model_id or f"{args.head}-{args.corpus}", args.run_dir,
           evaluate_first=not args.no_evaluate, report_from=args.report_from,
           verbose=args.verbose)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from offline_training.calibration import calibrate_bundle

    report = calibrate_bundle(args.bundle, args.predictions)
    print(f"{args.bundle}: temperature {report.temperature:.3f}; expected calibration error "
          f"(15 bins, each fold scaled by a temperature fitted on the other folds) "
          f"{report.ece_before:.3f} -> {report.ece_after:.3f}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from offline_training.pipeline import DataSettings, FeatureOverrides, evaluate_bundle

    torch.set_num_threads(args.threads)
    overrides = FeatureOverrides(
        audio=args.audio_encoder, text=args.text_encoder, transcripts=args.transcripts,
        audio_layers=None if args.audio_layers is None else args.audio_layers == "all",
        audio_window=args.audio_window,
        asr=args.asr_model, words=args.words)
    data = DataSettings(corpus=corpus_spec(args), features=FeatureSpec(), cache=args.cache,
                        threads=args.threads, progress=show_progress(args))
    evaluate_bundle(data, args.bundle, args.out, overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-train",
        description="Offline trainer: corpora -> cached encoder features -> fusion heads -> "
                    "bundles the streamer serves. See docs/training.md.")
    sub = parser.add_subparsers(dest="command", required=True)

    prepare = sub.add_parser("prepare", help="generate the synthetic corpus, or read a corpus "
                             "and write a normalised JSONL manifest")
    prepare_sub = prepare.add_subparsers(dest="kind", required=True)
    synth.add_arguments(prepare_sub.add_parser(
        "synth", help="generate the synthetic emotional speech corpus (espeak-ng + sox)",
        description=synth.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    for kind in ("iemocap", "meld", "cremad", "ravdess", "emodb", "nemo", "manifest"):
        p = prepare_sub.add_parser(kind, help=f"read {kind} and write a JSONL manifest "
                                   "(MELD: extracts the audio from the mp4 clips)")
        p.add_argument("--root", type=Path, required=True, help="corpus directory")
        p.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
        p.add_argument("--classes", default="", help="iemocap: 4 (default) or 7")
    prepare.set_defaults(func=cmd_prepare)

    extract = sub.add_parser("extract", help="cache frozen-encoder features (and ASR "
                             "transcripts) for a corpus")
    add_corpus_args(extract)
    add_feature_args(extract)
    extract.add_argument("--heads", default="",
                         help="comma list of heads whose extra needs to cache too "
                              "(word vectors, text layers)")
    extract.set_defaults(func=cmd_extract)

    train = sub.add_parser("train", help="train and test one head under a protocol; writes "
                           "results.md/json, confusion matrices, predictions")
    add_corpus_args(train)
    add_feature_args(train)
    add_train_args(train)
    train.add_argument("--out", type=Path, required=True, help="run directory")
    add_resume_arg(train)
    train.set_defaults(func=cmd_train)

    ablate = sub.add_parser("ablate", help="text-only, audio-only and fusion heads under one "
                            "protocol, one results table")
    add_corpus_args(ablate)
    add_feature_args(ablate)
    add_train_args(ablate, head=False)
    ablate.add_argument("--heads", default=",".join(DEFAULT_ABLATION),
                        help=f"comma list of heads (default {','.join(DEFAULT_ABLATION)}); "
                             f"{' and '.join(PROBES)} are added unless --no-probe")
    ablate.add_argument("--no-probe", action="store_true",
                        help=f"leave the linear-probe baselines ({', '.join(PROBES)}) out")
    ablate.add_argument("--out", type=Path, required=True, help="run directory")
    add_resume_arg(ablate)
    ablate.set_defaults(func=cmd_ablate)

    export = sub.add_parser("export", help="evaluate a head under a protocol, train the final "
                            "model and write a bundle (with the evaluation as report.json)")
    add_corpus_args(export)
    add_feature_args(export)
    add_train_args(export)
    export.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    export.add_argument("--model-id", default="", help="bundle model id")
    export.add_argument("--run-dir", type=Path, default=Path("runs/export"),
                        help="where the evaluation run's files go (default runs/export)")
    export.add_argument("--no-evaluate", action="store_true",
                        help="skip the protocol evaluation (report.json stays empty)")
    export.add_argument("--report-from", type=Path, default=None,
                        help="take the evaluation from an earlier train/ablate run directory "
                             "made with the same options instead of repeating it")
    export.set_defaults(func=cmd_export)

    calibrate = sub.add_parser(
        "calibrate", help="fit the temperature of a bundle's probabilities on held-out "
        "speakers (a run's out-of-fold predictions.jsonl) and write it into bundle.json")
    calibrate.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    calibrate.add_argument("--predictions", type=Path, required=True,
                           help="predictions.jsonl of a speaker-independent train/ablate run "
                                "of the same head and settings (e.g. RUN/<head>/predictions.jsonl)")
    calibrate.set_defaults(func=cmd_calibrate)

    cross = sub.add_parser(
        "cross-corpus", help="the cross-corpus protocol (RAVDESS <-> nEMO and both with "
        "speakers held out) under every normalisation; optionally export the chosen recipe",
        description=cross_corpus.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_args(cross)
    add_feature_args(cross)
    cross_corpus.add_arguments(cross)
    cross.set_defaults(func=cmd_cross_corpus)

    evaluate = sub.add_parser(
        "evaluate", help="score a bundle on a whole corpus (restricted to the bundle's classes, "
        "with --label-map), with the features the bundle was trained on; prints and writes "
        "the confusion matrix")
    add_corpus_args(evaluate)
    add_feature_args(evaluate, from_bundle=True)
    evaluate.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    evaluate.add_argument("--out", type=Path, required=True, help="output directory")
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


TRAIN_EXTRAS = ("sklearn", "matplotlib", "jiwer")  # pyproject's [train] extra


def missing_train_extras() -> list[str]:
    """The training extras that are not installed (the service's install has none)."""
    import importlib.util

    return [name for name in TRAIN_EXTRAS if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = missing_train_extras()
    if missing:
        print(f"emotion-train: error: {', '.join(missing)} not installed; the trainer needs "
              "the training extras: pip install 'emotion-stream[train]'", file=sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except TrainingError as exc:
        print(f"emotion-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = ""
        if args.command in ("train", "ablate"):
            kept = (f"; {args.out} keeps the folds it finished: repeat the command with "
                    "--resume to continue")
        elif args.command in ("extract", "export", "evaluate"):
            kept = "; the features cached so far are kept"
        print(f"emotion-train: stopped{kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
