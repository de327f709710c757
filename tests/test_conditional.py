"""Tests of visionpe.conditional: PEG (CPVT) and GLPE (ResFormer)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from visionpe.base import attend, split_dim
from visionpe.conditional import GLPE, PEG, normalized_positions, normalized_sincos
from visionpe.registry import build_pe

F64 = torch.float64


def tokens_of(field: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """(B, C, *grid) field + (B, P, C) prefix -> (B, P + N, C) tokens, row-major."""
    return torch.cat([prefix, field.flatten(2).transpose(1, 2)], dim=1)


def field_of(tokens: torch.Tensor, prefix: int, grid: tuple[int, ...]) -> torch.Tensor:
    return tokens[:, prefix:].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


# --------------------------------------------------------------------------------------------- PEG
@pytest.mark.parametrize("grid,shift_axis", [((9, 9), 2), ((9, 9), 3), ((5, 7, 7), 2), ((5, 7, 7), 4)])
def test_peg_translation_equivariant_inside(grid, shift_axis):
    torch.manual_seed(0)
    dim, prefix = 4, 1
    pe = PEG(dim, num_axes=len(grid), num_prefix_tokens=prefix).double()
    with torch.no_grad():
        pe.proj.bias.normal_()
    pattern = torch.randn(1, dim, *(3,) * len(grid), dtype=F64)
    first = torch.zeros(1, dim, *grid, dtype=F64)
    second = torch.zeros_like(first)
    inner = tuple(slice(1, 4) for _ in grid)  # the pattern sits one patch away from every border
    first[(slice(None), slice(None)) + inner] = pattern
    second[(slice(None), slice(None)) + inner] = 0
    shifted = list(inner)
    shifted[shift_axis - 2] = slice(2, 5)
    second[(slice(None), slice(None)) + tuple(shifted)] = pattern
    cls = torch.randn(1, prefix, dim, dtype=F64)
    out1 = field_of(pe.embed(tokens_of(first, cls), grid), prefix, grid)
    out2 = field_of(pe.embed(tokens_of(second, cls), grid), prefix, grid)
    torch.testing.assert_close(out2.narrow(shift_axis, 1, grid[shift_axis - 2] - 1),
                               out1.narrow(shift_axis, 0, grid[shift_axis - 2] - 1), rtol=0, atol=1e-12)
    assert not torch.allclose(out1, out2)


@pytest.mark.parametrize("grid", [(6, 6), (4, 5, 5)])
def test_peg_zero_padding_breaks_equivariance_at_borders(grid):
    torch.manual_seed(1)
    pe = PEG(3, num_axes=len(grid)).double()
    field = torch.ones(1, 3, *grid, dtype=F64)  # a constant image: any translation-equivariant map stays constant
    out = field_of(pe.embed(tokens_of(field, torch.zeros(1, 0, 3, dtype=F64)), grid), 0, grid)
    interior = out[(slice(None), slice(None)) + tuple(slice(1, g - 1) for g in grid)].flatten(2)
    assert torch.allclose(interior, interior[..., :1].expand_as(interior))
    corner = out[(slice(None), slice(None)) + (0,) * len(grid)]
    centre = interior[..., 0]
    assert (corner - centre).abs().min() > 1e-3  # the border sees the zero padding


def test_peg_token_layout_with_shift_kernel():
    grid, dim, prefix = (3, 4), 2, 2
    pe = PEG(dim, num_prefix_tokens=prefix)
    with torch.no_grad():
        pe.proj.weight.zero_()
        pe.proj.weight[:, 0, 1, 0] = 1.0  # output(h, w) += X(h, w − 1)
        pe.proj.bias.zero_()
    x = torch.randn(1, prefix + 12, dim)
    out = pe.embed(x, grid)
    assert torch.equal(out[:, :prefix], x[:, :prefix])
    for n in range(12):
        h, w = divmod(n, 4)
        left = x[0, prefix + n - 1] if w > 0 else torch.zeros(dim)
        torch.testing.assert_close(out[0, prefix + n], x[0, prefix + n] + left)


def test_peg_3d_token_layout_with_shift_kernel():
    grid, dim = (3, 2, 2), 2
    pe = PEG(dim, num_axes=3, num_prefix_tokens=1)
    with torch.no_grad():
        pe.proj.weight.zero_()
        pe.proj.weight[:, 0, 0, 1, 1] = 1.0  # output(t, h, w) += X(t − 1, h, w)
        pe.proj.bias.zero_()
    x = torch.randn(1, 1 + 12, dim)
    out = pe.embed(x, grid)
    for n in range(12):
        earlier = x[0, 1 + n - 4] if n >= 4 else torch.zeros(dim)
        torch.testing.assert_close(out[0, 1 + n], x[0, 1 + n] + earlier)


@pytest.mark.parametrize("num_axes,kernel", [(2, 3), (3, 3), (2, 5)])
def test_peg_init(num_axes, kernel):
    torch.manual_seed(2)
    pe = build_pe("peg", dim=256, num_axes=num_axes, kernel_size=kernel)
    assert isinstance(pe, PEG) and pe.hooks == {"embed"}
    assert pe.proj.groups == 256 and pe.proj.padding == (kernel // 2,) * num_axes
    std = math.sqrt(2.0 / kernel**num_axes)
    assert abs(pe.proj.weight.std().item() / std - 1) < 0.05
    assert torch.equal(pe.proj.bias, torch.zeros(256))
    assert pe.no_weight_decay() == {n for n, _ in pe.named_parameters()}


def test_peg_any_grid_and_errors():
    pe = PEG(4, num_prefix_tokens=1, kernel_size=5)
    assert pe.embed(torch.randn(2, 1 + 2 * 7, 4), (2, 7)).shape == (2, 15, 4)
    for bad in (2, 0, -3, 3.0, True):
        with pytest.raises(ValueError, match="kernel_size must be an odd integer"):
            PEG(4, kernel_size=bad)
    with pytest.raises(ValueError, match="needs 10"):
        pe.embed(torch.randn(1, 9, 4), (3, 3))
    with pytest.raises(ValueError, match="2-axis grids"):
        pe.embed(torch.randn(1, 10, 4), (1, 3, 3))


# -------------------------------------------------------------------------------------------- GLPE
@pytest.mark.parametrize("grid", [(1, 1), (3, 7), (16, 16), (2, 3, 5), (1, 8, 1)])
def test_normalized_positions_in_open_range(grid):
    pos = normalized_positions(grid)
    assert pos.shape == (math.prod(grid), len(grid))
    assert pos.min() > 0 and pos.max() <= 2 * math.pi
    for axis, g in enumerate(grid):
        torch.testing.assert_close(pos[:, axis].max(), torch.tensor(2 * math.pi * g / (g + 1e-6), dtype=F64))
        torch.testing.assert_close(pos[:, axis].min(), torch.tensor(2 * math.pi / (g + 1e-6), dtype=F64))


@pytest.mark.parametrize("grid", [(4, 6), (2, 3, 5)])
def test_normalized_sincos_positions_recoverable(grid):
    dim = 24
    table = normalized_sincos(grid, dim, dtype=F64)
    pos = normalized_positions(grid)
    start = 0
    for axis, channels in enumerate(split_dim(dim, len(grid))):
        # channel pair (0, 1) of each axis has frequency 1: atan2(sin, cos) gives the position back
        angle = torch.atan2(table[:, start], table[:, start + 1]) % (2 * math.pi)
        angle = torch.where(angle < 1e-9, angle + 2 * math.pi, angle)
        torch.testing.assert_close(angle, pos[:, axis], rtol=0, atol=1e-9)
        start += channels


def resformer_field(side: int, dim: int) -> torch.Tensor:
    """The official square-grid GlobalPosEmbed field, written out with loops: (side², dim)."""
    half = dim // 2
    rows = []
    for n in range(side * side):
        y, x = divmod(n, side)
        row = []
        for coord in (y, x):  # pos = concat(pos_y, pos_x)
            p = (coord + 1) / (side + 1e-6) * 2 * math.pi
            for i in range(half):
                angle = p / 10000 ** (2 * (i // 2) / half)
                row.append(math.sin(angle) if i % 2 == 0 else math.cos(angle))
        rows.append(row)
    return torch.tensor(rows, dtype=F64)


def test_normalized_sincos_matches_resformer_square_and_non_square():
    torch.testing.assert_close(normalized_sincos((5, 5), 16, dtype=F64), resformer_field(5, 16), rtol=0, atol=1e-12)
    # non-square: each axis is normalised by its own length
    table = normalized_sincos((3, 6), 16, dtype=F64).reshape(3, 6, 16)
    torch.testing.assert_close(table[:, :, :8], resformer_field(3, 16).reshape(3, 3, 16)[:, :1, :8].expand(3, 6, 8))
    torch.testing.assert_close(table[:, :, 8:], resformer_field(6, 16).reshape(6, 6, 16)[:1, :, 8:].expand(3, 6, 8))


def test_normalized_sincos_3d_axis_order():
    table = normalized_sincos((2, 3, 4), 36, dtype=F64).reshape(2, 3, 4, 36)
    dt, dh, dw = split_dim(36, 3)
    assert torch.equal(table[:, :1, :1, :dt].expand(2, 3, 4, dt), table[..., :dt])  # t first
    assert torch.equal(table[:1, :, :1, dt:dt + dh].expand(2, 3, 4, dh), table[..., dt:dt + dh])
    assert torch.equal(table[:1, :1, :, dt + dh:].expand(2, 3, 4, dw), table[..., dt + dh:])


@pytest.mark.parametrize("grid", [(4, 5), (2, 3, 3)])
def test_glpe_global_embed(grid):
    torch.manual_seed(3)
    dim, prefix = 16, 1
    pe = build_pe("glpe", dim=dim, num_heads=2, num_axes=len(grid), num_prefix_tokens=prefix, grid=(7,) * len(grid))
    assert isinstance(pe, GLPE) and pe.hooks == {"embed", "value_residual"}
    x = torch.randn(2, prefix + math.prod(grid), dim)
    out = pe.embed(x, grid)
    assert torch.equal(out[:, :prefix], x[:, :prefix])
    field = normalized_sincos(grid, dim).T.reshape(1, dim, *grid)
    conv = F.conv2d if len(grid) == 2 else F.conv3d
    expected = conv(field, pe.global_conv.weight, pe.global_conv.bias, padding=1, groups=dim).flatten(2)[0].T
    torch.testing.assert_close(out[:, prefix:] - x[:, prefix:], expected.expand(2, -1, -1).detach())
    out.sum().backward()
    assert pe.global_conv.weight.grad is not None


@pytest.mark.parametrize("grid", [(3, 4), (2, 2, 3)])
def test_glpe_local_zero_at_init_then_conv_of_v(grid):
    torch.manual_seed(4)
    dim, heads, prefix, depth = 12, 3, 2, 2
    pe = GLPE(dim, heads, len(grid), prefix, depth)
    d, tokens = dim // heads, prefix + math.prod(grid)
    v = torch.randn(2, heads, tokens, d)
    for layer in range(depth):
        assert torch.equal(pe.value_residual(v, grid, layer), torch.zeros_like(v))
    with torch.no_grad():
        pe.local_convs[1].weight.normal_()
        pe.local_convs[1].bias.normal_()
    out = pe.value_residual(v, grid, 1)
    assert out.shape == v.shape and out.abs().sum() > 0
    assert torch.equal(out[:, :, :prefix], torch.zeros(2, heads, prefix, d))
    assert torch.equal(pe.value_residual(v, grid, 0), torch.zeros_like(v))  # layers do not share the conv
    conv = F.conv2d if len(grid) == 2 else F.conv3d
    for b in range(2):
        for h in range(heads):  # one conv shared by every head
            field = v[b, h, prefix:].T.reshape(1, d, *grid)
            ref = conv(field, pe.local_convs[1].weight, pe.local_convs[1].bias, padding=1, groups=d)
            torch.testing.assert_close(out[b, h, prefix:], ref.flatten(2)[0].T.detach())


def test_glpe_inside_attend():
    torch.manual_seed(5)
    pe = GLPE(8, 2, 2, 1, 1)
    with torch.no_grad():
        pe.local_convs[0].weight.normal_()
    q, k, v = torch.randn(3, 1, 2, 1 + 6, 4).unbind(0)
    out = attend(q, k, v, pe, (2, 3))
    plain = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, plain + pe.value_residual(v, (2, 3)))
    assert pe.no_weight_decay() == {n for n, _ in pe.named_parameters()}


def test_glpe_errors():
    with pytest.raises(ValueError, match="cannot split 4 channels into 3"):
        GLPE(4, num_axes=3)
    with pytest.raises(ValueError, match="base must be"):
        GLPE(8, base=0)
    with pytest.raises(ValueError, match="cannot split 7 channels"):
        normalized_sincos((2, 2), 7)
    pe = GLPE(8, num_heads=2, num_prefix_tokens=1, depth=2)
    with pytest.raises(ValueError, match=r"v must be \(B, heads, P \+ N, 4\)"):
        pe.value_residual(torch.randn(1, 1, 10, 8), (3, 3))
    with pytest.raises(ValueError, match="needs 10"):
        pe.value_residual(torch.randn(1, 2, 9, 4), (3, 3))
    with pytest.raises(ValueError, match="layer=2 is out of range"):
        pe.value_residual(torch.randn(1, 2, 10, 4), (3, 3), 2)
    with pytest.raises(ValueError, match="needs 10"):
        pe.embed(torch.randn(1, 11, 8), (3, 3))
