"""rel-bias: Swin/BEiT relative position bias tables over the whole grid, 2D and 3D."""
import math

import pytest
import torch
from timm.layers.pos_embed_rel import RelPosBias as TimmRelPosBias
from timm.layers.pos_embed_rel import gen_relative_position_index, resize_rel_pos_bias_table_simple
from timm.models.swin_transformer import get_relative_position_index as swin_index

from visionpe.base import attend, grid_positions
from visionpe.registry import build_pe
from visionpe.rel_bias import (
    RelPosBias,
    gather_rel_bias,
    rel_table_shape,
    relative_position_index,
    resize_rel_bias_table,
)


def offsets(grid):
    """(N, N, A) integer offsets p_i - p_j."""
    pos = grid_positions(grid, torch.long)
    return pos[:, None, :] - pos[None, :, :]


def brute_bias(table, table_grid, grid, clamp=False):
    """(heads, N, N) bias read from ``table`` entry by entry with the Swin formula."""
    delta = offsets(grid)
    n = delta.shape[0]
    out = torch.empty(table.shape[1], n, n, dtype=table.dtype)
    for i in range(n):
        for j in range(n):
            row = 0
            for d, t in zip(delta[i, j].tolist(), table_grid):
                if clamp:
                    d = max(-(t - 1), min(t - 1, d))
                row = row * (2 * t - 1) + d + t - 1
            out[:, i, j] = table[row]
    return out


@pytest.mark.parametrize("grid", [(3, 4), (4, 4), (1, 5), (5, 2)])
def test_index_matches_timm_and_swin(grid):
    ours = relative_position_index(grid)
    assert ours.dtype == torch.long and ours.shape == (math.prod(grid),) * 2
    assert torch.equal(ours, gen_relative_position_index(grid))
    assert torch.equal(ours, swin_index(*grid))


def test_index_3d_matches_the_generalised_swin_formula():
    grid = (2, 3, 4)
    t, h, w = grid
    delta = offsets(grid)
    expected = ((delta[..., 0] + t - 1) * (2 * h - 1) + delta[..., 1] + h - 1) * (2 * w - 1) + delta[..., 2] + w - 1
    index = relative_position_index(grid)
    assert torch.equal(index, expected)
    assert index.min() == 0 and index.max() == math.prod(rel_table_shape(grid)) - 1


def test_index_into_a_larger_table_and_clamping():
    delta = offsets((2, 3))
    index = relative_position_index((2, 3), table_grid=(4, 5))
    assert torch.equal(index, (delta[..., 0] + 3) * 9 + delta[..., 1] + 4)
    with pytest.raises(ValueError, match="clamp=True"):
        relative_position_index((4, 5), table_grid=(2, 3))
    clamped = relative_position_index((4, 5), table_grid=(2, 3), clamp=True)
    d = offsets((4, 5))
    assert torch.equal(clamped, (d[..., 0].clamp(-1, 1) + 1) * 5 + d[..., 1].clamp(-2, 2) + 2)
    with pytest.raises(ValueError, match="same number of axes"):
        relative_position_index((4, 5), table_grid=(2, 3, 4))


@pytest.mark.parametrize("grid", [(3, 4), (4, 4)])
def test_bias_matches_timm_relposbias(grid):
    torch.manual_seed(0)
    pe = RelPosBias(dim=12, num_heads=3, grid=grid)
    ref = TimmRelPosBias(grid, num_heads=3)
    with torch.no_grad():
        ref.relative_position_bias_table.copy_(pe.tables[0])
    q = torch.randn(2, 3, math.prod(grid), 4)
    assert torch.equal(pe.attention_bias(q, grid), ref.get_bias())


def test_patch_part_matches_timm_with_a_class_token():
    """timm (BEiT) learns CLS rows; ours are zero, and the patch part is the same."""
    torch.manual_seed(0)
    grid = (3, 4)
    pe = RelPosBias(dim=8, num_heads=2, num_prefix_tokens=1, grid=grid)
    ref = TimmRelPosBias(grid, num_heads=2, prefix_tokens=1)
    with torch.no_grad():
        ref.relative_position_bias_table[:-3].copy_(pe.tables[0])
    bias = pe.attention_bias(torch.randn(1, 2, 13, 4), grid)
    assert bias.shape == (1, 2, 13, 13)
    assert torch.equal(bias[..., 1:, 1:], ref.get_bias()[..., 1:, 1:])
    assert bias[..., 0, :].abs().sum() == 0 and bias[..., :, 0].abs().sum() == 0


def test_bias_is_a_function_of_the_offset_only():
    torch.manual_seed(0)
    grid = (4, 5)
    pe = RelPosBias(dim=8, num_heads=2, grid=grid)
    bias = pe.patch_bias(grid).reshape(2, 4, 5, 4, 5)
    assert torch.equal(bias[:, :-1, :-1, :-1, :-1], bias[:, 1:, 1:, 1:, 1:])
    assert torch.equal(bias, brute_bias(pe.tables[0].detach(), grid, grid).reshape(2, 4, 5, 4, 5))


def test_3d_bias_and_prefix():
    torch.manual_seed(0)
    grid = (2, 3, 2)
    pe = RelPosBias(dim=8, num_heads=2, num_axes=3, num_prefix_tokens=2, grid=grid)
    assert pe.mode == "trilinear"
    assert pe.tables[0].shape == (3 * 5 * 3, 2)
    bias = pe.attention_bias(torch.randn(1, 2, 14, 4), grid)
    assert bias.shape == (1, 2, 14, 14)
    assert bias[..., :2, :].abs().sum() == 0 and bias[..., :, :2].abs().sum() == 0
    assert torch.equal(bias[0, :, 2:, 2:], brute_bias(pe.tables[0].detach(), grid, grid))


def test_layers_have_their_own_tables_and_get_gradients():
    torch.manual_seed(0)
    grid = (3, 3)
    pe = RelPosBias(dim=8, num_heads=2, depth=2, grid=grid)
    q = torch.randn(1, 2, 9, 4)
    b0, b1 = pe.attention_bias(q, grid, 0), pe.attention_bias(q, grid, 1)
    assert not torch.allclose(b0, b1)
    (b0.sum() + 2 * b1.sum()).backward()
    assert pe.tables[0].grad.abs().sum() > 0 and pe.tables[1].grad.abs().sum() > 0
    assert pe.no_weight_decay() == {"tables.0", "tables.1"}


def test_resize_to_the_same_grid_is_the_identity():
    torch.manual_seed(0)
    table = torch.randn(5 * 7, 3)
    assert resize_rel_bias_table(table, (3, 4), (3, 4)) is table
    pe = RelPosBias(dim=6, num_heads=3, grid=(3, 4))
    expected = gather_rel_bias(pe.tables[0], relative_position_index((3, 4)))
    assert torch.equal(pe.patch_bias((3, 4)), expected)


def test_bicubic_resize_matches_timm_simple_resize():
    """The Swin ``load_pretrained`` rule: bicubic, align_corners=False, on (heads, 2H-1, 2W-1)."""
    torch.manual_seed(0)
    table = torch.randn(7 * 7, 3)
    ours = resize_rel_bias_table(table, (4, 4), (6, 6), "bicubic")
    ref = resize_rel_pos_bias_table_simple(table, (6, 6), (11 * 11, 3))
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    shrunk = resize_rel_bias_table(table, (4, 4), (2, 3), "bilinear")
    assert shrunk.shape == (3 * 5, 3)


@pytest.mark.parametrize("old, new, mode", [((3, 4), (5, 2), "bilinear"), ((3, 4), (6, 8), "bicubic"),
                                            ((2, 3, 4), (3, 5, 4), "trilinear")])
def test_resize_keeps_a_constant_table_constant(old, new, mode):
    table = torch.full((math.prod(rel_table_shape(old)), 2), 0.75, dtype=torch.float64)
    out = resize_rel_bias_table(table, old, new, mode)
    assert out.shape == (math.prod(rel_table_shape(new)), 2) and out.dtype == torch.float64
    torch.testing.assert_close(out, torch.full_like(out, 0.75))


def test_resize_keeps_the_offset_axes_apart():
    """A table that varies along Δx only still varies along Δx only after resizing (no transposition)."""
    row = torch.linspace(-1, 1, 7, dtype=torch.float64)
    table = row.repeat(5).unsqueeze(1)                       # grid (3, 4): (2*3-1) x (2*4-1) offsets
    out = resize_rel_bias_table(table, (3, 4), (5, 6), "bilinear").reshape(9, 11)
    torch.testing.assert_close(out, out[:1].expand(9, 11))
    assert out[0, 0] < out[0, 5] < out[0, 10]


def test_module_interpolates_at_a_new_grid():
    torch.manual_seed(0)
    pe = RelPosBias(dim=8, num_heads=2, grid=(3, 4))
    bias = pe.patch_bias((5, 6))
    expected = gather_rel_bias(resize_rel_bias_table(pe.tables[0], (3, 4), (5, 6), "bicubic"),
                               relative_position_index((5, 6)))
    assert torch.equal(bias, expected)
    assert bias.shape == (2, 30, 30)
    bias.sum().backward()
    assert pe.tables[0].grad.abs().sum() > 0


def test_mode_none_takes_the_exact_centre_sub_table_and_refuses_to_grow():
    torch.manual_seed(0)
    native = (4, 5)
    pe = RelPosBias(dim=8, num_heads=2, grid=native, mode=None)
    full = pe.patch_bias(native).reshape(2, 4, 5, 4, 5)
    small = pe.patch_bias((2, 3)).reshape(2, 2, 3, 2, 3)
    # any 2x3 window of the native grid has the same offsets
    assert torch.equal(small, full[:, :2, :3, :2, :3])
    assert torch.equal(small, full[:, 2:, 1:4, 2:, 1:4])
    with pytest.raises(ValueError, match="cannot grow.*'bicubic'.*'clamp'"):
        pe.patch_bias((4, 6))


def test_clamp_mode_clips_offsets_to_the_trained_range():
    torch.manual_seed(0)
    native = (2, 3)
    pe = RelPosBias(dim=8, num_heads=2, grid=native, mode="clamp")
    table = pe.tables[0].detach()
    assert torch.equal(pe.patch_bias((4, 5)), brute_bias(table, native, (4, 5), clamp=True))
    exact = RelPosBias(dim=8, num_heads=2, grid=native, mode=None)
    exact.load_state_dict(pe.state_dict())
    assert torch.equal(pe.patch_bias((1, 2)), exact.patch_bias((1, 2)))


def test_attend_runs_on_2d_and_3d_grids():
    torch.manual_seed(0)
    for grid in [(3, 4), (2, 2, 3)]:
        pe = build_pe("rel-bias", dim=8, num_heads=2, num_axes=len(grid), num_prefix_tokens=1, depth=2, grid=grid)
        n = 1 + math.prod(grid)
        q, k, v = torch.randn(3, 2, 2, n, 4).unbind(0)
        assert attend(q, k, v, pe, grid, layer=1).shape == (2, 2, n, 4)


def test_index_cache_survives_in_place_writes():
    pe = RelPosBias(dim=4, num_heads=1, grid=(3, 3))
    index = pe.index((3, 3), (3, 3), False, torch.device("cpu"))
    assert pe.index((3, 3), (3, 3), False, torch.device("cpu")) is index
    index.zero_()
    assert torch.equal(pe.index((3, 3), (3, 3), False, torch.device("cpu")), relative_position_index((3, 3)))


def test_errors():
    with pytest.raises(ValueError, match="grid="):
        RelPosBias(dim=8, num_heads=2)
    with pytest.raises(ValueError, match="valid modes"):
        RelPosBias(dim=8, num_heads=2, grid=(3, 3), mode="trilinear")
    with pytest.raises(ValueError, match="valid modes.*'trilinear'"):
        RelPosBias(dim=8, num_heads=2, num_axes=3, grid=(2, 3, 3), mode="bicubic")
    pe = RelPosBias(dim=8, num_heads=2, depth=2, grid=(3, 3))
    q = torch.randn(1, 2, 9, 4)
    with pytest.raises(ValueError, match="depth=2"):
        pe.attention_bias(q, (3, 3), layer=2)
    with pytest.raises(ValueError, match="tokens"):
        pe.attention_bias(q, (3, 4))
    with pytest.raises(ValueError, match="num_axes=3"):
        pe.attention_bias(q, (1, 3, 3))
    with pytest.raises(ValueError, match="use one of 'bicubic', 'bilinear'"):
        resize_rel_bias_table(torch.randn(25, 2), (3, 3), (4, 4), "trilinear")
    with pytest.raises(ValueError, match=r"\(25, heads\)"):
        resize_rel_bias_table(torch.randn(24, 2), (3, 3), (4, 4))
