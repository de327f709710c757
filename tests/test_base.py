"""The shared interface: grids, positions, the dim split, the table cache, the registry and attend."""
import math

import pytest
import torch

import visionpe
from visionpe.base import PositionalEmbedding, TableCache, attend, check_grid, grid_positions, split_dim


def test_check_grid_accepts_and_normalises():
    assert check_grid([4, 5]) == (4, 5)
    assert check_grid((2, 3, 4), num_axes=3) == (2, 3, 4)


@pytest.mark.parametrize("grid, match", [((0, 4), ">= 1"), ((2.5, 4), "integers"), ((1, 2, 3, 4), "1, 2 or 3"),
                                         ("ab", "string"), (["a", 2], "sequence"), (5, "sequence")])
def test_check_grid_rejects(grid, match):
    with pytest.raises(ValueError, match=match):
        check_grid(grid)


def test_check_grid_axis_mismatch_names_fix():
    with pytest.raises(ValueError, match="num_axes=3"):
        check_grid((4, 6, 6), num_axes=2)


def test_grid_positions_row_major():
    pos = grid_positions((2, 3))
    assert pos.shape == (6, 2) and pos.dtype == torch.float64
    assert pos.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    pos3 = grid_positions((2, 2, 3))
    # token n = (t * H + h) * W + w
    t, h, w = pos3[7].tolist()
    assert (t * 2 + h) * 3 + w == 7


@pytest.mark.parametrize("total, axes, expected", [(128, 3, (44, 42, 42)), (64, 2, (32, 32)), (64, 3, (24, 20, 20)),
                                                   (16, 2, (8, 8)), (6, 3, (2, 2, 2))])
def test_split_dim(total, axes, expected):
    assert split_dim(total, axes) == expected
    assert sum(split_dim(total, axes)) == total


@pytest.mark.parametrize("total, axes", [(63, 2), (4, 3)])
def test_split_dim_rejects(total, axes):
    with pytest.raises(ValueError, match="even"):
        split_dim(total, axes)


def test_table_cache_hits_and_heals_after_inplace_edit():
    calls = []

    def build():
        calls.append(1)
        return torch.arange(4.0), torch.ones(3)

    cache = TableCache()
    a, b = cache.get(("k",), build)
    a2, b2 = cache.get(("k",), build)
    assert len(calls) == 1 and a2 is a
    a2.mul_(100)  # a caller corrupts its copy ...
    a3, _ = cache.get(("k",), build)  # ... and the next caller still gets the right table
    assert len(calls) == 2
    assert torch.equal(a3, torch.arange(4.0))


def test_table_cache_single_tensor_and_eviction():
    cache = TableCache(max_entries=2)
    for i in range(3):
        assert torch.equal(cache.get((i,), lambda i=i: torch.full((2,), float(i))), torch.full((2,), float(i)))
    assert len(cache) == 2


def test_table_cache_usable_under_inference_mode():
    cache = TableCache()
    with torch.inference_mode():
        t = cache.get(("k",), lambda: torch.ones(3))
        t2 = cache.get(("k",), lambda: torch.zeros(3))
    assert torch.equal(t2, torch.ones(3)) and t2 is t
    assert not t.is_inference()


@pytest.mark.parametrize("kwargs, match", [(dict(dim=10, num_heads=3), "divisible"), (dict(dim=0), "dim"),
                                           (dict(dim=8, depth=0), "depth"), (dict(dim=8, num_axes=4), "axes"),
                                           (dict(dim=8, num_prefix_tokens=-1), "num_prefix_tokens")])
def test_base_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PositionalEmbedding(**kwargs)


def test_base_checks():
    pe = PositionalEmbedding(dim=8, num_heads=2, num_axes=2, num_prefix_tokens=1, depth=2)
    with pytest.raises(ValueError, match="needs 17"):
        pe.check_tokens(torch.zeros(1, 16, 8), (4, 4))
    with pytest.raises(ValueError, match="depth=2"):
        pe.check_layer(2)
    with pytest.raises(ValueError, match="grid="):
        pe.require_train_grid()
    bias = torch.ones(2, 4, 4)
    padded = pe.pad_bias(bias)
    assert padded.shape == (2, 5, 5) and padded[:, 0].abs().sum() == 0 and padded[:, :, 0].abs().sum() == 0


def test_attend_with_identity_pe_is_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 5, 4).unbind(0)
    pe = PositionalEmbedding(dim=8, num_heads=2)
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), -1) @ v
    torch.testing.assert_close(attend(q, k, v, pe, (2, 2)), ref)


def test_registry_unknown_name_lists_known():
    with pytest.raises(ValueError, match="known PEs: .*none"):
        visionpe.build_pe("no-such-pe", dim=8)


def test_registry_rejects_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        visionpe.register_pe("none")(type("Other", (PositionalEmbedding,), {}))


def test_none_is_identity():
    pe = visionpe.build_pe("none", dim=8, num_heads=2)
    x = torch.randn(2, 5, 8)
    assert pe.embed(x, (2, 2)) is x
    assert pe.attention_bias(x, (2, 2)) is None
