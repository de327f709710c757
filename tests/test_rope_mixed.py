"""RoPE-Mixed: initialisation, the relative-offset property, axial limit, gradients, timm parity, errors."""
import math

import pytest
import torch

from visionpe.registry import build_pe
from visionpe.rope import AxialRoPE, apply_rope, expand_layout, grid_positions, rope_cos_sin
from visionpe.rope_mixed import MixedRoPE, init_mixed_frequencies, mixed_angles, random_frames


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("num_axes,head_dim", [(2, 16), (3, 24)])
def test_init_magnitudes_and_frames(num_axes, head_dim):
    torch.manual_seed(0)
    depth, heads = 3, 2
    freqs = init_mixed_frequencies(head_dim, num_axes, heads, depth, base=10.0)
    assert freqs.shape == (depth, num_axes, heads, head_dim // 2) and freqs.dtype == torch.float32
    g = head_dim // 2 // num_axes
    magnitudes = 10.0 ** (-torch.arange(g, dtype=torch.float64) / g)
    # vectors[l, h, j, t, :] = frequency vector of channel j·g + t
    vectors = freqs.double().permute(0, 2, 3, 1).reshape(depth, heads, num_axes, g, num_axes)
    frames = vectors / magnitudes[:, None]                                    # one frame per (l, h, t)
    gram = torch.einsum("lhjta,lhita->lhtji", frames, frames)
    torch.testing.assert_close(gram, torch.eye(num_axes, dtype=torch.float64).expand_as(gram), atol=1e-6, rtol=0)
    dets = torch.linalg.det(frames.permute(0, 1, 3, 4, 2))                    # columns: groups
    torch.testing.assert_close(dets, torch.ones_like(dets), atol=1e-6, rtol=0)
    # frames differ between layers and heads, and are shared by the channels of one head
    assert not torch.allclose(frames[0, 0, :, 0], frames[1, 0, :, 0])
    assert not torch.allclose(frames[0, 0, :, 0], frames[0, 1, :, 0])
    torch.testing.assert_close(frames[..., 0, :], frames[..., -1, :], atol=1e-6, rtol=0)


def test_2d_frames_are_quarter_turns():
    torch.manual_seed(1)
    frame = random_frames(4, 3, 2)
    alpha = torch.atan2(frame[..., 1, 0], frame[..., 0, 0])
    torch.testing.assert_close(frame[..., 0, 1], torch.cos(alpha + math.pi / 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(frame[..., 1, 1], torch.sin(alpha + math.pi / 2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
@pytest.mark.parametrize("grid", [(3, 5), (2, 3, 4)])
def test_rotate_false_is_axial(grid, layout):
    num_axes = len(grid)
    pe = MixedRoPE(dim=2 * 12 * num_axes, num_heads=2, num_axes=num_axes, num_prefix_tokens=1, depth=2,
                   base=10.0, rotate=False, layout=layout)
    cos, sin = pe.cos_sin(grid, layer=1)
    ref_cos, ref_sin = rope_cos_sin(grid_positions(grid), (12,) * num_axes, 10.0, layout=layout)
    torch.testing.assert_close(cos, ref_cos.expand(2, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(sin, ref_sin.expand(2, -1, -1), atol=1e-5, rtol=0)
    axial = AxialRoPE(dim=2 * 12 * num_axes, num_heads=2, num_axes=num_axes, num_prefix_tokens=1,
                      dims=(12,) * num_axes, base=10.0, layout=layout)
    n = 1 + math.prod(grid)
    q = torch.randn(2, 2, n, 12 * num_axes, generator=_gen(2))
    k = torch.randn(2, 2, n, 12 * num_axes, generator=_gen(3))
    for ours, ref in zip(pe.rotate(q, k, grid, 0), axial.rotate(q, k, grid)):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("num_axes,shift", [(2, (4.0, -3.0)), (2, (0.4, 1.7)), (3, (2.0, -1.0, 5.0)),
                                            (3, (0.25, -1.5, 0.75))])
def test_scores_depend_only_on_offsets_per_head(num_axes, shift):
    torch.manual_seed(4)
    freqs = init_mixed_frequencies(8 * num_axes, num_axes, 3, 1)[0]            # (A, heads, C)
    g = _gen(5)
    pos = torch.rand(9, num_axes, generator=g) * 10
    q = torch.randn(2, 3, 9, 8 * num_axes, generator=g)
    k = torch.randn(2, 3, 9, 8 * num_axes, generator=g)

    def scores(p):
        angles = mixed_angles(p, freqs)
        cos, sin = expand_layout(angles.cos(), "interleaved"), expand_layout(angles.sin(), "interleaved")
        return apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)

    before = scores(pos)
    torch.testing.assert_close(scores(pos + torch.tensor(shift)), before, atol=1e-4, rtol=0)
    moved = pos.clone()
    moved[0, 0] += 1.0
    assert (scores(moved) - before).abs().max() > 1e-2


def test_heads_and_layers_differ_and_mix_axes():
    torch.manual_seed(6)
    pe = MixedRoPE(dim=32, num_heads=2, num_axes=2, depth=2)
    cos0, _ = pe.cos_sin((4, 4), layer=0)
    cos1, _ = pe.cos_sin((4, 4), layer=1)
    assert not torch.allclose(cos0[0], cos0[1]) and not torch.allclose(cos0, cos1)
    # a random frame makes single channels depend on both axes (axial RoPE never does)
    f = pe.freqs[0, :, 0].detach()
    assert (f[0].abs() > 1e-3).logical_and(f[1].abs() > 1e-3).any()


def test_gradient_reaches_freqs_of_the_used_layer():
    torch.manual_seed(7)
    pe = MixedRoPE(dim=24, num_heads=2, num_axes=3, num_prefix_tokens=1, depth=3)
    q = torch.randn(2, 2, 1 + 12, 12, generator=_gen(8))
    k = torch.randn(2, 2, 1 + 12, 12, generator=_gen(9))
    q_rot, k_rot = pe.rotate(q, k, (2, 2, 3), layer=1)
    (q_rot @ k_rot.transpose(-1, -2)).square().sum().backward()
    grad = pe.freqs.grad
    assert grad is not None and grad[1].abs().sum() > 0
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0


def test_prefix_untouched_and_registry():
    pe = build_pe("rope-mixed", dim=32, num_heads=2, num_axes=2, num_prefix_tokens=2, depth=1)
    assert isinstance(pe, MixedRoPE) and pe.hooks == frozenset({"rotate"})
    assert pe.no_weight_decay() == {"freqs"} and pe.freqs.shape == (1, 2, 2, 8)
    q = torch.randn(1, 2, 2 + 6, 16, generator=_gen(10))
    q_rot, k_rot = pe.rotate(q, q.clone(), (2, 3))
    assert torch.equal(q_rot[:, :, :2], q[:, :, :2]) and torch.equal(k_rot[:, :, :2], q[:, :, :2])
    assert not torch.allclose(q_rot[:, :, 3:], q[:, :, 3:])
    assert q_rot.dtype == q.dtype
    assert q_rot.shape == q.shape


def test_bf16_inputs_keep_dtype():
    pe = MixedRoPE(dim=32, num_heads=2, num_axes=2)
    q = torch.randn(1, 2, 6, 16, generator=_gen(11))
    low, _ = pe.rotate(q.bfloat16(), q.bfloat16(), (2, 3))
    exact, _ = pe.rotate(q, q, (2, 3))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), exact, atol=0.05, rtol=0.02)


@pytest.mark.parametrize("layer", [0, 1])
def test_timm_parity(layer):
    from timm.layers.pos_embed_sincos import RotaryEmbeddingMixed, apply_rot_embed_cat

    torch.manual_seed(12)
    timm_rope = RotaryEmbeddingMixed(dim=64, depth=2, num_heads=4, temperature=10.0, grid_indexing="xy")
    pe = MixedRoPE(dim=64, num_heads=4, num_axes=2, num_prefix_tokens=1, depth=2)
    with torch.no_grad():                       # timm: freqs[0] multiplies x (= w), freqs[1] multiplies y (= h)
        pe.freqs.copy_(torch.stack([timm_rope.freqs[1], timm_rope.freqs[0]], dim=1))
    grid = (3, 5)
    q = torch.randn(2, 4, 1 + 15, 16, generator=_gen(13))
    k = torch.randn(2, 4, 1 + 15, 16, generator=_gen(14))
    emb = timm_rope.get_embed(list(grid))[layer]                              # (heads, N, 2·d)
    q_rot, k_rot = pe.rotate(q, k, grid, layer)
    torch.testing.assert_close(q_rot[:, :, 1:], apply_rot_embed_cat(q[:, :, 1:], emb), atol=1e-5, rtol=0)
    torch.testing.assert_close(k_rot[:, :, 1:], apply_rot_embed_cat(k[:, :, 1:], emb), atol=1e-5, rtol=0)


def test_errors():
    with pytest.raises(ValueError, match="divisible by 6"):
        MixedRoPE(dim=20, num_heads=1, num_axes=3)
    with pytest.raises(ValueError, match="divisible by 4"):
        MixedRoPE(dim=36, num_heads=2, num_axes=2)
    with pytest.raises(ValueError, match="base"):
        MixedRoPE(dim=16, base=0.0)
    with pytest.raises(ValueError, match="valid layouts"):
        MixedRoPE(dim=16, layout="diag")
    pe = MixedRoPE(dim=32, num_heads=2, num_axes=2, num_prefix_tokens=1, depth=2)
    q = torch.zeros(1, 2, 7, 16)
    with pytest.raises(ValueError, match="depth=2"):
        pe.rotate(q, q, (2, 3), layer=2)
    with pytest.raises(ValueError, match="needs 7"):
        pe.rotate(q[:, :, :6], q[:, :, :6], (2, 3))
    with pytest.raises(ValueError, match=r"\(B, 2, P \+ N, 16\)"):
        pe.rotate(q[:, :1], q[:, :1], (2, 3))
    with pytest.raises(ValueError, match="3-axis grid"):
        pe.rotate(q, q, (1, 2, 3))
