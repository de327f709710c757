"""cpb: Swin-v2 log-spaced continuous position bias over the whole grid, 2D and 3D."""
import math

import pytest
import torch
from timm.layers.pos_embed_rel import RelPosMlp, gen_relative_log_coords

from visionpe.base import attend
from visionpe.cpb import LogCPB, log_relative_coords
from visionpe.registry import build_pe

LOG9 = math.log2(9) / 3          # |ŝ| at the largest offset of the pre-training grid: 1.0566


def randomise(pe, seed=0):
    """Give the MLPs weights that make the bias vary (the Swin-v2 init is nearly constant)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in pe.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if p.shape[-1] > 8 else 1.0))


@pytest.mark.parametrize("window, pretrained", [((3, 4), (3, 4)), ((4, 4), (4, 4)), ((6, 7), (3, 4))])
@pytest.mark.parametrize("prefix", [0, 1])
def test_matches_timm_relposmlp_swin_mode(window, pretrained, prefix):
    pe = LogCPB(dim=12, num_heads=3, num_prefix_tokens=prefix, grid=pretrained, hidden_dim=32)
    randomise(pe)
    ref = RelPosMlp(window, num_heads=3, hidden_dim=32, prefix_tokens=prefix, mode="swin",
                    pretrained_window_size=pretrained).eval()
    mlp = pe.mlps[0]
    with torch.no_grad():
        ref.mlp.fc1.weight.copy_(mlp[0].weight)
        ref.mlp.fc1.bias.copy_(mlp[0].bias)
        ref.mlp.fc2.weight.copy_(mlp[2].weight)
    n = prefix + math.prod(window)
    ours = pe.attention_bias(torch.randn(1, 3, n, 4), window)
    assert ours.shape == (1, 3, n, n)
    torch.testing.assert_close(ours, ref.get_bias(), rtol=0, atol=1e-5)
    assert ours[..., :prefix, :].abs().sum() == 0 and ours[..., :prefix].abs().sum() == 0


@pytest.mark.parametrize("window, pretrained", [((3, 4), (3, 4)), ((8, 8), (4, 4))])
def test_coordinates_match_timm(window, pretrained):
    ours = log_relative_coords(window, pretrained)
    ref = gen_relative_log_coords(window, pretrained, mode="swin").reshape(-1, 2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_coordinate_range_at_and_beyond_the_pretraining_grid():
    at = log_relative_coords((8, 8), (8, 8), torch.float64)
    assert at.shape == (15 * 15, 2)
    assert at.abs().max() == pytest.approx(LOG9) and at.min() == pytest.approx(-LOG9)
    assert 1.056 < LOG9 < 1.057
    twice = log_relative_coords((16, 16), (8, 8), torch.float64)
    assert twice.abs().max() == pytest.approx(math.log2(1 + 15 / 7 * 8) / 3)
    assert 1.39 < twice.abs().max() < 1.40
    # the same offset has the same coordinate at every grid: normalised by the pre-training grid
    assert torch.equal(twice.reshape(31, 31, 2)[8:23, 8:23], at.reshape(15, 15, 2))


def test_axis_of_length_one_uses_max_g_minus_one_1():
    coords = log_relative_coords((1, 4), (1, 4), torch.float64)
    assert torch.isfinite(coords).all() and coords[:, 0].abs().max() == 0
    grown = log_relative_coords((3, 4), (1, 4), torch.float64)
    assert grown[:, 0].abs().max() == pytest.approx(math.log2(1 + 2 * 8) / 3)


def test_bias_is_the_same_function_of_the_offset_at_every_grid():
    """A new grid only needs new coordinates: offsets shared with the pre-training grid keep their bias."""
    pe = LogCPB(dim=8, num_heads=2, grid=(3, 4), hidden_dim=16)
    randomise(pe)
    small = pe.patch_bias((3, 4)).reshape(2, 3, 4, 3, 4)
    large = pe.patch_bias((5, 6)).reshape(2, 5, 6, 5, 6)
    torch.testing.assert_close(large[:, 1:4, 2:6, 1:4, 2:6], small, rtol=0, atol=1e-6)
    assert large.min() > 0 and large.max() < 16


def test_3d_runs_bounded_and_translation_invariant():
    grid = (2, 3, 4)
    pe = build_pe("cpb", dim=12, num_heads=3, num_axes=3, num_prefix_tokens=1, depth=2, grid=grid, hidden_dim=16)
    randomise(pe)
    q = torch.randn(1, 3, 25, 4)
    bias = pe.attention_bias(q, grid, layer=1)
    assert bias.shape == (1, 3, 25, 25)
    patch = bias[0, :, 1:, 1:]
    assert patch.min() > 0 and patch.max() < 16
    cube = patch.reshape(3, 2, 3, 4, 2, 3, 4)
    torch.testing.assert_close(cube[:, :, :-1, :-1, :, :-1, :-1], cube[:, :, 1:, 1:, :, 1:, 1:])
    assert not torch.allclose(bias, pe.attention_bias(q, grid, layer=0))
    larger = pe.attention_bias(torch.randn(1, 3, 1 + 3 * 5 * 6, 4), (3, 5, 6))
    assert larger.shape == (1, 3, 91, 91) and torch.isfinite(larger).all()
    k, v = torch.randn(2, 1, 3, 25, 4).unbind(0)
    assert attend(q, k, v, pe, grid, 1).shape == (1, 3, 25, 4)


def test_swin_v2_init_gives_a_nearly_constant_bias_near_8():
    torch.manual_seed(0)
    pe = LogCPB(dim=8, num_heads=2, grid=(4, 4))
    assert pe.mlps[0][0].weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert pe.mlps[0][0].bias.abs().sum() == 0
    bias = pe.patch_bias((4, 4)).detach()
    torch.testing.assert_close(bias, torch.full_like(bias, 8.0), rtol=0, atol=0.25)


def test_gradients_reach_every_mlp_parameter():
    pe = LogCPB(dim=8, num_heads=2, grid=(3, 3), hidden_dim=16)
    randomise(pe)
    pe.patch_bias((4, 5)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pe.parameters())
    assert pe.no_weight_decay() == {"mlps.0.0.weight", "mlps.0.0.bias", "mlps.0.2.weight"}


def test_coordinates_are_cached_but_the_learned_bias_is_not():
    pe = LogCPB(dim=8, num_heads=2, grid=(3, 3), hidden_dim=16)
    randomise(pe)
    cpu = torch.device("cpu")
    coords, index = pe.coords_and_index((3, 3), cpu, torch.float32)
    assert pe.coords_and_index((3, 3), cpu, torch.float32)[0] is coords
    before = pe.patch_bias((3, 3)).detach().clone()
    coords.zero_()
    assert torch.equal(pe.coords_and_index((3, 3), cpu, torch.float32)[0], log_relative_coords((3, 3), (3, 3)))
    torch.testing.assert_close(pe.patch_bias((3, 3)).detach(), before)
    with torch.no_grad():
        pe.mlps[0][2].weight.mul_(2)
    assert not torch.allclose(pe.patch_bias((3, 3)), before)
    assert pe.double().patch_bias((3, 3)).dtype == torch.float64


def test_errors():
    with pytest.raises(ValueError, match="grid="):
        LogCPB(dim=8, num_heads=2)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="hidden_dim"):
            LogCPB(dim=8, num_heads=2, grid=(3, 3), hidden_dim=bad)
    pe = LogCPB(dim=8, num_heads=2, depth=2, grid=(3, 3), hidden_dim=8)
    q = torch.randn(1, 2, 9, 4)
    with pytest.raises(ValueError, match="depth=2"):
        pe.attention_bias(q, (3, 3), layer=2)
    with pytest.raises(ValueError, match="tokens"):
        pe.attention_bias(q, (3, 4))
    with pytest.raises(ValueError, match="num_axes=3"):
        pe.attention_bias(q, (1, 3, 3))
    with pytest.raises(ValueError, match="same number of axes"):
        log_relative_coords((3, 3), (2, 3, 3))
    with pytest.raises(ValueError, match=">= 1"):
        log_relative_coords((3, 0), (3, 3))
