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
