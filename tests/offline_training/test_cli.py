"""The emotion-train command: help texts, and ablate/export/evaluate end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline_training.cli import main
from offline_training.corpora.manifest import load_manifest

from .conftest import TinyCorpus
from .fixtures import make_iemocap


@pytest.mark.parametrize("command", [[], ["prepare"], ["prepare", "synth"], ["extract"],
                                     ["train"], ["ablate"], ["export"], ["evaluate"]])
def test_every_subcommand_has_help(command: list[str], capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: emotion-train" in capsys.readouterr().out


def test_prepare_writes_a_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_iemocap(tmp_path / "iemocap")
    monkeypatch.chdir(tmp_path)  # a relative --root, the manifest written elsewhere
    assert main(["prepare", "iemocap", "--root", "iemocap", "--out",
                 str(tmp_path / "out" / "m.jsonl")]) == 0
    manifest = tmp_path / "out" / "m.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["label"] in ("angry", "happy", "sad", "neutral")
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in rows)
    assert len(load_manifest(manifest).utterances) == 8  # it reads back from anywhere


def test_errors_are_reported_without_a_traceback(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--corpus", "manifest", "--root", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_a_missing_training_extra_is_named_with_the_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service's install has no scikit-learn/matplotlib/jiwer: emotion-train says which
    is missing and how to install them, before any work."""
    import offline_training.cli as cli

    monkeypatch.setattr(cli, "TRAIN_EXTRAS", ("sklearn", "not_an_installed_module"))
    out = tmp_path / "m.jsonl"
    assert main(["prepare", "synth", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not_an_installed_module not installed" in err and "emotion-stream[train]" in err
    assert "sklearn" not in err.split("not installed")[0] and not out.exists()


def test_ablate_export_evaluate(tiny: TinyCorpus, tmp_path: Path) -> None:
    common = ["--corpus", "synth", "--root", str(tiny.root), "--cache", str(tiny.cache),
              "--transcripts", "asr", "--threads", "2"]
    training = ["--epochs", "1", "--max-folds", "1", "--batch-size", "8",
                "--head-setting", "model_dim=48"]
    run = tmp_path / "ablation"
    assert main(["ablate", *common, *training, "--heads", "text_only,audio_only,self_mha",
                 "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    # the linear probes join every ablation (--no-probe leaves them out)
    assert set(results) == {"linear_probe_audio", "linear_probe", "text_only", "audio_only",
                            "self_mha"}
    assert (run / "self_mha" / "confusion_all_folds.png").is_file()
    assert len((run / "self_mha" / "predictions.jsonl").read_text().splitlines()) == 12

    bundle = tmp_path / "bundle"
    assert main(["export", *common, *training, "--head", "cross_mha", "--out", str(bundle),
                 "--run-dir", str(tmp_path / "export-run"), "--model-id", "tiny"]) == 0
    report = json.loads((bundle / "report.json").read_text())
    assert report["protocol"] == "loso" and report["features"]["transcripts"] == "asr"
    assert json.loads((bundle / "labels.json").read_text()) == list(tiny.corpus.classes)

    reused = tmp_path / "bundle-reused"
    assert main(["export", *common, *training, "--head", "self_mha", "--out", str(reused),
                 "--report-from", str(run)]) == 0
    report = json.loads((reused / "report.json").read_text())
    assert report["evaluation_run"] == str(run)
    assert report["mean"] == results["self_mha"]["mean"]
    other = [a if a != "model_dim=48" else "model_dim=24" for a in training]
    assert main(["export", *common, *other, "--head", "self_mha", "--out", str(reused),
                 "--report-from", str(run)]) == 2  # the run was made with other settings

    out = tmp_path / "evaluation"
    assert main(["evaluate", *common, "--bundle", str(bundle), "--out", str(out)]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["n"] == len(tiny.corpus) and 0.0 <= evaluation["ua"] <= 1.0


def test_a_missing_synthetic_corpus_is_generated(tmp_path: Path) -> None:
    from offline_training.corpora import CorpusSpec
    from offline_training.features import FeatureSpec
    from offline_training.pipeline import DataSettings, open_corpus
    from offline_training.synth import SynthConfig

    root = tmp_path / "synth"
    data = DataSettings(corpus=CorpusSpec("synth", root), features=FeatureSpec(),
                        cache=tmp_path / "cache",
                        synth=SynthConfig(out_dir=root, speakers=3, speakers_per_session=1,
                                          per_class=1))
    assert len(open_corpus(data)) == 12
    assert (root / "manifest.jsonl").is_file()


def fold_records(run: Path, head: str) -> list[Path]:
    return sorted((run / head).glob("*/fold.json"))


def test_every_fold_is_written_and_resume_continues_a_stopped_run(
        tiny: TinyCorpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--corpus", "synth", "--root", str(tiny.root), "--cache", str(tiny.cache),
              "--transcripts", "asr", "--threads", "1", "--quiet"]
    training = ["--head", "audio_only", "--epochs", "2", "--batch-size", "8",
                "--head-setting", "model_dim=48"]
    run = tmp_path / "run"
    assert main(["train", *common, *training, "--out", str(run)]) == 0
    full = json.loads((run / "results.json").read_text())
    records = fold_records(run, "audio_only")
    assert len(records) == 3 and full["audio_only"]["folds"] == 3
    assert json.loads((run / "run.json").read_text())["heads"][0]["head"] == "audio_only"

    # A run stopped during its second fold: only the first fold's record is there.
    for record in records[1:]:
        record.unlink()
    capsys.readouterr()
    assert main(["train", *common, *training, "--out", str(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier") == 1 and "audio_only session=S01: finished earlier" in out
    assert json.loads((run / "results.json").read_text()) == full  # seeded: the same run
    history = json.loads((run / "audio_only" / "history.json").read_text())
    assert sorted(history) == ["session=S01", "session=S02", "session=S03"]
    assert len((run / "audio_only" / "predictions.jsonl").read_text().splitlines()) == 36

    # Resuming with other options is refused, and says which.
    assert main(["train", *common, *training, "--seed", "1", "--out", str(run),
                 "--resume"]) == 2
    err = capsys.readouterr().err
    assert "other options" in err and "heads.0.seed: recorded 0, now 1" in err
    assert main(["train", *common, *training, "--out", str(tmp_path / "empty"),
                 "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    # Without --resume the directory starts afresh.
    assert main(["train", *common, *training, "--epochs", "1", "--out", str(run)]) == 0
    assert "starting afresh" in capsys.readouterr().out
    assert json.loads((run / "run.json").read_text())["heads"][0]["max_epochs"] == 1


def test_results_are_on_disk_after_each_fold(tiny: TinyCorpus, tmp_path: Path) -> None:
    """What a run has written when its Nth fold ends (the state a stop leaves)."""
    from offline_training.errors import TrainingError
    from offline_training.experiment import HeadRun, report_from_run, run_head, write_run
    from offline_training.protocols import ProtocolSpec, make_folds
    from offline_training.train import paper_config

    folds = make_folds(tiny.corpus.utterances, ProtocolSpec("loso"))
    seen: list[tuple[int, int, int]] = []

    def on_fold(partial: HeadRun) -> None:
        write_run([partial], tmp_path)
        head_dir = tmp_path / "audio_only"
        lines = (head_dir / "predictions.jsonl").read_text().splitlines()
        results = json.loads((tmp_path / "results.json").read_text())
        seen.append((len(partial.folds), len(lines), results["audio_only"]["folds"]))
        assert sorted(json.loads((head_dir / "history.json").read_text())) == [
            f.fold for f in partial.folds]
        assert len(fold_records(tmp_path, "audio_only")) == len(partial.folds)
        if len(partial.folds) < len(folds):  # a stopped run's evaluation is not exported
            with pytest.raises(TrainingError, match=f"finished {len(partial.folds)} of the 3"):
                report_from_run(tmp_path, tiny.corpus, tiny.features, "loso", config,
                                expected_folds=len(folds))

    config = paper_config("audio_only", max_epochs=1, batch_size=8,
                          head_settings={"model_dim": 48})
    run = run_head(tiny.corpus, tiny.features, folds, config, tmp_path, progress=True,
                   on_fold=on_fold)
    report = report_from_run(tmp_path, tiny.corpus, tiny.features, "loso", config,
                             expected_folds=len(folds))
    assert report["mean"] == run.summary.mean
    assert seen == [(1, 12, 1), (2, 24, 2), (3, 36, 3)]


def test_evaluate_uses_the_bundles_settings_and_classes(
        tiny: TinyCorpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle trained on all Whisper layers and 3 of the 4 classes, evaluated without
    repeating its feature options; a corpus label outside its classes needs a label map."""
    no_sad = tmp_path / "no-sad.json"
    no_sad.write_text(json.dumps({"angry": "angry", "happy": "happy", "neutral": "neutral",
                                  "sad": None}))
    corpus = ["--corpus", "synth", "--root", str(tiny.root), "--cache", str(tiny.cache),
              "--threads", "1", "--quiet"]
    bundle = tmp_path / "bundle"
    assert main(["export", *corpus, "--label-map", str(no_sad), "--audio-layers", "all",
                 "--head", "linear_probe_audio", "--probe-cs", "1e-2", "--no-evaluate",
                 "--out", str(bundle)]) == 0
    capsys.readouterr()

    out = tmp_path / "evaluation"
    assert main(["evaluate", *corpus, "--bundle", str(bundle), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "labels sad (9) are not among the bundle's classes" in err and "--label-map" in err

    assert main(["evaluate", *corpus, "--label-map", str(no_sad), "--bundle", str(bundle),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["features"]["audio_layers"] is True  # the bundle's, not the default
    assert evaluation["transcripts"] == "asr" and evaluation["n"] == 27
    assert evaluation["classes"] == json.loads((bundle / "labels.json").read_text())
    table = (out / "confusion.txt").read_text()
    assert table in printed and "recall" in table.splitlines()[0]
    assert sum(map(sum, evaluation["confusion"])) == 27 and (out / "confusion.png").is_file()

    # a setting given on the command line wins over the bundle's
    assert main(["evaluate", *corpus, "--label-map", str(no_sad), "--bundle", str(bundle),
                 "--transcripts", "gold", "--out", str(out)]) == 0
    assert json.loads((out / "evaluation.json").read_text())["transcripts"] == "gold"
