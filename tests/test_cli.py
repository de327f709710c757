"""End-to-end runs of every ``visionpe`` command on tiny settings."""
import json
import subprocess
import sys

import pytest

from visionpe.cli import main


def test_list_prints_every_pe(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("rope-axial", "rel-decomposed", "glpe", "none"):
        assert name in out


def test_check_runs_and_writes_json(tmp_path, capsys):
    rc = main(["check", "--pes", "sincos,rope-axial,alibi", "--grids", "4x4", "2x3x3", "--dim", "16", "--heads", "2",
               "--depth", "1", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "6 passed, 0 failed" in out
    data = json.loads((tmp_path / "check.json").read_text())
    assert len(data) == 6 and all(r["ok"] for r in data)
    assert {tuple(r["grid"]) for r in data} == {(4, 4), (2, 3, 3)}


def test_check_unknown_pe_is_a_clear_error(capsys):
    assert main(["check", "--pes", "nope-pe", "--no-progress"]) == 2
    assert "known PEs" in capsys.readouterr().out


def test_bad_grid_argument_is_rejected(capsys):
    with pytest.raises(SystemExit) as err:
        main(["check", "--grids", "8"])
    assert err.value.code == 2
    assert "grid must have 2 or 3" in capsys.readouterr().err


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "visionpe.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "visionpe" in proc.stdout


def test_parser_does_not_import_the_heavy_libraries():
    # building every sub-command's parser must not pull in timm, diffusers or Lightning (seconds of start-up)
    code = ("import sys\nfrom visionpe.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('timm', 'diffusers', 'lightning') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
