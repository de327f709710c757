"""Axial RoPE: equivalence with diffusers/timm, the relative-position property, precision, errors, caching."""
import math

import pytest
import torch

import visionpe.base
import visionpe.scaling
from visionpe.base import attend
from visionpe.registry import build_pe
from visionpe.rope import AxialRoPE, apply_rope, grid_positions, rope_cos_sin, rope_frequencies
from visionpe.scaling import PI, RIFLEx, YaRN

ATOL = 1e-5


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- frequencies, exports
def test_frequencies_and_reexports():
    theta = rope_frequencies(8, 100.0)
    assert theta.dtype == torch.float64
    assert torch.equal(theta, torch.tensor([1.0, 100 ** -0.25, 100 ** -0.5, 100 ** -0.75], dtype=torch.float64))
    assert rope_frequencies(0).shape == (0,)
    assert visionpe.rope.rope_frequencies is visionpe.scaling.rope_frequencies
    assert visionpe.rope.grid_positions is visionpe.base.grid_positions
    assert visionpe.rope.find_intrinsic_component is visionpe.scaling.find_intrinsic_component


def test_table_layouts_by_hand():
    pos = torch.tensor([[2.0, 3.0]])
    cos, sin = rope_cos_sin(pos, dims=(4, 2), base=100.0)
    angles = torch.tensor([2.0, 2.0 * 0.1, 3.0], dtype=torch.float64)         # θ = 1, 100^-1/2 | 1
    assert cos.dtype == sin.dtype == torch.float32 and cos.shape == (1, 6)
    torch.testing.assert_close(cos[0], angles.cos().repeat_interleave(2).float())
    torch.testing.assert_close(sin[0], angles.sin().repeat_interleave(2).float())
    cos_h, sin_h = rope_cos_sin(pos, dims=(4, 2), base=100.0, layout="half")
    torch.testing.assert_close(cos_h[0], torch.cat([angles.cos(), angles.cos()]).float())
    torch.testing.assert_close(sin_h[0], torch.cat([angles.sin(), angles.sin()]).float())


def test_zero_dim_axis_and_per_axis_base():
    pos = grid_positions((3, 4))
    cos, sin = rope_cos_sin(pos, dims=(0, 8), base=(7.0, 50.0))
    ref_cos, ref_sin = rope_cos_sin(pos[:, 1:], dims=(8,), base=50.0)
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)


# ------------------------------------------------------------------------------- diffusers parity
def _interleaved_reference(x, cos, sin):
    from diffusers.models.embeddings import apply_rotary_emb
    return apply_rotary_emb(x, (cos, sin), use_real=True, use_real_unbind_dim=-1, sequence_dim=2)


def test_hunyuanvideo_parity():
    from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoRotaryPosEmbed

    rope = HunyuanVideoRotaryPosEmbed(patch_size=2, patch_size_t=1, rope_dim=[16, 56, 56], theta=256.0)
    ref_cos, ref_sin = rope(torch.zeros(1, 4, 3, 8, 10))                      # latent grid (3, 4, 5)
    cos, sin = rope_cos_sin(grid_positions((3, 4, 5)), dims=(16, 56, 56), base=256.0)
    torch.testing.assert_close(cos, ref_cos, atol=ATOL, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=ATOL, rtol=0)
    x = torch.randn(2, 3, 60, 128, generator=_gen())
    torch.testing.assert_close(apply_rope(x, cos, sin), _interleaved_reference(x, ref_cos, ref_sin),
                               atol=ATOL, rtol=0)


def test_wan_parity_through_its_attention_processor(monkeypatch):
    from diffusers.models.transformers import transformer_wan

    captured = []

    def record(query, key, value, **kwargs):
        captured.append((query, key))
        return torch.zeros_like(query)

    monkeypatch.setattr(transformer_wan, "dispatch_attention_fn", record)
    torch.manual_seed(0)
    attn = transformer_wan.WanAttention(dim=64, heads=2, dim_head=128)
    rope = transformer_wan.WanRotaryPosEmbed(attention_head_dim=128, patch_size=(1, 2, 2), max_seq_len=1024)
    ref_cos, ref_sin = rope(torch.zeros(1, 4, 3, 8, 6))                       # latent grid (3, 4, 3)
    hidden = torch.randn(1, 36, 64, generator=_gen(1))
    processor = transformer_wan.WanAttnProcessor()
    with torch.no_grad():
        processor(attn, hidden, rotary_emb=None)
        processor(attn, hidden, rotary_emb=(ref_cos, ref_sin))
    (q_plain, k_plain), (q_rot, k_rot) = captured                             # (B, N, heads, d)
    cos, sin = rope_cos_sin(grid_positions((3, 4, 3)), dims=(44, 42, 42), base=10000.0)
    torch.testing.assert_close(cos, ref_cos[0, :, 0].float(), atol=ATOL, rtol=0)
    for plain, rotated in ((q_plain, q_rot), (k_plain, k_rot)):
        ours = apply_rope(plain.transpose(1, 2), cos, sin).transpose(1, 2)
        torch.testing.assert_close(ours, rotated, atol=ATOL, rtol=0)


@pytest.mark.parametrize("grid_type", ["slice", "linspace"])
def test_cogvideox_parity(grid_type):
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    t, h, w = 3, 4, 6
    if grid_type == "slice":
        ref_cos, ref_sin = get_3d_rotary_pos_embed(64, None, (h, w), t, grid_type="slice", max_size=(h, w))
        pos = grid_positions((t, h, w))
    else:                                   # a crop into a larger base grid: fractional, offset positions
        crops = ((1, 2), (6, 9))
        ref_cos, ref_sin = get_3d_rotary_pos_embed(64, crops, (h, w), t, grid_type="linspace")
        axes = [torch.arange(t, dtype=torch.float64),
                torch.linspace(crops[0][0], crops[1][0] * (h - 1) / h, h, dtype=torch.float64),
                torch.linspace(crops[0][1], crops[1][1] * (w - 1) / w, w, dtype=torch.float64)]
        pos = torch.stack([a.reshape(-1) for a in torch.meshgrid(*axes, indexing="ij")], dim=-1)
        assert pos[:, 1].frac().abs().max() > 0.1                             # the positions are fractional
    cos, sin = rope_cos_sin(pos, dims=(16, 24, 24), base=10000.0)
    torch.testing.assert_close(cos, ref_cos, atol=ATOL, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=ATOL, rtol=0)
    x = torch.randn(1, 2, t * h * w, 64, generator=_gen(2))
    torch.testing.assert_close(apply_rope(x, cos, sin), _interleaved_reference(x, ref_cos, ref_sin),
                               atol=ATOL, rtol=0)


def test_half_layout_1d_parity():
    from diffusers.models.embeddings import apply_rotary_emb, get_1d_rotary_pos_embed

    pos = torch.tensor([0.0, 0.5, 1.75, 3.0, 7.25])
    ref_cos, ref_sin = get_1d_rotary_pos_embed(12, pos, theta=500.0, use_real=True, repeat_interleave_real=False,
                                               freqs_dtype=torch.float64)
    cos, sin = rope_cos_sin(pos[:, None], dims=(12,), base=500.0, layout="half")
    torch.testing.assert_close(cos, ref_cos, atol=ATOL, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=ATOL, rtol=0)
    x = torch.randn(2, 3, 5, 12, generator=_gen(3))
    ref = apply_rotary_emb(x, (ref_cos, ref_sin), use_real=True, use_real_unbind_dim=-2)
    torch.testing.assert_close(apply_rope(x, cos, sin, layout="half"), ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("half", [False, True])
def test_timm_2d_parity(half):
    from timm.layers.pos_embed_sincos import apply_rot_embed, build_rotary_pos_embed

    # timm: dim // 4 bands per axis of the 'ij' grid, [h-block | w-block], band j = T^(-j / (dim // 4))
    ref_sin, ref_cos = build_rotary_pos_embed([3, 5], dim=32, temperature=100.0, in_pixels=False, rotate_half=half)
    layout = "half" if half else "interleaved"
    cos, sin = rope_cos_sin(grid_positions((3, 5)), dims=(16, 16), base=100.0, layout=layout)
    torch.testing.assert_close(cos, ref_cos, atol=ATOL, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=ATOL, rtol=0)
    x = torch.randn(2, 4, 15, 32, generator=_gen(4))
    torch.testing.assert_close(apply_rope(x, cos, sin, layout), apply_rot_embed(x, ref_sin, ref_cos, half=half),
                               atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------- properties
def _scores(q, k, pos, dims, base, layout):
    cos, sin = rope_cos_sin(pos, dims, base, layout=layout)
    return apply_rope(q, cos, sin, layout) @ apply_rope(k, cos, sin, layout).transpose(-1, -2)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
@pytest.mark.parametrize("dims,shift", [((8, 8), (3.0, -5.0)), ((8, 8), (0.37, 2.5)),
                                        ((4, 6, 6), (7.0, 1.0, -2.0)), ((4, 6, 6), (-1.25, 0.5, 3.75))])
def test_scores_depend_only_on_offsets(dims, shift, layout):
    g = _gen(5)
    n = 10
    pos = torch.rand(n, len(dims), generator=g, dtype=torch.float64) * 20
    q = torch.randn(2, n, sum(dims), generator=g)
    k = torch.randn(2, n, sum(dims), generator=g)
    before = _scores(q, k, pos, dims, 10.0, layout)
    after = _scores(q, k, pos + torch.tensor(shift, dtype=torch.float64), dims, 10.0, layout)
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)
    # and they do depend on the offsets: moving one token changes its scores
    moved = pos.clone()
    moved[0] += 1.0
    assert (_scores(q, k, moved, dims, 10.0, layout) - before).abs().max() > 1e-2


def test_identity_at_zero_and_norms_preserved():
    x = torch.randn(3, 6, 20, generator=_gen(6))
    cos, sin = rope_cos_sin(torch.zeros(6, 3), dims=(4, 8, 8))
    assert torch.equal(apply_rope(x, cos, sin), x)
    y = torch.randn(3, 6, 20, generator=_gen(7))
    for layout in ("interleaved", "half"):
        cos, sin = rope_cos_sin(grid_positions((2, 3)) * 3.3, dims=(8, 12), base=50.0, layout=layout)
        out = apply_rope(y, cos, sin, layout)
        assert not torch.allclose(out, y)
        torch.testing.assert_close(out.norm(dim=-1), y.norm(dim=-1), atol=ATOL, rtol=0)


def test_bf16_within_rounding_and_fp64_kept():
    x = torch.randn(2, 4, 48, 16, generator=_gen(8))
    cos, sin = rope_cos_sin(grid_positions((6, 8)), dims=(8, 8), base=100.0)
    low = apply_rope(x.bfloat16(), cos, sin)
    assert low.dtype == torch.bfloat16
    exact = apply_rope(x, cos, sin)
    pair_norm = x.unflatten(-1, (-1, 2)).norm(dim=-1).repeat_interleave(2, dim=-1)
    # bf16 keeps 8 significant bits: allow two units of the last place of the pair's magnitude
    assert ((low.float() - exact.bfloat16().float()).abs() <= 2 * 2.0 ** -7 * pair_norm).all()
    assert apply_rope(x.double(), cos, sin).dtype == torch.float64
    assert apply_rope(x.half(), cos, sin).dtype == torch.float16


def test_long_positions_stay_exact_and_distinct():
    pos = torch.arange(1001, dtype=torch.float64)[:, None]
    cos, sin = rope_cos_sin(pos, dims=(16,), base=10000.0)
    angles = pos * rope_frequencies(16, 10000.0)[None]
    # angles in float64: only the final float32 rounding remains (float32 angles would be off by ~1e-4)
    torch.testing.assert_close(cos.double(), angles.cos().repeat_interleave(2, -1), atol=2e-7, rtol=0)
    torch.testing.assert_close(sin.double(), angles.sin().repeat_interleave(2, -1), atol=2e-7, rtol=0)
    rows = torch.cat([cos, sin], dim=-1)
    dist = torch.cdist(rows, rows) + torch.eye(1001) * 10
    assert dist.min() > 1e-3


def test_per_head_tables_broadcast():
    x = torch.randn(2, 3, 6, 8, generator=_gen(9))
    pos = grid_positions((2, 3))
    tables = [rope_cos_sin(pos * (h + 1), dims=(4, 4)) for h in range(3)]
    cos = torch.stack([c for c, _ in tables])
    sin = torch.stack([s for _, s in tables])
    out = apply_rope(x, cos, sin)
    for h in range(3):
        torch.testing.assert_close(out[:, h], apply_rope(x[:, h], *tables[h]))


def test_scaling_rules_per_axis_in_tables():
    pos = grid_positions((4, 3, 2))
    cos, sin = rope_cos_sin(pos, (4, 4, 4), scaling=[None, PI(2.0), None])
    ref_cos, ref_sin = rope_cos_sin(pos / torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64), (4, 4, 4))
    torch.testing.assert_close(cos, ref_cos)
    torch.testing.assert_close(sin, ref_sin)
    # one rule for every axis
    cos_all, _ = rope_cos_sin(pos, (4, 4, 4), scaling=PI(2.0))
    torch.testing.assert_close(cos_all, rope_cos_sin(pos / 2, (4, 4, 4))[0])


# ------------------------------------------------------------------------------------- the module
def test_module_rotates_patch_tokens_only():
    pe = build_pe("rope-axial", dim=48, num_heads=2, num_axes=3, num_prefix_tokens=2, depth=2,
                  base=(256.0, 100.0, 100.0), scaling=[RIFLEx(6, k=2), None, None], layout="half")
    assert isinstance(pe, AxialRoPE) and pe.hooks == frozenset({"rotate"})
    assert pe.dims == (8, 8, 8)
    grid = (3, 2, 4)
    q = torch.randn(2, 2, 2 + 24, 24, generator=_gen(10))
    k = torch.randn(2, 2, 2 + 24, 24, generator=_gen(11))
    q_rot, k_rot = pe.rotate(q, k, grid, layer=1)
    assert torch.equal(q_rot[:, :, :2], q[:, :, :2]) and torch.equal(k_rot[:, :, :2], k[:, :, :2])
    cos, sin = rope_cos_sin(grid_positions(grid), (8, 8, 8), (256.0, 100.0, 100.0),
                            [RIFLEx(6, k=2), None, None], layout="half")
    torch.testing.assert_close(q_rot[:, :, 2:], apply_rope(q[:, :, 2:], cos, sin, "half"))
    torch.testing.assert_close(k_rot[:, :, 2:], apply_rope(k[:, :, 2:], cos, sin, "half"))
    out = attend(q, k, q, pe, grid, layer=0)
    assert out.shape == q.shape and torch.isfinite(out).all()


def test_module_defaults():
    pe = AxialRoPE(dim=128, num_heads=1, num_axes=3)
    assert pe.dims == (44, 42, 42) and pe.bases == (100.0,) * 3 and pe.layout == "interleaved"
    cos, _ = pe.cos_sin((2, 3, 4))
    ref, _ = rope_cos_sin(grid_positions((2, 3, 4)), (44, 42, 42), 100.0)
    assert torch.equal(cos, ref)
    assert "dims=(44, 42, 42)" in repr(pe)


def test_cache_hit_and_no_corruption():
    pe = AxialRoPE(dim=32, num_heads=2, num_axes=2, depth=3)
    q = torch.randn(1, 2, 12, 16, generator=_gen(12))
    for layer in range(3):
        pe.rotate(q, q, (3, 4), layer)
    assert len(pe._cache) == 1                                  # one compact table serves every layer
    for table in (pe.compact_cos_sin, pe.cos_sin):
        first = table((3, 4))
        second = table((3, 4))
        assert first[0] is second[0] and first[1] is second[1]
        clean = first[0].clone()
        first[0].mul_(0)                                                      # a careless caller
        third = table((3, 4))
        assert torch.equal(third[0], clean)
    assert torch.equal(pe.rotate(q, q, (3, 4))[0], pe.rotate(q.clone(), q, (3, 4))[0])
    pe.cos_sin((4, 3))
    assert len(pe._cache) == 3


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs,match", [
    (dict(dims=(3, 4)), "even"),
    (dict(dims=(4,)), "one rotary dim per axis"),
    (dict(dims=(4, 4), base=(10.0, 10.0, 10.0)), "base has 3 entries"),
    (dict(dims=(4, 4), base=-1.0), "base must be"),
    (dict(dims=(4, 4), scaling=[PI(2.0)]), "scaling has 1 entries"),
    (dict(dims=(4, 4), scaling=[2.0, None]), "scaling entries"),
    (dict(dims=(4, 4), layout="neox"), "valid layouts"),
    (dict(dims=(4, 4), scaling=[RIFLEx(50, k=3), None]), r"valid k are 1\.\.2"),
])
def test_rope_cos_sin_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rope_cos_sin(grid_positions((2, 2)), **kwargs)


def test_positions_errors():
    with pytest.raises(ValueError, match="NaN or inf"):
        rope_cos_sin(torch.tensor([[0.0, float("nan")]]), (4, 4))
    with pytest.raises(ValueError, match=r"\(N, A\)"):
        rope_cos_sin(torch.zeros(4), (4,))


def test_apply_rope_errors():
    cos, sin = rope_cos_sin(grid_positions((2, 3)), (4, 4))
    with pytest.raises(ValueError, match="even D"):
        apply_rope(torch.zeros(6, 7), cos, sin)
    with pytest.raises(ValueError, match=r"\(6, 8\).*\(5, 8\)"):
        apply_rope(torch.zeros(2, 5, 8), cos, sin)
    with pytest.raises(ValueError, match=r"\(6, 8\).*\(6, 10\)"):
        apply_rope(torch.zeros(2, 6, 10), cos, sin)
    with pytest.raises(ValueError, match="same shape"):
        apply_rope(torch.zeros(6, 8), cos, sin[:, :4])
    with pytest.raises(ValueError, match="broadcast"):
        apply_rope(torch.zeros(2, 3, 6, 8), cos.expand(4, 6, 8), sin.expand(4, 6, 8))
    with pytest.raises(ValueError, match="valid layouts"):
        apply_rope(torch.zeros(6, 8), cos, sin, layout="complex")
    with pytest.raises(ValueError, match="floating-point"):
        apply_rope(torch.zeros(6, 8, dtype=torch.long), cos, sin)


def test_module_errors():
    with pytest.raises(ValueError, match=r"sum to 30 but the head dim is 32"):
        AxialRoPE(dim=64, num_heads=2, dims=(14, 16))
    with pytest.raises(ValueError, match=r"valid k are 1\.\.4"):
        AxialRoPE(dim=24, num_axes=3, scaling=[RIFLEx(30, k=5), None, None])
    with pytest.raises(ValueError, match="valid layouts"):
        AxialRoPE(dim=16, layout="nope")
    pe = AxialRoPE(dim=16, num_heads=1, num_prefix_tokens=1, depth=2)
    q = torch.zeros(1, 1, 1 + 6, 16)
    with pytest.raises(ValueError, match="3-axis grid"):
        pe.rotate(q, q, (1, 2, 3))
    with pytest.raises(ValueError, match="needs 7"):
        pe.rotate(q[:, :, :6], q[:, :, :6], (2, 3))
    with pytest.raises(ValueError, match="depth=2"):
        pe.rotate(q, q, (2, 3), layer=2)
    with pytest.raises(ValueError, match="head dim 8"):
        pe.rotate(q[..., :8], q[..., :8], (2, 3))


def test_yarn_factor_applies_per_axis():
    rule = YaRN(2.0, train_length=8)
    cos, sin = rope_cos_sin(grid_positions((3, 3)), (4, 4), scaling=[rule, None])
    radius = cos ** 2 + sin ** 2
    torch.testing.assert_close(radius[:, :4], torch.full((9, 4), rule.attention_factor ** 2))
    torch.testing.assert_close(radius[:, 4:], torch.ones(9, 4))
    assert math.isclose(rule.attention_factor, 0.1 * math.log(2) + 1)
