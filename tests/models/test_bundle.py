from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from models.bundle import (
    AudioEncoderSpec,
    BundleConfig,
    TextEncoderSpec,
    load_bundle,
    save_bundle,
    stamp_sha256,
)
from models.errors import BundleError
from models.heads import build_head, make_config

LABELS = ("ang", "hap", "neu", "sad")


def _config(head: str = "self_mha", **overrides: object) -> BundleConfig:
    cfg = make_config(head, audio_dim=24, text_dim=16, num_classes=4, model_dim=32, num_heads=2,
                      fused_dim=16)
    base = BundleConfig(model_id="test-model", head=head, head_config=dataclasses.asdict(cfg),
                        labels=LABELS,
                        audio=AudioEncoderSpec(ref="whisper:packaged:tiny.en", dim=24),
                        text=TextEncoderSpec(ref="packaged:all-MiniLM-L6-v2", dim=16),
                        training={"epochs": 3})
    return dataclasses.replace(base, **overrides)


def _saved(tmp_path: Path) -> Path:
    config = _config()
    torch.manual_seed(0)
    head = build_head(config.head, config.head_config)
    return save_bundle(tmp_path / "bundle", config, head, report={"wa": 0.5})


def test_round_trip(tmp_path: Path) -> None:
    config = _config()
    head = build_head(config.head, config.head_config)
    path = save_bundle(tmp_path / "b", config, head, report={"wa": 0.61})
    assert sorted(p.name for p in path.iterdir()) == [
        "bundle.json", "labels.json", "report.json", "weights.safetensors"]
    bundle = load_bundle(path)
    assert bundle.config == config
    assert bundle.report == {"wa": 0.61}
    loaded = bundle.build_head()
    for (name, a), (_, b) in zip(head.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert not loaded.training


def test_report_defaults_to_empty(tmp_path: Path) -> None:
    config = _config()
    path = save_bundle(tmp_path / "b", config, build_head(config.head, config.head_config))
    assert load_bundle(path).report == {}


@pytest.mark.parametrize("missing", ["bundle.json", "weights.safetensors", "labels.json",
                                     "report.json"])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    path = _saved(tmp_path)
    (path / missing).unlink()
    with pytest.raises(BundleError, match=f"no {missing}"):
        load_bundle(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_labels_mismatch(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / "labels.json").write_text(json.dumps(["a", "b", "c", "d"]))
    with pytest.raises(BundleError, match="labels.json lists"):
        load_bundle(path)


def test_wrong_format_version(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    raw = json.loads((path / "bundle.json").read_text())
    raw["format_version"] = 99
    (path / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="format_version is 99"):
        load_bundle(path)


def test_bad_json_is_named(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / "report.json").write_text("{not json")
    with pytest.raises(BundleError, match="report.json is not valid JSON"):
        load_bundle(path)


def test_weights_not_matching_config(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    raw = json.loads((path / "bundle.json").read_text())
    raw["head"]["config"]["fused_dim"] = 8
    (path / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="weights.safetensors does not match"):
        load_bundle(path).build_head()


def test_corrupt_weights(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    (path / "weights.safetensors").write_bytes(b"garbage")
    stamp_sha256(path)  # damaged before its hash was recorded (else the hash check refuses it)
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(path)


def test_inconsistent_configs_refused_on_save(tmp_path: Path) -> None:
    config = _config()
    head = build_head(config.head, config.head_config)
    with pytest.raises(BundleError, match="num_classes=4 but there are 3 labels"):
        save_bundle(tmp_path / "b", dataclasses.replace(config, labels=("a", "b", "c")), head)
    with pytest.raises(BundleError, match="encoders give 99/16"):
        save_bundle(tmp_path / "b", dataclasses.replace(
            config, audio=AudioEncoderSpec(dim=99)), head)
    with pytest.raises(BundleError, match="window is 'short'"):
        save_bundle(tmp_path / "b", dataclasses.replace(
            config, audio=AudioEncoderSpec(dim=24, window="short")), head)
    with pytest.raises(BundleError, match="'fit' needs a whisper encoder with layers 'all'"):
        save_bundle(tmp_path / "b", dataclasses.replace(
            config, audio=AudioEncoderSpec(dim=24, window="fit")), head)
    other = build_head("cross_mha", dict(config.head_config, variant="sp"))
    with pytest.raises(BundleError, match="does not describe the head"):
        save_bundle(tmp_path / "b", config, other)


def test_unknown_head_name_in_file(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    raw = json.loads((path / "bundle.json").read_text())
    raw["head"]["name"] = "no_such_head"
    (path / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="no_such_head"):
        load_bundle(path)


def test_calibration_round_trips_and_defaults_to_none(tmp_path: Path) -> None:
    from models.bundle import Calibration

    config = _config(calibration=Calibration(temperature=1.7, fitted_on="oof",
                                             ece_before=0.12, ece_after=0.03))
    head = build_head(config.head, config.head_config)
    path = save_bundle(tmp_path / "b", config, head)
    assert load_bundle(path).config.calibration == config.calibration
    raw = json.loads((path / "bundle.json").read_text())
    del raw["calibration"]  # a bundle written before calibration existed
    (path / "bundle.json").write_text(json.dumps(raw))
    assert load_bundle(path).config.calibration.temperature == 1.0


def test_bad_temperature_refused(tmp_path: Path) -> None:
    from models.bundle import Calibration

    config = _config(calibration=Calibration(temperature=0.0))
    with pytest.raises(BundleError, match="temperature must be a positive number"):
        save_bundle(tmp_path / "b", config, build_head(config.head, config.head_config))


def test_nan_weights_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = _saved(tmp_path)
    weights = load_file(str(path / "weights.safetensors"))
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(path / "weights.safetensors"))
    stamp_sha256(path)  # damaged before its hash was recorded (else the hash check refuses it)
    with pytest.raises(BundleError, match="NaN or infinite"):
        load_bundle(path)
