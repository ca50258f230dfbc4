"""Training-batch augmentation: what it changes, what it must leave alone, and that
training uses it."""

from __future__ import annotations

import pytest
import torch

from models.heads import HeadItem, collate
from offline_training.augment import AugmentConfig, augment_batch
from offline_training.cli import main
from offline_training.train import TrainConfig, train_head


def items(n: int = 6, dim: int = 8, seed: int = 0) -> list[HeadItem]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        t = 10 + 3 * i  # unequal lengths: padding in every batch
        layers = torch.rand(3, t, dim, generator=gen) + 1.0  # never 0: a zero means masked
        out.append(HeadItem(audio=layers[-1], audio_layers=layers, label=i % 2,
                            text=torch.full((2 + i, 4), float(i))))
    return out


def test_nothing_active_returns_the_batch() -> None:
    batch = collate(items())
    assert augment_batch(batch, AugmentConfig(), torch.Generator()) is batch


def test_time_masks_zero_stretches_of_real_frames_only() -> None:
    batch = collate(items())
    config = AugmentConfig(time_masks=2, time_mask_max=0.2)
    out = augment_batch(batch, config, torch.Generator().manual_seed(1))
    zeroed = (out.audio == 0).all(dim=-1)  # (B, T) whole frames
    assert zeroed.any()
    unmasked = ~zeroed
    assert torch.equal(out.audio[unmasked], batch.audio[unmasked])  # the rest is untouched
    real = batch.audio_mask.sum(dim=1)
    for i in range(batch.batch_size):
        masked = int(zeroed[i, : int(real[i])].sum())
        assert masked <= 2 * int(real[i] * 0.2)
    # the masks and the layers agree; nothing else changes
    assert torch.equal(out.audio_mask, batch.audio_mask)
    assert out.audio_layers is not None
    assert torch.equal(out.audio_layers[:, -1] == 0, out.audio == 0)
    assert torch.equal(out.text, batch.text)


def test_channel_masks_zero_a_band_over_the_whole_utterance() -> None:
    batch = collate(items())
    out = augment_batch(batch, AugmentConfig(channel_masks=1, channel_mask_max=3),
                        torch.Generator().manual_seed(2))
    for i in range(batch.batch_size):
        real = out.audio[i, batch.audio_mask[i]]  # (T, D)
        columns = (real == 0).all(dim=0)
        assert int(columns.sum()) <= 3
        assert not ((real == 0) & ~columns).any()  # no partial columns


def test_text_swap_gives_another_utterances_words_and_keeps_the_label() -> None:
    batch = collate(items())
    out = augment_batch(batch, AugmentConfig(text_swap=1.0), torch.Generator().manual_seed(3))
    assert out.labels is not None and batch.labels is not None
    assert torch.equal(out.labels, batch.labels)
    assert torch.equal(out.audio, batch.audio)
    sources = out.text[:, 0, 0].long()  # item i's text is filled with i
    assert (sources != torch.arange(batch.batch_size)).all()
    for i, s in enumerate(sources.tolist()):
        assert torch.equal(out.text_mask[i], batch.text_mask[s])
    kept = augment_batch(batch, AugmentConfig(text_swap=0.0, time_masks=1),
                         torch.Generator().manual_seed(3))
    assert torch.equal(kept.text, batch.text)


def test_same_generator_same_augmentation() -> None:
    batch = collate(items())
    config = AugmentConfig(time_masks=2, channel_masks=2, text_swap=0.5)
    first = augment_batch(batch, config, torch.Generator().manual_seed(4))
    again = augment_batch(batch, config, torch.Generator().manual_seed(4))
    assert torch.equal(first.audio, again.audio) and torch.equal(first.text, again.text)


@pytest.mark.parametrize(("setting", "match"), [
    ({"time_masks": -1}, "time_masks"), ({"time_mask_max": 0.0}, "time_mask_max"),
    ({"channel_mask_max": 0}, "channel_mask_max"), ({"text_swap": 1.5}, "text_swap")])
def test_bad_settings_are_named(setting: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**setting)  # type: ignore[arg-type]


def test_cli_reports_a_bad_augmentation_setting(tmp_path: object,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--corpus", "synth", "--root", str(tmp_path), "--head", "text_only",
                 "--text-swap", "2", "--out", str(tmp_path)])
    assert code == 2
    assert "text_swap must be a probability" in capsys.readouterr().err


def text_items(n: int, seed: int) -> list[HeadItem]:
    """The label is in the words only; the audio is noise."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        label = i % 2
        text = torch.randn(3, 4, generator=gen) * 0.1
        text[:, 0] += 2.0 * label - 1.0
        out.append(HeadItem(audio=torch.randn(5, 4, generator=gen), text=text, label=label))
    return out


def test_training_sees_the_augmentation() -> None:
    # A text-only head learns labels carried by the words; when every training utterance
    # gets another utterance's words, the words carry nothing and it cannot.
    settings = {"model_dim": 8, "num_heads": 2, "fused_dim": 8, "dropout": 0.0}
    train, valid = text_items(64, 0), text_items(32, 1)

    def valid_ua(augment: AugmentConfig) -> float:
        config = TrainConfig(head="text_only", head_settings=settings, lr=3e-3, max_epochs=15,
                             stop_patience=0, plateau_patience=0, augment=augment)
        return train_head(config, train, valid, audio_dim=4, text_dim=4,
                          num_classes=2).valid.ua

    assert valid_ua(AugmentConfig()) > 0.95
    assert valid_ua(AugmentConfig(text_swap=1.0)) < 0.8
