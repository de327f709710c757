"""Tests of visionpe.absolute: sin-cos tables, resampling, SinCosPE, LearnedPE and LaPE."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers.models.embeddings import get_2d_sincos_pos_embed, get_3d_sincos_pos_embed
from timm.layers import resample_abs_pos_embed
from torch.nn import functional as F

from visionpe.absolute import (
    AdditivePE,
    LearnedPE,
    SinCosPE,
    resample_pos_embed,
    sincos_1d,
    sincos_2d,
    sincos_3d,
)
from visionpe.registry import build_pe

F64 = torch.float64


def closed_form_1d(p: float, dim: int, base: float = 10000.0) -> list[float]:
    half = dim // 2
    freqs = [base ** (-k / half) for k in range(half)]
    return [math.sin(p * f) for f in freqs] + [math.cos(p * f) for f in freqs]


# ------------------------------------------------------------------------------------------ sin-cos
def test_sincos_1d_closed_form():
    pos = torch.tensor([0.0, 1.0, 2.5, -3.0, 100.0], dtype=F64)
    out = sincos_1d(pos, 8, base=100.0, dtype=F64)
    expected = torch.tensor([closed_form_1d(p, 8, 100.0) for p in pos.tolist()], dtype=F64)
    assert out.shape == (5, 8)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert sincos_1d(pos, 8).dtype == torch.float32


def test_sincos_2d_closed_form_non_square():
    h, w, dim = 3, 5, 16
    out = sincos_2d((h, w), dim, dtype=F64)
    assert out.shape == (h * w, dim)
    for n in range(h * w):
        row, col = divmod(n, w)
        expected = closed_form_1d(col, dim // 2) + closed_form_1d(row, dim // 2)  # first half encodes w
        torch.testing.assert_close(out[n], torch.tensor(expected, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid", [(6, 6), (1, 1), (9, 9)])
def test_sincos_2d_matches_diffusers_integer_positions(grid):
    ref = get_2d_sincos_pos_embed(32, grid, base_size=grid[0], interpolation_scale=1.0)
    torch.testing.assert_close(sincos_2d(grid, 32, dtype=F64), ref.to(F64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("grid,base_size", [((4, 6), 3), ((7, 3), 5), ((8, 8), 16)])
def test_sincos_2d_matches_diffusers_base_size_scaling(grid, base_size):
    ref = get_2d_sincos_pos_embed(24, grid, base_size=base_size, interpolation_scale=1.0)
    scale = (grid[0] / base_size, grid[1] / base_size)
    torch.testing.assert_close(sincos_2d(grid, 24, scale=scale, dtype=F64), ref.to(F64), rtol=0, atol=1e-6)


def test_sincos_2d_scalar_scale_and_base():
    torch.testing.assert_close(sincos_2d((3, 4), 8, scale=2.0), sincos_2d((3, 4), 8, scale=(2.0, 2.0)))
    assert not torch.allclose(sincos_2d((3, 4), 8, base=100.0), sincos_2d((3, 4), 8))


@pytest.mark.parametrize("grid,s_scale,t_scale",
                         [((3, 4, 5), 1.0, 1.0), ((2, 6, 3), 1.875, 1.0), ((5, 2, 2), 2.0, 1.5)])
def test_sincos_3d_concat_matches_diffusers(grid, s_scale, t_scale):
    t, h, w = grid
    ref = get_3d_sincos_pos_embed(64, (w, h), t, spatial_interpolation_scale=s_scale,
                                  temporal_interpolation_scale=t_scale)
    out = sincos_3d(grid, 64, style="concat", scale=(t_scale, s_scale, s_scale), dtype=F64)
    torch.testing.assert_close(out, ref.reshape(t * h * w, 64).to(F64), rtol=0, atol=1e-6)


def test_sincos_3d_separable_is_spatial_plus_temporal():
    t, h, w, dim = 3, 4, 2, 12
    out = sincos_3d((t, h, w), dim, style="separable", dtype=F64).reshape(t, h * w, dim)
    spatial = sincos_2d((h, w), dim, dtype=F64)
    temporal = sincos_1d(torch.arange(t, dtype=F64), dim, dtype=F64)
    for i in range(t):
        torch.testing.assert_close(out[i], spatial + temporal[i], rtol=0, atol=1e-12)


def test_sincos_3d_concat_layout():
    out = sincos_3d((3, 2, 2), 16, dtype=F64).reshape(3, 4, 16)
    # the first C/4 channels depend only on t, the rest only on (h, w)
    assert torch.equal(out[:, :1, :4].expand(3, 4, 4), out[:, :, :4])
    assert torch.equal(out[:1, :, 4:].expand(3, 4, 12), out[:, :, 4:])


def test_sincos_errors():
    with pytest.raises(ValueError, match="multiple of 2"):
        sincos_1d(torch.arange(3.0), 7)
    with pytest.raises(ValueError, match="base must be"):
        sincos_1d(torch.arange(3.0), 8, base=0.0)
    with pytest.raises(ValueError, match="1D tensor"):
        sincos_1d(torch.zeros(2, 3), 8)
    with pytest.raises(ValueError, match="inf or nan"):
        sincos_1d(torch.tensor([0.0, float("nan")]), 8)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d((3, 3), 10)
    with pytest.raises(ValueError, match="2-axis grids"):
        sincos_2d((2, 3, 3), 8)
    with pytest.raises(ValueError, match="one divisor per grid axis"):
        sincos_2d((3, 3), 8, scale=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="finite number > 0"):
        sincos_2d((3, 3), 8, scale=(1.0, 0.0))
    with pytest.raises(ValueError, match="every grid axis must be >= 1"):
        sincos_2d((0, 3), 8)
    with pytest.raises(ValueError, match="unknown 3D sin-cos style"):
        sincos_3d((2, 3, 3), 16, style="interleaved")
    with pytest.raises(ValueError, match="multiple of 16"):
        sincos_3d((2, 3, 3), 24, style="concat")
    assert sincos_3d((2, 3, 3), 24, style="separable").shape == (18, 24)


# ---------------------------------------------------------------------------------------- resampling
GRID_PAIRS = [((4, 4), (7, 7)), ((6, 6), (3, 3)), ((3, 5), (6, 2)), ((5, 4), (5, 7))]


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("old,new", GRID_PAIRS)
@pytest.mark.parametrize("prefix", [0, 1, 5])
def test_resample_matches_timm(mode, antialias, old, new, prefix):
    torch.manual_seed(0)
    table = torch.randn(1, prefix + math.prod(old), 6)
    ours = resample_pos_embed(table, new, old, prefix, mode, antialias)
    ref = resample_abs_pos_embed(table, list(new), list(old), prefix, mode, antialias)
    assert ours.shape == (1, prefix + math.prod(new), 6)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert torch.equal(ours[:, :prefix], table[:, :prefix])


def test_resample_nearest_and_inferred_square_match_timm():
    torch.manual_seed(1)
    table = torch.randn(1, 1 + 16, 4)
    ref = resample_abs_pos_embed(table, [6, 3], None, 1, "nearest", False)
    torch.testing.assert_close(resample_pos_embed(table, (6, 3), None, 1, "nearest", False), ref, rtol=0, atol=0)
    ref = resample_abs_pos_embed(table, [7, 5], None, 1)
    torch.testing.assert_close(resample_pos_embed(table, (7, 5), num_prefix_tokens=1), ref, rtol=0, atol=0)


def test_resample_rank2_and_low_precision():
    torch.manual_seed(2)
    table = torch.randn(2 + 12, 8)
    out = resample_pos_embed(table, (5, 5), (3, 4), 2)
    assert out.shape == (2 + 25, 8)
    torch.testing.assert_close(out, resample_pos_embed(table[None], (5, 5), (3, 4), 2)[0], rtol=0, atol=0)
    half = resample_pos_embed(table.bfloat16(), (5, 5), (3, 4), 2)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), out, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("shape,grid,prefix", [((1, 17, 4), (4, 4), 1), ((12, 4), (3, 4), 0),
                                               ((1, 2 + 24, 4), (2, 3, 4), 2)])
def test_resample_same_grid_is_identity(shape, grid, prefix):
    table = torch.randn(*shape)
    out = resample_pos_embed(table, grid, grid, prefix)
    assert out is table and torch.equal(out, table)


@pytest.mark.parametrize("old_t,new_t", [(4, 7), (6, 3), (2, 5)])
def test_resample_3d_temporal_linear_table_stays_linear(old_t, new_t):
    torch.manual_seed(3)
    h, w, c, prefix = 3, 2, 5, 1
    a, b = torch.randn(c), torch.randn(c)
    t = torch.arange(old_t, dtype=torch.float32)
    patches = (a + b * t[:, None])[:, None].expand(old_t, h * w, c).reshape(1, -1, c)
    table = torch.cat([torch.randn(1, prefix, c), patches], dim=1)
    out = resample_pos_embed(table, (new_t, h, w), (old_t, h, w), prefix)
    src = ((torch.arange(new_t) + 0.5) * old_t / new_t - 0.5).clamp(0, old_t - 1)  # align_corners=False
    expected = (a + b * src[:, None])[:, None].expand(new_t, h * w, c).reshape(1, -1, c)
    torch.testing.assert_close(out[:, prefix:], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[:, :prefix], table[:, :prefix])


@pytest.mark.parametrize("old,new", [((3, 4, 4), (3, 6, 5)), ((3, 4, 4), (5, 2, 7))])
@pytest.mark.parametrize("mode,antialias", [("bicubic", True), ("bilinear", False)])
def test_resample_3d_frames_follow_timm(old, new, mode, antialias):
    torch.manual_seed(4)
    frame = torch.randn(1, math.prod(old[1:]), 6)
    table = frame.repeat(1, old[0], 1)  # constant in time, so temporal interpolation keeps it
    out = resample_pos_embed(table, new, old, 0, mode, antialias).reshape(new[0], -1, 6)
    ref = resample_abs_pos_embed(frame, list(new[1:]), list(old[1:]), 0, mode, antialias)[0]
    for i in range(new[0]):
        torch.testing.assert_close(out[i], ref, rtol=1e-5, atol=1e-6)


def test_resample_3d_time_and_space_differ_per_frame():
    torch.manual_seed(5)
    table = torch.randn(1, 2 * 9, 4)
    out = resample_pos_embed(table, (4, 3, 3), (2, 3, 3)).reshape(4, 9, 4)
    frames = table.reshape(2, 9, 4)
    torch.testing.assert_close(out[0], frames[0])  # edges clamp to the first/last frame
    torch.testing.assert_close(out[3], frames[1])
    torch.testing.assert_close(out[1], 0.75 * frames[0] + 0.25 * frames[1])


def test_resample_errors():
    table = torch.randn(1, 1 + 12, 4)
    with pytest.raises(ValueError, match="needs 17; check old_grid"):
        resample_pos_embed(table, (5, 5), (4, 4), 1)
    with pytest.raises(ValueError, match="cannot infer a square grid.*pass old_grid"):
        resample_pos_embed(table, (5, 5), num_prefix_tokens=1)
    with pytest.raises(ValueError, match="old_grid is required to resample a 3D table"):
        resample_pos_embed(torch.randn(1, 8, 4), (2, 2, 2))
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        resample_pos_embed(table, (5, 5), (3, 4), 1, mode="lanczos7")
    with pytest.raises(ValueError, match="antialias=True works only with the modes bicubic, bilinear"):
        resample_pos_embed(table, (5, 5), (3, 4), 1, mode="nearest", antialias=True)
    with pytest.raises(ValueError, match="every grid axis must be >= 1"):
        resample_pos_embed(table, (0, 5), (3, 4), 1)
    with pytest.raises(ValueError, match="every grid axis must be >= 1"):
        resample_pos_embed(table, (5, 5), (3, -4), 1)
    with pytest.raises(ValueError, match="different numbers of axes"):
        resample_pos_embed(table, (1, 5, 5), (3, 4), 1)
    with pytest.raises(ValueError, match="resample one table at a time"):
        resample_pos_embed(torch.randn(2, 13, 4), (5, 5), (3, 4), 1)
    with pytest.raises(ValueError, match="new_grid must be"):
        resample_pos_embed(table, (5,), (3, 4), 1)
    with pytest.raises(ValueError, match="num_prefix_tokens must be"):
        resample_pos_embed(table, (5, 5), (3, 4), -1)


# ---------------------------------------------------------------------------------------- SinCosPE
def test_sincos_pe_embed_adds_table_with_zero_prefix():
    pe = build_pe("sincos", dim=16, num_heads=2, num_prefix_tokens=2, grid=(3, 4))
    assert isinstance(pe, SinCosPE) and pe.hooks == {"embed"}
    x = torch.randn(2, 2 + 12, 16)
    out = pe.embed(x, (3, 4))
    assert torch.equal(out[:, :2], x[:, :2])
    torch.testing.assert_close(out[:, 2:] - x[:, 2:], sincos_2d((3, 4), 16).expand(2, 12, 16))


def test_sincos_pe_index_extrapolates_and_normalized_interpolates():
    index = SinCosPE(16, grid=(4, 4))
    big = index.table((6, 8)).reshape(6, 8, 16)
    torch.testing.assert_close(big[:4, :4].reshape(16, 16), index.table((4, 4)))  # same positions, same rows
    norm = SinCosPE(16, grid=(4, 4), positions="normalized")
    torch.testing.assert_close(norm.table((4, 4)), index.table((4, 4)))
    ref = get_2d_sincos_pos_embed(16, (6, 8), base_size=4)  # diffusers' base_size rule
    torch.testing.assert_close(norm.table((6, 8), dtype=F64), ref.to(F64), rtol=0, atol=1e-6)
    pos_range = norm.table((8, 8)).reshape(8, 8, 16)[-1, -1, :8]  # last column in the normalized range < 4
    torch.testing.assert_close(pos_range, torch.tensor(closed_form_1d(3.5, 8), dtype=torch.float32))


@pytest.mark.parametrize("style", ["concat", "separable"])
def test_sincos_pe_3d(style):
    pe = SinCosPE(32, num_axes=3, num_prefix_tokens=1, grid=(2, 3, 3), style=style, positions="normalized")
    table = pe.table((4, 3, 6))
    assert table.shape == (1 + 72, 32) and torch.equal(table[0], torch.zeros(32))
    torch.testing.assert_close(table[1:], sincos_3d((4, 3, 6), 32, style=style, scale=(2.0, 1.0, 2.0)))


def test_sincos_pe_cache_and_dtype():
    pe = SinCosPE(8, num_prefix_tokens=1)
    first = pe.table((3, 3))
    assert pe.table((3, 3)) is first
    first.add_(1.0)  # a caller corrupting the cached table
    torch.testing.assert_close(pe.table((3, 3))[1:], sincos_2d((3, 3), 8))
    x = torch.randn(1, 10, 8, dtype=torch.bfloat16)
    out = pe.embed(x, (3, 3))
    assert out.dtype == torch.bfloat16
    assert pe.table((3, 3), dtype=torch.bfloat16).dtype == torch.bfloat16


def test_sincos_pe_errors():
    with pytest.raises(ValueError, match="applies to 3D grids only"):
        SinCosPE(16, style="separable")
    with pytest.raises(ValueError, match="unknown 3D sin-cos style"):
        SinCosPE(16, num_axes=3, style="stacked")
    with pytest.raises(ValueError, match="multiple of 16"):
        SinCosPE(24, num_axes=3)
    with pytest.raises(ValueError, match="multiple of 4"):
        SinCosPE(10, num_heads=1)
    with pytest.raises(ValueError, match="positions must be 'index' or 'normalized'"):
        SinCosPE(16, positions="relative")
    with pytest.raises(ValueError, match="pass the native grid"):
        SinCosPE(16, positions="normalized")
    with pytest.raises(ValueError, match="base must be"):
        SinCosPE(16, base=-1.0)
    with pytest.raises(ValueError, match="lape must be True or False"):
        SinCosPE(16, lape=1)
    pe = SinCosPE(16, num_prefix_tokens=1)
    with pytest.raises(ValueError, match="needs 10"):
        pe.embed(torch.randn(1, 9, 16), (3, 3))
    with pytest.raises(ValueError, match="2-axis grids"):
        pe.embed(torch.randn(1, 10, 16), (1, 3, 3))
    with pytest.raises(TypeError):
        AdditivePE(16)  # abstract: subclasses define table()


# --------------------------------------------------------------------------------------- LearnedPE
def test_learned_pe_init_and_prefix_rows():
    torch.manual_seed(6)
    pe = build_pe("learned", dim=8, num_prefix_tokens=2, grid=(3, 3), prefix_embed=True)
    assert isinstance(pe, LearnedPE) and pe.pos_embed.shape == (1, 2 + 9, 8)
    assert 0.01 < pe.pos_embed.std() < 0.03
    x = torch.zeros(1, 11, 8)
    torch.testing.assert_close(pe.embed(x, (3, 3)), pe.pos_embed.detach())  # timm: prefix rows are learned
    no_prefix = LearnedPE(8, num_prefix_tokens=2, grid=(3, 3))  # default: prefix rows are zero
    assert no_prefix.pos_embed.shape == (1, 9, 8)
    out = no_prefix.embed(torch.zeros(1, 2 + 20, 8), (4, 5))
    assert out.shape == (1, 22, 8) and torch.equal(out[:, :2], torch.zeros(1, 2, 8))
    assert pe.no_weight_decay() <= {n for n, _ in pe.named_parameters()}


def test_learned_pe_resample_matches_timm_and_gradient_flows():
    torch.manual_seed(7)
    pe = LearnedPE(8, num_prefix_tokens=1, grid=(4, 4), mode="bicubic", antialias=False, prefix_embed=True)
    table = pe.table((6, 5))
    ref = resample_abs_pos_embed(pe.pos_embed.detach(), [6, 5], [4, 4], 1, "bicubic", False)[0]
    torch.testing.assert_close(table.detach(), ref, rtol=0, atol=0)
    x = torch.randn(2, 1 + 30, 8)
    pe.embed(x, (6, 5)).square().sum().backward()
    grad = pe.pos_embed.grad
    assert grad is not None and grad[0, 1:].abs().min() > 0 and grad[0, 0].abs().sum() > 0


def test_learned_pe_no_grad_cache_follows_parameter_updates():
    torch.manual_seed(8)
    pe = LearnedPE(4, grid=(3, 3), mode="bilinear")
    with torch.no_grad():
        first = pe.table((5, 5))
        assert pe.table((5, 5)) is first
        pe.pos_embed.add_(1.0)
        second = pe.table((5, 5))
    assert second is not first
    torch.testing.assert_close(second, resample_pos_embed(pe.pos_embed.detach(), (5, 5), (3, 3), 0, "bilinear")[0])
    assert pe.table((5, 5)).requires_grad  # with gradients on, nothing cached is handed out


def test_learned_pe_3d_resample():
    torch.manual_seed(9)
    pe = LearnedPE(8, num_axes=3, num_prefix_tokens=1, grid=(2, 3, 3), prefix_embed=True)
    table = pe.table((3, 4, 2))
    ref = resample_pos_embed(pe.pos_embed, (3, 4, 2), (2, 3, 3), 1)[0]
    torch.testing.assert_close(table, ref, rtol=0, atol=0)
    assert table.shape == (1 + 24, 8)


def test_learned_pe_errors():
    with pytest.raises(ValueError, match="pass the native grid"):
        LearnedPE(8)
    pe = LearnedPE(8, grid=(3, 3), mode=None)
    assert pe.table((3, 3)).shape == (9, 8)
    with pytest.raises(ValueError, match="mode=None.*no resize rule.*mode='bicubic'"):
        pe.table((4, 4))
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        LearnedPE(8, grid=(3, 3), mode="cubic")
    with pytest.raises(ValueError, match="antialias=True works only"):
        LearnedPE(8, grid=(3, 3), mode="area")
    with pytest.raises(ValueError, match="prefix_embed must be True or False"):
        LearnedPE(8, grid=(3, 3), prefix_embed="yes")


# --------------------------------------------------------------------------------------------- LaPE
def _randomize_norms(pe: AdditivePE) -> None:
    with torch.no_grad():
        for norm in pe.lape_norms:
            norm.weight.normal_(1.0, 0.5)
            norm.bias.normal_(0.0, 0.5)


@pytest.mark.parametrize("name,grid", [("sincos", (3, 4)), ("learned", (3, 4)), ("sincos", (2, 2, 3))])
def test_lape_progressive_chain(name, grid):
    torch.manual_seed(10)
    depth, dim, prefix = 3, 16, 1
    pe = build_pe(name, dim=dim, num_heads=2, num_axes=len(grid), num_prefix_tokens=prefix, depth=depth,
                  grid=grid, lape=True)
    assert pe.hooks == {"attention_input"}
    _randomize_norms(pe)
    tokens = prefix + math.prod(grid)
    x = torch.randn(2, tokens, dim)
    assert pe.embed(x, grid) is x
    e = pe.table(grid).detach()
    chain, previous = e, None
    for layer, norm in enumerate(pe.lape_norms):
        chain = F.layer_norm(chain, (dim,), norm.weight.detach(), norm.bias.detach(), eps=1e-6)
        out = pe.attention_input(x, grid, layer)
        torch.testing.assert_close(out.detach(), x + chain, rtol=1e-5, atol=1e-5)
        if previous is not None:
            assert not torch.allclose(out, previous)
        previous = out


def test_lape_gradients_and_off_switch():
    torch.manual_seed(11)
    pe = LearnedPE(8, num_prefix_tokens=1, depth=2, grid=(2, 2), lape=True)
    h = torch.randn(1, 5, 8)
    pe.attention_input(h, (2, 2), 1).sum().backward()
    assert pe.pos_embed.grad is not None and pe.lape_norms[0].weight.grad is not None
    plain = LearnedPE(8, num_prefix_tokens=1, depth=2, grid=(2, 2))
    assert plain.hooks == {"embed"} and plain.lape_norms is None
    assert plain.attention_input(h, (2, 2), 1) is h
    with pytest.raises(ValueError, match="built with lape=False"):
        plain.lape_table((2, 2), 0)
    with pytest.raises(ValueError, match="layer=2 is out of range"):
        pe.attention_input(h, (2, 2), 2)
