"""alibi: CROMA 2D-ALiBi distance bias, generalised to 3D grids."""
import itertools
import math

import pytest
import torch

from visionpe.alibi import ALiBi2D, alibi_bias, alibi_slopes
from visionpe.base import attend
from visionpe.registry import build_pe


def closed_form(grid, slopes, scale=1.0, weights=None):
    """(heads, N, N) −scale·m_h·‖(p_i − p_j) ⊙ w‖₂ from an explicit loop over token pairs."""
    weights = weights or (1.0,) * len(grid)
    points = list(itertools.product(*(range(g) for g in grid)))
    n = len(points)
    out = torch.empty(len(slopes), n, n, dtype=torch.float64)
    for i, a in enumerate(points):
        for j, b in enumerate(points):
            d = math.dist([x * w for x, w in zip(a, weights)], [y * w for y, w in zip(b, weights)])
            out[:, i, j] = torch.tensor([-scale * m * d for m in slopes], dtype=torch.float64)
    return out


def test_slopes_known_values():
    assert alibi_slopes(4).tolist() == [0.25, 0.0625, 0.015625, 0.00390625]
    assert alibi_slopes(8).tolist() == [2.0 ** -h for h in range(1, 9)]
    assert alibi_slopes(1).tolist() == [2.0 ** -8]
    assert alibi_slopes(16).tolist() == [2.0 ** (-h / 2) for h in range(1, 17)]


def test_slopes_for_non_powers_of_two_follow_the_alibi_rule():
    # 6 heads: the 4-head slopes, then every other 8-head slope (2^-1, 2^-3)
    assert alibi_slopes(6).tolist() == [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
    twelve = alibi_slopes(12).tolist()
    assert twelve[:8] == alibi_slopes(8).tolist()
    assert twelve[8:] == [2.0 ** (-h / 2) for h in (1, 3, 5, 7)]
    assert alibi_slopes(3).tolist() == [2.0 ** -4, 2.0 ** -8, 2.0 ** -2]
    assert all(0 < m <= 1 for m in alibi_slopes(24).tolist())


@pytest.mark.parametrize("grid", [(3, 4), (1, 5), (4, 4)])
def test_bias_equals_minus_slope_times_distance(grid):
    pe = ALiBi2D(dim=16, num_heads=4, num_prefix_tokens=1)
    n = math.prod(grid)
    bias = pe.attention_bias(torch.randn(2, 4, 1 + n, 4, dtype=torch.float64), grid)
    assert bias.shape == (1, 4, 1 + n, 1 + n) and bias.dtype == torch.float64
    torch.testing.assert_close(bias[0, :, 1:, 1:], closed_form(grid, [0.25, 0.0625, 0.015625, 0.00390625]))
    assert bias[..., 0, :].abs().sum() == 0 and bias[..., :, 0].abs().sum() == 0


def test_symmetric_zero_diagonal_non_positive():
    bias = alibi_bias((3, 5), alibi_slopes(4))
    assert torch.equal(bias, bias.transpose(-1, -2))
    assert bias.diagonal(dim1=-2, dim2=-1).abs().sum() == 0
    assert (bias <= 0).all() and (bias < 0).sum() == 4 * 15 * 14


def test_3d_with_axis_weights_and_scale():
    grid = (2, 3, 3)
    slopes = alibi_slopes(2).tolist()
    pe = build_pe("alibi", dim=8, num_heads=2, num_axes=3, scale=0.5, axis_weights=(2.0, 1.0, 1.0))
    bias = pe.attention_bias(torch.randn(1, 2, 18, 4, dtype=torch.float64), grid)
    torch.testing.assert_close(bias[0], closed_form(grid, slopes, 0.5, (2.0, 1.0, 1.0)))
    space_only = ALiBi2D(dim=8, num_heads=2, num_axes=3, axis_weights=(0, 1, 1)).bias(grid, "cpu", torch.float64)
    assert torch.equal(space_only[0].reshape(2, 2, 9, 2, 9)[:, 0, :, 1], space_only[0, :, :9, :9])


def test_same_bias_for_every_layer_and_a_grid_independent_offset_function():
    pe = ALiBi2D(dim=8, num_heads=2, depth=3)
    q = torch.randn(1, 2, 12, 4)
    assert pe.attention_bias(q, (3, 4), 0) is pe.attention_bias(q, (3, 4), 2)
    with pytest.raises(ValueError, match="depth=3"):
        pe.attention_bias(q, (3, 4), 3)
    small = pe.attention_bias(q, (3, 4))[0].reshape(2, 3, 4, 3, 4)
    large = pe.attention_bias(torch.randn(1, 2, 42, 4), (6, 7))[0].reshape(2, 6, 7, 6, 7)
    assert torch.equal(large[:, 2:5, 1:5, 2:5, 1:5], small)
    assert list(pe.parameters()) == []


def test_cache_per_grid_device_dtype_and_safe_against_in_place_writes():
    pe = ALiBi2D(dim=8, num_heads=2)
    q32 = torch.randn(1, 2, 9, 4)
    first = pe.attention_bias(q32, (3, 3))
    assert pe.attention_bias(q32, (3, 3)) is first
    expected = first.clone()
    first.add_(5.0)
    again = pe.attention_bias(q32, (3, 3))
    assert torch.equal(again, expected)
    half = pe.attention_bias(q32.to(torch.bfloat16), (3, 3))
    assert half.dtype == torch.bfloat16
    assert torch.equal(pe.attention_bias(q32, (3, 3)), expected)


def test_attend_runs_and_penalises_far_keys():
    torch.manual_seed(0)
    grid = (4, 4)
    pe = ALiBi2D(dim=8, num_heads=2, num_prefix_tokens=1)
    q, k, v = torch.randn(3, 2, 2, 17, 4).unbind(0)
    assert attend(q, k, v, pe, grid).shape == (2, 2, 17, 4)
    # with equal logits, the patch at (0, 0) attends less to keys further along its row
    weights = torch.softmax(pe.attention_bias(q, grid)[0, 0, 1], dim=-1)
    assert weights[1] > weights[2] > weights[3] > weights[4]


def test_errors():
    for scale in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="scale"):
            ALiBi2D(dim=8, num_heads=2, scale=scale)
    for weights in ((1.0,), (1.0, -1.0), (0, 0), (1.0, float("nan")), "ab"):
        with pytest.raises(ValueError, match="axis_weights"):
            ALiBi2D(dim=8, num_heads=2, axis_weights=weights)
    for heads in (0, 2.0, True):
        with pytest.raises(ValueError, match="num_heads"):
            alibi_slopes(heads)
    with pytest.raises(ValueError, match="slopes"):
        alibi_bias((3, 3), [0.5])
    pe = ALiBi2D(dim=8, num_heads=2)
    with pytest.raises(ValueError, match="tokens"):
        pe.attention_bias(torch.randn(1, 2, 10, 4), (3, 3))
    with pytest.raises(ValueError, match="num_axes=3"):
        pe.attention_bias(torch.randn(1, 2, 9, 4), (1, 3, 3))


def test_module_bias_is_alibi_bias_bit_for_bit():
    """The module builds its table head by head (lower peak memory) with the values of alibi_bias."""
    pe = build_pe("alibi", dim=24, num_heads=6, num_axes=3, num_prefix_tokens=2, axis_weights=(2.0, 1.0, 1.0),
                  scale=0.5)
    grid = (2, 3, 4)
    ref = alibi_bias(grid, torch.tensor(pe.slopes, dtype=torch.float64), 0.5, (2.0, 1.0, 1.0))
    for dtype in (torch.float64, torch.float32):
        got = pe.bias(grid, "cpu", dtype)
        assert got.shape == (1, 6, 26, 26) and got.dtype == dtype
        assert torch.equal(got[0, :, 2:, 2:], ref.to(dtype))
        assert got[0, :, :2].abs().sum() == 0 and got[0, :, :, :2].abs().sum() == 0
