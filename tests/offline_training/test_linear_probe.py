"""linear_probe: closed-form fit by speaker-grouped CV, a run under speaker-groups, and
serving from an exported bundle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.heads import HeadItem, build_head, collate
from offline_training.audio import load_audio
from offline_training.dataset import build_items
from offline_training.errors import TrainingError
from offline_training.experiment import head_class, run_head, write_run
from offline_training.export import export_bundle
from offline_training.features import FeatureCache
from offline_training.protocols import ProtocolSpec, make_folds
from offline_training.train import fit_linear_probe, paper_config, predict, train_head

from .conftest import TinyCorpus


def random_items(n: int, labels: list[int], seed: int = 0, dim: int = 6) -> list[HeadItem]:
    """Items whose mean audio frame is shifted by the label (a linearly separable task)."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        label = labels[i % len(labels)]
        audio = torch.randn(int(torch.randint(3, 9, (1,), generator=gen)), dim, generator=gen)
        audio[:, label] += 3.0
        items.append(HeadItem(audio=audio, text=torch.randn(2, 4, generator=gen), label=label))
    return items


def fit(items: list[HeadItem], groups: list[str], head: str = "linear_probe_audio",
        num_classes: int = 4, **config: object):  # -> TrainResult
    cfg = paper_config(head, **config)
    probe = build_head(head, {"audio_dim": 6, "text_dim": 4, "num_classes": num_classes})
    return fit_linear_probe(cfg, probe, items[:-8], items[-8:], groups[:-8], groups[-8:],
                            num_classes)


def test_probe_fits_in_closed_form_and_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    items = random_items(48, [0, 1, 2, 3])
    groups = [f"spk{i % 6}" for i in range(48)]
    result = fit(items, groups)
    head = result.head
    assert result.details["C"] in paper_config("linear_probe").probe_cs
    assert result.details["inner_folds"] == 5 and result.details["fitted_on"] == 48
    assert result.valid.ua > 0.9 and len(result.history) == 1  # inner-CV (out-of-fold) UA
    # the head's forward = the sklearn model with the chosen C, fitted on all 48
    x = head.probe_features(collate(items)).double().numpy()
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=result.details["C"], max_iter=1000,
                               class_weight="balanced").fit(scaler.transform(x),
                                                            [it.label for it in items])
    np.testing.assert_allclose(head.standardise_mean.numpy(), scaler.mean_, rtol=1e-5)
    preds, _ = predict(head, items, [str(i) for i in range(48)])
    np.testing.assert_allclose(preds.probabilities,
                               model.predict_proba(scaler.transform(x)), atol=1e-4)


def test_probe_pools_only_its_layer_range() -> None:
    """pool_layers_from/to: the pooled features are those of the chosen hidden states, the
    same as an all-layer probe's columns of those layers; a range outside is refused."""
    gen = torch.Generator().manual_seed(0)
    layers = torch.randn(5, 7, 6, generator=gen)  # (L, T, D)
    item = HeadItem(audio=layers[-1], text=torch.randn(2, 4, generator=gen), label=0,
                    audio_layers=layers)
    config = {"audio_dim": 6, "text_dim": 4, "num_classes": 2, "audio_layers": 5}
    every = build_head("linear_probe_audio", config)
    middle = build_head("linear_probe_audio", {**config, "pool_layers_from": 1,
                                               "pool_layers_to": 4})
    batch = collate([item])
    width = 2 * 6  # mean + std per layer
    assert middle.feature_dim == 3 * width
    torch.testing.assert_close(middle.probe_features(batch),
                               every.probe_features(batch)[:, width:4 * width])
    with pytest.raises(ValueError, match="not a range of layers"):
        build_head("linear_probe_audio", {**config, "pool_layers_from": 3, "pool_layers_to": 6})


def test_probe_with_classes_missing_from_training() -> None:
    items = random_items(40, [1, 3])  # two of four classes: sklearn keeps one row
    result = fit(items, [f"spk{i % 4}" for i in range(40)])
    preds, _ = predict(result.head, items, [str(i) for i in range(40)])
    assert set(preds.y_pred) <= {1, 3} and preds.probabilities[:, [0, 2]].max() < 1e-6
    assert np.mean(np.array(preds.y_pred) == np.array(preds.y_true)) > 0.9


def test_probe_needs_speakers() -> None:
    items = random_items(24, [0, 1])
    with pytest.raises(TrainingError, match="at least 2 training speakers"):
        fit(items, ["one"] * 24)
    cfg = paper_config("linear_probe")
    with pytest.raises(TrainingError, match="needs the speaker"):
        train_head(cfg, items[:16], items[16:], 6, 4, 4)


def test_probe_run_under_speaker_groups(tiny: TinyCorpus, tmp_path: Path) -> None:
    """Both probes and the default selection (UA) on the fixture corpus: 3 speakers."""
    corpus = tiny.corpus
    folds = make_folds(corpus.utterances, ProtocolSpec("speaker-groups", k=3))
    assert paper_config("audio_only").select == "ua"
    runs = [run_head(corpus, tiny.features, folds, paper_config(h), tmp_path)
            for h in ("linear_probe", "linear_probe_audio")]
    write_run(runs, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["linear_probe"]["fold_names"] == ["fold1", "fold2", "fold3"]
    pooled = results["linear_probe"]["pooled"]
    assert set(pooled) == {"wa", "ua", "wf1", "uwf1"} and 0 <= pooled["ua"] <= 1
    assert "UA per fold" in (tmp_path / "results.md").read_text()
    fit_info = json.loads((tmp_path / "linear_probe" / "fit.json").read_text())
    assert set(fit_info) == {"fold1", "fold2", "fold3"} and "C" in fit_info["fold1"]
    # 2 training speakers (train + validation group) -> 2 inner folds
    assert fit_info["fold1"]["inner_folds"] == 2


def test_probe_serves_from_an_exported_bundle(tiny: TinyCorpus, tmp_path: Path,
                                              whisper_model: object) -> None:
    """Standardisation and weights travel in the bundle: EmotionModel.predict on a real
    Whisper pass gives the trainer's probabilities."""
    from models.inference import EmotionInput, EmotionModel
    from offline_training.transcripts import WhisperAsr

    corpus, features = tiny.corpus, tiny.features
    spec = dataclasses.replace(features.spec, words=False, text_layers=False, functionals=False)
    plain = FeatureCache(tiny.cache, progress=False).extract(list(corpus.utterances), spec)
    items = build_items(corpus.utterances, plain, corpus.classes, head_class("linear_probe"))
    fold = make_folds(corpus.utterances, ProtocolSpec("speaker-groups", k=3))[0]
    speaker = {u.id: u.speaker for u in corpus.utterances}
    result = train_head(paper_config("linear_probe"), [items[i] for i in fold.train],
                        [items[i] for i in fold.valid], 384, 384, 4,
                        train_groups=[speaker[i] for i in fold.train],
                        valid_groups=[speaker[i] for i in fold.valid])
    assert float(result.head.standardise_std.min()) > 0
    assert not torch.equal(result.head.standardise_mean, torch.zeros_like(
        result.head.standardise_mean))
    bundle = export_bundle(tmp_path / "bundle", result.head, "probe", corpus.classes, spec,
                           384, 384, 0, {"head": "linear_probe"}, {"note": "test"})
    model = EmotionModel.load(bundle, whisper_model=whisper_model)
    asr = WhisperAsr(whisper_model)
    for utt_id in fold.test[:3]:
        utt = next(u for u in corpus.utterances if u.id == utt_id)
        heard = asr.run(load_audio(utt))
        served = model.predict([EmotionInput(
            audio=load_audio(utt), text=heard.transcript.text, whisper_frames=heard.frames,
            words=heard.transcript.words)])[0]
        trained, _ = predict(result.head, [items[utt_id]], [utt_id])
        np.testing.assert_allclose(served.probabilities, trained.probabilities[0], atol=2e-2)
