"""Every registered PE builds and runs through attention on a 2D (8x8 + CLS) and a 3D (4x6x6) grid."""
import pytest
import torch

import visionpe
from visionpe.check import check_pe

REQUIRED = ["none", "sincos", "learned", "peg", "rel-bias", "rel-decomposed", "cpb", "alibi", "rope-axial",
            "rope-mixed", "glpe"]
GRIDS = [(8, 8), (4, 6, 6)]


def test_required_names_registered():
    missing = sorted(set(REQUIRED) - set(visionpe.list_pes()))
    assert not missing, f"not registered: {missing}"


@pytest.mark.parametrize("grid", GRIDS, ids=["2d", "3d"])
@pytest.mark.parametrize("name", REQUIRED)
def test_every_pe_runs_forward_and_backward(name, grid):
    result = check_pe(name, grid, dim=96, num_heads=4, depth=2, num_prefix_tokens=1)
    assert result.ok, result.message


@pytest.mark.parametrize("name", REQUIRED)
def test_declared_hooks_match_behaviour(name):
    """Hooks a family does not declare are exact no-ops, so a model may skip them."""
    grid = (4, 4)
    torch.manual_seed(0)
    pe = visionpe.build_pe(name, dim=16, num_heads=2, num_axes=2, num_prefix_tokens=1, depth=1, grid=grid)
    x = torch.randn(2, 17, 16)
    q, k, v = torch.randn(3, 2, 2, 17, 8).unbind(0)
    if "embed" not in pe.hooks:
        assert pe.embed(x, grid) is x
    if "attention_input" not in pe.hooks:
        assert pe.attention_input(x, grid, 0) is x
    if "rotate" not in pe.hooks:
        q2, k2 = pe.rotate(q, k, grid, 0)
        assert q2 is q and k2 is k
    if "attention_bias" not in pe.hooks:
        assert pe.attention_bias(q, grid, 0) is None
    if "extend_qk" not in pe.hooks:
        assert pe.extend_qk(q, k, grid, 0) is None
    if "value_residual" not in pe.hooks:
        assert pe.value_residual(v, grid, 0) is None
    assert pe.hooks <= {"embed", "attention_input", "rotate", "attention_bias", "extend_qk", "value_residual"}


CALLS = {
    "embed": lambda pe, x, q, g: pe.embed(x, g),
    "attention_input": lambda pe, x, q, g: pe.attention_input(x, g, 0),
    "rotate": lambda pe, x, q, g: pe.rotate(q, q, g, 0),
    "attention_bias": lambda pe, x, q, g: pe.attention_bias(q, g, 0),
    "extend_qk": lambda pe, x, q, g: pe.extend_qk(q, q, g, 0),
    "value_residual": lambda pe, x, q, g: pe.value_residual(q, g, 0),
}


@pytest.mark.parametrize("name", [n for n in REQUIRED if n != "none"])
def test_wrong_number_of_grid_axes_is_a_clear_error(name):
    pe = visionpe.build_pe(name, dim=16, num_heads=2, num_axes=2, grid=(4, 4))
    x = torch.randn(1, 96, 16)
    q = torch.randn(1, 2, 96, 8)
    assert pe.hooks
    for hook in pe.hooks:
        with pytest.raises(ValueError, match="num_axes=3"):
            CALLS[hook](pe, x, q, (4, 4, 6))


def test_build_pe_names_a_keyword_the_family_does_not_take():
    with pytest.raises(ValueError, match=r"PE 'sincos' takes no argument 'dims'; it takes: dim, num_heads"):
        visionpe.build_pe("sincos", dim=16, dims=(8, 8))
