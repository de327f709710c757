"""End-to-end runs of `visionpe bench resolution` and `visionpe eval resolution` on tiny settings."""
from __future__ import annotations

import json

import pytest
import torch

from visionpe.bench import VARIANTS, variant_kwargs
from visionpe.cli import main
from visionpe.evaluation import load_classifier

TINY = ["--train-res", "16", "--eval-res", "8", "16", "24", "--steps", "3", "--batch-size", "8", "--samples", "16",
        "--no-progress"]


def _bench(out, *extra):
    return main(["bench", "resolution", "--pes", "learned", "glpe-mr", "--seeds", "0", "1", "--protocols", "R", "C",
                 *TINY, "--out", str(out), *extra])


def test_variants_cover_the_registry():
    import visionpe

    assert set(visionpe.list_pes()) <= set(VARIANTS)
    kwargs, sizes = variant_kwargs("glpe-mr", depth=4, train_res=32, patch=4)
    assert kwargs == {"pe": "glpe"} and sizes == [32, 24, 20]
    assert variant_kwargs("peg", depth=4, train_res=32, patch=4)[0]["peg_after"] == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown PE variant 'rope'.*rope-axial"):
        variant_kwargs("rope", 4, 32, 4)


def test_bench_writes_reports_and_resumes(tmp_path, capsys):
    assert _bench(tmp_path) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["runs"]) == 4
    assert set(results["summary"]) == {"R", "C"}
    assert set(results["summary"]["R"]["learned"]) == {"8", "16", "24"}
    assert set(results["summary"]["C"]["glpe-mr"]) == {"16", "24"}  # protocol C starts at the training size
    stats = results["summary"]["R"]["learned"]["16"]
    accs = [r["accuracy"]["R"]["16"] for r in results["runs"] if r["variant"] == "learned"]
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(sum(accs) / 2)
    md = (tmp_path / "results.md").read_text()
    assert "protocol R" in md and "protocol C" in md and "| glpe-mr |" in md
    for png in ("results.png", "results-C.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    ckpt = tmp_path / "runs" / "learned-s0" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    # a second call reuses the finished runs (no retraining) and evaluates only what is new
    assert _bench(tmp_path, "--eval-res", "8", "16", "24", "32") == 0
    assert ckpt.stat().st_mtime_ns == stamp
    again = json.loads((tmp_path / "results.json").read_text())
    assert set(again["summary"]["R"]["learned"]) == {"8", "16", "24", "32"}
    assert again["runs"][0]["accuracy"]["R"]["16"] == results["runs"][0]["accuracy"]["R"]["16"]
    # other training settings in the same directory are refused
    assert _bench(tmp_path, "--steps", "4") == 2
    assert "other settings" in capsys.readouterr().out


def test_bench_errors_before_any_work(tmp_path, capsys):
    assert main(["bench", "resolution", "--pes", "rope2d", *TINY, "--out", str(tmp_path / "a")]) == 2
    assert "unknown PE variant 'rope2d'" in capsys.readouterr().out
    assert main(["bench", "resolution", "--pes", "learned", *TINY, "--eval-res", "18", "--out", str(tmp_path / "b")]) == 2
    assert "not divisible by the patch size 4" in capsys.readouterr().out
    assert main(["bench", "resolution", "--pes", "learned", *TINY, "--eval-res", "0", "--out", str(tmp_path / "c")]) == 2
    assert "positive" in capsys.readouterr().out
    assert not any((tmp_path / d).exists() for d in "abc")


def test_eval_resolution_on_checkpoints(tmp_path, capsys):
    assert main(["bench", "resolution", "--pes", "rope-axial", "sincos", "--seeds", "0", "--protocols", "R", *TINY,
                 "--out", str(tmp_path / "bench")]) == 0
    ckpts = [str(tmp_path / "bench" / "runs" / f"{v}-s0" / "last.ckpt") for v in ("rope-axial", "sincos")]
    out = tmp_path / "eval"
    assert main(["eval", "resolution", *ckpts, "--res", "8", "16", "32", "--samples", "16", "--no-progress",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [m["label"] for m in results["models"]] == ["rope-axial", "sincos"]
    assert results["models"][0]["dataset"] == "dir8" and results["models"][0]["train_size"] == 16
    bench = json.loads((tmp_path / "bench" / "results.json").read_text())
    # the same fixed test scenes give the same accuracy as the benchmark measured
    assert results["models"][0]["accuracy"]["16"] == bench["runs"][0]["accuracy"]["R"]["16"]
    assert "| rope-axial |" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["eval", "resolution", ckpts[0], "--res", "8", "--protocol", "C", "--out", str(tmp_path / "e2")]) == 2
    assert "must be >= 16" in capsys.readouterr().out
    from visionpe.evaluation import evaluate_checkpoints

    with pytest.raises(ValueError, match="resolution list is empty"):
        evaluate_checkpoints(ckpts, [], progress=False)
    assert not (tmp_path / "e2").exists()


def test_eval_errors(tmp_path, capsys):
    assert main(["eval", "resolution", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().out
    # a checkpoint whose tensors do not fit the model its hyper-parameters describe
    from visionpe.training import ClassifierModule

    module = ClassifierModule(pe="learned", size="micro", img_size=16, num_classes=8)
    state = module.state_dict()
    state["model.head.weight"] = torch.zeros(3, 32)
    bad = tmp_path / "bad.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": state}, bad)
    with pytest.raises(ValueError, match=r"model.head.weight has shape \(3, 32\).*expects \(8, 32\)"):
        load_classifier(bad)
    assert main(["eval", "resolution", str(bad), "--res", "16", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
