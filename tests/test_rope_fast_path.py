"""The fast RoPE apply path (complex multiply, prefix identity rows) against the real-valued formula,
and ``torch.compile`` of the apply path without graph breaks."""
import pytest
import torch

from visionpe.rope import (AxialRoPE, apply_rope, compact_table, grid_positions, prefix_identity,
                           rope_compact_cos_sin, rope_cos_sin, rotate_compact)
from visionpe.rope_mixed import MixedRoPE


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _reference(x, cos, sin, layout):
    """``x·cos + rot90(x)·sin`` in float64 with (N, D) tables, written out pair by pair."""
    x, cos, sin = x.double(), cos.double(), sin.double()
    if layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        rot = torch.stack([-b, a], dim=-1).flatten(-2)
    else:
        a, b = x.chunk(2, dim=-1)
        rot = torch.cat([-b, a], dim=-1)
    return x * cos + rot * sin


@pytest.mark.parametrize("layout", ["interleaved", "half"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6), (torch.bfloat16, 2e-2)])
def test_fast_path_matches_real_formula(layout, dtype, tol):
    cos, sin = rope_cos_sin(grid_positions((3, 5)), (8, 8), 10.0, layout=layout)
    x = torch.randn(2, 3, 15, 16, generator=_gen(1)).to(dtype)
    out = apply_rope(x, cos, sin, layout)
    assert out.dtype == dtype and out.shape == x.shape
    ref = _reference(x, cos, sin, layout)
    assert (out.double() - ref).abs().max() <= tol * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_strided_and_odd_offset_inputs(layout):
    """q/k as views of a fused qkv projection, and a slice at an odd storage offset (no complex view)."""
    cos, sin = rope_cos_sin(grid_positions((4, 4)), (8, 8), 100.0, layout=layout)
    qkv = torch.randn(2, 16, 3, 4, 16, generator=_gen(2)).permute(2, 0, 3, 1, 4)
    for x in (qkv[0], qkv[1], torch.randn(2, 4, 16, 17, generator=_gen(3))[..., 1:]):
        assert not x.is_contiguous()
        torch.testing.assert_close(apply_rope(x, cos, sin, layout), _reference(x, cos, sin, layout).float())


def test_compact_tables_are_the_expanded_ones():
    pos = grid_positions((2, 3, 4))
    ccos, csin = rope_compact_cos_sin(pos, (4, 6, 6), (10.0, 100.0, 100.0))
    assert ccos.shape == (24, 8) and ccos.dtype == torch.float64
    for layout in ("interleaved", "half"):
        cos, sin = rope_cos_sin(pos, (4, 6, 6), (10.0, 100.0, 100.0), layout=layout)
        assert torch.equal(compact_table(cos, layout), ccos.float())
        assert torch.equal(compact_table(sin, layout), csin.float())


@pytest.mark.parametrize("cls,layout", [(AxialRoPE, "interleaved"), (AxialRoPE, "half"),
                                        (MixedRoPE, "interleaved"), (MixedRoPE, "half")])
def test_prefix_tokens_pass_bit_identical(cls, layout):
    torch.manual_seed(0)
    pe = cls(dim=32, num_heads=2, num_axes=2, num_prefix_tokens=3, depth=1, layout=layout)
    q = torch.randn(2, 2, 3 + 12, 16, generator=_gen(4))
    k = torch.randn(2, 2, 3 + 12, 16, generator=_gen(5))
    rq, rk = pe.rotate(q, k, (3, 4))
    assert torch.equal(rq[..., :3, :], q[..., :3, :]) and torch.equal(rk[..., :3, :], k[..., :3, :])
    cos, sin = pe.cos_sin((3, 4))
    torch.testing.assert_close(rq[..., 3:, :], _reference(q[..., 3:, :], cos, sin, layout).float())


def test_prefix_identity_rows():
    cos, sin = prefix_identity(torch.full((2, 4, 3), 0.5), torch.full((2, 4, 3), 0.25), 2)
    assert cos.shape == (2, 6, 3)
    assert torch.equal(cos[:, :2], torch.ones(2, 2, 3)) and torch.equal(sin[:, :2], torch.zeros(2, 2, 3))
    same = torch.ones(4, 3)
    assert prefix_identity(same, same, 0)[0] is same


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_gradients_of_the_fast_path(layout):
    ccos, csin = rope_compact_cos_sin(grid_positions((2, 3)), (4, 4), 10.0)
    x = torch.randn(1, 2, 6, 8, dtype=torch.float64, generator=_gen(6), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: rotate_compact(t, ccos, csin, layout), (x,))
    # the in-place path taken without autograd gives the same numbers as the differentiable one
    assert torch.equal(rotate_compact(x, ccos, csin, layout).detach(), rotate_compact(x.detach(), ccos, csin, layout))
    angles = torch.randn(2, 6, 4, dtype=torch.float64, generator=_gen(7), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: rotate_compact(x.detach(), a.cos(), a.sin(), layout), (angles,))


@pytest.mark.parametrize("cls", [AxialRoPE, MixedRoPE])
@pytest.mark.parametrize("layout", ["interleaved", "half"])
@pytest.mark.parametrize("warm", [False, True])
def test_torch_compile_without_graph_breaks(cls, layout, warm):
    """The apply path traces as one graph (fullgraph) through forward and backward, with the table
    cache cold or warm, and under the compiler it takes the real-valued formula, which must agree with
    the eager complex path."""
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    pe = cls(dim=32, num_heads=2, num_axes=2, num_prefix_tokens=1, layout=layout)
    q = torch.randn(2, 2, 1 + 12, 16, generator=_gen(8), requires_grad=True)
    k = torch.randn(2, 2, 1 + 12, 16, generator=_gen(9))
    if warm:
        pe.rotate(q, k, (3, 4))

    def step(q, k):
        rq, rk = pe.rotate(q, k, (3, 4))
        return (rq * rk).sum()

    explanation = torch._dynamo.explain(step)(q, k)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    loss = compiled(q, k)
    (grad,) = torch.autograd.grad(loss, q)
    eager_loss = step(q, k)
    (eager_grad,) = torch.autograd.grad(eager_loss, q)
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grad, eager_grad)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_chunks_are_the_one_shot_rotation(layout, dtype, monkeypatch):
    """Without autograd a bf16/fp16 x is rotated a block at a time (CPU): the same bits as converting
    all of x to float32 at once, for blocks of batches, heads and tokens, strided q/k, per-head tables
    and ragged last blocks."""
    import visionpe.rope as rope

    ccos, csin = rope_compact_cos_sin(grid_positions((5, 7)), (8, 8), 100.0)
    per_head = (torch.rand(3, 35, 8, generator=_gen(6)) * 6).float()
    qkv = torch.randn(2, 35, 3, 3, 16, generator=_gen(7)).to(dtype).permute(2, 0, 3, 1, 4)
    # x is (2, 3, 35, 16): blocks of one batch, of two heads (then one), of 4 tokens (then 3)
    for chunk in (3 * 35 * 16 + 7, 2 * 35 * 16 + 5, 16 * 4):
        monkeypatch.setattr(rope, "CHUNK_ELEMENTS", chunk)
        # (N, C) and per-head (heads, N, C) tables, and both with leading broadcast axes (1, ..., N, C)
        for cos, sin in ((ccos.float(), csin.float()), (per_head.cos(), per_head.sin()),
                         (ccos.float()[None, None], csin.float()[None, None]),
                         (per_head.cos()[None], per_head.sin()[None])):
            for x in (qkv[0], qkv[1].contiguous()):
                with torch.no_grad():
                    chunked = rotate_compact(x, cos, sin, layout)
                one_shot = rope._rotate_eager(x.float(), cos, sin, layout, grad=False).to(dtype)
                assert chunked.dtype == dtype and torch.equal(chunked, one_shot), (chunk, x.is_contiguous())
    # with autograd the one-shot path runs (and gives the same numbers)
    x = qkv[0].detach().clone().requires_grad_()
    torch.testing.assert_close(rotate_compact(x, ccos.float(), csin.float(), layout).detach(),
                               rope._rotate_eager(x.detach().float(), ccos.float(), csin.float(), layout, False).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_half_layout_blocks_are_the_one_shot_rotation(dtype, monkeypatch):
    """Without autograd the half layout is written a block at a time on the CPU, in place in the output:
    the same bits as one pass over all of x."""
    import visionpe.rope as rope

    ccos, csin = rope_compact_cos_sin(grid_positions((5, 7)), (8, 8), 100.0)
    qkv = torch.randn(2, 35, 3, 3, 16, generator=_gen(8), dtype=dtype).permute(2, 0, 3, 1, 4)
    compute = dtype
    for chunk in (2 * 35 * 16 + 5, 16 * 4):
        monkeypatch.setattr(rope, "CHUNK_ELEMENTS", chunk)
        for x in (qkv[0], qkv[1].contiguous()):
            with torch.no_grad():
                blocked = rotate_compact(x, ccos.to(compute), csin.to(compute), "half")
            one_shot = rope._rotate_eager(x, ccos.to(compute), csin.to(compute), "half", grad=False)
            assert blocked.dtype == dtype and torch.equal(blocked, one_shot), chunk
