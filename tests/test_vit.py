"""Tests of visionpe.models.ViT: every PE plugs in by name and runs at the training and other sizes."""
from __future__ import annotations

import pytest
import torch

import visionpe
from visionpe.models import ViT
from visionpe.models.vit import valid_sizes


@pytest.mark.parametrize("pe", visionpe.list_pes())
def test_every_pe_trains_and_runs_at_other_sizes(pe):
    torch.manual_seed(0)
    model = ViT(16, size="micro", pe=pe, num_classes=5)
    logits = model(torch.randn(3, 3, 16, 16))
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert model.patch_embed.proj.weight.grad is not None
    with torch.no_grad():
        for size in [(8, 8), (24, 20)]:
            out = model(torch.randn(2, 3, *size))
            assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_pe_parameters_are_trained_without_weight_decay():
    model = ViT(16, size="micro", pe="rope-mixed", peg_after=[0])
    no_decay = model.no_weight_decay()
    assert "pe.freqs" in no_decay and "cls_token" in no_decay
    assert {"pegs.0.proj.weight", "pegs.0.proj.bias"} <= no_decay  # CPVT trains its conv without decay
    assert "blocks.0.attn.qkv.weight" not in no_decay and "head.weight" not in no_decay
    assert no_decay <= {n for n, _ in model.named_parameters()}


def test_peg_after_blocks_changes_output_and_keeps_cls_position_free():
    torch.manual_seed(1)
    plain = ViT(16, size="micro", pe="none", num_classes=3)
    pegged = ViT(16, size="micro", pe="none", num_classes=3, peg_after=[0, 1])
    pegged.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 16, 16)
    assert not torch.allclose(plain(x), pegged(x))
    # without any PE the model is invariant to a permutation of the patches
    perm = torch.randperm(16)
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4).reshape(2, 3, 16, 4, 4)[:, :, perm]
    shuffled = patches.reshape(2, 3, 4, 4, 4, 4).permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 16, 16)
    torch.testing.assert_close(plain(x), plain(shuffled), atol=1e-5, rtol=0)


def test_avg_pool_and_no_class_token():
    model = ViT(16, size="micro", pe="rope-axial", class_token=False, global_pool="avg", num_classes=4)
    assert model.num_prefix_tokens == 0
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_pos_mask_replaces_additive_pe_only_where_masked():
    torch.manual_seed(2)
    model = ViT(16, size="micro", pe="sincos", pos_mask_token=True)
    x = torch.randn(2, 3, 16, 16)
    none_masked = torch.zeros(2, 16, dtype=torch.bool)
    torch.testing.assert_close(model.forward_features(x, none_masked), model.forward_features(x))
    all_masked = torch.ones(2, 16, dtype=torch.bool)
    assert not torch.allclose(model.forward_features(x, all_masked), model.forward_features(x))
    with pytest.raises(ValueError, match=r"shape \(B, N\)"):
        model.forward_features(x, torch.zeros(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="pos_mask_token=True"):
        ViT(16, size="micro", pe="sincos").forward_features(x, none_masked)


def test_errors_name_the_problem_and_fix():
    model = ViT(32, size="micro", pe="learned")
    with pytest.raises(ValueError, match=r"height 30 is not divisible by the patch size 4; use e.g. \[28, 32\]"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="unknown ViT size 'huge'"):
        ViT(32, size="huge")
    with pytest.raises(ValueError, match="peg_after has block indices"):
        ViT(32, size="micro", peg_after=[5])
    with pytest.raises(ValueError, match="unknown PE"):
        ViT(32, size="micro", pe="rope2d")
    with pytest.raises(ValueError, match="additive PE"):
        ViT(32, size="micro", pe="rope-axial", pos_mask_token=True)
    with pytest.raises(ValueError, match="global_pool='token' needs class_token"):
        ViT(32, size="micro", class_token=False)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        ViT(32, size="micro", embed_dim=30, num_heads=4)
    assert valid_sizes(30, 4) == [28, 32]


@pytest.mark.parametrize("fc_norm", [False, True])
def test_pre_logits_is_what_the_head_sees(fc_norm):
    torch.manual_seed(3)
    model = ViT(16, size="micro", pe="sincos", class_token=False, global_pool="avg", fc_norm=fc_norm)
    x = torch.randn(2, 3, 16, 16)
    feats = model.pre_logits(model.forward_features(x))
    torch.testing.assert_close(model.head(feats), model(x))
    if fc_norm:  # LayerNorm (at init: unit weight, zero bias) after pooling
        torch.testing.assert_close(feats.mean(-1), torch.zeros(2), atol=1e-5, rtol=0)


def test_weight_init_rules():
    small_auto = ViT(32, size="tiny-cpu", pe="none")                       # width 64 -> PyTorch's default
    small_timm = ViT(32, size="tiny-cpu", pe="none", weight_init="timm")
    wide_auto = ViT(32, patch_size=16, embed_dim=192, depth=1, num_heads=3, pe="none")
    assert (small_auto.weight_init, small_timm.weight_init, wide_auto.weight_init) == ("torch", "timm", "timm")
    fc = small_auto.blocks[0].mlp.fc1.weight                                  # fan_in 64: bound 1/8
    assert fc.abs().max() <= 1 / 8 and fc.std() > 0.06
    assert small_auto.blocks[0].attn.qkv.bias.abs().sum() > 0
    timm_fc = small_timm.blocks[0].mlp.fc1.weight
    assert abs(timm_fc.std().item() - 0.02) < 0.003 and small_timm.blocks[0].attn.qkv.bias.abs().sum() == 0
    with pytest.raises(ValueError, match="unknown weight_init 'xavier'"):
        ViT(32, size="micro", pe="none", weight_init="xavier")
