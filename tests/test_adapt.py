"""visionpe.adapt and the ``visionpe adapt`` subcommand, checked against timm itself (tiny random ViTs)."""
from __future__ import annotations

import argparse
import json

import pytest
import timm
import torch
from rich.console import Console
from safetensors.torch import save_file
from timm.data import resolve_data_config, resolve_input_data_config, resolve_model_data_config
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import ResPostBlock, VisionTransformer, checkpoint_filter_fn

from visionpe.adapt import ADAPT_FORMAT, ResizeReport, from_timm, load_adapted, load_timm_vit, resize_timm_vit
from visionpe.adapt_cli import add_parser
from visionpe.models import ViT

NAME = "vit_tiny_patch16_224"
TINY = dict(pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread is fastest, and it avoids thread contention on shared CI machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0, **kwargs) -> VisionTransformer:
    """A 2-block timm ViT on 32x32 images (4x4 grid) with weights perturbed so every one matters."""
    torch.manual_seed(seed)
    model = timm.create_model(NAME, **{**TINY, **kwargs}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        if model.pos_embed is not None:
            model.pos_embed.mul_(10.0)  # make the table dominate so a wrong resize shows in the logits
    return model


def twin(model: VisionTransformer, **kwargs) -> VisionTransformer:
    """A timm model built with ``kwargs`` holding ``model``'s weights."""
    other = timm.create_model(NAME, **{**TINY, **kwargs}).eval()
    other.load_state_dict(model.state_dict())
    return other


def input_sizes(model) -> list[tuple[int, ...]]:
    return [tuple(r(model)["input_size"]) for r in
            (lambda m: resolve_data_config(model=m), resolve_model_data_config, resolve_input_data_config)]


def close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


# ------------------------------------------------------------------------------------------ resize
@pytest.mark.parametrize("size", [48, 16, (48, 24)])
def test_resize_equals_timm_set_input_size_and_dynamic_img_size(size):
    ours = tiny()
    timms, dynamic = twin(ours), twin(ours, dynamic_img_size=True)
    report = resize_timm_vit(ours, size)
    timms.set_input_size(size if isinstance(size, tuple) else (size, size))
    assert torch.equal(ours.pos_embed, timms.pos_embed)
    x = torch.randn(2, 3, *timms.patch_embed.img_size)
    close(ours(x), timms(x), atol=1e-6)
    close(ours(x), dynamic(x), atol=1e-6)
    assert ours.patch_embed.grid_size == timms.patch_embed.grid_size == report.new_grid
    assert ours.patch_embed.num_patches == timms.patch_embed.num_patches
    assert (report.mode, report.antialias, report.prefix_rows, report.resampled) == ("bicubic", True, 1, True)


@pytest.mark.parametrize("mode,antialias", [("bilinear", False), ("bicubic", False), ("bilinear", True)])
@pytest.mark.parametrize("extra", [{}, {"no_embed_class": True, "reg_tokens": 2}, {"reg_tokens": 3}])
def test_other_rules_equal_timm_resample_abs_pos_embed(mode, antialias, extra):
    model = tiny(**extra)
    table = model.pos_embed.detach().clone()
    prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    for size, grid in [((56, 40), (7, 5)), ((16, 24), (2, 3))]:
        old = model.patch_embed.grid_size
        expected = resample_abs_pos_embed(table, grid, old, prefix, interpolation=mode, antialias=antialias)
        report = resize_timm_vit(model, size, mode=mode, antialias=antialias)
        assert torch.equal(model.pos_embed, expected) and report.prefix_rows == prefix
        assert model(torch.randn(1, 3, *size)).shape == (1, 5)
        table = model.pos_embed.detach().clone()
    default = tiny(**extra)
    resize_timm_vit(default, (56, 40))
    assert not torch.allclose(default.pos_embed, resample_abs_pos_embed(
        tiny(**extra).pos_embed.detach(), (7, 5), (4, 4), prefix, interpolation=mode, antialias=antialias))


def test_resize_fixes_timm_data_config_and_reports_what_it_said_before():
    model = tiny()
    assert input_sizes(model) == [(3, 224, 224), (3, 224, 224), (3, 32, 32)]  # the legacy resolvers are stale
    report = resize_timm_vit(model, (64, 48))
    assert input_sizes(model) == [(3, 64, 48)] * 3
    assert report.data_config_before == {"resolve_data_config": (3, 224, 224),
                                         "resolve_model_data_config": (3, 224, 224),
                                         "resolve_input_data_config": (3, 64, 48)}
    assert report.stale_resolvers() == ["resolve_data_config", "resolve_model_data_config"]
    assert set(report.data_config_after.values()) == {(3, 64, 48)} and report.cfg_keys_set == ("input_size",)
    assert model.default_cfg is model.pretrained_cfg
    assert input_sizes(tiny())[0] == (3, 224, 224)  # the registry's config was copied, not mutated
    text = str(report)
    assert "32x32 px (grid 4x4) -> 64x48 px (grid 8x6)" in text and "(3, 224, 224) before the fix (stale" in text
    assert json.loads(json.dumps(report.to_dict()))["data_config_before"]["resolve_data_config"] == [3, 224, 224]


def test_resize_data_config_of_dynamic_and_test_size_models():
    dynamic = tiny(dynamic_img_size=True, pretrained_cfg_overlay={"test_input_size": (3, 288, 288)})
    report = resize_timm_vit(dynamic, 40)
    # a flexible model: even the new resolver recommends the checkpoint's size until the config is fixed
    assert report.data_config_before["resolve_input_data_config"] == (3, 224, 224)
    assert report.cfg_keys_set == ("input_size", "test_input_size")
    assert input_sizes(dynamic) == [(3, 40, 40)] * 3
    assert resolve_data_config(model=dynamic, use_test_size=True)["input_size"] == (3, 40, 40)
    direct = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=3)
    resize_timm_vit(direct, 24)
    assert input_sizes(direct) == [(3, 24, 24)] * 3


def test_resize_to_the_same_size_keeps_the_parameter():
    model = tiny()
    param = model.pos_embed
    report = resize_timm_vit(model, 32)
    assert model.pos_embed is param and not report.resampled and "unchanged" in str(report)


@pytest.mark.parametrize("args,message", [
    ((50,), r"image height 50 is not divisible by the patch size 8; use e.g. \[48, 56\]"),
    (((32, 30),), r"image width 30 is not divisible by the patch size 8; use e.g. \[24, 32\]"),
    ((0,), "positive int or a pair"),
    (((32, 32, 3),), "positive int or a pair"),
    (("32",), "positive int or a pair"),
    ((48, "cubic"), "unknown interpolation mode 'cubic'"),
    ((48, "nearest"), "antialias=True works only with"),
])
def test_resize_errors_leave_the_model_unchanged(args, message):
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        resize_timm_vit(model, *args)
    assert model.patch_embed.img_size == (32, 32)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_resize_rejects_other_models():
    with pytest.raises(ValueError, match="must be a timm VisionTransformer.*visionpe.models.vit.ViT"):
        resize_timm_vit(ViT(16, size="micro"), 32)
    with pytest.raises(ValueError, match="no absolute position table.*pos_embed='none'"):
        resize_timm_vit(tiny(pos_embed="none"), 48)


# ------------------------------------------------------------------------------------- from_timm
CONFIGS = {
    "cls": {},
    "no_embed_class": {"no_embed_class": True},
    "registers": {"reg_tokens": 2},
    "registers-no_embed_class": {"reg_tokens": 2, "no_embed_class": True},
    "avg-fc_norm": {"global_pool": "avg"},
    "avg-no-cls-registers": {"global_pool": "avg", "class_token": False, "reg_tokens": 1},
    "avg-norm": {"global_pool": "avg", "fc_norm": False},
    "no-qkv-bias-no-head": {"qkv_bias": False, "num_classes": 0},
}


@pytest.mark.parametrize("extra", CONFIGS.values(), ids=CONFIGS.keys())
def test_from_timm_reproduces_timm_logits(extra):
    model = tiny(**extra)
    vit = from_timm(model)
    assert not vit.training and vit.pe_name == "learned"
    assert vit.pe.prefix_embed == (not model.no_embed_class) and vit.num_prefix_tokens == model.num_prefix_tokens
    x = torch.randn(2, 3, 32, 32)
    close(vit(x), model(x))
    # at another size the kept table is resampled at run time, as timm's dynamic_img_size does
    y = torch.randn(2, 3, 48, 24)
    close(vit(y), twin(model, **extra, dynamic_img_size=True)(y))
    # moving the native size equals resizing the timm model first
    moved = from_timm(model, img_size=(40, 56))
    resize_timm_vit(model, (40, 56))
    z = torch.randn(2, 3, 40, 56)
    close(moved(z), model(z))
    assert torch.equal(moved.pe.pos_embed, model.pos_embed)


def test_from_timm_with_another_rule_and_dtype_flags():
    model = tiny(reg_tokens=1)
    model.blocks[0].attn.qkv.weight.requires_grad_(False)
    vit = from_timm(model, mode="bilinear", antialias=False)
    assert (vit.pe.mode, vit.pe.antialias) == ("bilinear", False)
    assert not vit.blocks[0].attn.qkv.weight.requires_grad and vit.blocks[0].attn.proj.weight.requires_grad
    resize_timm_vit(model, (56, 40), mode="bilinear", antialias=False)
    x = torch.randn(1, 3, 56, 40)
    close(vit(x), model(x))


@pytest.mark.parametrize("pe,peg_after", [("rope-mixed", ()), ("peg", ()), ("glpe", ()), ("sincos", (0,)),
                                          (None, (0, 1)), ("learned", ())])
def test_swapped_pe_keeps_every_other_weight_bit_identical(pe, peg_after):
    model = tiny(reg_tokens=1)
    vit = from_timm(model, pe=pe, peg_after=peg_after)
    timm_state = model.state_dict()
    fresh = {n for n in vit.state_dict() if n.startswith(("pe.", "pegs."))}
    kept = {n: t for n, t in vit.state_dict().items() if n not in fresh}
    assert set(kept) == set(timm_state) - {"pos_embed"}
    assert all(torch.equal(t, timm_state[n]) for n, t in kept.items())
    assert set(vit.pegs) == {str(i) for i in peg_after}
    if pe is None:
        assert torch.equal(vit.pe.pos_embed, model.pos_embed)
    else:
        assert vit.pe_name == pe
    for size in [(32, 32), (48, 24)]:
        assert vit(torch.randn(1, 3, *size)).shape == (1, 5)


def test_from_timm_new_head_and_pe_kwargs():
    model = tiny()
    vit = from_timm(model, pe="rope-axial", pe_kwargs={"base": 100.0}, num_classes=7, img_size=48)
    assert vit.head.out_features == 7 and vit.img_size == (48, 48) and "base=(100.0, 100.0)" in repr(vit.pe)
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, model.blocks[1].mlp.fc2.weight)
    assert isinstance(from_timm(model, num_classes=0).head, torch.nn.Identity)


@pytest.mark.parametrize("kwargs,feature", [
    ({"qk_norm": True}, "qk_norm"),
    ({"init_values": 1e-5}, "layer scale"),
    ({"global_pool": "map"}, "global_pool='map'"),
    ({"global_pool": "max"}, "global_pool='max'"),
    ({"pre_norm": True}, "a patch embedding without bias"),
    ({"final_norm": False}, "final_norm=False"),
    ({"block_fn": ResPostBlock}, "custom blocks"),
    ({"act_layer": "gelu_tanh"}, "an activation other than exact GELU"),
    ({"scale_mlp_norm": True}, "scale_mlp_norm"),
    ({"proj_drop_rate": 0.1}, "proj_drop_rate"),
    ({"patch_drop_rate": 0.2}, "patch_drop_rate"),
    ({"dynamic_img_pad": True, "dynamic_img_size": True}, "dynamic_img_pad"),
    ({"patch_size": (8, 4)}, "non-square patches"),
])
def test_from_timm_rejects_unsupported_configurations(kwargs, feature):
    model = timm.create_model(NAME, **{**TINY, **kwargs})
    with pytest.raises(ValueError, match="from_timm does not support " + feature.replace("(", r"\(")):
        from_timm(model)


def test_from_timm_argument_errors():
    model = tiny()
    with pytest.raises(ValueError, match="must be a timm VisionTransformer"):
        from_timm(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="pe='none' or another PE name"):
        from_timm(tiny(pos_embed="none"))
    assert from_timm(tiny(pos_embed="none"), pe="none").pe_name == "none"
    with pytest.raises(ValueError, match="pe_kwargs configure a swapped PE"):
        from_timm(model, pe_kwargs={"mode": "bilinear"})
    with pytest.raises(ValueError, match="which pe='peg' replaces"):
        from_timm(model, pe="peg", mode="bilinear")
    with pytest.raises(ValueError, match=r"image width 36 is not divisible by the patch size 8; use e.g. \[32, 40\]"):
        from_timm(model, img_size=(32, 36))
    with pytest.raises(ValueError, match="unknown PE 'rope'"):
        from_timm(model, pe="rope")
    with pytest.raises(ValueError, match=r"peg_after has block indices \[5\]"):
        from_timm(model, peg_after=[5])
    with pytest.raises(ValueError, match="num_classes must be an integer >= 0"):
        from_timm(model, num_classes=-1)


# --------------------------------------------------------------------------------- load_timm_vit
def test_load_timm_vit_round_trips_safetensors_and_pth(tmp_path):
    model = tiny(reg_tokens=1)
    state = model.state_dict()
    paths = [tmp_path / "w.safetensors", tmp_path / "w.pth", tmp_path / "wrapped.pt", tmp_path / "lightning.pth"]
    save_file(state, str(paths[0]))
    torch.save(state, paths[1])
    torch.save({"state_dict": state, "epoch": 3}, paths[2])
    torch.save({"model": state}, paths[3])
    x = torch.randn(2, 3, 32, 32)
    for path in paths:
        loaded = load_timm_vit(NAME, path, img_size=32, patch_size=8, depth=2, num_classes=5, reg_tokens=1)
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in state.items())
        close(loaded(x), model(x), atol=0)
        assert input_sizes(loaded) == [(3, 32, 32)] * 3


@pytest.mark.parametrize("mode,antialias", [("bicubic", True), ("bilinear", False)])
def test_load_timm_vit_resamples_a_checkpoint_saved_at_another_size(tmp_path, mode, antialias):
    model = tiny()
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path))
    loaded = load_timm_vit(NAME, path, img_size=(48, 64), mode=mode, antialias=antialias, patch_size=8, depth=2,
                           num_classes=5)
    expected = resample_abs_pos_embed(model.pos_embed.detach(), (6, 8), (4, 4), 1, interpolation=mode,
                                      antialias=antialias)
    assert torch.equal(loaded.pos_embed, expected)
    assert input_sizes(loaded) == [(3, 48, 64)] * 3
    if mode == "bicubic":  # timm's own load path (checkpoint_filter_fn) gives the same model
        reference = timm.create_model(NAME, **{**TINY, "img_size": (48, 64)}).eval()
        reference.load_state_dict(checkpoint_filter_fn(model.state_dict(), reference))
        x = torch.randn(1, 3, 48, 64)
        close(loaded(x), reference(x), atol=1e-6)


def test_load_timm_vit_non_square_checkpoint_needs_its_size(tmp_path):
    model = tiny(img_size=(32, 24))
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match=r"12 patch rows \(after 1 prefix rows\) are not a square grid; pass "
                                         r"checkpoint_img_size"):
        load_timm_vit(NAME, path, img_size=48, patch_size=8, depth=2, num_classes=5)
    with pytest.raises(ValueError, match=r"checkpoint_img_size=\(32, 32\) gives a 4x4 grid.*12 patch rows"):
        load_timm_vit(NAME, path, img_size=48, patch_size=8, depth=2, num_classes=5, checkpoint_img_size=32)
    loaded = load_timm_vit(NAME, path, img_size=48, patch_size=8, depth=2, num_classes=5,
                           checkpoint_img_size=(32, 24))
    assert torch.equal(loaded.pos_embed, resample_abs_pos_embed(model.pos_embed.detach(), (6, 6), (4, 3), 1))


def test_load_timm_vit_errors(tmp_path):
    kwargs = dict(img_size=32, patch_size=8, depth=2)
    with pytest.raises(ValueError, match="checkpoint file '.*missing.pth' does not exist"):
        load_timm_vit(NAME, tmp_path / "missing.pth", **kwargs)
    five = tmp_path / "five.safetensors"
    save_file(tiny().state_dict(), str(five))
    with pytest.raises(ValueError, match=r"parameter 'head.weight' has shape \(5, 192\) in checkpoint .* but "
                                         r"\(7, 192\) in the model"):
        load_timm_vit(NAME, five, num_classes=7, **kwargs)
    with pytest.raises(ValueError, match=r"missing \['blocks.2.attn.proj.bias'"):
        load_timm_vit(NAME, five, num_classes=5, img_size=32, patch_size=8, depth=3)
    with pytest.raises(ValueError, match=r"parameter 'pos_embed' has shape \(1, 17, 192\) in the checkpoint but "
                                         r"\(1, 785, 96\) in the model \(as built, before any resize\)"):
        load_timm_vit(NAME, five, num_classes=5, embed_dim=96, num_heads=3, **kwargs)
    wrapped = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in tiny().state_dict().items()}, wrapped)
    with pytest.raises(ValueError, match="strip that prefix"):
        load_timm_vit(NAME, wrapped, num_classes=5, **kwargs)
    junk = tmp_path / "junk.pt"
    torch.save({"epoch": 1}, junk)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_timm_vit(NAME, junk, **kwargs)
    (tmp_path / "broken.safetensors").write_text("not safetensors")
    with pytest.raises(ValueError, match="is not a valid safetensors file"):
        load_timm_vit(NAME, tmp_path / "broken.safetensors", **kwargs)
    (tmp_path / "broken.pth").write_text("not a pickle")
    with pytest.raises(ValueError, match=r"cannot be read with torch.load\(weights_only=True\)"):
        load_timm_vit(NAME, tmp_path / "broken.pth", **kwargs)
    (tmp_path / "w.ckpt").write_text("x")
    with pytest.raises(ValueError, match="has the suffix '.ckpt'"):
        load_timm_vit(NAME, tmp_path / "w.ckpt", **kwargs)
    with pytest.raises(ValueError, match="never downloads"):
        load_timm_vit(NAME, pretrained=True)
    with pytest.raises(ValueError, match="timm cannot build 'vit_nonexistent'"):
        load_timm_vit("vit_nonexistent")
    with pytest.raises(ValueError, match="must be a timm VisionTransformer"):
        load_timm_vit("resnet18")
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        load_timm_vit(NAME, img_size=36, patch_size=8, depth=1)


# ------------------------------------------------------------------------------------------- CLI
def run_cli(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="visionpe")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["adapt", *argv])
    console = Console(record=True, width=200)
    return args.func(args, console), console.export_text()


def test_cli_adapt_timm_model_end_to_end(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model(NAME, pretrained=False).eval()
    ckpt = tmp_path / "vit.pth"
    torch.save({"state_dict": source.state_dict()}, ckpt)
    out = tmp_path / "out"
    rc, printed = run_cli(["--model", NAME, "--checkpoint", str(ckpt), "--img-size", "64", "--img-size-w", "48",
                           "--mode", "bilinear", "--no-antialias", "--out", str(out)])
    assert rc == 0 and "224x224 px (grid 14x14) -> 64x48 px (grid 4x3)" in printed
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors", "report.json", "report.md"]
    spec = json.loads((out / "model.json").read_text())
    assert spec == {"format": ADAPT_FORMAT, "library": "timm", "model_name": NAME, "img_size": [64, 48],
                    "create_kwargs": {}, "source": {"model_name": NAME, "checkpoint": str(ckpt)}}
    report = json.loads((out / "report.json").read_text())
    assert report["resize"]["data_config_before"]["resolve_data_config"] == [3, 224, 224]
    assert report["resize"]["mode"] == "bilinear" and report["resize"]["antialias"] is False
    assert "| `resolve_data_config` | (3, 224, 224) | (3, 64, 48) |" in (out / "report.md").read_text()
    rebuilt = load_adapted(out)
    assert input_sizes(rebuilt) == [(3, 64, 48)] * 3
    assert torch.equal(rebuilt.pos_embed, resample_abs_pos_embed(source.pos_embed.detach(), (4, 3), (14, 14), 1,
                                                                 interpolation="bilinear", antialias=False))
    assert torch.equal(rebuilt.blocks[11].mlp.fc2.weight, source.blocks[11].mlp.fc2.weight)


def test_cli_adapt_swaps_the_pe_into_a_visionpe_vit(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model(NAME, pretrained=False).eval()
    ckpt = tmp_path / "vit.safetensors"
    save_file(source.state_dict(), str(ckpt))
    out = tmp_path / "out"
    rc, printed = run_cli(["--model", NAME, "--checkpoint", str(ckpt), "--img-size", "64", "--pe", "rope-mixed",
                           "--peg-after", "0", "--out", str(out)])
    assert rc == 0 and "wrote visionpe model" in printed
    spec = json.loads((out / "model.json").read_text())
    assert spec["library"] == "visionpe" and spec["vit_kwargs"]["pe"] == "rope-mixed"
    assert spec["vit_kwargs"]["img_size"] == [64, 64] and spec["vit_kwargs"]["peg_after"] == [0]
    vit = load_adapted(out)
    assert isinstance(vit, ViT) and not vit.training
    assert torch.equal(vit.blocks[3].attn.qkv.weight, source.blocks[3].attn.qkv.weight)
    assert vit(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    kept = tmp_path / "kept"
    assert run_cli(["--model", NAME, "--checkpoint", str(ckpt), "--to-visionpe", "--out", str(kept)])[0] == 0
    x = torch.randn(1, 3, 224, 224)
    close(load_adapted(kept)(x), source(x))


def test_cli_adapt_errors(tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match=r"image height 65 is not divisible by the patch size 16; use e.g. \[64, 80\]"):
        run_cli(["--model", NAME, "--img-size", "65", "--out", out])
    with pytest.raises(ValueError, match="--img-size-w needs --img-size"):
        run_cli(["--model", NAME, "--img-size-w", "64", "--out", out])
    with pytest.raises(ValueError, match="which --pe peg replaces"):
        run_cli(["--model", NAME, "--pe", "peg", "--mode", "bilinear", "--out", out])
    with pytest.raises(ValueError, match="does not exist"):
        run_cli(["--model", NAME, "--checkpoint", str(tmp_path / "nope.pth"), "--out", out])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="model.json' does not exist"):
        load_adapted(tmp_path)
    (tmp_path / "model.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="has format 'other', expected 'visionpe-adapt/1'"):
        load_adapted(tmp_path)


# ---------------------------------------------------------------------- visionpe ViT extensions
def test_vit_register_tokens_and_fc_norm():
    vit = ViT(16, size="micro", pe="rope-axial", reg_tokens=2, fc_norm=True, global_pool="avg", num_classes=3)
    assert vit.num_prefix_tokens == 3 and vit.reg_token.shape == (1, 2, 32)
    assert isinstance(vit.norm, torch.nn.Identity) and isinstance(vit.fc_norm, torch.nn.LayerNorm)
    assert "reg_token" in vit.no_weight_decay()
    assert vit.forward_features(torch.randn(2, 3, 16, 16)).shape == (2, 3 + 16, 32)
    assert vit(torch.randn(2, 3, 24, 16)).shape == (2, 3)
    plain = ViT(16, size="micro")
    assert plain.reg_token is None and isinstance(plain.fc_norm, torch.nn.Identity) and plain.num_prefix_tokens == 1
    with pytest.raises(ValueError, match="reg_tokens must be an integer >= 0"):
        ViT(16, size="micro", reg_tokens=-1)
    with pytest.raises(ValueError, match="fc_norm must be True or False"):
        ViT(16, size="micro", fc_norm="yes")


def test_resize_report_is_a_dataclass():
    report = resize_timm_vit(tiny(), 40)
    assert isinstance(report, ResizeReport) and report.old_img_size == (32, 32) and report.new_grid == (5, 5)
