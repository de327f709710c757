"""Tests of visionpe.results: atomic writes, tables, plots."""
from __future__ import annotations

import json

import pytest

from visionpe.results import accuracy_table, atomic_write, plot_accuracy, summarize, write_json


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": 1})

    def broken(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind
    assert path.stat().st_mode & 0o644 == 0o644  # readable by others, like any file the user writes


def test_summarize_and_table():
    assert summarize([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}
    s = summarize([0.5, 0.7, 0.9])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2)
    rows = {"rope-axial": {16: s, 32: summarize([1.0, 1.0, 1.0])}, "learned": {32: summarize([0.9, 0.8, 0.7])}}
    table = accuracy_table(rows, [16, 32], train_size=32, title="R")
    lines = table.splitlines()
    assert lines[0] == "### R"
    assert "| PE | 16 | 32* |" in lines
    assert "| rope-axial | 70.0 ± 20.0 | 100.0 ± 0.0 |" in lines
    assert "| learned | – | 80.0 ± 10.0 |" in lines
    assert "mean ± std over 3 seeds" in table


def test_plot_writes_a_png(tmp_path):
    rows = {"a": {16: summarize([0.2, 0.3]), 32: summarize([0.9, 0.95])}, "b": {16: summarize([0.5]), 32: summarize([0.6])}}
    path = plot_accuracy(tmp_path / "p.png", rows, [16, 32], train_size=32, title="t", chance=0.125)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]
