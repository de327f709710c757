"""Scale the rotary embedding of diffusers video transformers (PI, NTK, YaRN, RIFLEx), per axis, with undo.

Supported (diffusers >= 0.35, checked against 0.42.1):

* ``WanTransformer3DModel`` and ``HunyuanVideoTransformer3DModel``: the RoPE is computed inside the
  transformer by ``transformer.rope``; it is replaced by a :class:`ScaledRotaryPosEmbed` that returns
  the same format (Wan: ``(1, N, 1, D)``, HunyuanVideo: ``(N, D)``, float32 cos and sin).
* ``CogVideoXTransformer3DModel``: the RoPE is computed by the *pipeline*
  (``_prepare_rotary_positional_embeddings``) and passed to the transformer as ``image_rotary_emb``.
  For a CogVideoX pipeline that method is replaced on the pipeline instance; for a bare transformer a
  forward pre-hook replaces ``image_rotary_emb`` with the table for the input's shape.
* A pipeline (any object with a ``transformer`` attribute) holding one of these transformers; Wan 2.2's
  ``transformer_2`` is patched too.

Axes are named ``"t"``, ``"h"``, ``"w"``; every model concatenates their blocks in that order in the
head dim, interleaved pairs.  Units: ``num_frames`` is always *pixel* frames (the pipelines' argument),
``latent_frames`` the frames of the latent video the transformer sees, and a temporal *RoPE length*
is the number of temporal RoPE positions, ``latent_frames // patch_size_t`` (rounded up for CogVideoX
1.5, whose pipeline pads).  RIFLEx's test length, component periods and training lengths are RoPE
lengths; with ``patch_size_t = 1`` (every released model except CogVideoX 1.5) they equal latent frames.

Tables are computed the way diffusers computes them (float64 angles for Wan, float32 for HunyuanVideo
and CogVideoX, whatever the model's dtype), so ``rule=None`` gives bit-identical embeddings, and
components a rule leaves unchanged keep the model's exact values.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MethodType
from typing import Any

import torch
from diffusers import CogVideoXTransformer3DModel, HunyuanVideoTransformer3DModel, WanTransformer3DModel
from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoRotaryPosEmbed
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
from torch import Tensor, nn

from .rope import expand_layout
from .scaling import RIFLEX_PRESETS, RIFLExPreset, ScalingRule, length_rule, rope_frequencies

__all__ = [
    "AXES",
    "RopeInfo",
    "RopeScalingHandle",
    "ScaledRotaryPosEmbed",
    "apply_rope_scaling",
    "cogvideox_rotary_emb",
    "riflex",
    "rope_info",
    "rope_length",
    "supported_models",
    "temporal_rule",
]

AXES = ("t", "h", "w")

AxisRules = tuple[ScalingRule | None, ScalingRule | None, ScalingRule | None]
RuleSpec = ScalingRule | Mapping[str, ScalingRule | None] | Sequence[ScalingRule | None] | None

_METHODS = ("pi", "ntk", "yarn", "riflex")
_PREPARE = "_prepare_rotary_positional_embeddings"
_MARK = "_visionpe_rope_scaling"          # set on a transformer while one of our patches is on it
_WAN_BASE = 10000.0                       # WanTransformer3DModel never passes theta to WanRotaryPosEmbed
_DEFAULT_TEMPORAL_COMPRESSION = 4         # Wan and HunyuanVideo VAEs; what their pipelines assume without one


def supported_models() -> tuple[type, ...]:
    """The diffusers transformer classes this module patches (and their subclasses).

    A pipeline is supported when its ``transformer`` is one of them.
    """
    return WanTransformer3DModel, HunyuanVideoTransformer3DModel, CogVideoXTransformer3DModel


def _supported_names() -> str:
    return ", ".join(cls.__name__ for cls in supported_models())


@dataclass(frozen=True)
class RopeInfo:
    """The 3D RoPE of a supported transformer (or of a pipeline's transformer).

    Attributes:
        family: ``"wan"``, ``"hunyuanvideo"``, ``"cogvideox"`` (1.0, linspace grid) or
            ``"cogvideox1.5"`` (``patch_size_t`` set, slice grid).
        model: the transformer's class name.
        dims: rotary dims per axis ``(t, h, w)``; they sum to the attention head dim.
        base: RoPE base (``theta``) of every axis.
        patch_size: ``(p_t, p_h, p_w)`` latent frames/rows/columns per token (``p_t = 1`` for CogVideoX 1.0).
        temporal_compression: pixel frames per latent frame (the VAE's temporal compression).
        preset: key of :data:`visionpe.scaling.RIFLEX_PRESETS` whose temporal RoPE (dim and base) this
            model has, or ``None``.
    """

    family: str
    model: str
    dims: tuple[int, int, int]
    base: float
    patch_size: tuple[int, int, int]
    temporal_compression: int
    preset: str | None

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames for ``num_frames`` pixel frames, ``(F − 1) // c + 1`` (``c``: :attr:`temporal_compression`)."""
        return (_check_count("num_frames", num_frames) - 1) // self.temporal_compression + 1

    def rope_length(self, latent_frames: int) -> int:
        """Temporal RoPE positions for ``latent_frames``: ``// p_t``, rounded up for CogVideoX 1.5 (which pads)."""
        latent_frames = _check_count("latent_frames", latent_frames)
        if self.family == "cogvideox1.5":
            return -(-latent_frames // self.patch_size[0])
        if latent_frames < self.patch_size[0]:
            raise ValueError(f"latent_frames={latent_frames} is shorter than one temporal patch "
                             f"(patch_size_t={self.patch_size[0]}) of {self.model}")
        return latent_frames // self.patch_size[0]


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class _Target:
    """What a user passed, resolved: its RoPE, the transformers to patch and the pipeline (if any)."""

    info: RopeInfo
    transformers: tuple[nn.Module, ...]
    pipeline: Any


def _model_info(model: nn.Module, temporal_compression: int | None) -> RopeInfo:
    if not isinstance(model, CogVideoXTransformer3DModel):
        rope = model.rope.original if isinstance(model.rope, ScaledRotaryPosEmbed) else model.rope  # the unpatched one
        expected = WanRotaryPosEmbed if isinstance(model, WanTransformer3DModel) else HunyuanVideoRotaryPosEmbed
        if type(rope) is not expected:
            raise ValueError(f"{type(model).__name__}.rope is a {type(rope).__name__}, not diffusers' "
                             f"{expected.__name__}: another patch replaced it; restore the original module first")
    if isinstance(model, WanTransformer3DModel):
        family, dims, base, patch = "wan", (rope.t_dim, rope.h_dim, rope.w_dim), _WAN_BASE, tuple(rope.patch_size)
    elif isinstance(model, HunyuanVideoTransformer3DModel):
        family, dims, base = "hunyuanvideo", tuple(rope.rope_dim), float(rope.theta)
        patch = (rope.patch_size_t, rope.patch_size, rope.patch_size)
    else:
        config = model.config
        if not config.use_rotary_positional_embeddings:
            raise ValueError(f"{type(model).__name__} has use_rotary_positional_embeddings=False (e.g. CogVideoX-2B, "
                             f"which uses absolute sincos embeddings): there is no RoPE to scale")
        head = config.attention_head_dim
        family = "cogvideox" if config.patch_size_t is None else "cogvideox1.5"
        dims, base = (head // 4, head // 8 * 3, head // 8 * 3), 10000.0
        patch = (config.patch_size_t or 1, config.patch_size, config.patch_size)
        temporal_compression = temporal_compression or config.temporal_compression_ratio
    preset = RIFLEX_PRESETS.get(family)
    matches = preset is not None and preset.dims[preset.temporal_axis] == dims[0] and preset.base == base
    return RopeInfo(family, type(model).__name__, tuple(int(d) for d in dims), base, tuple(int(p) for p in patch),
                    int(temporal_compression or _DEFAULT_TEMPORAL_COMPRESSION), family if matches else None)


def _resolve(target: Any) -> _Target:
    supported = supported_models()
    if isinstance(target, nn.Module):
        if not isinstance(target, supported):
            raise ValueError(f"{type(target).__name__} is not a supported diffusers model; supported: "
                             f"{_supported_names()} (or a pipeline holding one as .transformer)")
        return _Target(_model_info(target, None), (target,), None)
    transformers = tuple(m for m in (getattr(target, "transformer", None), getattr(target, "transformer_2", None))
                         if m is not None)
    if not transformers:
        raise ValueError(f"expected a diffusers transformer or a pipeline with a .transformer, got "
                         f"{type(target).__name__}; supported models: {_supported_names()}")
    for model in transformers:
        if not isinstance(model, supported):
            raise ValueError(f"the transformer of {type(target).__name__} is a {type(model).__name__}, which is not "
                             f"supported; supported: {_supported_names()}")
    info = _model_info(transformers[0], getattr(target, "vae_scale_factor_temporal", None))
    if any(_model_info(m, None).dims != info.dims or type(m) is not type(transformers[0]) for m in transformers[1:]):
        raise ValueError(f"{type(target).__name__}.transformer and .transformer_2 have different RoPEs; "
                         f"patch each transformer on its own")
    if info.family.startswith("cogvideox") and not (callable(getattr(target, _PREPARE, None))
                                                    and hasattr(target, "vae_scale_factor_spatial")):
        raise ValueError(f"{type(target).__name__} holds a CogVideoX transformer but has no {_PREPARE} method or "
                         f"vae_scale_factor_spatial, so it is not a CogVideoX pipeline; patch the transformer instead: "
                         f"apply_rope_scaling(pipe.transformer, ...) (a forward pre-hook sets image_rotary_emb)")
    return _Target(info, transformers, target)


def rope_info(target: Any) -> RopeInfo:
    """The RoPE of a supported transformer or pipeline (see :class:`RopeInfo`).

    For a pipeline, the temporal compression is its ``vae_scale_factor_temporal``; for a bare transformer
    it is the config's ``temporal_compression_ratio`` (CogVideoX) or 4 (Wan, HunyuanVideo).

    Raises:
        ValueError: ``target`` is not a supported model or a pipeline holding one.
    """
    return _resolve(target).info


def _frames_to_rope_length(info: RopeInfo, num_frames: int | None, latent_frames: int | None,
                           prefix: str = "") -> int:
    if (num_frames is None) == (latent_frames is None):
        raise ValueError(f"give exactly one of {prefix}num_frames (pixel frames, as passed to the pipeline) or "
                         f"{prefix}latent_frames (frames of the latent video the transformer sees)")
    if latent_frames is None:
        latent_frames = info.latent_frames(_check_count(f"{prefix}num_frames", num_frames))
    return info.rope_length(_check_count(f"{prefix}latent_frames", latent_frames))


def rope_length(target: Any, *, num_frames: int | None = None, latent_frames: int | None = None) -> int:
    """Temporal length in RoPE positions: the unit of RIFLEx's test length, periods and training lengths.

    Give exactly one of ``num_frames`` (pixel frames, e.g. 129 → 33 for HunyuanVideo) or ``latent_frames``.
    For CogVideoX 1.5 (``patch_size_t = 2``) 81 pixel frames are 21 latent frames and 11 RoPE positions.
    """
    return _frames_to_rope_length(rope_info(target), num_frames, latent_frames)


def _preset(info: RopeInfo, why: str) -> RIFLExPreset:
    if info.preset is None:
        known = ", ".join(f"{name} (temporal dim {p.dims[p.temporal_axis]}, base {p.base:g})"
                          for name, p in RIFLEX_PRESETS.items())
        raise ValueError(f"{info.model} (family {info.family}, temporal rotary dim {info.dims[0]}, base "
                         f"{info.base:g}) matches no RIFLEx preset ({known}; the cogvideox preset is CogVideoX-5B "
                         f"1.0, without patch_size_t); {why}")
    return RIFLEX_PRESETS[info.preset]


# ------------------------------------------------------------------------------------------ rules
def _axis_rules(rule: RuleSpec, axis: str | Sequence[str] | None) -> AxisRules:
    """One rule-or-``None`` per axis ``(t, h, w)`` from the forms :func:`apply_rope_scaling` accepts."""
    if isinstance(rule, Mapping) or (isinstance(rule, Sequence) and not isinstance(rule, (str, bytes))):
        if axis is not None:
            raise ValueError("axis= applies a single rule; with a per-axis dict or tuple of rules leave axis out")
        if isinstance(rule, Mapping):
            unknown = [key for key in rule if key not in AXES]
            if unknown:
                raise ValueError(f"unknown axis name(s) {unknown} in the rule dict; valid axes: {', '.join(AXES)}")
            rules = tuple(rule.get(name) for name in AXES)
        else:
            if len(rule) != len(AXES):
                raise ValueError(f"a tuple of rules needs one rule-or-None per axis (t, h, w), got {len(rule)}")
            rules = tuple(rule)
    else:
        names = ("t",) if axis is None else (axis,) if isinstance(axis, str) else tuple(axis)
        if not names or any(name not in AXES for name in names):
            raise ValueError(f"axis must be one of {', '.join(AXES)} or a sequence of them, got {axis!r}")
        rules = tuple(rule if name in names else None for name in AXES)
    for entry in rules:
        if entry is not None and not isinstance(entry, ScalingRule):
            raise ValueError(f"rules must be visionpe.scaling rules (PI, NTK, YaRN, RIFLEx) or None, got {entry!r}")
    return rules


def _check_rules(info: RopeInfo, rules: AxisRules) -> None:
    """Raise ``ValueError`` for a rule on an axis without rotary channels, or one its axis rejects."""
    for name, dim, rule in zip(AXES, info.dims, rules):
        if rule is None:
            continue
        if dim == 0:
            raise ValueError(f"{info.model} has no rotary channels on axis {name!r} (rotary dims t, h, w = "
                             f"{info.dims}), so {type(rule).__name__} cannot apply there; put it on another axis")
        try:
            rule.frequencies(dim, info.base)
        except ValueError as error:
            raise ValueError(f"{type(rule).__name__} on axis {name!r} of {info.model} (rotary dim {dim}, "
                             f"base {info.base:g}): {error}") from None


def temporal_rule(
    target: Any,
    method: str,
    *,
    num_frames: int | None = None,
    latent_frames: int | None = None,
    train_num_frames: int | None = None,
    train_latent_frames: int | None = None,
    k: int | None = None,
    mode: str = "repo",
) -> ScalingRule:
    """A scaling rule for the time axis of ``target``, from frame counts.

    Args:
        target: a supported transformer or pipeline (see :func:`supported_models`).
        method: ``"pi"``, ``"ntk"``, ``"yarn"`` or ``"riflex"``.
        num_frames / latent_frames: the test length, in pixel or latent frames (exactly one).
        train_num_frames / train_latent_frames: the training length (at most one; PI, NTK, YaRN).  Without
            it the model's preset is used (HunyuanVideo 33, CogVideoX-5B 13, Wan2.1 21 latent frames).
        k: RIFLEx's 1-indexed intrinsic component; default: the model's preset (HunyuanVideo 4,
            CogVideoX-5B 2, Wan2.1 6).
        mode: RIFLEx ``"repo"`` (``θ'_k = 0.9·2π/L``) or ``"paper"`` (``2π/L``).

    Returns:
        ``RIFLEx(L, k, mode)`` or ``PI(s)``, ``NTK(s)``, ``YaRN(s, train_length=L_train)`` with ``L`` the test
        RoPE length and ``s = L / L_train``; apply it with ``apply_rope_scaling(target, rule, axis="t")``.

    Raises:
        ValueError: unknown method, missing or non-positive frame counts, no training length and no preset,
            no ``k`` and no preset (CogVideoX 1.5 has none), ``k`` out of range, or a model without a time axis.
    """
    info = rope_info(target)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(_METHODS)} "
                         f"(for plain extrapolation apply rule=None)")
    test = _frames_to_rope_length(info, num_frames, latent_frames)
    has_train = train_num_frames is not None or train_latent_frames is not None
    if method == "riflex":
        if has_train:
            raise ValueError("RIFLEx does not use a training length (only the test length and k); "
                             "drop train_num_frames / train_latent_frames")
        if k is None:
            k = _preset(info, "pass k (find it from the repetition you observe with "
                              "visionpe.scaling.find_intrinsic_component)").k
        train = None
    else:
        if k is not None:
            raise ValueError(f"k is a RIFLEx argument; {method} does not take it")
        if has_train:
            train = _frames_to_rope_length(info, train_num_frames, train_latent_frames, prefix="train_")
        else:
            train = _preset(info, f"{method} needs the training length: pass train_num_frames (pixel) or "
                                  f"train_latent_frames").train_length
    rule = length_rule(method, train, test, k, mode)
    _check_rules(info, (rule, None, None))
    return rule


# ------------------------------------------------------------------------------------------ tables
def _axis_cos_sin(positions: Tensor, dim: int, base: float, rule: ScalingRule | None) -> tuple[Tensor, Tensor]:
    """Interleaved ``(n, dim)`` float32 cos and sin of one axis, computed in ``positions.dtype`` as diffusers does.

    The frequencies are diffusers' own ``1 / base^(2i/dim)`` in that dtype; a rule replaces the components it
    changes (compared with :func:`visionpe.scaling.rope_frequencies`) and leaves the others bit-exact.
    """
    dtype, device = positions.dtype, positions.device
    theta = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=dtype, device=device) / dim))
    scale = 1.0
    if rule is not None:
        scaled = rule.frequencies(dim, base)
        unchanged = (scaled == rope_frequencies(dim, base)).to(device)
        theta = torch.where(unchanged, theta, scaled.to(device, dtype))
        scale = rule.cos_sin_scale
    angles = torch.outer(positions, theta)
    cos, sin = angles.cos(), angles.sin()
    if scale != 1.0:
        cos, sin = cos * scale, sin * scale
    return expand_layout(cos, "interleaved").float(), expand_layout(sin, "interleaved").float()


def _grid_cos_sin(positions: Sequence[Tensor], dims: Sequence[int], base: float,
                  rules: AxisRules) -> tuple[Tensor, Tensor]:
    """``(T, H, W, D)`` cos and sin of the grid whose per-axis positions are given, blocks ``[t | h | w]``."""
    sizes = [len(p) for p in positions]
    cos_blocks, sin_blocks = [], []
    for axis, (pos, dim, rule) in enumerate(zip(positions, dims, rules)):
        shape = [1, 1, 1, -1]
        shape[axis] = sizes[axis]
        cos, sin = _axis_cos_sin(pos, dim, base, rule)
        cos_blocks.append(cos.view(shape).expand(*sizes, -1))
        sin_blocks.append(sin.view(shape).expand(*sizes, -1))
    return torch.cat(cos_blocks, dim=-1), torch.cat(sin_blocks, dim=-1)


class ScaledRotaryPosEmbed(nn.Module):
    """Drop-in for ``WanRotaryPosEmbed`` / ``HunyuanVideoRotaryPosEmbed`` with per-axis scaling rules.

    It holds the module it replaces as ``original`` (so ``model.to(...)`` keeps moving it) and reproduces
    its output format exactly:

    * Wan: ``(cos, sin)`` each ``(1, N, 1, D)`` float32 from float64 angles computed on the CPU (float32
      where MPS is available, as diffusers does), with no ``rope_max_seq_len`` limit;
    * HunyuanVideo: ``(cos, sin)`` each ``(N, D)`` float32 from float32 angles on the input's device;

    with ``N = (F // p_t)·(H // p_h)·(W // p_w)`` tokens in ``(t, h, w)`` order for ``hidden_states`` of shape
    ``(B, C, F, H, W)``.  Nothing is cached: every call returns new tensors.
    """

    def __init__(self, original: nn.Module, info: RopeInfo, rules: AxisRules) -> None:
        super().__init__()
        self.original = original
        self.info = info
        self.rules = rules

    def forward(self, hidden_states: Tensor) -> tuple[Tensor, Tensor]:
        sizes = [n // p for n, p in zip(hidden_states.shape[2:], self.info.patch_size)]
        if self.info.family == "wan":
            dtype = torch.float32 if torch.backends.mps.is_available() else torch.float64
            positions = [torch.arange(n, dtype=dtype) for n in sizes]
        else:
            positions = [torch.arange(n, dtype=torch.float32, device=hidden_states.device) for n in sizes]
        cos, sin = _grid_cos_sin(positions, self.info.dims, self.info.base, self.rules)
        shape = (1, -1, 1, cos.shape[-1]) if self.info.family == "wan" else (-1, cos.shape[-1])
        return cos.reshape(shape).to(hidden_states.device), sin.reshape(shape).to(hidden_states.device)

    def extra_repr(self) -> str:
        return f"family={self.info.family!r}, dims={self.info.dims}, base={self.info.base:g}, " \
               f"rules={dict(zip(AXES, self.rules))}"


def _resize_crop_region(grid: tuple[int, int], base_height: int, base_width: int) -> tuple[tuple[int, int], ...]:
    """Corners of ``grid`` resized to fit the ``base_height × base_width`` grid and centred in it.

    CogVideoX 1.0's spatial positions (diffusers' ``get_resize_crop_region_for_grid``).
    """
    height, width = grid
    if height / width > base_height / base_width:
        resized_height, resized_width = base_height, round(base_height / height * width)
    else:
        resized_height, resized_width = round(base_width / width * height), base_width
    top = round((base_height - resized_height) / 2.0)
    left = round((base_width - resized_width) / 2.0)
    return (top, left), (top + resized_height, left + resized_width)


def _cogvideox_tables(config: Any, info: RopeInfo, rules: AxisRules, latent_frames: int, latent_height: int,
                      latent_width: int, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    p = config.patch_size
    grid_h, grid_w = latent_height // p, latent_width // p
    base_h, base_w = config.sample_height // p, config.sample_width // p
    frames = info.rope_length(latent_frames)
    t = torch.arange(frames, dtype=torch.float32, device=device)
    if info.family == "cogvideox":
        # 1.0: the grid resized into the base grid (automatic spatial interpolation), diffusers' linspace ends
        start, stop = _resize_crop_region((grid_h, grid_w), base_h, base_w)
        h = torch.linspace(start[0], stop[0] * (grid_h - 1) / grid_h, grid_h, dtype=torch.float32, device=device)
        w = torch.linspace(start[1], stop[1] * (grid_w - 1) / grid_w, grid_w, dtype=torch.float32, device=device)
    else:
        # 1.5: integer positions (diffusers slices a base-size table, which breaks beyond it; this does not)
        h = torch.arange(grid_h, dtype=torch.float32, device=device)
        w = torch.arange(grid_w, dtype=torch.float32, device=device)
    cos, sin = _grid_cos_sin((t, h, w), info.dims, info.base, rules)
    return cos.reshape(-1, cos.shape[-1]), sin.reshape(-1, sin.shape[-1])


def cogvideox_rotary_emb(
    transformer: CogVideoXTransformer3DModel,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    rule: RuleSpec = None,
    axis: str | Sequence[str] | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """CogVideoX's ``image_rotary_emb`` for a latent video, with scaling rules; for custom pipelines.

    With ``rule=None`` it equals what ``CogVideoXPipeline._prepare_rotary_positional_embeddings(height, width,
    latent_frames, device)`` returns for ``latent_height = height // vae_scale_factor_spatial`` (same for width).

    Args:
        transformer: a ``CogVideoXTransformer3DModel`` with rotary embeddings (only its config is read).
        latent_frames, latent_height, latent_width: the latent video, as in the transformer's
            ``hidden_states`` of shape ``(B, F, C, H, W)``.
        rule, axis: as in :func:`apply_rope_scaling`.
        device: where to build the tables (default: the default device).

    Returns:
        ``(cos, sin)``, each ``(T·(H // p)·(W // p), head_dim)`` float32, with ``T = F`` (1.0) or
        ``ceil(F / patch_size_t)`` (1.5).
    """
    if not isinstance(transformer, CogVideoXTransformer3DModel):
        raise ValueError(f"cogvideox_rotary_emb needs a CogVideoXTransformer3DModel, got {type(transformer).__name__}")
    info = _model_info(transformer, None)
    rules = _axis_rules(rule, axis)
    _check_rules(info, rules)
    for name, value in (("latent_height", latent_height), ("latent_width", latent_width)):
        if _check_count(name, value) < info.patch_size[1]:
            raise ValueError(f"{name}={value} is smaller than one patch ({info.patch_size[1]} latent pixels)")
    return _cogvideox_tables(transformer.config, info, rules, latent_frames, latent_height, latent_width, device)


def _prepare_scaled(pipe: Any, height: int, width: int, num_frames: int, device: torch.device,
                    info: RopeInfo, rules: AxisRules) -> tuple[Tensor, Tensor]:
    """Replacement for a CogVideoX pipeline's ``_prepare_rotary_positional_embeddings`` (pixel h/w, latent frames)."""
    scale = pipe.vae_scale_factor_spatial
    return _cogvideox_tables(pipe.transformer.config, info, rules, num_frames, height // scale, width // scale, device)


def _cogvideox_pre_hook(module: nn.Module, args: tuple, kwargs: dict, info: RopeInfo,
                        rules: AxisRules) -> tuple[tuple, dict]:
    """Forward pre-hook: set ``image_rotary_emb`` (argument 5) from ``hidden_states`` ``(B, F, C, H, W)``."""
    hidden_states = args[0] if args else kwargs["hidden_states"]
    _, frames, _, height, width = hidden_states.shape
    emb = _cogvideox_tables(module.config, info, rules, frames, height, width, hidden_states.device)
    if len(args) > 5:
        return (*args[:5], emb, *args[6:]), kwargs
    return args, {**kwargs, "image_rotary_emb": emb}


# ------------------------------------------------------------------------------------------ patching
class RopeScalingHandle:
    """A RoPE patch on a model or pipeline; :meth:`undo` (or leaving a ``with`` block) restores the original.

    Attributes:
        target: what was patched.
        info: its :class:`RopeInfo`.
        rules: the rule-or-``None`` of every axis, ``{"t": ..., "h": ..., "w": ...}``.
    """

    def __init__(self, target: Any, info: RopeInfo, rules: AxisRules, restore: list[Callable[[], None]]) -> None:
        self.target = target
        self.info = info
        self.rules = dict(zip(AXES, rules))
        self._restore = restore

    @property
    def active(self) -> bool:
        """Whether the patch is still applied."""
        return bool(self._restore)

    def undo(self) -> None:
        """Put back the original RoPE module, pipeline method or hook-free forward; a second call does nothing."""
        while self._restore:
            self._restore.pop()()

    def __enter__(self) -> RopeScalingHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"RopeScalingHandle({type(self.target).__name__}, rules={self.rules}, {state})"


def _check_unpatched(resolved: _Target) -> None:
    for model in resolved.transformers:
        if getattr(model, _MARK, False):
            raise ValueError(f"this {type(model).__name__} already has a visionpe RoPE patch; call undo() on its "
                             f"handle before applying another (patches do not stack)")
    if resolved.pipeline is not None and _PREPARE in vars(resolved.pipeline):
        raise ValueError(f"{_PREPARE} has already been replaced on this {type(resolved.pipeline).__name__} "
                         f"instance (by another RoPE patch); remove it (del pipe.{_PREPARE}) first")


def apply_rope_scaling(target: Any, rule: RuleSpec = None, axis: str | Sequence[str] | None = None
                       ) -> RopeScalingHandle:
    """Apply scaling rules to the RoPE of a diffusers video transformer or pipeline.

    Args:
        target: ``WanTransformer3DModel``, ``HunyuanVideoTransformer3DModel``, ``CogVideoXTransformer3DModel``
            or a pipeline holding one as ``transformer`` (see the module docstring for what is patched).
        rule: a :mod:`visionpe.scaling` rule (``PI``, ``NTK``, ``YaRN``, ``RIFLEx``), ``None`` (plain
            extrapolation: the unpatched behaviour), a dict ``{"t": rule, "h": rule, ...}`` or a tuple of
            one rule-or-``None`` per axis ``(t, h, w)``.  Lengths in rules are temporal RoPE lengths on
            ``t`` (see :func:`rope_length`) and patch-grid rows/columns on ``h``/``w``.
        axis: for a single rule, the axis or axes it applies to (``"t"`` by default; e.g. ``("h", "w")``).

    Returns:
        A :class:`RopeScalingHandle`; ``handle.undo()`` or ``with apply_rope_scaling(...):`` restores the
        original exactly.

    Raises:
        ValueError: unsupported model or pipeline, CogVideoX without RoPE, unknown axis names, a rule on an
            axis without rotary channels or one its axis rejects (e.g. RIFLEx ``k`` out of range), or a
            target that is already patched (patches do not stack; undo first).
    """
    resolved = _resolve(target)
    rules = _axis_rules(rule, axis)
    _check_rules(resolved.info, rules)
    _check_unpatched(resolved)
    info, restore = resolved.info, []
    if info.family in ("wan", "hunyuanvideo"):
        for model in resolved.transformers:
            model.rope = ScaledRotaryPosEmbed(model.rope, info, rules)
            restore.append(partial(setattr, model, "rope", model.rope.original))
    elif resolved.pipeline is not None:
        pipe = resolved.pipeline
        setattr(pipe, _PREPARE, MethodType(partial(_prepare_scaled, info=info, rules=rules), pipe))
        restore.append(partial(delattr, pipe, _PREPARE))
    else:
        hook = resolved.transformers[0].register_forward_pre_hook(
            partial(_cogvideox_pre_hook, info=info, rules=rules), with_kwargs=True)
        restore.append(hook.remove)
    for model in resolved.transformers:
        setattr(model, _MARK, True)
        restore.append(partial(delattr, model, _MARK))
    return RopeScalingHandle(target, info, rules, restore)


def riflex(
    target: Any,
    *,
    num_frames: int | None = None,
    latent_frames: int | None = None,
    k: int | None = None,
    mode: str = "repo",
) -> RopeScalingHandle:
    """Extend a video model in time with RIFLEx: ``apply_rope_scaling(target, temporal_rule(target, "riflex", ...))``.

    Args:
        target: a supported transformer or pipeline.
        num_frames / latent_frames: the length you will generate, in pixel frames (the pipeline's
            ``num_frames``) or latent frames; exactly one.
        k: the intrinsic component (1-indexed); default: the model's preset (HunyuanVideo 4,
            CogVideoX-5B 2, Wan2.1 6).
        mode: ``"repo"`` (official code, ``θ'_k = 0.9·2π/L``) or ``"paper"`` (``2π/L``).

    Only component ``k`` of the time axis changes, and only if its period is shorter than the test length
    ``L`` (e.g. Wan2.1's ``N_6 ≈ 51`` latent frames: it acts from 201 pixel frames on, not at 2× = 161).
    """
    rule = temporal_rule(target, "riflex", num_frames=num_frames, latent_frames=latent_frames, k=k, mode=mode)
    return apply_rope_scaling(target, rule, axis="t")
