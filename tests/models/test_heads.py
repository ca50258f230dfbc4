"""Every registered head: shapes, padding invariance, gradient flow, tiny overfit."""

from __future__ import annotations

import pytest
import torch
from head_inputs import NUM_CLASSES, random_items, tiny_head

from models.heads import HEADS, collate

torch.set_num_threads(1)
NAMES = sorted(HEADS)

# Parameters that legitimately get no gradient in some variants.
NO_GRAD_OK = {
    # one text token: softmax over a single key is constant, so W_Q/W_K of text attention do
    # not matter
    "self_mha_cls": ("text_attn.q_proj", "text_attn.k_proj"),
}


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name: str) -> None:
    head = tiny_head(name, regression=True).eval()
    batch = collate(random_items(name, 3))
    out = head(batch)
    assert out.logits.shape == (3, NUM_CLASSES)
    assert out.regression is not None and out.regression.shape == (3, 3)
    assert out.pooled_audio.shape[0] == 3 and out.pooled_audio.ndim == 2
    assert out.pooled_text.shape[0] == 3 and out.pooled_text.ndim == 2
    assert torch.isfinite(out.logits).all()
    assert tiny_head(name).eval()(batch).regression is None


@pytest.mark.parametrize("name", NAMES)
def test_padding_invariance(name: str) -> None:
    head = tiny_head(name).eval()
    items = random_items(name, 4, seed=1)
    batched = head(collate(items)).logits
    for i, item in enumerate(items):
        alone = head(collate([item])).logits[0]
        torch.testing.assert_close(batched[i], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_pooled_frames_keep_padding_invariance(name: str) -> None:
    # audio_pool 3 on lengths that are not multiples of 3: the last pooled frame of a short
    # item must average only its own frames, never the batch's padding.
    head = tiny_head(name, audio_pool=3).eval()
    items = random_items(name, 4, seed=4)
    batched = head(collate(items)).logits
    for i, item in enumerate(items):
        torch.testing.assert_close(batched[i], head(collate([item])).logits[0],
                                   atol=1e-5, rtol=1e-4)


def test_pool_audio_frames_averages_real_frames_only() -> None:
    from models.heads import HeadItem
    from models.heads.base import pool_audio_frames

    frames = torch.arange(5, dtype=torch.float32).view(5, 1).repeat(1, 2)  # values 0..4
    short = HeadItem(audio=frames, text=torch.zeros(1, 2),
                     audio_layers=torch.stack([frames, 10 * frames]),
                     word_text=torch.zeros(2, 2), word_spans=torch.tensor([[0, 2], [3, 5]]))
    long = HeadItem(audio=torch.ones(7, 2), text=torch.zeros(1, 2),
                    audio_layers=torch.ones(2, 7, 2), word_text=torch.zeros(2, 2),
                    word_spans=torch.tensor([[4, 4], [5, 7]]))
    batch = pool_audio_frames(collate([short, long]), 2)
    # short: (0+1)/2, (2+3)/2, 4 alone (its padding is not averaged in), then padding
    assert batch.audio[0, :, 0].tolist() == [0.5, 2.5, 4.0, 0.0]
    assert batch.audio_mask.tolist() == [[True, True, True, False], [True] * 4]
    assert batch.audio_layers is not None and batch.audio_layers[0, 1, :3, 0].tolist() == [
        5.0, 25.0, 40.0]
    assert batch.word_spans is not None
    assert batch.word_spans.tolist() == [[[0, 1], [1, 3]], [[2, 3], [2, 4]]]  # >= 1 frame each
    assert pool_audio_frames(batch, 1) is batch
    with pytest.raises(ValueError, match="audio_pool"):
        tiny_head("self_mha", audio_pool=0)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name: str) -> None:
    head = tiny_head(name, regression=True).train()
    batch = collate(random_items(name, 4, seed=2, min_context=1))
    out = head(batch)
    head.loss(batch, out).backward()
    allowed = NO_GRAD_OK.get(name, ())
    for pname, param in head.named_parameters():
        if pname.startswith(allowed):
            continue
        assert param.grad is not None, f"{name}: {pname} gets no gradient"
        assert param.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_overfits_a_handful_of_examples(name: str) -> None:
    head = tiny_head(name).train()
    if getattr(head, "closed_form", False):
        pytest.skip("fitted in closed form (tests/offline_training/test_linear_probe.py)")
    batch = collate(random_items(name, 8, seed=3))
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    loss = torch.tensor(float("inf"))
    for _ in range(300):
        optimizer.zero_grad()
        loss = head.loss(batch, head(batch))
        loss.backward()
        optimizer.step()
        if loss.item() < 0.05:
            break
    assert loss.item() < 0.05, f"{name}: loss stayed at {loss.item():.3f}"


def test_unknown_head_and_settings_are_named() -> None:
    from models.heads import build_head, make_config

    with pytest.raises(KeyError, match="known heads"):
        build_head("nope", {})
    with pytest.raises(ValueError, match="no setting"):
        make_config("self_mha", audio_dim=4, text_dim=4, num_classes=2, colour="red")
    with pytest.raises(ValueError, match="fixes variant"):
        make_config("self_mha_nosp", audio_dim=4, text_dim=4, num_classes=2, variant="sp")
