"""rel-decomposed: MViTv2 decomposed relative position embeddings, 2D and 3D."""
import math
from fractions import Fraction

import pytest
import torch
from timm.models.mvitv2 import cal_rel_pos_type
from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias
from timm.models.vision_transformer_sam import get_rel_pos as sam_get_rel_pos

from visionpe.base import attend, grid_positions
from visionpe.registry import build_pe
from visionpe.rel_decomposed import (
    DecomposedRelPos,
    decomposed_rel_pos_bias,
    decomposed_rel_pos_terms,
    get_rel_pos,
    resize_rel_pos_table,
)


def joint_bias(q, grid, tables, table_grid=None, clamp=False):
    """(B, heads, N, N) bias from the joint table R[i, j] = Σ_a R_a[Δ_a] gathered into (N, N, d)."""
    table_grid = grid if table_grid is None else table_grid
    pos = grid_positions(grid, torch.long)
    delta = pos[:, None, :] - pos[None, :, :]
    joint = 0
    for axis, (table, t) in enumerate(zip(tables, table_grid)):
        d = delta[..., axis].clamp(-(t - 1), t - 1) if clamp else delta[..., axis]
        joint = joint + table[d + t - 1]
    return torch.einsum("bmnc,nkc->bmnk", q, joint)


def tables_for(grid, d, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2 * g - 1, d, generator=gen, dtype=torch.float64) for g in grid]


@pytest.mark.parametrize("grid", [(3, 5), (4, 4), (1, 3), (2, 3, 4)])
def test_decomposed_equals_the_joint_table(grid):
    torch.manual_seed(0)
    q = torch.randn(2, 3, math.prod(grid), 6, dtype=torch.float64)
    tables = tables_for(grid, 6)
    torch.testing.assert_close(decomposed_rel_pos_bias(q, grid, tables), joint_bias(q, grid, tables))


def test_terms_have_one_column_per_key_coordinate():
    torch.manual_seed(0)
    grid = (2, 3, 4)
    q = torch.randn(2, 3, 24, 6, dtype=torch.float64)
    tables = tables_for(grid, 6)
    terms = decomposed_rel_pos_terms(q, grid, tables)
    assert [t.shape for t in terms] == [(2, 3, 24, g) for g in grid]
    pos = grid_positions(grid, torch.long)
    # rel_t[..., n, k] = q_n · R_t[t(n) - k]
    n, k = 17, 1
    expected = q[:, :, n] @ tables[0][pos[n, 0] - k + grid[0] - 1]
    torch.testing.assert_close(terms[0][:, :, n, k], expected)


@pytest.mark.parametrize("grid", [(3, 5), (4, 4)])
@pytest.mark.parametrize("prefix", [0, 1])
def test_matches_timm_mvitv2(grid, prefix):
    torch.manual_seed(0)
    pe = DecomposedRelPos(dim=16, num_heads=2, num_prefix_tokens=prefix, depth=2, grid=grid)
    n = prefix + math.prod(grid)
    q = torch.randn(2, 2, n, 8)
    ours = pe.bias(q, grid, layer=1)
    ref = cal_rel_pos_type(torch.zeros(2, 2, n, n), q, prefix == 1, list(grid), list(grid),
                           pe.tables[1][0], pe.tables[1][1])
    assert ours.shape == (2, 2, n, n)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_matches_timm_sam_bias_including_interpolation_at_a_new_grid():
    """SAM/ViTDet interpolates the native tables linearly inside ``get_rel_pos``: the same as mode='linear'."""
    torch.manual_seed(0)
    pe = DecomposedRelPos(dim=16, num_heads=2, grid=(3, 4))
    for grid in [(3, 4), (5, 7), (2, 2)]:
        n = math.prod(grid)
        q = torch.randn(2, 2, n, 8)
        ref = get_decomposed_rel_pos_bias(q.reshape(4, n, 8), pe.tables[0][0], pe.tables[0][1], grid, grid)
        torch.testing.assert_close(pe.bias(q, grid), ref.reshape(2, 2, n, n), rtol=0, atol=1e-6)


def test_get_rel_pos_matches_sam_for_equal_and_integer_ratio_sizes():
    torch.manual_seed(0)
    for rows in [5, 7, 15]:
        table = torch.randn(rows, 4)
        for q_size, k_size in [(4, 4), (8, 8), (2, 8), (8, 2), (3, 9), (6, 3), (1, 5), (7, 1)]:
            assert torch.equal(get_rel_pos(table, q_size, k_size), sam_get_rel_pos(q_size, k_size, table))


def test_get_rel_pos_uses_exact_offsets():
    """dist = ⌊i·q_ratio − j·k_ratio + (k−1)·k_ratio⌋ in exact arithmetic, for every size pair."""
    for q_size in range(1, 11):
        for k_size in range(1, 11):
            rows = 2 * max(q_size, k_size) - 1
            table = torch.arange(rows, dtype=torch.float64)[:, None]
            q_ratio, k_ratio = max(Fraction(k_size, q_size), 1), max(Fraction(q_size, k_size), 1)
            expected = torch.tensor([[math.floor(i * q_ratio - j * k_ratio + (k_size - 1) * k_ratio)
                                      for j in range(k_size)] for i in range(q_size)], dtype=torch.float64)
            assert torch.equal(get_rel_pos(table, q_size, k_size)[..., 0], expected), (q_size, k_size)


def test_get_rel_pos_same_size_reads_offset_rows():
    table = torch.arange(7, dtype=torch.float64)[:, None]
    out = get_rel_pos(table, 4, 4)[..., 0]
    i, j = torch.arange(4)[:, None], torch.arange(4)[None, :]
    assert torch.equal(out, (i - j + 3).double())


def test_resize_rel_pos_table_rules():
    torch.manual_seed(0)
    table = torch.randn(7, 3)                            # 4 positions, offsets -3..3
    for mode in ("linear", "clamp", None):
        assert resize_rel_pos_table(table, 4, mode) is table
    assert torch.equal(resize_rel_pos_table(table, 2, None), table[2:5])
    assert torch.equal(resize_rel_pos_table(table, 2, "clamp"), table[2:5])
    grown = resize_rel_pos_table(table, 6, "clamp")
    assert grown.shape == (11, 3)
    assert torch.equal(grown[:3], table[:1].expand(3, 3)) and torch.equal(grown[-3:], table[-1:].expand(3, 3))
    assert torch.equal(grown[2:9], table)
    linear = resize_rel_pos_table(table, 6, "linear")
    assert linear.shape == (11, 3)
    torch.testing.assert_close(get_rel_pos(linear, 6, 6), sam_get_rel_pos(6, 6, table), rtol=0, atol=1e-6)
    const = resize_rel_pos_table(torch.full((7, 2), 3.0), 9, "linear")
    torch.testing.assert_close(const, torch.full((17, 2), 3.0))
    with pytest.raises(ValueError, match="mode='linear'.*mode='clamp'"):
        resize_rel_pos_table(table, 5, None)
    with pytest.raises(ValueError, match="valid modes"):
        resize_rel_pos_table(table, 5, "bicubic")


def test_identity_at_the_native_grid():
    torch.manual_seed(0)
    pe = DecomposedRelPos(dim=12, num_heads=2, grid=(3, 5), depth=2)
    assert all(a is b for a, b in zip(pe.layer_tables((3, 5), 1), pe.tables[1]))
    q = torch.randn(1, 2, 15, 6)
    tables = [t.detach() for t in pe.tables[1]]
    torch.testing.assert_close(pe.bias(q, (3, 5), 1).detach(), joint_bias(q, (3, 5), tables))


def test_mode_none_slices_and_refuses_to_grow():
    torch.manual_seed(0)
    native = (4, 5)
    pe = DecomposedRelPos(dim=8, num_heads=2, grid=native, mode=None)
    tables = [t.detach() for t in pe.tables[0]]
    q = torch.randn(1, 2, 6, 4)
    torch.testing.assert_close(pe.bias(q, (2, 3)).detach(), joint_bias(q, (2, 3), tables, native))
    with pytest.raises(ValueError, match="cannot grow.*mode='linear'"):
        pe.bias(torch.randn(1, 2, 24, 4), (4, 6))


def test_clamp_mode_clips_offsets():
    torch.manual_seed(0)
    native = (2, 3)
    pe = DecomposedRelPos(dim=8, num_heads=2, grid=native, mode="clamp")
    tables = [t.detach() for t in pe.tables[0]]
    q = torch.randn(1, 2, 20, 4)
    expected = joint_bias(q, (4, 5), tables, native, clamp=True)
    torch.testing.assert_close(pe.bias(q, (4, 5)).detach(), expected)


def test_scale_q_is_the_paper_form():
    torch.manual_seed(0)
    plain = DecomposedRelPos(dim=16, num_heads=2, grid=(3, 3))
    scaled = DecomposedRelPos(dim=16, num_heads=2, grid=(3, 3), scale_q=True)
    scaled.load_state_dict(plain.state_dict())
    q = torch.randn(1, 2, 9, 8)
    torch.testing.assert_close(scaled.bias(q, (3, 3)), plain.bias(q, (3, 3)) / math.sqrt(8))


def test_3d_prefix_gradients_and_attend():
    torch.manual_seed(0)
    grid = (2, 3, 3)
    pe = build_pe("rel-decomposed", dim=12, num_heads=2, num_axes=3, num_prefix_tokens=1, depth=2, grid=grid)
    assert [t.shape for t in pe.tables[1]] == [(3, 6), (5, 6), (5, 6)]
    q = torch.randn(2, 2, 19, 6, requires_grad=True)
    bias = pe.bias(q, grid, 1)
    assert bias.shape == (2, 2, 19, 19)
    assert bias[..., 0, :].abs().sum() == 0 and bias[..., :, 0].abs().sum() == 0
    bias.square().sum().backward()
    assert all(t.grad.abs().sum() > 0 for t in pe.tables[1]) and all(t.grad is None for t in pe.tables[0])
    assert q.grad[:, :, 0].abs().sum() == 0
    q2, k2, v2 = torch.randn(3, 1, 2, 61, 6).unbind(0)
    assert attend(q2, k2, v2, pe, (3, 4, 5), layer=0).shape == (1, 2, 61, 6)


def test_bias_dtype_follows_promotion():
    pe = DecomposedRelPos(dim=8, num_heads=2, grid=(2, 2))
    assert pe.bias(torch.randn(1, 2, 4, 4, dtype=torch.bfloat16), (2, 2)).dtype == torch.float32
    assert pe.double().bias(torch.randn(1, 2, 4, 4), (2, 2)).dtype == torch.float64


def test_errors():
    with pytest.raises(ValueError, match="grid="):
        DecomposedRelPos(dim=8, num_heads=2)
    with pytest.raises(ValueError, match="valid modes"):
        DecomposedRelPos(dim=8, num_heads=2, grid=(3, 3), mode="bicubic")
    pe = DecomposedRelPos(dim=8, num_heads=2, depth=2, grid=(3, 3))
    with pytest.raises(ValueError, match=r"\(B, heads, P \+ N, 4\)"):
        pe.bias(torch.randn(1, 2, 9, 5), (3, 3))
    with pytest.raises(ValueError, match="tokens"):
        pe.bias(torch.randn(1, 2, 10, 4), (3, 3))
    with pytest.raises(ValueError, match="depth=2"):
        pe.bias(torch.randn(1, 2, 9, 4), (3, 3), layer=-1)
    q = torch.randn(1, 2, 9, 4)
    tables = [torch.randn(5, 4), torch.randn(5, 4)]
    with pytest.raises(ValueError, match="one per axis"):
        decomposed_rel_pos_terms(q, (3, 3), tables[:1])
    with pytest.raises(ValueError, match="resize_rel_pos_table"):
        decomposed_rel_pos_terms(q, (3, 3), [torch.randn(7, 4), tables[1]])
    with pytest.raises(ValueError, match="drop the prefix tokens"):
        decomposed_rel_pos_terms(torch.randn(1, 2, 10, 4), (3, 3), tables)
    with pytest.raises(ValueError, match="odd number of rows"):
        get_rel_pos(torch.randn(6, 4), 3, 3)
    with pytest.raises(ValueError, match="k_size"):
        get_rel_pos(torch.randn(5, 4), 3, 0)


# ------------------------------------------------------------------ memory-efficient path (extend_qk)
@pytest.mark.parametrize("grid,prefix,scale_q", [((3, 5), 1, False), ((2, 3, 4), 2, True), ((4, 4), 0, False)])
def test_extended_qk_gives_the_full_bias_attention(grid, prefix, scale_q):
    """attend through extra q/k channels equals attend with the (N, N) bias, values and gradients."""
    torch.manual_seed(0)
    kwargs = dict(dim=16, num_heads=2, num_axes=len(grid), num_prefix_tokens=prefix, depth=2, grid=grid,
                  scale_q=scale_q)
    lean, full = DecomposedRelPos(**kwargs).double(), DecomposedRelPos(**kwargs, memory_efficient=False).double()
    full.load_state_dict(lean.state_dict())
    assert lean.hooks == {"extend_qk"} and full.hooks == {"attention_bias"}
    assert lean.attention_bias(torch.randn(1, 2, prefix + math.prod(grid), 8), grid) is None
    n = prefix + math.prod(grid)
    q, k, v = (torch.randn(2, 2, n, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    outs, grads = [], []
    for pe in (lean, full):
        out = attend(q, k, v, pe, grid, layer=1)
        outs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), [q, k, v, *pe.tables[1]]))
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_extended_channels_and_key_coordinates():
    pe = DecomposedRelPos(dim=16, num_heads=2, num_prefix_tokens=1, grid=(3, 5))
    q, k = torch.randn(2, 2, 16, 8), torch.randn(2, 2, 16, 8)
    q2, k2 = pe.extend_qk(q, k, (3, 5), scale=0.5)
    assert q2.shape == k2.shape == (2, 2, 16, 16)            # 8 + (3 + 5) channels, already a multiple of 8
    assert torch.equal(q2[..., :8], q) and torch.equal(k2[..., :8], k)
    onehot = pe.key_coordinates((3, 5))
    assert onehot.shape == (16, 8) and onehot[0].sum() == 0 and torch.equal(onehot[1:].sum(-1), torch.full((15,), 2.0))
    assert onehot[1 + 7].tolist() == [0, 1, 0, 0, 0, 1, 0, 0]    # token 7 sits at (h, w) = (1, 2)
    logits = (q2 @ k2.transpose(-1, -2)) * 0.5
    torch.testing.assert_close(logits, (q @ k.transpose(-1, -2)) * 0.5 + pe.bias(q, (3, 5)), rtol=1e-5, atol=1e-5)
    q3, _ = DecomposedRelPos(dim=16, num_heads=2, grid=(2, 3)).extend_qk(q[:, :, :6], k[:, :, :6], (2, 3))
    assert q3.shape[-1] == 16                                   # 8 + 5 padded up to 16


def test_extended_path_memory_is_linear_in_tokens():
    """The tensors handed to attention grow like N·(d + H + W), the full bias like N²."""
    pe = DecomposedRelPos(dim=64, num_heads=2, grid=(8, 8))
    sizes = {}
    for side in (8, 16, 32):
        q = torch.randn(1, 2, side * side, 32)
        q2, k2 = pe.extend_qk(q, q, (side, side))
        sizes[side] = q2.numel() + k2.numel()
        assert sizes[side] == 2 * 2 * side * side * (32 + 2 * side)          # B·heads·N·(d + H + W), q and k
    assert sizes[32] / sizes[16] == 6.0                                     # the full bias: 16x per doubling
    assert pe.bias(torch.randn(1, 2, 256, 32), (16, 16)).numel() == 2 * 256 * 256
