"""Scaling rules: PI, NTK-aware, YaRN, RIFLEx, the intrinsic component and the presets."""
import dataclasses
import math

import pytest
import torch

from visionpe.rope import grid_positions, rope_cos_sin
from visionpe.scaling import (
    NTK,
    PI,
    RIFLEX_PRESETS,
    RIFLEx,
    YaRN,
    find_intrinsic_component,
    rope_frequencies,
)

TWO_PI = 2 * math.pi


def test_pi_equals_dividing_positions():
    pos = grid_positions((5, 4)) + 0.25
    cos, sin = rope_cos_sin(pos, (8, 8), 100.0, scaling=PI(2.5))
    ref_cos, ref_sin = rope_cos_sin(pos / 2.5, (8, 8), 100.0)
    torch.testing.assert_close(cos, ref_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=1e-6, rtol=0)
    torch.testing.assert_close(PI(4.0).frequencies(8, 100.0), rope_frequencies(8, 100.0) / 4)


@pytest.mark.parametrize("dim,scale", [(16, 2.0), (44, 3.0), (8, 0.5)])
def test_ntk_matches_diffusers_with_proper_factor(dim, scale):
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    pos = torch.arange(12, dtype=torch.float64)
    ref_cos, ref_sin = get_1d_rotary_pos_embed(dim, pos, theta=10000.0, use_real=True,
                                               ntk_factor=scale ** (dim / (dim - 2)), freqs_dtype=torch.float64)
    cos, sin = rope_cos_sin(pos[:, None], (dim,), 10000.0, scaling=NTK(scale))
    torch.testing.assert_close(cos, ref_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, ref_sin, atol=1e-6, rtol=0)
    theta, scaled = rope_frequencies(dim, 10000.0), NTK(scale).frequencies(dim, 10000.0)
    assert scaled[0] == theta[0]                                              # fastest kept
    assert math.isclose(scaled[-1], theta[-1] / scale, rel_tol=1e-12)         # slowest interpolated by s


def test_ntk_dims():
    assert NTK(2.0).frequencies(0, 100.0).shape == (0,)
    with pytest.raises(ValueError, match="rotary dim > 2"):
        NTK(2.0).frequencies(2, 100.0)


def test_yarn_numbers_from_the_notes():
    # notes §4.1: α=1, β=32, s=2, L=33, d=16 gives θ'/θ = [0.57, 0.53, 0.51, 0.5, …]: that is base 256
    rule = YaRN(2.0, train_length=33)
    ratio = rule.frequencies(16, 256.0) / rope_frequencies(16, 256.0)
    assert [round(float(r), 2) for r in ratio] == [0.57, 0.53, 0.51, 0.5, 0.5, 0.5, 0.5, 0.5]
    ratio_1e4 = rule.frequencies(16, 10000.0) / rope_frequencies(16, 10000.0)
    assert [round(float(r), 2) for r in ratio_1e4][:3] == [0.57, 0.51, 0.5]   # base 10000 does not give it
    # γ(r) by hand for component 0: r = 33/(2π)
    gamma = (33 / TWO_PI - 1) / 31
    assert math.isclose(float(ratio[0]), gamma + (1 - gamma) / 2, rel_tol=1e-12)


def test_yarn_ramp_ends():
    rule = YaRN(4.0, train_length=2000, alpha=1.0, beta=32.0)
    theta = rope_frequencies(32, 10000.0)
    rotations = 2000 * theta / TWO_PI
    scaled = rule.frequencies(32, 10000.0)
    assert (rotations > 32).any() and (rotations < 1).any() and ((rotations > 1) & (rotations < 32)).any()
    assert torch.equal(scaled[rotations >= 32], theta[rotations >= 32])           # fast: kept
    torch.testing.assert_close(scaled[rotations <= 1], theta[rotations <= 1] / 4)  # slow: interpolated
    middle = (rotations > 1) & (rotations < 32)
    assert ((scaled[middle] < theta[middle]) & (scaled[middle] > theta[middle] / 4)).all()
    ramp = rule.ramp(32, 10000.0)
    torch.testing.assert_close(ramp[middle], (rotations[middle] - 1) / 31)


def test_yarn_attention_factor():
    assert math.isclose(YaRN(2.0, 10).attention_factor, 0.1 * math.log(2.0) + 1)
    assert YaRN(2.0, 10).cos_sin_scale == YaRN(2.0, 10).attention_factor
    assert YaRN(2.0, 10, apply_attention_factor=False).cos_sin_scale == 1.0
    assert YaRN(0.5, 10).attention_factor == 1.0 and YaRN(1.0, 10).attention_factor == 1.0
    assert PI(2.0).cos_sin_scale == NTK(2.0).cos_sin_scale == RIFLEx(10, k=1).cos_sin_scale == 1.0


def test_riflex_hunyuanvideo():
    theta = rope_frequencies(16, 256.0)
    repo = RIFLEx(66, k=4).frequencies(16, 256.0)
    changed = (repo != theta).nonzero().flatten().tolist()
    assert changed == [3]
    assert float(theta[3]) == 0.125
    assert math.isclose(float(repo[3]), 0.9 * TWO_PI / 66) and round(float(repo[3]), 4) == 0.0857
    assert math.isclose(TWO_PI / float(repo[3]), 73.33, abs_tol=0.01)         # new period
    paper = RIFLEx(66, k=4, mode="paper").frequencies(16, 256.0)
    assert math.isclose(float(paper[3]), TWO_PI / 66) and (paper != theta).sum() == 1


def test_riflex_cogvideox_and_wan_numbers():
    cog = RIFLEx.from_preset("cogvideox", 25).frequencies(16, 10000.0)
    assert round(float(cog[1]), 4) == 0.2262 and round(TWO_PI / float(cog[1]), 1) == 27.8
    # Wan at 2x (42 frames) is still shorter than N_6 ≈ 51: nothing changes; at 3x (63) θ_6 does
    assert torch.equal(RIFLEx.from_preset("wan", 42).frequencies(44, 10000.0), rope_frequencies(44, 10000.0))
    assert (RIFLEx.from_preset("wan", 63).frequencies(44, 10000.0) != rope_frequencies(44, 10000.0)).sum() == 1


def test_riflex_gate():
    period = TWO_PI / 0.125                                                   # 50.27
    theta = rope_frequencies(16, 256.0)
    assert torch.equal(RIFLEx(50, k=4).frequencies(16, 256.0), theta)         # N_k >= L_test: plain RoPE
    assert torch.equal(RIFLEx(period, k=4).frequencies(16, 256.0), theta)
    assert not torch.equal(RIFLEx(50.5, k=4).frequencies(16, 256.0), theta)


def test_riflex_from_repetition_length():
    by_n = RIFLEx(66, repetition_length=48).frequencies(16, 256.0)
    assert torch.equal(by_n, RIFLEx(66, k=4).frequencies(16, 256.0))
    assert RIFLEx(66, repetition_length=48).component(16, 256.0) == 4


def test_find_intrinsic_component():
    k, period = find_intrinsic_component(16, 256, 48)
    assert k == 4 and math.isclose(period, 50.27, abs_tol=0.01) and isinstance(period, float)
    assert find_intrinsic_component(16, 10000.0, 20)[0] == 2
    assert find_intrinsic_component(44, 10000.0, 51)[0] == 6
    assert find_intrinsic_component(16, 256, 1)[0] == 1
    with pytest.raises(ValueError, match="repetition_length"):
        find_intrinsic_component(16, 256, 0)


def test_presets():
    hv, cog, wan = RIFLEX_PRESETS["hunyuanvideo"], RIFLEX_PRESETS["cogvideox"], RIFLEX_PRESETS["wan"]
    assert (hv.dims, hv.base, hv.k, hv.train_length, hv.layout, hv.temporal_axis) == \
        ((16, 56, 56), 256.0, 4, 33, "interleaved", 0)
    assert (cog.dims, cog.base, cog.k, cog.train_length) == ((16, 24, 24), 10000.0, 2, 13)
    assert (wan.dims, wan.base, wan.k, wan.train_length) == ((44, 42, 42), 10000.0, 6, 21)
    assert [round(p.period, 1) for p in (hv, cog, wan)] == [50.3, 19.9, 51.0]
    rule = RIFLEx.from_preset("hunyuanvideo", 66, mode="paper")
    assert rule == RIFLEx(66, k=4, mode="paper")
    assert hv.rules(66) == (RIFLEx(66, k=4), None, None)
    with pytest.raises(ValueError, match="valid presets: hunyuanvideo, cogvideox, wan"):
        RIFLEx.from_preset("sora", 66)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_riflex_through_rope_cos_sin_changes_only_temporal_component(layout):
    pos = grid_positions((66, 2, 2))
    dims = (16, 56, 56)
    plain_cos, plain_sin = rope_cos_sin(pos, dims, 256.0, layout=layout)
    cos, sin = rope_cos_sin(pos, dims, 256.0, scaling=RIFLEX_PRESETS["hunyuanvideo"].rules(66), layout=layout)
    half = sum(dims) // 2
    expected = [6, 7] if layout == "interleaved" else [3, 3 + half]           # component k=4 of the t block
    changed = ((cos != plain_cos) | (sin != plain_sin)).any(dim=0).nonzero().flatten().tolist()
    assert changed == expected
    t = pos[:, 0]
    torch.testing.assert_close(cos[:, expected[0]], (t * 0.9 * TWO_PI / 66).cos().float())


def test_rules_are_frozen_hashable_dataclasses():
    rules = [PI(2.0), NTK(2.0), YaRN(2.0, 33), RIFLEx(66, k=4)]
    for rule in rules:
        assert dataclasses.is_dataclass(rule)
        with pytest.raises(dataclasses.FrozenInstanceError):
            rule.mode = "x"
        hash(rule)
    assert repr(RIFLEx(66, k=4)) == "RIFLEx(test_length=66, k=4, repetition_length=None, mode='repo')"
    assert repr(PI(2.0)) == "PI(scale=2.0)"


@pytest.mark.parametrize("make,match", [
    (lambda: PI(0), "PI scale"),
    (lambda: PI(-2.0), "PI scale"),
    (lambda: NTK(float("nan")), "NTK scale"),
    (lambda: NTK(float("inf")), "NTK scale"),
    (lambda: YaRN(0.0, 33), "YaRN scale"),
    (lambda: YaRN(2.0, 0), "train_length"),
    (lambda: YaRN(2.0, 33, alpha=32.0, beta=1.0), "alpha < beta"),
    (lambda: YaRN(2.0, 33, alpha=-1.0), "alpha"),
    (lambda: RIFLEx(0, k=4), "test_length"),
    (lambda: RIFLEx(-5, k=4), "test_length"),
    (lambda: RIFLEx(66, k=4, mode="fast"), "valid modes: paper, repo"),
    (lambda: RIFLEx(66), "exactly one of k"),
    (lambda: RIFLEx(66, k=4, repetition_length=48), "exactly one of k"),
    (lambda: RIFLEx(66, k=0), "1-indexed"),
    (lambda: RIFLEx(66, repetition_length=-1.0), "repetition_length"),
    (lambda: RIFLEx(66, k=9).frequencies(16, 256.0), r"valid k are 1\.\.8"),
    (lambda: RIFLEx(66, k=1).frequencies(0, 256.0), "rotary dim 0"),
    (lambda: PI(2.0).frequencies(7, 100.0), "even"),
    (lambda: PI(2.0).frequencies(8, 0.0), "base"),
])
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_length_rule_builds_each_rule_from_the_two_lengths():
    from visionpe.scaling import length_rule

    assert length_rule("pi", 16, 48) == PI(3.0)
    assert length_rule("ntk", 16, 32) == NTK(2.0)
    assert length_rule("yarn", 16, 32, yarn_beta=16.0) == YaRN(2.0, 16, alpha=1.0, beta=16.0)
    assert length_rule("riflex", None, 66, k=4, riflex_mode="paper") == RIFLEx(66, k=4, mode="paper")
    with pytest.raises(ValueError, match="needs k"):
        length_rule("riflex", 33, 66)
    with pytest.raises(ValueError, match="needs the training length"):
        length_rule("pi", None, 66)
    with pytest.raises(ValueError, match="unknown rule 'linear'"):
        length_rule("linear", 16, 32)
