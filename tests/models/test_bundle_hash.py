"""Issue 13, "Numbers": bundles and the text affect model carry the sha256 of their weights.

Written at export (``save_bundle``, ``export_bundle``, ``save_text_affect``), checked at
load; a changed or truncated weight file is refused with a message naming the file, the
expected and the actual digest, and what to do. Older files without the hash load with a
warning. Every test works on a copy in tmp_path: the shipped files are only read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from models.bundle import (
    BUILTIN,
    WEIGHTS,
    AudioEncoderSpec,
    BundleConfig,
    TextEncoderSpec,
    load_bundle,
    save_bundle,
    stamp_sha256,
)
from models.errors import BundleError, ModelFileError
from models.heads import build_head, make_config
from models.text_affect import PACKAGED_TEXT_AFFECT, TextAffect, load_text_affect, save_text_affect


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_bundle(directory: Path) -> Path:
    cfg = make_config("self_mha", audio_dim=24, text_dim=16, num_classes=4, model_dim=32,
                      num_heads=2, fused_dim=16)
    config = BundleConfig(model_id="hash-test", head="self_mha",
                          head_config=dataclasses.asdict(cfg), labels=("a", "b", "c", "d"),
                          audio=AudioEncoderSpec(ref="whisper:packaged:tiny.en", dim=24),
                          text=TextEncoderSpec(ref="packaged:all-MiniLM-L6-v2", dim=16))
    torch.manual_seed(0)
    return save_bundle(directory, config, build_head(config.head, config.head_config))


def shipped_copy(tmp_path: Path, ref: str) -> Path:
    return Path(shutil.copytree(BUILTIN[ref], tmp_path / ref.split(":")[1]))


@pytest.mark.parametrize("ref", sorted(BUILTIN))
def test_shipped_bundles_verify(ref: str) -> None:
    raw = json.loads((BUILTIN[ref] / "bundle.json").read_text())
    assert raw["sha256"] == {WEIGHTS: sha256(BUILTIN[ref] / WEIGHTS)}
    assert load_bundle(ref).sha256 == raw["sha256"]


def test_packaged_text_affect_verifies() -> None:
    meta = json.loads((PACKAGED_TEXT_AFFECT / "text_affect.json").read_text())
    assert meta["sha256"] == {"weights.safetensors":
                              sha256(PACKAGED_TEXT_AFFECT / "weights.safetensors")}
    load_text_affect(PACKAGED_TEXT_AFFECT)


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the tensor data: still a readable safetensors file
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["one bit", "truncated", "replaced"])
def test_tampered_copy_of_a_shipped_bundle_is_refused(tmp_path: Path, damage: str) -> None:
    path = shipped_copy(tmp_path, "builtin:default")
    weights = path / WEIGHTS
    expected = sha256(weights)
    if damage == "one bit":
        flip_one_byte(weights)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:  # another valid bundle's weights (same head, same shapes)
        shutil.copy(BUILTIN["builtin:synthetic"] / WEIGHTS, weights)
    actual = sha256(weights)
    with pytest.raises(BundleError) as caught:
        load_bundle(path)
    message = str(caught.value)
    assert str(weights) in message
    assert f"expected {expected}" in message and f"actual {actual}" in message
    assert "re-export" in message and "re-download" in message
    assert f"({weights.stat().st_size} bytes)" in message


def test_tampered_text_affect_is_refused(tmp_path: Path) -> None:
    path = Path(shutil.copytree(PACKAGED_TEXT_AFFECT, tmp_path / "affect"))
    expected = sha256(path / "weights.safetensors")
    flip_one_byte(path / "weights.safetensors")
    with pytest.raises(ModelFileError) as caught:
        load_text_affect(path)
    message = str(caught.value)
    assert f"expected {expected} (from text_affect.json), actual " \
           f"{sha256(path / 'weights.safetensors')}" in message
    assert "offline_training.text_affect" in message and "re-download" in message


def test_export_writes_the_hash_and_round_trips(tmp_path: Path) -> None:
    from offline_training.export import export_bundle
    from offline_training.features import FeatureSpec

    source = load_bundle("builtin:synthetic")
    head = source.build_head()
    path = export_bundle(tmp_path / "exported", head, "re-exported", source.config.labels,
                         FeatureSpec(audio_layers=True), 384, 384, 0,
                         dict(source.config.training), {"note": "round trip"})
    raw = json.loads((path / "bundle.json").read_text())
    assert raw["sha256"] == {WEIGHTS: sha256(path / WEIGHTS)}
    again = load_bundle(path)
    assert again.sha256 == raw["sha256"]
    for name, tensor in head.state_dict().items():
        torch.testing.assert_close(again.weights[name], tensor, msg=name)
    flip_one_byte(path / WEIGHTS)
    with pytest.raises(BundleError, match="does not match its recorded content hash"):
        load_bundle(path)


def test_save_bundle_and_save_text_affect_write_the_hash(tmp_path: Path) -> None:
    path = tiny_bundle(tmp_path / "b")
    assert load_bundle(path).sha256 == {WEIGHTS: sha256(path / WEIGHTS)}
    affect = TextAffect(labels=("x", "y"), weight=torch.ones(2, 4), bias=torch.zeros(2),
                        text_encoder="t")
    save_text_affect(affect, tmp_path / "affect", {"sha256": "a card cannot set this"})
    meta = json.loads((tmp_path / "affect" / "text_affect.json").read_text())
    assert meta["sha256"] == {"weights.safetensors":
                              sha256(tmp_path / "affect" / "weights.safetensors")}
    load_text_affect(tmp_path / "affect")


def test_bundle_without_hash_loads_with_a_warning_and_can_be_stamped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tiny_bundle(tmp_path / "old")
    raw = json.loads((path / "bundle.json").read_text())
    del raw["sha256"]  # as written before the hash existed
    (path / "bundle.json").write_text(json.dumps(raw, indent=2) + "\n")
    with caplog.at_level(logging.WARNING, logger="models.bundle"):
        assert load_bundle(path).sha256 == {}
    assert "without an integrity check" in caplog.text and "stamp_sha256" in caplog.text
    before = (path / WEIGHTS).read_bytes()
    assert stamp_sha256(path) == {WEIGHTS: sha256(path / WEIGHTS)}
    assert (path / WEIGHTS).read_bytes() == before  # stamping never rewrites the weights
    assert load_bundle(path).sha256 == {WEIGHTS: sha256(path / WEIGHTS)}


@pytest.mark.parametrize("recorded", [
    "034ba6c8",  # not a mapping
    {WEIGHTS: "ABC"},  # not a digest
    {WEIGHTS: "0" * 63},
    {},  # the weights file not listed
    {WEIGHTS: "0" * 64, "../../etc/passwd": "0" * 64},  # a file the bundle does not have
])
def test_malformed_hash_entry_is_refused(tmp_path: Path, recorded: object) -> None:
    path = tiny_bundle(tmp_path / "b")
    raw = json.loads((path / "bundle.json").read_text())
    raw["sha256"] = recorded
    (path / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="'sha256'"):
        load_bundle(path)


def test_hash_matches_but_tensors_are_nan(tmp_path: Path) -> None:
    """A NaN bundle stamped after the damage (the hash only says the file is unchanged
    since export): the non-finite check still refuses it."""
    from safetensors.torch import load_file, save_file

    path = tiny_bundle(tmp_path / "b")
    weights = load_file(str(path / WEIGHTS))
    name = next(iter(weights))
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(path / WEIGHTS))
    stamp_sha256(path)
    with pytest.raises(BundleError, match="NaN or infinite"):
        load_bundle(path)
