"""Behaviour particular to single heads and shared layers."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from head_inputs import random_items, tiny_head

from models.heads import HEADS, collate
from models.heads.mmer import CTC_ALPHABET, ctc_target, text_to_ctc_ids
from models.layers import concat_in_time, masked_mean, stat_pool

torch.set_num_threads(1)


def test_mmer_loss_is_ce_plus_alpha_ctc() -> None:
    head = tiny_head("mmer").eval()
    batch = collate(random_items("mmer", 3))
    out = head(batch)
    assert out.aux_loss is not None and out.aux_loss.ndim == 0
    a = head.audio_proj(batch.audio)
    assert batch.ctc_targets is not None and batch.ctc_lengths is not None
    ctc = head.ctc_loss(a, batch.audio_mask, batch.ctc_targets, batch.ctc_lengths)
    torch.testing.assert_close(out.aux_loss, head.config.ctc_alpha * ctc)
    expected = F.cross_entropy(out.logits, batch.labels) + 0.1 * ctc
    torch.testing.assert_close(head.loss(batch, out), expected)
    without = dataclasses.replace(batch, ctc_targets=None, ctc_lengths=None)
    assert head(without).aux_loss is None


def test_ctc_ids() -> None:
    ids = text_to_ctc_ids("Hi,  there! 42")
    assert "".join(CTC_ALPHABET[i] for i in ids) == "HI THERE 42"
    assert 0 not in ids  # 0 is the blank
    assert text_to_ctc_ids("") == []
    # Training and serving build the same target; an empty transcript is one space.
    assert ctc_target("Hi,  there! 42").tolist() == ids
    assert ctc_target("").tolist() == ctc_target(" ?! ").tolist() == [CTC_ALPHABET.index(" ")]


def test_shared_qk_weights_are_shared_and_saved_once() -> None:
    head = tiny_head("shared_qk_mt")
    for audio_block, text_block in zip(head.audio_blocks, head.text_blocks, strict=True):
        assert audio_block.attn.shared_qk[0] is text_block.attn.shared_qk[0]
        assert audio_block.attn.shared_qk[1] is text_block.attn.shared_qk[1]
        assert audio_block.attn.v_proj is not text_block.attn.v_proj  # W_V is not shared
    keys = list(head.state_dict())
    assert not any("attn.q_proj" in k or "attn.k_proj" in k for k in keys)
    assert "shared_q.0.weight" in keys and "shared_k.1.bias" in keys


def test_cls_variant_uses_only_the_first_token() -> None:
    head = tiny_head("self_mha_cls").eval()
    batch = collate(random_items("self_mha_cls", 2))
    changed = batch.text.clone()
    changed[:, 1:] += 5.0
    torch.testing.assert_close(head(batch).logits,
                               head(dataclasses.replace(batch, text=changed)).logits)


@pytest.mark.parametrize("name", ["context_mmt", "early_fusion"])
def test_context_changes_the_prediction_and_old_context_is_ignored(name: str) -> None:
    head = tiny_head(name).eval()  # context_size 2 in the tiny config
    item = random_items(name, 1, min_context=3)[0]
    assert item.context_text is not None and item.context_text.shape[0] == 3
    base = head(collate([item])).logits
    newest_changed = item.context_text.clone()
    newest_changed[-1] += 3.0
    out = head(collate([dataclasses.replace(item, context_text=newest_changed)])).logits
    assert not torch.allclose(base, out)
    oldest_changed = item.context_text.clone()
    oldest_changed[0] += 3.0  # beyond the 2 most recent: outside the head's context window
    out = head(collate([dataclasses.replace(item, context_text=oldest_changed)])).logits
    torch.testing.assert_close(base, out)


def test_context_mmt_layer_count_mismatch_is_explained() -> None:
    head = tiny_head("context_mmt")
    batch = collate(random_items("context_mmt", 2))
    assert batch.audio_layers is not None
    with pytest.raises(ValueError, match="audio_layers=3 but the batch has 2"):
        head(dataclasses.replace(batch, audio_layers=batch.audio_layers[:, :2]))


def test_cm_roberta_needs_text_layers() -> None:
    head = tiny_head("cm_roberta")
    batch = dataclasses.replace(collate(random_items("cm_roberta", 2)), text_layers=None)
    with pytest.raises(ValueError, match="set encoders.text.layers to 'all'"):
        head(batch)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_runs_under_autocast(name: str) -> None:
    head = tiny_head(name, regression=True).eval()
    batch = collate(random_items(name, 3))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = head(batch)
    assert torch.isfinite(out.logits.float()).all()
    probs = torch.softmax(out.logits.float(), dim=-1)
    torch.testing.assert_close(probs, torch.softmax(head(batch).logits, -1), atol=0.05, rtol=0)


def test_concat_in_time_puts_valid_parts_first() -> None:
    x1 = torch.tensor([[[1.0], [2.0], [0.0]], [[3.0], [0.0], [0.0]]])
    m1 = torch.tensor([[True, True, False], [True, False, False]])
    x2 = torch.tensor([[[4.0], [0.0]], [[5.0], [6.0]]])
    m2 = torch.tensor([[True, False], [True, True]])
    x, m = concat_in_time(x1, m1, x2, m2)
    assert x[0, :3, 0].tolist() == [1.0, 2.0, 4.0] and m[0].tolist() == [True] * 3 + [False] * 2
    assert x[1, :3, 0].tolist() == [3.0, 5.0, 6.0] and m[1].tolist() == [True] * 3 + [False] * 2


def test_pooling_helpers() -> None:
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0, 3.0]]))
    pooled = stat_pool(torch.tensor([[[1.0, 0.0], [3.0, 0.0]]]))  # (B, 2, D) -> (B, 2D)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 0.0, 1.0, 0.001]]), atol=1e-4,
                               rtol=0)


@pytest.mark.parametrize("name", ["shared_qk_mt", "context_mmt", "mmer", "cm_roberta"])
def test_unbatch_inverts_collate(name: str) -> None:
    items = random_items(name, 3, seed=5)
    back = collate(items).unbatch()
    for original, restored in zip(items, back, strict=True):
        for field in dataclasses.fields(original):
            a, b = getattr(original, field.name), getattr(restored, field.name)
            if isinstance(a, torch.Tensor):
                assert isinstance(b, torch.Tensor), field.name
                torch.testing.assert_close(a.to(b.dtype), b, msg=field.name)
            else:
                assert a == b, field.name


def test_input_settings_fill_only_the_fields_a_head_has() -> None:
    from models.heads import input_settings, make_config

    common = {"audio_dim": 384, "text_dim": 384, "num_classes": 4}
    assert input_settings("self_mha", **common, text_layers=7) == common
    mmt = input_settings("context_mmt", **common, text_layers=7, functionals_dim=100)
    assert mmt == {**common, "audio_layers": 1, "text_layers": 7}
    cm = input_settings("cm_roberta", **common, text_layers=7, functionals_dim=100)
    assert cm == {**common, "functionals_dim": 100}
    assert make_config("context_mmt", **mmt).text_layers == 7


def test_shared_qk_mt_without_any_words() -> None:
    head = tiny_head("shared_qk_mt").eval()
    items = [dataclasses.replace(it, word_text=it.word_text[:0], word_spans=it.word_spans[:0])
             for it in random_items("shared_qk_mt", 2)]
    out = head(collate(items))
    assert torch.isfinite(out.logits).all()
