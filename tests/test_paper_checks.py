"""The §17.5 rule and the §17.6 checks on hand-made results, and tools/paper_checks.py end to end."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

from visionpe.paper_checks import Check, checks_table, compare, group_sizes, run_checks, seed_summaries


def _results(acc: dict[str, list[dict[str, dict[int, float]]]], train_res: int = 32) -> dict:
    """``acc``: pe -> per seed -> protocol -> size -> accuracy in [0, 1]."""
    runs = [{"variant": pe, "seed": seed, "accuracy": {p: {str(s): a for s, a in per.items()} for p, per in by_p.items()}}
            for pe, seeds in acc.items() for seed, by_p in enumerate(seeds)]
    return {"config": {"train_res": train_res, "dataset": "dir8"}, "runs": runs}


def test_compare_uses_two_standard_errors_and_a_one_point_floor():
    verdict, gap, margin = compare([50.0, 52.0, 54.0], [48.0, 48.0, 48.0])
    assert margin == pytest.approx(2 * math.sqrt(4.0 / 3))  # variance 4 over 3 seeds, B has none
    assert (verdict, gap) == (">", pytest.approx(4.0))
    assert compare([48.0, 48.0, 48.0], [50.0, 52.0, 54.0])[0] == "<"
    assert compare([50.0, 52.0, 54.0], [49.0, 50.0, 51.0])[0] == "tie"  # gap 2 < margin 2.58
    assert compare([50.5], [50.0]) == ("tie", 0.5, 1.0)  # one seed: only the floor
    assert compare([51.5], [50.0])[0] == ">"
    with pytest.raises(ValueError, match="at least one seed"):
        compare([], [1.0])


def test_groups_pick_sizes_by_their_ratio_to_the_training_size():
    sizes = {16: 0.5, 24: 0.5, 32: 0.9, 48: 0.5, 64: 0.5, 96: 0.5, 128: 0.5}
    res = _results({"learned": [{"R": sizes, "C": {32: 0.9, 64: 0.5, 128: 0.4}}]})
    assert group_sizes(res, "down") == [16, 24]
    assert group_sizes(res, "up2") == [48, 64]
    assert group_sizes(res, "up4") == [96, 128]
    assert group_sizes(res, "C2x") == [64] and group_sizes(res, "C4x") == [128]
    with pytest.raises(ValueError, match="unknown summary group 'up8'"):
        group_sizes(res, "up8")


def test_run_checks_gives_the_verdict_and_whether_it_agrees():
    def curve(down: float, up2: float) -> dict:
        return {"R": {16: down, 24: down, 32: 0.99, 48: up2, 64: up2}}

    res = _results({
        "glpe-mr": [curve(0.9, 0.9), curve(0.92, 0.9), curve(0.88, 0.9)],
        "learned": [curve(0.4, 0.95), curve(0.5, 0.96), curve(0.45, 0.94)],
        "rope-axial": [curve(0.4, 0.95), curve(0.5, 0.96), curve(0.45, 0.945)],
    })
    rows = {(r["a"], r["b"], r["group"]): r for r in run_checks(res)}
    h4 = rows[("glpe-mr", "learned", "down")]
    assert (h4["verdict"], h4["agree"]) == (">", True)
    assert h4["mean_a"] == pytest.approx(90.0) and h4["mean_b"] == pytest.approx(45.0)
    assert h4["std_b"] == pytest.approx(5.0) and h4["n_a"] == 3
    s1 = rows[("rope-axial", "learned", "up2")]  # papers: rope-axial >= learned; a tie agrees
    assert (s1["verdict"], s1["agree"]) == ("tie", True)
    # checks whose PEs or sizes are not in the results are left out, not failed
    assert all(r["group"] in ("down", "up2") and {r["a"], r["b"]} <= {"glpe-mr", "learned", "rope-axial"}
               for r in run_checks(res))
    table = checks_table(res)
    assert "| glpe-mr | 99.0 / 99.0 / 99.0 | 99.0 ± 0.0 | yes |" in table
    assert "| H4 | down (16, 24) | `glpe-mr` | `learned` | 90.0 ± 2.0 | 45.0 ± 5.0 | +45.0 |" in table


def test_missing_accuracies_and_bad_checks_are_clear_errors():
    res = _results({"learned": [{"R": {16: 0.5, 32: 0.9}}]})
    with pytest.raises(ValueError, match=r"learned seed 0 has no R accuracy at \[24\] px"):
        seed_summaries(res, "learned", "R", [16, 24])
    with pytest.raises(ValueError, match="unknown summary group"):
        Check("X", "up3", "a", "b")
    with pytest.raises(ValueError, match="expect must be one of"):
        Check("X", "up2", "a", "b", expect="<")


def test_tool_writes_the_table(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "tools" / "paper_checks.py"
    spec = importlib.util.spec_from_file_location("paper_checks_tool", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    res = _results({pe: [{"R": {16: 0.5, 32: 0.9, 64: 0.6}}] * 2 for pe in ("cpb", "rel-bias")})
    src = tmp_path / "results.json"
    src.write_text(json.dumps(res))
    out = tmp_path / "checks.md"
    assert tool.main([str(src), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Paper checks: dir8")
    assert "| cpb | 90.0 / 90.0 | 90.0 ± 0.0 | yes |" in text  # Dir8's 90% gate by default
    assert "| S4 | up2 (64) | `cpb` | `rel-bias` | 60.0 ± 0.0 | 60.0 ± 0.0 | +0.0 | 1.0 | tie | A > B | **no** |" in text
    res["config"]["dataset"] = "fashion-mnist"
    src.write_text(json.dumps(res))
    assert tool.main([str(src), "--out", str(out)]) == 0
    assert "| cpb | 90.0 / 90.0 | 90.0 ± 0.0 |\n" in out.read_text()  # no gate column elsewhere
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "missing.json")])
    assert "does not exist" in capsys.readouterr().err
