"""The emotion-train command: help texts, and ablate/export/evaluate end to end (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline_training.cli import main

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


def test_prepare_writes_a_manifest(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path / "iemocap")
    assert main(["prepare", "iemocap", "--root", str(root), "--out",
                 str(tmp_path / "m.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["label"] in ("angry", "happy", "sad", "neutral")


def test_errors_are_reported_without_a_traceback(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--corpus", "manifest", "--root", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


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
