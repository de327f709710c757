"""visionpe inspect rope: periods, intrinsic components and rule columns against closed forms and visionpe.scaling."""
from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from rich.console import Console

from visionpe.inspect_rope import RULES, add_parser, inspect_preset, inspect_rope
from visionpe.scaling import NTK, PI, RIFLEX_PRESETS, RIFLEx, YaRN, rope_frequencies

TWO_PI = 2 * math.pi


def _run(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="visionpe")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    console = Console(record=True, width=200)
    code = args.func(args, console)
    return code, console.export_text()


@pytest.mark.parametrize("name,k,dim,base,period", [
    ("hunyuanvideo", 4, 16, 256.0, 50.27),
    ("cogvideox", 2, 16, 1e4, 19.87),
    ("wan", 6, 44, 1e4, 50.97),
])
def test_preset_intrinsic_component_matches_closed_form(name, k, dim, base, period):
    report = inspect_preset(name)
    closed = TWO_PI * base ** (2 * (k - 1) / dim)          # N_k = 2π / θ_k, θ_k = b^(−2(k−1)/d)
    assert report.k == k and report.k_source == "preset"
    assert report.intrinsic.period == pytest.approx(closed, rel=1e-12)
    assert report.intrinsic.period == pytest.approx(period, abs=0.01)
    train = RIFLEX_PRESETS[name].train_length
    assert (report.target.train_length, report.target.test_length, report.scale) == (train, 2 * train, 2.0)
    assert report.intrinsic.cycles_train == pytest.approx(train / closed)


def test_every_component_has_period_and_cycles():
    report = inspect_rope((16, 56, 56), 256.0, 33, 66)
    theta = rope_frequencies(16, 256.0)
    for c, th in zip(report.target.components, theta.tolist()):
        assert c.theta == pytest.approx(th, rel=1e-12)
        assert c.period == pytest.approx(TWO_PI / th)
        assert c.cycles_train == pytest.approx(33 * th / TWO_PI)
        assert c.cycles_test == pytest.approx(66 * th / TWO_PI)
    assert [c.index for c in report.target.components] == list(range(1, 9))
    assert [c.repeats for c in report.target.components] == [False, False, False, True] + [False] * 4


@pytest.mark.parametrize("name", sorted(RIFLEX_PRESETS))
@pytest.mark.parametrize("mode", ["repo", "paper"])
def test_rule_columns_equal_visionpe_scaling(name, mode):
    preset = RIFLEX_PRESETS[name]
    test = 2.5 * preset.train_length
    report = inspect_preset(name, test_length=test, riflex_mode=mode)
    s = test / preset.train_length
    dim = preset.dims[0]
    expected = {"pi": PI(s), "ntk": NTK(s), "yarn": YaRN(s, preset.train_length),
                "riflex": RIFLEx(test, k=preset.k, mode=mode)}
    assert report.rules == RULES
    for rule, scaling in expected.items():
        got = torch.tensor([c.rules[rule].theta for c in report.target.components], dtype=torch.float64)
        torch.testing.assert_close(got, scaling.frequencies(dim, preset.base), rtol=1e-12, atol=0)
        for c in report.target.components:
            assert c.rules[rule].period == pytest.approx(TWO_PI / c.rules[rule].theta)
            assert c.rules[rule].cycles_test == pytest.approx(test * c.rules[rule].theta / TWO_PI)
    assert report.yarn["attention_factor"] == pytest.approx(YaRN(s, preset.train_length).attention_factor)


def test_riflex_changes_only_the_intrinsic_component():
    report = inspect_preset("hunyuanvideo")
    for c in report.target.components:
        effect = c.rules["riflex"]
        if c.index == 4:
            assert effect.theta == pytest.approx(0.9 * TWO_PI / 66)     # official code: 0.9·2π/L′
            assert effect.period == pytest.approx(66 / 0.9) and effect.cycles_test == pytest.approx(0.9)
            assert not effect.repeats
        else:
            assert effect.theta == c.theta
    assert report.intrinsic.repeats and report.intrinsic.rules["ntk"].period == pytest.approx(67.65, abs=0.01)


def test_riflex_is_a_no_op_when_the_period_already_exceeds_the_test_length():
    report = inspect_preset("wan")                                  # N_6 ≈ 51 > 42 latent frames
    assert all(c.rules["riflex"].theta == c.theta for c in report.target.components)
    assert any("RIFLEx changes nothing" in n for n in report.notes)


def test_repeat_flags_follow_the_notes():
    """NTK hides the HunyuanVideo repeat at 2x but not at 2.3x, nor CogVideoX's at 2x (notes §2.3)."""
    assert not inspect_preset("hunyuanvideo").intrinsic.rules["ntk"].repeats
    at_23 = inspect_preset("hunyuanvideo", test_length=76).intrinsic.rules["ntk"]
    ntk_base = 256.0 * (76 / 33) ** (16 / 14)                        # b' = b·s^(d/(d−2))
    assert at_23.period == pytest.approx(TWO_PI * ntk_base ** (6 / 16)) and at_23.repeats
    assert at_23.period == pytest.approx(71.8, abs=0.1)
    cog = inspect_preset("cogvideox").intrinsic
    assert cog.repeats and cog.rules["ntk"].repeats and not cog.rules["pi"].repeats
    assert cog.rules["ntk"].period == pytest.approx(21.9, abs=0.05)


def test_k_from_repetition_length_or_given():
    report = inspect_preset("hunyuanvideo", repetition_length=48)
    assert (report.k, report.k_source, report.repetition_length) == (4, "repetition_length", 48.0)
    assert inspect_preset("hunyuanvideo", repetition_length=24).k == 3
    given = inspect_preset("cogvideox", k=3)
    assert (given.k, given.k_source) == (3, "given")
    custom = inspect_rope((8, 12, 12), 256.0, 16, 48, repetition_length=24)
    assert custom.k == 2 and custom.intrinsic.period == pytest.approx(TWO_PI * 4)   # 256^(2·1/8) = 4


def test_custom_dims_per_axis_bases_and_target_axis():
    report = inspect_rope((8, 12, 12), (256.0, 1e4, 100.0), 16, 40, k=2)
    assert [a.name for a in report.axes] == ["t", "h", "w"] and report.axis == "t"
    for axis, dim, base in zip(report.axes, (8, 12, 12), (256.0, 1e4, 100.0)):
        assert (axis.dim, axis.base, len(axis.components)) == (dim, base, dim // 2)
        torch.testing.assert_close(torch.tensor([c.period for c in axis.components], dtype=torch.float64),
                                   TWO_PI / rope_frequencies(dim, base), rtol=1e-12, atol=0)
    h = report.axes[1]
    assert h.train_length is None and all(c.rules == {} and c.cycles_train is None for c in h.components)
    spatial = inspect_rope((8, 12, 12), 100.0, 24, 48, axis="w", rules=("pi",), k=1)
    assert spatial.axis == "w" and spatial.rules == ("pi",) and spatial.target.dim == 12
    assert set(spatial.target.components[0].rules) == {"pi"} and spatial.axes[0].train_length is None
    assert inspect_rope((24, 24), 1e4, 32).axis == "h"                  # 2 axes: h, w


def test_without_k_riflex_is_left_out_with_a_note():
    report = inspect_rope((16, 56, 56), 256.0, 33)
    assert report.k is None and report.intrinsic is None and "riflex" not in report.rules
    assert any("RIFLEx left out" in n for n in report.notes)
    assert any("intrinsic component unknown" in line for line in report.summary_lines())


def test_pixel_frames_with_the_vae_compression():
    lines = "\n".join(inspect_preset("hunyuanvideo").summary_lines())
    assert "training length L = 33 latent frames (129 pixel frames)" in lines
    assert "test length L′ = 66 latent frames (261 pixel frames)" in lines
    assert "intrinsic component k=4, period 50.3 latent frames (201 pixel frames)" in lines
    plain = "\n".join(inspect_preset("hunyuanvideo", temporal_compression=None).summary_lines())
    assert "pixel" in plain                                           # presets default to c = 4
    assert "pixel" not in "\n".join(inspect_rope((16,), 256.0, 33, k=4).summary_lines())


def test_report_is_json_serialisable():
    data = json.loads(json.dumps(inspect_preset("wan").to_dict(), allow_nan=False))
    assert data["k"] == 6 and data["axes"][0]["components"][5]["rules"]["riflex"]["period"] > 0
    assert data["summary"][2].startswith("intrinsic component k=6, period 51.0 latent frames")


@pytest.mark.parametrize("kwargs,match", [
    ({"dims": (15, 56, 56)}, "even int"),
    ({"dims": (16, -2, 56)}, "even int"),
    ({"dims": ()}, "non-empty sequence"),
    ({"k": 9}, r"valid k are 1\.\.8"),
    ({"k": 0}, r"valid k are 1\.\.8"),
    ({"k": 4, "repetition_length": 48}, "not both"),
    ({"test_length": 0}, "test_length must be"),
    ({"test_length": -5.0}, "test_length must be"),
    ({"train_length": 0}, "train_length must be"),
    ({"repetition_length": float("nan")}, "repetition_length must be"),
    ({"base": (256.0, 1e4)}, "one base or one per axis"),
    ({"base": 1.0}, "finite number > 1"),
    ({"axis": "x"}, "unknown axis 'x'; the axes are t, h, w"),
    ({"axis_names": ("t", "t", "w")}, "distinct name"),
    ({"rules": ("pi", "dyn")}, "rules must be distinct names"),
    ({"riflex_mode": "fast"}, "unknown RIFLEx mode"),
    ({"temporal_compression": 0}, "temporal_compression"),
    ({"dims": (0, 8, 8)}, "rotary dim 0"),
])
def test_invalid_arguments_raise(kwargs, match):
    args = {"dims": (16, 56, 56), "base": 256.0, "train_length": 33} | kwargs
    with pytest.raises(ValueError, match=match):
        inspect_rope(**args)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid presets: hunyuanvideo, cogvideox, wan"):
        inspect_preset("sora")


def test_command_prints_k4_with_its_period():
    code, text = _run(["inspect", "rope", "--preset", "hunyuanvideo"])
    assert code == 0
    assert "intrinsic component k=4, period 50.3 latent frames" in text
    assert "73.33 (0.9)" in text and "4 k" in text                     # RIFLEx cell and the marked row
    assert "axis h" not in text


def test_command_options_tables_and_custom_dims():
    _, summary_only = _run(["inspect", "rope", "--preset", "cogvideox", "--no-table"])
    assert "k=2, period 19.9 latent frames" in summary_only and "┃" not in summary_only
    _, all_axes = _run(["inspect", "rope", "--dims", "8", "12", "12", "--base", "256", "--train-length", "16",
                        "--test-length", "48", "--repetition-length", "24", "--rules", "pi,riflex", "--all-axes"])
    assert "k=2, period 25.1 positions" in all_axes and "axis h: rotary dim 12" in all_axes
    assert "NTK" not in all_axes
    _, spatial = _run(["inspect", "rope", "--dims", "8", "12", "12", "--base", "256", "1e4", "1e4",
                       "--train-length", "32", "--axis", "h", "--k", "3", "--no-table"])
    assert spatial.startswith("axis h, rotary dim 12, base 10000, s = L′/L = 2\ntraining length L = 32 positions")


def test_command_writes_json_markdown_and_png(tmp_path):
    out = tmp_path / "inspect"
    code, text = _run(["inspect", "rope", "--preset", "hunyuanvideo", "--out", str(out)])
    assert code == 0 and f"wrote {out / 'results.json'}" in text
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md", "results.png"]
    data = json.loads((out / "results.json").read_text())
    assert data["k"] == 4 and data["preset"] == "hunyuanvideo" and data["temporal_compression"] == 4
    md = (out / "results.md").read_text()
    assert "| 4 k | 0.125 | 50.27 | 0.657 | 1.31 ! |" in md and "## axis h (rotary dim 56, base 256)" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _run(["inspect", "rope", "--preset", "wan", "--out", str(tmp_path / "noplot"), "--no-plot"])
    assert sorted(p.name for p in (tmp_path / "noplot").iterdir()) == ["results.json", "results.md"]


@pytest.mark.parametrize("argv,match", [
    (["--dims", "16", "56", "56"], "--train-length"),
    ([], "give --preset"),
    (["--preset", "wan", "--dims", "16"], "--preset sets the dims"),
    (["--preset", "wan", "--k", "23"], r"valid k are 1\.\.22"),
    (["--preset", "nope"], "valid presets"),
])
def test_command_errors_are_value_errors(argv, match):
    with pytest.raises(ValueError, match=match):
        _run(["inspect", "rope", *argv])


def test_command_rejects_unknown_rules(capsys):
    with pytest.raises(SystemExit):
        _run(["inspect", "rope", "--preset", "wan", "--rules", "pi,foo"])
    assert "unknown rules ['foo']" in capsys.readouterr().err
