"""`emotion-train cross-corpus` end to end on real speech: one clip per class of every
RAVDESS actor and nEMO speaker (132 clips), through the real ASR, encoders and served spans;
then the exported bundle served by EmotionModel. Needs shared/corpora (fails without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offline_training.cli import main as train_main
from offline_training.corpora.speech_spans import cut_rows, manifest_items
from streamer.core.config import SegmenterConfig

SHARED = Path(__file__).resolve().parents[3] / "shared" / "corpora"
LABEL_MAP = Path("configs/label_maps/ravdess-4class-calm-as-neutral.json")
pytestmark = pytest.mark.slow


def small_manifest(out: Path) -> Path:
    """One clip of each shared class per speaker, RAVDESS + nEMO, cut to served spans."""
    if not (SHARED / "ravdess").is_dir() or not (SHARED / "nemo").is_dir():
        pytest.fail(f"this test needs RAVDESS and nEMO in {SHARED}")
    from offline_training.corpora import CorpusSpec, load_corpus

    rows = []
    for name in ("ravdess", "nemo"):
        corpus = load_corpus(CorpusSpec(name, SHARED / name, label_map=LABEL_MAP if name ==
                                        "ravdess" else Path("configs/label_maps/nemo-4class.json")))
        seen = set()
        for u in corpus.utterances:
            if (u.speaker, u.label) in seen:
                continue
            seen.add((u.speaker, u.label))
            rows.append({"id": f"{name}-{u.id}", "path": u.path, "label": u.label,
                         "text": u.text, "speaker": f"{name}-{u.speaker}",
                         "extra": {"corpus": name}})
    raw = out / "raw.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cut, _ = cut_rows(manifest_items(raw), SegmenterConfig())
    manifest = out / "small.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in cut))
    return manifest


def test_cross_corpus_command_and_its_bundle(tmp_path: Path) -> None:
    manifest = small_manifest(tmp_path)
    out, bundle = tmp_path / "results", tmp_path / "bundle"
    code = train_main([
        "cross-corpus", "--corpus", "manifest", "--root", str(manifest),
        "--label-map", str(LABEL_MAP), "--audio-layers", "all", "--cache",
        str(tmp_path / "cache"), "--threads", "2", "--quiet", "--out", str(out),
        "--normalisations", "none,mixed:10", "--streams", "acted,one-emotion",
        "--export", str(bundle), "--export-exclude-speakers", "ravdess-Actor_01",
        "--model-id", "test-cross-corpus"])
    assert code == 0
    table = (out / "results.md").read_text()
    for setting in ("ravdess->nemo", "nemo->ravdess", "| both |"):
        assert setting in table
    assert "neutral recall" in table and "mixed:10" in table
    assert (out / "confusion-ravdess-to-nemo-nemo-mixed-w10.png").is_file()
    rows = json.loads((out / "results.json").read_text())["rows"]
    both = [r for r in rows if r["setting"] == "both"]
    assert {r["folds"] for r in both} == {3}  # three folds of held-out speakers
    assert all(0.0 <= r["ua"] <= 1.0 for r in rows)

    from models.asr import Word
    from models.inference import EmotionInput, EmotionModel
    from offline_training.audio import load_audio
    from offline_training.corpora.manifest import load_manifest

    model = EmotionModel.load(bundle)
    config = model.bundle.config
    assert config.head_config["domain_standardise"] is True
    assert 0.0 < config.text.min_word_probability < 1.0  # fitted on English vs Polish
    assert config.calibration.temperature > 0 and "held-out" in config.calibration.fitted_on
    clip = next(u for u in load_manifest(manifest).utterances
                if u.speaker == "ravdess-Actor_01")
    unsure = (Word("and", 0.0, 0.3, 0.05), Word("when", 0.3, 0.6, 0.05))
    prediction = model.predict([EmotionInput(audio=load_audio(clip), text="and when",
                                             words=unsure)])[0]
    assert prediction.modalities == ("audio",)  # the ASR was unsure: the voice alone
    assert abs(float(np.sum(prediction.probabilities)) - 1.0) < 1e-5
    assert model.adaptation is not None and model.adaptation.observed()["wideband"] == 1
