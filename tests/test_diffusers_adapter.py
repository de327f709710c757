"""visionpe.diffusers: scaling rules on the RoPE of tiny diffusers video transformers with random weights.

The transformers keep the real head dims (so the real per-axis rotary dims and RIFLEx presets apply) but have
one head, one layer and a few channels.  CogVideoX's pipeline method is taken from diffusers' own source:
``pipeline_cogvideox.py`` imports ``transformers``, which visionpe does not depend on, so its two functions are
compiled from the file into a minimal ``DiffusionPipeline``; a full ``CogVideoXPipeline`` run is added when
``transformers`` is installed.
"""
import ast
import math
import types
from pathlib import Path

import diffusers
import pytest
import torch
from diffusers import (
    CogVideoXTransformer3DModel,
    DiffusionPipeline,
    HunyuanVideoTransformer3DModel,
    WanTransformer3DModel,
)
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from torch import nn

from visionpe import diffusers as vd
from visionpe.base import grid_positions
from visionpe.rope import rope_cos_sin
from visionpe.scaling import NTK, PI, RIFLEX_PRESETS, RIFLEx, YaRN, rope_frequencies

FAMILIES = ["wan", "hunyuanvideo", "cogvideox"]
PREPARE = "_prepare_rotary_positional_embeddings"


# ----------------------------------------------------------------------------------------- models
def _wan(head_dim=128, **kwargs):
    torch.manual_seed(0)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=1, attention_head_dim=head_dim,
                                 in_channels=4, out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=1,
                                 **kwargs).eval()


def _hunyuan(rope_axes_dim=(16, 56, 56)):
    torch.manual_seed(0)
    return HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=1,
                                          attention_head_dim=sum(rope_axes_dim), num_layers=1, num_single_layers=1,
                                          num_refiner_layers=1, mlp_ratio=1.0, text_embed_dim=16,
                                          pooled_projection_dim=8, rope_axes_dim=rope_axes_dim).eval()


def _cog(patch_size_t=None, rotary=True):
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(num_attention_heads=1, attention_head_dim=64, in_channels=4, out_channels=4,
                                       time_embed_dim=8, text_embed_dim=16, num_layers=1, sample_width=8,
                                       sample_height=6, sample_frames=9, patch_size=2, patch_size_t=patch_size_t,
                                       max_text_seq_length=3, use_rotary_positional_embeddings=rotary).eval()


def _model(family):
    return {"wan": _wan, "hunyuanvideo": _hunyuan, "cogvideox": _cog}[family]()


def _inputs(family, frames, height=2, width=2):
    """Forward kwargs for a latent video of ``frames × height × width`` (one token per frame at 2 × 2)."""
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, 3, 16, generator=g)
    if family == "cogvideox":
        return dict(hidden_states=torch.randn(1, frames, 4, height, width, generator=g), encoder_hidden_states=text,
                    timestep=torch.tensor([500]))
    kwargs = dict(hidden_states=torch.randn(1, 4, frames, height, width, generator=g), timestep=torch.tensor([500]),
                  encoder_hidden_states=text)
    if family == "hunyuanvideo":
        kwargs.update(encoder_attention_mask=torch.ones(1, 3, dtype=torch.bool),
                      pooled_projections=torch.randn(1, 8, generator=g), guidance=torch.tensor([4000.0]))
    return kwargs


def _run(model, inputs, **extra):
    with torch.no_grad():
        return model(**inputs, **extra).sample


def _reference_pipeline_class():
    """A ``DiffusionPipeline`` with diffusers' own CogVideoX ``_prepare_rotary_positional_embeddings``."""
    path = Path(diffusers.__file__).parent / "pipelines" / "cogvideo" / "pipeline_cogvideox.py"
    wanted = ("get_resize_crop_region_for_grid", PREPARE)
    nodes = [node for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.FunctionDef) and node.name in wanted]
    namespace = {"torch": torch, "get_3d_rotary_pos_embed": get_3d_rotary_pos_embed}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)

    class ReferenceCogVideoXPipeline(DiffusionPipeline):
        def __init__(self, transformer):
            super().__init__()
            self.register_modules(transformer=transformer)
            self.vae_scale_factor_spatial = 8
            self.vae_scale_factor_temporal = 4

    setattr(ReferenceCogVideoXPipeline, PREPARE, namespace[PREPARE])
    return ReferenceCogVideoXPipeline


RefPipe = _reference_pipeline_class()


def _rope(model, frames, height=2, width=2):
    """The ``(cos, sin)`` the model's attention gets for a latent video, each ``(N, D)`` float32."""
    family = vd.rope_info(model).family
    if family.startswith("cogvideox"):
        captured = []
        hook = model.transformer_blocks[0].register_forward_pre_hook(
            lambda m, args, kwargs: captured.append(kwargs["image_rotary_emb"]), with_kwargs=True)
        _run(model, _inputs("cogvideox", frames, height, width))
        hook.remove()
        return captured[0]
    cos, sin = model.rope(torch.zeros(1, 4, frames, height, width))
    return (cos[0, :, 0], sin[0, :, 0]) if family == "wan" else (cos, sin)


def _reference_rope(model, frames, height=2, width=2):
    """The unpatched model's tables: its own module, or diffusers' pipeline method for CogVideoX."""
    if isinstance(model, CogVideoXTransformer3DModel):
        return getattr(RefPipe(model), PREPARE)(height * 8, width * 8, frames, "cpu")
    return _rope(model, frames, height, width)


def _equal(a, b):
    return all(x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


def _blocks(table, dims):
    """Split ``(N, D)`` into the ``t, h, w`` column blocks."""
    return table.split(list(dims), dim=-1)


# ------------------------------------------------------------------------------------- discovery
def test_supported_models_and_rope_info():
    assert vd.supported_models() == (WanTransformer3DModel, HunyuanVideoTransformer3DModel,
                                     CogVideoXTransformer3DModel)
    expected = {"wan": ((44, 42, 42), 10000.0, (1, 2, 2), "wan"),
                "hunyuanvideo": ((16, 56, 56), 256.0, (1, 2, 2), "hunyuanvideo"),
                "cogvideox": ((16, 24, 24), 10000.0, (1, 2, 2), "cogvideox")}
    for family, (dims, base, patch, preset) in expected.items():
        info = vd.rope_info(_model(family))
        assert (info.family, info.dims, info.base, info.patch_size, info.preset) == (family, dims, base, patch, preset)
        assert info.temporal_compression == 4
        assert RIFLEX_PRESETS[preset].dims[0] == dims[0]
    info = vd.rope_info(_cog(patch_size_t=2))
    assert (info.family, info.patch_size, info.preset) == ("cogvideox1.5", (2, 2, 2), None)
    assert vd.rope_info(_wan(head_dim=32)).preset is None                     # t dim 12 != Wan2.1's 44


def test_frame_units():
    wan, hunyuan, cog, cog15 = _wan(), _hunyuan(), _cog(), _cog(patch_size_t=2)
    assert vd.rope_length(types.SimpleNamespace(transformer=wan, vae_scale_factor_temporal=4), num_frames=81) == 21
    assert vd.rope_length(wan, num_frames=81) == vd.rope_length(wan, latent_frames=21) == 21
    assert vd.rope_length(hunyuan, num_frames=129) == 33
    assert vd.rope_length(cog, num_frames=49) == 13
    assert vd.rope_length(cog15, num_frames=81) == 11                         # 21 latent, padded to 22, / p_t
    assert vd.rope_length(cog15, latent_frames=22) == 11
    assert vd.rope_info(cog15).latent_frames(81) == 21
    assert vd.rope_length(types.SimpleNamespace(transformer=wan, vae_scale_factor_temporal=8), num_frames=81) == 11


# ------------------------------------------------------------------------------- rule None: identical
@pytest.mark.parametrize("family", FAMILIES)
def test_rule_none_is_bit_identical(family):
    model = _model(family)
    grids = [(1, 2, 2), (5, 6, 10), (13, 4, 4)]
    references = [_reference_rope(model, *grid) for grid in grids]
    inputs = _inputs(family, 5, 6, 10)
    extra = {"image_rotary_emb": references[1]} if family == "cogvideox" else {}
    before = _run(model, inputs, **extra)
    with vd.apply_rope_scaling(model, None):
        for grid, reference in zip(grids, references):
            assert _equal(_rope(model, *grid), reference)
        assert torch.equal(_run(model, inputs), before)


def test_wan_tables_keep_the_module_format_and_are_fresh():
    model = _wan()
    hidden = torch.zeros(1, 4, 3, 4, 6)
    reference = model.rope(hidden)
    with vd.apply_rope_scaling(model, None):
        first = model.rope(hidden)
        assert all(t.shape == (1, 18, 1, 128) and t.dtype == torch.float32 for t in first)
        first[0].mul_(0)                                                      # a careless caller
        assert _equal(model.rope(hidden), reference)


def test_wan_has_no_rope_max_seq_len_limit():
    model = _wan(rope_max_seq_len=16)
    reference = _rope(model, 16)
    with pytest.raises(RuntimeError):                                       # diffusers' table ends at 16 rows
        model.rope(torch.zeros(1, 4, 20, 2, 2))
    with vd.apply_rope_scaling(model, None):
        cos, sin = _rope(model, 20)
        assert torch.equal(cos[:16], reference[0]) and torch.equal(sin[:16], reference[1])
        assert torch.isfinite(_run(model, _inputs("wan", 20))).all()


@pytest.mark.parametrize("patch_size_t", [None, 2])
@pytest.mark.parametrize("height,width,frames", [(48, 64, 3), (480, 720, 13), (720, 480, 7), (88, 40, 4),
                                                 (16, 16, 1), (960, 1440, 2)])
def test_cogvideox_pipeline_method_rule_none_is_bit_identical(patch_size_t, height, width, frames):
    pipe = RefPipe(_cog(patch_size_t))
    if patch_size_t and (height // 16 > 3 or width // 16 > 4):             # beyond the 3 x 4 base grid
        with pytest.raises(RuntimeError):                                    # diffusers' slice grid breaks there
            getattr(pipe, PREPARE)(height, width, frames, "cpu")
        with vd.apply_rope_scaling(pipe, None):
            cos, _ = getattr(pipe, PREPARE)(height, width, frames, "cpu")
        assert cos.shape == ((frames + 1) // 2 * (height // 16) * (width // 16), 64)
        return
    reference = getattr(pipe, PREPARE)(height, width, frames, "cpu")
    with vd.apply_rope_scaling(pipe, None):
        assert PREPARE in vars(pipe)
        assert _equal(getattr(pipe, PREPARE)(height, width, frames, "cpu"), reference)
    assert PREPARE not in vars(pipe) and getattr(RefPipe, PREPARE).__name__ == PREPARE


def test_cogvideox_pure_function_and_hook_agree_with_the_pipeline():
    for patch_size_t, frames in ((None, 5), (2, 6)):
        model = _cog(patch_size_t)
        rule = RIFLEx(frames, k=2, mode="paper")
        with vd.apply_rope_scaling(RefPipe(model), rule) as handle:
            from_pipeline = getattr(handle.target, PREPARE)(96, 64, frames, "cpu")
        assert _equal(vd.cogvideox_rotary_emb(model, frames, 12, 8, rule), from_pipeline)
        with vd.apply_rope_scaling(model, {"t": rule}):
            assert _equal(_rope(model, frames, 12, 8), from_pipeline)


def test_cogvideox_hook_replaces_a_positional_image_rotary_emb():
    model = _cog()
    inputs = _inputs("cogvideox", 3)
    reference = _reference_rope(model, 3)
    expected = _run(model, inputs, image_rotary_emb=reference)
    junk = tuple(torch.zeros_like(t) for t in reference)
    with vd.apply_rope_scaling(model, None), torch.no_grad():
        args = (inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["timestep"], None, None, junk)
        assert torch.equal(model(*args).sample, expected)


# ------------------------------------------------------------------------- which components change
RIFLEX_CASES = {"hunyuanvideo": (66, 40), "cogvideox": (25, 15), "wan": (60, 42)}   # above / below N_k


@pytest.mark.parametrize("mode", ["repo", "paper"])
@pytest.mark.parametrize("family", FAMILIES)
def test_riflex_changes_only_component_k_of_time_and_only_past_its_period(family, mode):
    model = _model(family)
    preset = RIFLEX_PRESETS[family]
    above, below = RIFLEX_CASES[family]
    assert below < preset.period < above
    i = preset.k - 1
    for frames in (above, below):
        reference = _reference_rope(model, frames)
        with vd.riflex(model, latent_frames=frames, mode=mode) as handle:
            assert handle.rules == {"t": RIFLEx(frames, k=preset.k, mode=mode), "h": None, "w": None}
            cos, sin = _rope(model, frames)
        if frames == below:
            assert _equal((cos, sin), reference)
            continue
        changed = torch.zeros(cos.shape[-1], dtype=torch.bool)
        changed[2 * i:2 * i + 2] = True
        for new, old in zip((cos, sin), reference):
            assert torch.equal(new[:, ~changed], old[:, ~changed])
            assert not torch.equal(new[:, changed], old[:, changed])
        # row 1 is frame 1 (one token per frame): its angle is the new frequency θ'_k = c·2π/L
        c = 0.9 if mode == "repo" else 1.0
        angle = torch.atan2(sin[1, 2 * i].double(), cos[1, 2 * i].double())
        assert math.isclose(angle, c * 2 * math.pi / frames, abs_tol=1e-6)


def test_riflex_on_cogvideox_15_pipeline_uses_k():
    # the RIFLEx repo's 1.5 branch dropped k (a silent no-op); here it applies, on ceil(F / p_t) positions
    pipe = RefPipe(_cog(patch_size_t=2))
    reference = getattr(pipe, PREPARE)(32, 32, 50, "cpu")                  # 25 temporal positions > N_2 ≈ 19.9
    with vd.riflex(pipe, latent_frames=50, k=2) as handle:
        assert handle.rules["t"] == RIFLEx(25, k=2)
        cos, _ = getattr(pipe, PREPARE)(32, 32, 50, "cpu")
    assert cos.shape == reference[0].shape == (25 * 4, 64)
    assert torch.equal(cos[:, 4:], reference[0][:, 4:]) and not torch.equal(cos[:, 2:4], reference[0][:, 2:4])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rule", [PI(2.0), NTK(2.0), YaRN(2.0, train_length=8)], ids=["pi", "ntk", "yarn"])
def test_temporal_rules_change_the_time_block_only(family, rule):
    model = _model(family)
    dims = vd.rope_info(model).dims
    reference = _reference_rope(model, 16, 6, 4)
    with vd.apply_rope_scaling(model, rule, axis="t"):
        tables = _rope(model, 16, 6, 4)
    for new, old in zip(tables, reference):
        (t_new, *hw_new), (t_old, *hw_old) = _blocks(new, dims), _blocks(old, dims)
        assert all(torch.equal(a, b) for a, b in zip(hw_new, hw_old))
        assert not torch.equal(t_new, t_old)
    t_cos, t_sin = (_blocks(table, dims)[0] for table in tables)
    radius = torch.full_like(t_cos, rule.cos_sin_scale ** 2)
    torch.testing.assert_close(t_cos ** 2 + t_sin ** 2, radius, atol=1e-5, rtol=0)
    if isinstance(rule, PI):                                                 # PI = positions divided by s
        expected, _ = rope_cos_sin(grid_positions((16, 3, 2)) / 2, dims, vd.rope_info(model).base)
        torch.testing.assert_close(t_cos, _blocks(expected, dims)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["wan", "hunyuanvideo", "cogvideox1.5"])
def test_spatial_rules_change_the_h_w_blocks_only(family):
    model = _cog(patch_size_t=2) if family == "cogvideox1.5" else _model(family)
    info = vd.rope_info(model)
    frames = 4
    reference = _rope(model, frames, 6, 8) if family != "cogvideox1.5" else _reference_rope(model, frames, 6, 8)
    forms = [(PI(2.0), ("h", "w")), ({"h": PI(2.0), "w": PI(2.0)}, None), ((None, PI(2.0), PI(2.0)), None)]
    results = []
    for rule, axis in forms:
        with vd.apply_rope_scaling(model, rule, axis=axis):
            results.append(_rope(model, frames, 6, 8))
    assert all(_equal(result, results[0]) for result in results[1:])
    tokens_t = info.rope_length(frames)
    expected, _ = rope_cos_sin(grid_positions((tokens_t, 3, 4)) / torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64),
                               info.dims, info.base)
    for new, old in zip(results[0], reference):
        assert torch.equal(_blocks(new, info.dims)[0], _blocks(old, info.dims)[0])
        assert not torch.equal(new, old)
    torch.testing.assert_close(results[0][0], expected, atol=1e-5, rtol=0)


def test_temporal_rule_from_frames_and_presets():
    hunyuan = _hunyuan()
    assert vd.temporal_rule(hunyuan, "riflex", num_frames=261) == RIFLEx(66, k=4)
    assert vd.temporal_rule(hunyuan, "riflex", latent_frames=66, k=5, mode="paper") == RIFLEx(66, k=5, mode="paper")
    assert vd.temporal_rule(hunyuan, "pi", num_frames=257) == PI(65 / 33)                  # preset: 33 latent
    assert vd.temporal_rule(hunyuan, "ntk", latent_frames=66, train_num_frames=129) == NTK(2.0)
    assert vd.temporal_rule(hunyuan, "yarn", latent_frames=40, train_latent_frames=20) == YaRN(2.0, train_length=20)
    small = _wan(head_dim=32)                                                # no preset: give what is needed
    assert vd.temporal_rule(small, "pi", latent_frames=30, train_latent_frames=10) == PI(3.0)
    assert vd.temporal_rule(small, "riflex", latent_frames=30, k=3) == RIFLEx(30, k=3)


# --------------------------------------------------------------------------------- forward, undo
@pytest.mark.parametrize("family,frames", [("wan", 42), ("wan", 60), ("hunyuanvideo", 66), ("cogvideox", 26)])
def test_forward_at_twice_the_training_length(family, frames):
    model = _model(family)
    inputs = _inputs(family, frames)
    with vd.riflex(model, latent_frames=frames) as handle:
        out = _run(model, inputs)
        rule = handle.rules["t"]
    assert out.shape == inputs["hidden_states"].shape and torch.isfinite(out).all()
    preset = RIFLEX_PRESETS[family]
    plain = rope_frequencies(preset.dims[0], preset.base)
    changed = rule.frequencies(preset.dims[0], preset.base) != plain
    assert changed.tolist() == [i == rule.k - 1 and frames > preset.period for i in range(len(plain))]
    # Wan2.1 at 2x (42 latent frames) is below N_6 ≈ 51: RIFLEx changes nothing there


@pytest.mark.parametrize("family", FAMILIES)
def test_undo_restores_the_original_exactly(family):
    model = _model(family)
    frames = RIFLEX_CASES[family][0]
    inputs = _inputs(family, frames)
    extra = {"image_rotary_emb": _reference_rope(model, frames)} if family == "cogvideox" else {}
    before = _run(model, inputs, **extra)
    original_rope = getattr(model, "rope", None)
    keys = list(model.state_dict())
    handle = vd.riflex(model, latent_frames=frames)
    assert handle.active and "active" in repr(handle)
    assert list(model.state_dict()) == keys
    if family != "cogvideox":
        assert isinstance(model.rope, vd.ScaledRotaryPosEmbed) and model.rope.original is original_rope
    assert not torch.equal(_run(model, inputs, **extra), before)
    with pytest.raises(ValueError, match="already has a visionpe RoPE patch"):
        vd.apply_rope_scaling(model, PI(2.0))
    handle.undo()
    handle.undo()                                                            # a second undo does nothing
    assert not handle.active and not hasattr(model, vd._MARK)
    assert getattr(model, "rope", None) is original_rope and not model._forward_pre_hooks
    assert torch.equal(_run(model, inputs, **extra), before)
    with vd.apply_rope_scaling(model, PI(2.0)):                              # can be patched again
        assert not torch.equal(_run(model, inputs, **extra), before)
    assert torch.equal(_run(model, inputs, **extra), before)


def test_pipeline_patches_every_transformer_and_cross_checks():
    wan, wan_2 = _wan(), _wan()
    pipe = types.SimpleNamespace(transformer=wan, transformer_2=wan_2, vae_scale_factor_temporal=4)
    originals = wan.rope, wan_2.rope
    with vd.riflex(pipe, num_frames=241) as handle:                          # 61 latent frames > N_6 ≈ 51
        assert handle.rules["t"] == RIFLEx(61, k=6)
        assert all(isinstance(m.rope, vd.ScaledRotaryPosEmbed) for m in (wan, wan_2))
        with pytest.raises(ValueError, match="already"):
            vd.riflex(wan_2, latent_frames=61)
    assert (wan.rope, wan_2.rope) == originals
    cog_pipe = RefPipe(_cog())
    with vd.apply_rope_scaling(cog_pipe, None), pytest.raises(ValueError, match="already"):
        vd.apply_rope_scaling(cog_pipe.transformer, None)
    assert not hasattr(cog_pipe.transformer, vd._MARK)


def test_real_cogvideox_pipeline_end_to_end():
    pytest.importorskip("transformers")
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline

    pipe = CogVideoXPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=_cog(),
                             scheduler=CogVideoXDDIMScheduler())
    g = torch.Generator().manual_seed(0)
    call = dict(prompt_embeds=torch.randn(1, 3, 16, generator=g),
                negative_prompt_embeds=torch.randn(1, 3, 16, generator=g), height=16, width=16, num_frames=101,
                num_inference_steps=2, output_type="latent", guidance_scale=2.0)

    def generate():
        return pipe(**call, generator=torch.Generator().manual_seed(1)).frames

    before = generate()
    with vd.apply_rope_scaling(pipe, None):
        assert torch.equal(generate(), before)
    with vd.riflex(pipe, num_frames=101):                                    # 26 latent frames, 2x CogVideoX-5B
        extended = generate()
    assert extended.shape == before.shape == (1, 26, 4, 2, 2) and torch.isfinite(extended).all()
    assert not torch.equal(extended, before) and torch.equal(generate(), before)


# -------------------------------------------------------------------------------------------- errors
class _OtherRope(nn.Module):
    def forward(self, hidden_states):
        raise AssertionError("not called")


def _wan_with_other_rope():
    model = _wan()
    model.rope = _OtherRope()
    return model


def _pipe_with_replaced_method():
    pipe = RefPipe(_cog())
    setattr(pipe, PREPARE, lambda *args: None)
    return pipe


ERRORS = [
    (lambda: vd.apply_rope_scaling(nn.Linear(2, 2)),
     ("Linear is not a supported diffusers model; supported: WanTransformer3DModel, HunyuanVideoTransformer3DModel, "
      "CogVideoXTransformer3DModel")),
    (lambda: vd.rope_info(object()), "pipeline with a .transformer"),
    (lambda: vd.riflex(types.SimpleNamespace(transformer=nn.Linear(2, 2)), latent_frames=9),
     "Linear, which is not supported"),
    (lambda: vd.apply_rope_scaling(types.SimpleNamespace(transformer=_cog()), None), "patch the transformer instead"),
    (lambda: vd.apply_rope_scaling(_cog(rotary=False), None), "use_rotary_positional_embeddings=False"),
    (lambda: vd.apply_rope_scaling(_wan(), PI(2.0), axis="x"), "axis must be one of t, h, w"),
    (lambda: vd.apply_rope_scaling(_wan(), PI(2.0), axis=()), "axis must be one of t, h, w"),
    (lambda: vd.apply_rope_scaling(_wan(), {"time": PI(2.0)}), r"unknown axis name\(s\) \['time'\]"),
    (lambda: vd.apply_rope_scaling(_wan(), {"t": PI(2.0)}, axis="t"), "leave axis out"),
    (lambda: vd.apply_rope_scaling(_wan(), (PI(2.0), None)), r"one rule-or-None per axis \(t, h, w\), got 2"),
    (lambda: vd.apply_rope_scaling(_wan(), (2.0, None, None)), "visionpe.scaling rules"),
    (lambda: vd.apply_rope_scaling(_wan(), "pi"), "visionpe.scaling rules"),
    (lambda: vd.riflex(_hunyuan(rope_axes_dim=(0, 8, 8)), latent_frames=66, k=1),
     "no rotary channels on axis 't'"),
    (lambda: vd.apply_rope_scaling(_hunyuan(), RIFLEx(66, k=9)), r"axis 't'.*rotary dim 16.*valid k are 1\.\.8"),
    (lambda: vd.riflex(_wan(head_dim=6), latent_frames=66, k=2), r"valid k are 1\.\.1"),
    (lambda: vd.apply_rope_scaling(_wan(head_dim=6), NTK(2.0)), "axis 't'.*needs a rotary dim > 2"),
    (lambda: vd.riflex(_wan(head_dim=32), latent_frames=66), "matches no RIFLEx preset.*pass k"),
    (lambda: vd.riflex(_cog(patch_size_t=2), num_frames=161), "cogvideox1.5.*without patch_size_t.*pass k"),
    (lambda: vd.temporal_rule(_wan(head_dim=32), "pi", latent_frames=66), "needs the training length"),
    (lambda: vd.riflex(_wan(), num_frames=161, latent_frames=41), "exactly one of num_frames"),
    (lambda: vd.riflex(_wan()), "exactly one of num_frames"),
    (lambda: vd.riflex(_wan(), num_frames=0), "num_frames must be an integer >= 1"),
    (lambda: vd.rope_length(_wan(), latent_frames=2.5), "latent_frames must be an integer >= 1"),
    (lambda: vd.temporal_rule(_wan(), "ntk", latent_frames=42, train_latent_frames=-21), "train_latent_frames must"),
    (lambda: vd.temporal_rule(_wan(), "linear", latent_frames=42), "valid methods: pi, ntk, yarn, riflex"),
    (lambda: vd.temporal_rule(_wan(), "pi", latent_frames=42, k=6), "k is a RIFLEx argument"),
    (lambda: vd.temporal_rule(_wan(), "riflex", latent_frames=42, train_latent_frames=21), "training length"),
    (lambda: vd.riflex(_wan(), latent_frames=42, mode="loose"), "unknown RIFLEx mode"),
    (lambda: vd.apply_rope_scaling(_wan(), PI(0.0)), "PI scale must be a finite number > 0"),
    (lambda: vd.apply_rope_scaling(_wan(), YaRN(-2.0, train_length=21)), "YaRN scale must be a finite number > 0"),
    (lambda: vd.apply_rope_scaling(_wan_with_other_rope(), None), "_OtherRope, not diffusers' WanRotaryPosEmbed"),
    (lambda: vd.apply_rope_scaling(_pipe_with_replaced_method(), None), "already been replaced"),
    (lambda: vd.cogvideox_rotary_emb(_wan(), 3, 4, 4), "needs a CogVideoXTransformer3DModel"),
    (lambda: vd.cogvideox_rotary_emb(_cog(), 3, 1, 4), "latent_height=1 is smaller than one patch"),
]


@pytest.mark.parametrize("call,match", ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
