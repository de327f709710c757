"""Adapters for timm ``VisionTransformer``\\ s: resize with a chosen rule, load local checkpoints, convert.

* :func:`resize_timm_vit` moves a timm ViT to a new image size in place.  The learned table is
  resampled with :func:`visionpe.absolute.resample_pos_embed` and the user's rule (timm's own
  ``set_input_size`` always uses bicubic with antialias), the patch embed's ``img_size``/``grid_size``/
  ``num_patches`` are updated, and the model's ``pretrained_cfg`` is set so that timm's legacy data
  config resolvers (``resolve_data_config``/``resolve_model_data_config``), which read the source
  checkpoint's ``input_size``, report the new size.  The returned :class:`ResizeReport` records what
  they reported before that fix.
* :func:`load_timm_vit` builds a timm ViT (``pretrained=False``) and loads a local ``.safetensors`` or
  ``.pth``/``.pt`` checkpoint, resampling its ``pos_embed`` from the checkpoint's grid with the user's rule.
* :func:`from_timm` converts a timm ViT into a :class:`visionpe.models.ViT`, keeping every weight, and
  optionally swaps in another PE or adds CPVT PEGs.
* :func:`save_adapted` / :func:`load_adapted` write and rebuild an adapted model (the format of
  ``visionpe adapt``; see :data:`ADAPT_FORMAT`).
"""
from __future__ import annotations

import json
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_data_config, resolve_input_data_config, resolve_model_data_config
from timm.layers import DropPath, PatchDropout, PatchEmbed
from timm.layers import Mlp as TimmMlp
from timm.models._input import update_model_input_size
from timm.models.vision_transformer import Attention as TimmAttention
from timm.models.vision_transformer import Block as TimmBlock
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from .absolute import resample_pos_embed
from .models.vit import ViT, valid_sizes
from .results import atomic_write, write_json

__all__ = [
    "ADAPT_FORMAT",
    "ResizeReport",
    "from_timm",
    "load_adapted",
    "load_timm_vit",
    "read_checkpoint",
    "resize_timm_vit",
    "save_adapted",
]

#: value of ``"format"`` in the ``model.json`` written by :func:`save_adapted`
ADAPT_FORMAT = "visionpe-adapt/1"
#: timm's data-config resolvers, by name; the first two are the legacy ones that read ``pretrained_cfg``
_RESOLVERS = {
    "resolve_data_config": lambda m: resolve_data_config(model=m),
    "resolve_model_data_config": resolve_model_data_config,
    "resolve_input_data_config": resolve_input_data_config,
}
_CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


# ------------------------------------------------------------------------------------------ helpers
def _pair(size: int | Sequence[int], what: str) -> tuple[int, int]:
    """``int`` or ``(H, W)`` -> ``(H, W)`` of positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2 or any(
            not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in size):
        raise ValueError(f"{what} must be a positive int or a pair (H, W) of positive ints, got {size!r}")
    return (size[0], size[1])


def _check_timm_vit(model: object, what: str = "model") -> VisionTransformer:
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"{what} must be a timm VisionTransformer (timm.models.vision_transformer), got "
                         f"{type(model).__module__}.{type(model).__name__}; "
                         f"build one with timm.create_model('vit_...')")
    pe = model.patch_embed
    if not isinstance(pe, PatchEmbed) or pe.img_size is None:
        raise ValueError(f"{what}.patch_embed must be timm's PatchEmbed with a fixed img_size, got "
                         f"{type(pe).__name__} with img_size={getattr(pe, 'img_size', None)}; "
                         f"build the model with img_size=...")
    return model


def _check_pos_embed(model: VisionTransformer) -> Tensor:
    if model.pos_embed is None:
        raise ValueError("the timm model has no absolute position table (it was built with pos_embed='none'); "
                         "resizing or keeping a table needs pos_embed='learn' (to convert such a model with "
                         "from_timm, pass pe='none' or another PE name)")
    return model.pos_embed


def _grid_for(img_size: tuple[int, int], patch_size: tuple[int, int]) -> tuple[int, int]:
    """Patch grid of ``img_size``; raises ``ValueError`` naming valid sizes if a side is not divisible."""
    for name, s, p in zip(("height", "width"), img_size, patch_size):
        if s % p:
            raise ValueError(f"image {name} {s} is not divisible by the patch size {p}; "
                             f"use e.g. {valid_sizes(s, p)}")
    return (img_size[0] // patch_size[0], img_size[1] // patch_size[1])


def _prefix_rows(model: VisionTransformer) -> int:
    """Rows of ``pos_embed`` that belong to prefix tokens (0 with ``no_embed_class``)."""
    return 0 if model.no_embed_class else model.num_prefix_tokens


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def _input_sizes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """``input_size`` reported by each of timm's data-config resolvers."""
    return {name: tuple(resolve(model)["input_size"]) for name, resolve in _RESOLVERS.items()}


def _set_size(model: VisionTransformer, img_size: tuple[int, int], pos_embed: Tensor) -> None:
    """Set the patch embed's size fields, the ``pos_embed`` parameter and timm's size traits, in place."""
    patch_embed = model.patch_embed
    patch_embed.img_size = img_size
    patch_embed.grid_size = _grid_for(img_size, patch_embed.patch_size)
    patch_embed.num_patches = patch_embed.grid_size[0] * patch_embed.grid_size[1]
    if pos_embed is not model.pos_embed:
        model.pos_embed = nn.Parameter(pos_embed.detach().to(model.pos_embed).clone(),
                                       requires_grad=model.pos_embed.requires_grad)
    update_model_input_size(model, img_size)


def _fix_data_config(model: VisionTransformer) -> tuple[str, ...]:
    """Write the current input size into ``model.pretrained_cfg`` (a copy); returns the keys set."""
    channels = model.patch_embed.proj.in_channels
    size = (channels, *model.patch_embed.img_size)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    keys = ["input_size"] + (["test_input_size"] if cfg.get("test_input_size") is not None else [])
    cfg.update({k: size for k in keys})
    model.pretrained_cfg = cfg
    model.default_cfg = cfg  # timm's backwards-compatible alias of pretrained_cfg
    return tuple(keys)


# ------------------------------------------------------------------------------------------ resize
@dataclass(frozen=True)
class ResizeReport:
    """What :func:`resize_timm_vit` did.

    Attributes:
        model: the timm architecture name (or the class name).
        patch_size: ``(p_h, p_w)``.
        old_img_size, new_img_size: ``(H, W)`` in pixels before and after.
        old_grid, new_grid: the patch grids ``(H/p_h, W/p_w)``.
        mode, antialias: the interpolation rule used for ``pos_embed``.
        prefix_rows: rows of ``pos_embed`` kept as they are (CLS/registers; 0 with ``no_embed_class``).
        resampled: False when the grid did not change (the table was left untouched).
        data_config_before: ``input_size`` each timm resolver reported after the resize but before
            visionpe set ``pretrained_cfg`` (the legacy resolvers report the source checkpoint's size).
        data_config_after: ``input_size`` each resolver reports now.
        cfg_keys_set: the ``pretrained_cfg`` keys that were set to the new size.
    """

    model: str
    patch_size: tuple[int, int]
    old_img_size: tuple[int, int]
    new_img_size: tuple[int, int]
    old_grid: tuple[int, int]
    new_grid: tuple[int, int]
    mode: str
    antialias: bool
    prefix_rows: int
    resampled: bool
    data_config_before: dict[str, tuple[int, ...]] = field(default_factory=dict)
    data_config_after: dict[str, tuple[int, ...]] = field(default_factory=dict)
    cfg_keys_set: tuple[str, ...] = ()

    def stale_resolvers(self) -> list[str]:
        """Resolvers whose ``input_size`` before the fix was not the new size."""
        new = self.new_img_size
        return [name for name, size in self.data_config_before.items() if tuple(size[1:]) != new]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    def __str__(self) -> str:
        def px(size: Sequence[int]) -> str:
            return "x".join(map(str, size))

        lines = [
            f"{self.model}: {px(self.old_img_size)} px (grid {px(self.old_grid)}) -> "
            f"{px(self.new_img_size)} px (grid {px(self.new_grid)}), patch {px(self.patch_size)}",
            (f"pos_embed resampled with mode={self.mode!r}, antialias={self.antialias}; "
             f"{self.prefix_rows} prefix row(s) kept as they are") if self.resampled else
            "pos_embed unchanged (same grid)",
        ]
        stale = self.stale_resolvers()
        for name, size in self.data_config_before.items():
            after = self.data_config_after.get(name, size)
            note = "stale, fixed" if name in stale else "already right"
            lines.append(f"timm {name}: input_size {tuple(size)} before the fix ({note}), {tuple(after)} now")
        if self.cfg_keys_set:
            size = self.data_config_after.get("resolve_data_config")
            lines.append(f"set pretrained_cfg {', '.join(self.cfg_keys_set)} = {size}")
        return "\n".join(lines)


def resize_timm_vit(
    model: VisionTransformer,
    img_size: int | Sequence[int],
    mode: str = "bicubic",
    antialias: bool = True,
) -> ResizeReport:
    """Move a timm ``VisionTransformer`` to a new image size in place, with a chosen resampling rule.

    ``pos_embed`` ``(1, P' + N, C)`` becomes ``(1, P' + N', C)`` (``P'`` = prefix rows: CLS and
    registers, 0 with ``no_embed_class``; ``N' = (H/p_h)(W/p_w)``) by
    :func:`visionpe.absolute.resample_pos_embed` (= timm's ``resample_abs_pos_embed`` with the same
    ``mode``/``antialias``; ``requires_grad`` is kept).  The patch embed's ``img_size``, ``grid_size`` and
    ``num_patches`` (what timm's forward checks and ``dynamic_img_size`` resamples from) and timm's
    size traits are updated as ``set_input_size`` does; then ``pretrained_cfg["input_size"]`` (and
    ``test_input_size`` if present) is set to ``(C, H, W)`` so that every timm data-config resolver
    reports the new size.  With ``mode="bicubic", antialias=True`` the result equals timm's
    ``model.set_input_size(img_size)``.

    Args:
        model: a timm ``VisionTransformer`` with a learned ``pos_embed``.
        img_size: the new size, ``int`` or ``(H, W)`` (non-square allowed), divisible by the patch size.
        mode: interpolation mode (:data:`visionpe.absolute.RESAMPLE_MODES`).
        antialias: low-pass filter when down-sampling (bilinear/bicubic only).

    Returns:
        A :class:`ResizeReport`, including what the data-config resolvers reported before the fix.

    Raises:
        ValueError: if ``model`` is not a timm ViT or has no ``pos_embed``, ``img_size`` is malformed or
            not divisible by the patch size (the message names valid sizes), or the mode is invalid.
            Nothing is changed when it raises.
    """
    model = _check_timm_vit(model)
    pos_embed = _check_pos_embed(model)
    new_size = _pair(img_size, "img_size")
    patch_embed = model.patch_embed
    old_size, old_grid = tuple(patch_embed.img_size), tuple(patch_embed.grid_size)
    new_grid = _grid_for(new_size, patch_embed.patch_size)
    prefix = _prefix_rows(model)
    with torch.no_grad():
        table = resample_pos_embed(pos_embed, new_grid, old_grid, prefix, mode, antialias)
    _set_size(model, new_size, table)
    before = _input_sizes(model)
    keys = _fix_data_config(model)
    return ResizeReport(
        model=_model_name(model), patch_size=tuple(patch_embed.patch_size), old_img_size=old_size,
        new_img_size=new_size, old_grid=old_grid, new_grid=new_grid, mode=mode, antialias=antialias,
        prefix_rows=prefix, resampled=new_grid != old_grid, data_config_before=before,
        data_config_after=_input_sizes(model), cfg_keys_set=keys)


# ------------------------------------------------------------------------------------- checkpoints
def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a local state dict: ``.safetensors``, or ``.pth``/``.pt``/``.bin`` (``torch.load`` with
    ``weights_only=True``), optionally wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``.

    Returns:
        ``{name: tensor}``.

    Raises:
        ValueError: for a missing file, an unknown suffix, or a file that holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint file {str(path)!r} does not exist; pass the path of a local "
                         f"{'/'.join(_CHECKPOINT_SUFFIXES)} file")
    if path.suffix not in _CHECKPOINT_SUFFIXES:
        raise ValueError(f"checkpoint {str(path)!r} has the suffix {path.suffix!r}; visionpe reads "
                         f"{', '.join(_CHECKPOINT_SUFFIXES)} files")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise ValueError(f"checkpoint {str(path)!r} is not a valid safetensors file: {err}") from err
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"checkpoint {str(path)!r} cannot be read with torch.load(weights_only=True) ({err}); "
                         f"save a plain state dict (torch.save(model.state_dict(), path))") from err
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, Tensor) for v in data.values()):
        raise ValueError(f"checkpoint {str(path)!r} does not hold a state dict of tensors (directly or under "
                         f"'state_dict'/'model'); save model.state_dict()")
    return dict(data)


def _checkpoint_grid(
    model: VisionTransformer, table: Tensor, checkpoint_img_size: tuple[int, int] | None,
) -> tuple[int, int]:
    """The patch grid a checkpoint's ``pos_embed`` was saved at."""
    patch = model.patch_embed.patch_size
    expected = tuple(model.pos_embed.shape)
    if table.dim() != 3 or table.shape[0] != 1 or table.shape[2] != expected[2]:
        raise ValueError(f"parameter 'pos_embed' has shape {tuple(table.shape)} in the checkpoint but {expected} in "
                         f"the model (as built, before any resize): it is not a (1, tokens, {expected[2]}) table; "
                         f"check that the checkpoint belongs to this architecture")
    rows = table.shape[1] - _prefix_rows(model)
    if checkpoint_img_size is not None:
        grid = _grid_for(checkpoint_img_size, patch)
        if grid[0] * grid[1] != rows:
            raise ValueError(f"checkpoint_img_size={checkpoint_img_size} gives a {grid[0]}x{grid[1]} grid, but the "
                             f"checkpoint's pos_embed {tuple(table.shape)} has {rows} patch rows; pass the size "
                             f"the checkpoint was trained at")
        return grid
    if rows == model.patch_embed.num_patches:
        return tuple(model.patch_embed.grid_size)
    side = math.isqrt(max(rows, 0))
    if rows < 1 or side * side != rows:
        raise ValueError(f"parameter 'pos_embed' has shape {tuple(table.shape)} in the checkpoint but {expected} in "
                         f"the model, and its {rows} patch rows (after {_prefix_rows(model)} prefix rows) are not a "
                         f"square grid; pass checkpoint_img_size=(H, W), the size the checkpoint was trained at, or "
                         f"check class_token/reg_tokens/no_embed_class")
    return (side, side)


def _load_state(model: VisionTransformer, state: Mapping[str, Tensor], what: str) -> None:
    """Strict ``load_state_dict`` with ``ValueError``\\ s that name the offending parameters."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        hint = ""
        if unexpected and all(k.startswith("module.") for k in state):
            hint = "; the keys start with 'module.' (a DataParallel wrapper): strip that prefix first"
        raise ValueError(f"{what} does not match the model: missing {missing[:8]}"
                         f"{' …' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                         f"{' …' if len(unexpected) > 8 else ''}{hint}")
    for name, param in own.items():
        if tuple(state[name].shape) != tuple(param.shape):
            raise ValueError(f"parameter {name!r} has shape {tuple(state[name].shape)} in {what} but "
                             f"{tuple(param.shape)} in the model; build the model with matching arguments")
    model.load_state_dict(state, strict=True)


def _load_resized(
    model_name: str,
    checkpoint: str | Path | None,
    img_size: int | Sequence[int] | None,
    mode: str,
    antialias: bool,
    checkpoint_img_size: int | Sequence[int] | None,
    create_kwargs: dict[str, Any],
) -> tuple[VisionTransformer, ResizeReport]:
    """:func:`load_timm_vit` that also returns the :class:`ResizeReport` of its one resampling step."""
    for key, hint in (("pretrained", "visionpe never downloads weights; pass checkpoint=PATH"),
                      ("checkpoint_path", "pass checkpoint=PATH")):
        if key in create_kwargs:
            raise ValueError(f"load_timm_vit does not take the timm argument {key!r}: {hint}")
    target = None if img_size is None else _pair(img_size, "img_size")
    source = None if checkpoint_img_size is None else _pair(checkpoint_img_size, "checkpoint_img_size")
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
    try:
        model = timm.create_model(model_name, pretrained=False, **create_kwargs)
    except RuntimeError as err:
        raise ValueError(f"timm cannot build {model_name!r}: {err}; see timm.list_models('vit_*')") from err
    model = _check_timm_vit(model, f"timm model {model_name!r}")
    _check_pos_embed(model)
    target = target or tuple(model.patch_embed.img_size)
    if state is not None:
        table = state.get("pos_embed")
        if table is not None:  # without it, _load_state names the missing keys
            grid = _checkpoint_grid(model, table, source)
            patch = model.patch_embed.patch_size
            _set_size(model, (grid[0] * patch[0], grid[1] * patch[1]), table)
        _load_state(model, state, f"checkpoint {str(checkpoint)!r}")
    report = resize_timm_vit(model, target, mode, antialias)
    return model, report


def load_timm_vit(
    model_name: str,
    checkpoint: str | Path | None = None,
    img_size: int | Sequence[int] | None = None,
    mode: str = "bicubic",
    antialias: bool = True,
    *,
    checkpoint_img_size: int | Sequence[int] | None = None,
    **create_kwargs: Any,
) -> VisionTransformer:
    """Build a timm ViT without downloading anything and load a local checkpoint into it.

    ``timm.create_model(model_name, pretrained=False, **create_kwargs)`` is built; the checkpoint (see
    :func:`read_checkpoint`) is loaded strictly at the grid it was saved at, and the model is then moved
    to ``img_size`` (default: the architecture's size) by :func:`resize_timm_vit`, so ``pos_embed`` is
    resampled once, from the checkpoint's grid, with ``mode``/``antialias``, and the data config reports
    the final size.

    The checkpoint's grid is read from its ``pos_embed`` ``(1, P' + N, C)``: the model's grid if ``N``
    matches it, else a square ``√N × √N`` grid; pass ``checkpoint_img_size`` for a non-square
    checkpoint (or a non-square one with the model's token count).

    Args:
        model_name: a timm ViT name such as ``"vit_tiny_patch16_224"``.
        checkpoint: local file path, or ``None`` for the random initialisation.
        img_size: final size, ``int`` or ``(H, W)``.
        mode, antialias: the resampling rule of ``pos_embed``.
        checkpoint_img_size: the size ``(H, W)`` the checkpoint was saved at, when it is not the
            model's and not square.
        **create_kwargs: further ``timm.create_model`` arguments (``num_classes``, ``patch_size``, …;
            not ``pretrained`` or ``checkpoint_path``).

    Returns:
        The timm ``VisionTransformer`` (in eval mode as ``create_model`` leaves it).

    Raises:
        ValueError: for a missing or unreadable file, a name timm does not know or that is not a
            ``VisionTransformer``, missing/unexpected keys, a parameter whose shape differs (naming it
            and both shapes), a checkpoint grid that cannot be determined, or an invalid size/mode.
    """
    return _load_resized(model_name, checkpoint, img_size, mode, antialias, checkpoint_img_size, create_kwargs)[0]


# ------------------------------------------------------------------------------------- conversion
def _unsupported(feature: str, detail: str) -> ValueError:
    return ValueError(f"from_timm does not support {feature} ({detail}); visionpe's ViT has no equivalent, "
                      f"so converting would change the model's outputs")


def _check_layer_norm(norm: nn.Module, where: str) -> None:
    if not isinstance(norm, nn.LayerNorm) or norm.eps != 1e-6 or not norm.elementwise_affine \
            or norm.bias is None:
        detail = f"eps={norm.eps}" if isinstance(norm, nn.LayerNorm) else type(norm).__name__
        raise _unsupported("a norm_layer other than LayerNorm(eps=1e-6) with affine weight and bias",
                           f"{where} is {detail}")


def _check_dropout(module: nn.Module, feature: str, where: str) -> None:
    if isinstance(module, nn.Dropout) and module.p > 0:
        raise _unsupported(feature, f"{where} has p={module.p}; build the timm model with {feature}=0")


def _drop_path_rate(model: VisionTransformer) -> float:
    rates = [b.drop_path1.drop_prob if isinstance(b.drop_path1, DropPath) else 0.0 for b in model.blocks]
    rate = rates[-1]
    if rates != torch.linspace(0, rate, len(rates)).tolist():
        raise _unsupported("a drop-path schedule other than linspace(0, drop_path_rate, depth)", f"rates {rates}")
    return rate


def _check_block(block: nn.Module, i: int, dim: int, num_heads: int, hidden: int, qkv_bias: bool) -> None:
    where = f"blocks.{i}"
    if type(block) is not TimmBlock:
        raise _unsupported("custom blocks (block_fn)", f"{where} is {type(block).__name__}")
    attn, mlp = block.attn, block.mlp
    if type(attn) is not TimmAttention:
        raise _unsupported("custom attention (attn_layer)", f"{where}.attn is {type(attn).__name__}")
    if not isinstance(attn.q_norm, nn.Identity) or not isinstance(attn.k_norm, nn.Identity):
        raise _unsupported("qk_norm", f"{where}.attn normalises q and k")
    if not isinstance(attn.norm, nn.Identity):
        raise _unsupported("scale_attn_norm", f"{where}.attn.norm is {type(attn.norm).__name__}")
    if getattr(attn, "gate", None) is not None:
        raise _unsupported("gated attention", f"{where}.attn.gate exists")
    if attn.num_heads != num_heads or attn.head_dim * attn.num_heads != dim:
        raise _unsupported("attn_head_dim", f"{where}.attn has {attn.num_heads} heads of dim {attn.head_dim} "
                                            f"for width {dim}")
    if (attn.qkv.bias is not None) != qkv_bias:
        raise _unsupported("qkv_bias differing between blocks", where)
    if attn.proj.bias is None:
        raise _unsupported("proj_bias=False", f"{where}.attn.proj has no bias")
    if not isinstance(block.ls1, nn.Identity) or not isinstance(block.ls2, nn.Identity):
        raise _unsupported("layer scale (init_values)", f"{where}.ls1/ls2 are LayerScale")
    if type(mlp) is not TimmMlp or isinstance(mlp.fc1, nn.Conv2d):
        raise _unsupported("a custom MLP (mlp_layer)", f"{where}.mlp is {type(mlp).__name__}")
    if not isinstance(mlp.norm, nn.Identity):
        raise _unsupported("scale_mlp_norm", f"{where}.mlp.norm is {type(mlp.norm).__name__}")
    if type(mlp.act) is not nn.GELU or mlp.act.approximate != "none":
        raise _unsupported("an activation other than exact GELU (act_layer)", f"{where}.mlp.act is {mlp.act}")
    if mlp.fc1.out_features != hidden or mlp.fc1.bias is None or mlp.fc2.bias is None:
        raise _unsupported("MLPs of different widths or without biases", f"{where}.mlp")
    _check_layer_norm(block.norm1, f"{where}.norm1")
    _check_layer_norm(block.norm2, f"{where}.norm2")
    for name, feature in (("attn.attn_drop", "attn_drop_rate"), ("attn.proj_drop", "proj_drop_rate"),
                          ("mlp.drop1", "proj_drop_rate"), ("mlp.drop2", "proj_drop_rate")):
        _check_dropout(block.get_submodule(name), feature, f"{where}.{name}")


def _mlp_ratio(dim: int, hidden: int) -> float:
    """The float ``r`` closest to ``hidden / dim`` with ``int(dim * r) == hidden`` (visionpe's rule)."""
    ratio = hidden / dim
    while int(dim * ratio) < hidden:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _vit_kwargs(model: VisionTransformer) -> dict[str, Any]:
    """``visionpe.models.ViT`` arguments reproducing a supported timm ViT (PE left to the caller)."""
    if type(model) is not VisionTransformer:
        raise _unsupported(f"the subclass {type(model).__name__}", "e.g. a distillation token")
    patch_embed = model.patch_embed
    if type(patch_embed) is not PatchEmbed:
        raise _unsupported("custom patch embeddings (embed_layer)", type(patch_embed).__name__)
    p_h, p_w = patch_embed.patch_size
    if p_h != p_w:
        raise _unsupported("non-square patches", f"patch_size={patch_embed.patch_size}")
    if not isinstance(patch_embed.norm, nn.Identity):
        raise _unsupported("a patch-embed norm (embed_norm_layer)", type(patch_embed.norm).__name__)
    if patch_embed.proj.bias is None:
        raise _unsupported("a patch embedding without bias (pre_norm)", "patch_embed.proj.bias is None")
    if patch_embed.dynamic_img_pad:
        raise _unsupported("dynamic_img_pad", "visionpe raises for sizes not divisible by the patch size")
    if not isinstance(model.norm_pre, nn.Identity):
        raise _unsupported("pre_norm", "norm_pre is a norm layer")
    if not isinstance(model.patch_drop, nn.Identity):
        drop = model.patch_drop.prob if isinstance(model.patch_drop, PatchDropout) else "?"
        raise _unsupported("patch_drop_rate", f"patch dropout with rate {drop}")
    _check_dropout(model.pos_drop, "pos_drop_rate", "pos_drop")
    _check_dropout(model.head_drop, "drop_rate", "head_drop")
    if model.attn_pool is not None or model.global_pool not in ("token", "avg"):
        raise _unsupported(f"global_pool={model.global_pool!r}", "visionpe pools with 'token' or 'avg'")
    if model.pool_include_prefix:
        raise _unsupported("pool_include_prefix", "visionpe's avg pool averages the patch tokens only")
    fc_norm = not isinstance(model.fc_norm, nn.Identity)
    final = model.fc_norm if fc_norm else model.norm
    if isinstance(final, nn.Identity):
        raise _unsupported("final_norm=False", "neither norm nor fc_norm is a norm layer")
    if fc_norm and not isinstance(model.norm, nn.Identity):
        raise _unsupported("both norm and fc_norm", "only one final norm is supported")
    _check_layer_norm(final, "fc_norm" if fc_norm else "norm")
    if not isinstance(model.head, (nn.Linear, nn.Identity)):
        raise _unsupported("a custom head", type(model.head).__name__)
    dim, depth = model.embed_dim, len(model.blocks)
    first = model.blocks[0]
    num_heads, hidden = first.attn.num_heads, first.mlp.fc1.out_features
    qkv_bias = first.attn.qkv.bias is not None
    for i, block in enumerate(model.blocks):
        _check_block(block, i, dim, num_heads, hidden, qkv_bias)
    return dict(
        img_size=list(patch_embed.img_size), patch_size=p_h, embed_dim=dim, depth=depth, num_heads=num_heads,
        mlp_ratio=_mlp_ratio(dim, hidden), in_chans=patch_embed.proj.in_channels, num_classes=model.num_classes,
        class_token=model.cls_token is not None, reg_tokens=model.num_reg_tokens, global_pool=model.global_pool,
        fc_norm=fc_norm, qkv_bias=qkv_bias, drop_path_rate=_drop_path_rate(model))


def _conversion(
    model: VisionTransformer,
    pe: str | None,
    pe_kwargs: Mapping[str, Any] | None,
    peg_after: Sequence[int],
    img_size: int | Sequence[int] | None,
    mode: str,
    antialias: bool,
    num_classes: int | None,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The ``ViT`` keyword arguments and the state dict (visionpe names) of :func:`from_timm`."""
    _check_timm_vit(model)
    kwargs = _vit_kwargs(model)
    patch = model.patch_embed.patch_size
    size = tuple(kwargs["img_size"]) if img_size is None else _pair(img_size, "img_size")
    grid = _grid_for(size, patch)
    if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                    or num_classes < 0):
        raise ValueError(f"num_classes must be an integer >= 0 (0: no head) or None (timm's head), got {num_classes!r}")
    state = dict(model.state_dict())
    if pe is None:
        if pe_kwargs:
            raise ValueError("pe_kwargs configure a swapped PE; with pe=None timm's table is kept and its only "
                             "settings are mode= and antialias=")
        table = _check_pos_embed(model).detach()
        kwargs.update(pe="learned", pe_kwargs=dict(mode=mode, antialias=antialias,
                                                   prefix_embed=not model.no_embed_class))
        state["pe.pos_embed"] = resample_pos_embed(table, grid, tuple(model.patch_embed.grid_size),
                                                   _prefix_rows(model), mode, antialias)
    else:
        if not isinstance(pe, str):
            raise ValueError(f"pe must be a PE name (visionpe.list_pes()) or None, got {pe!r}")
        if (mode, antialias) != ("bicubic", True):
            raise ValueError(f"mode={mode!r}/antialias={antialias} set the resampling of timm's table, which "
                             f"pe={pe!r} replaces; put the new PE's settings in pe_kwargs")
        kwargs.update(pe=pe, pe_kwargs=dict(pe_kwargs or {}))
    state.pop("pos_embed", None)
    if num_classes is not None and num_classes != kwargs["num_classes"]:
        kwargs["num_classes"] = num_classes
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    kwargs.update(img_size=list(size), peg_after=sorted(set(peg_after)))
    return kwargs, state


def from_timm(
    model: VisionTransformer,
    pe: str | None = None,
    pe_kwargs: Mapping[str, Any] | None = None,
    peg_after: Sequence[int] = (),
    img_size: int | Sequence[int] | None = None,
    mode: str = "bicubic",
    antialias: bool = True,
    num_classes: int | None = None,
) -> ViT:
    """Convert a timm ``VisionTransformer`` into a :class:`visionpe.models.ViT`, keeping every weight.

    The patch embed, CLS and register tokens, blocks, final norm (``norm`` or ``fc_norm``) and head are
    copied bit for bit (``requires_grad`` and the train/eval mode are kept; the timm model is not
    changed).  With ``pe=None`` timm's table becomes a visionpe ``learned`` PE (``prefix_embed`` =
    ``not no_embed_class``, resampled with ``mode``/``antialias`` to ``img_size`` and at run time to
    any other grid), so at the native size the result gives timm's logits, and at another size those of
    timm with ``dynamic_img_size=True`` (for bicubic + antialias).  With a PE name the table is dropped
    and a freshly initialised PE of that family is built from ``pe_kwargs``.

    Args:
        model: a timm ``VisionTransformer`` (its supported configuration: learned or no ``pos_embed``,
            CLS and/or register tokens, ``no_embed_class``, ``global_pool`` ``"token"``/``"avg"`` with
            ``norm`` or ``fc_norm``, ``qkv_bias``, ``drop_path_rate``).
        pe: ``None`` to keep timm's table, or a registry name (:func:`visionpe.list_pes`).
        pe_kwargs: keyword arguments of the swapped PE.
        peg_after: blocks after which a fresh CPVT PEG runs (e.g. ``[0]``).
        img_size: the native size of the result, ``int`` or ``(H, W)`` (default: timm's).
        mode, antialias: the resampling rule of timm's table (``pe=None`` only).
        num_classes: ``None`` keeps timm's head; another count builds a fresh head (``0``: none).

    Returns:
        The visionpe ``ViT`` on the device and in the dtype of ``model.patch_embed.proj.weight``;
        images ``(B, C, H, W)`` -> logits ``(B, num_classes)``.

    Raises:
        ValueError: for a model that is not a timm ViT, a configuration visionpe cannot reproduce (the
            message names the feature: qk_norm, layer scale, custom blocks, ``global_pool='map'``, …),
            ``pe=None`` on a model without ``pos_embed``, ``pe_kwargs`` without ``pe``, a size not
            divisible by the patch size, or an invalid PE name/argument.
    """
    kwargs, state = _conversion(model, pe, pe_kwargs, peg_after, img_size, mode, antialias, num_classes)
    return _build_vit(kwargs, state, model)


def _build_vit(
    kwargs: Mapping[str, Any], state: Mapping[str, Tensor], like: nn.Module | None = None, complete: bool = False,
) -> ViT:
    """``ViT(**kwargs)`` with ``state`` loaded: every key of ``state`` must exist with the same shape, and
    with ``complete=True`` every weight of the ViT must be in ``state``; ``like`` gives device, dtype,
    ``requires_grad`` flags and the train/eval mode."""
    vit = ViT(**kwargs)
    own = vit.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state)) if complete else []
    if unexpected or missing:
        raise ValueError(f"the weights do not fit the visionpe ViT built from {dict(kwargs)}: unexpected "
                         f"{unexpected[:8]}, missing {missing[:8]}")
    for name, value in state.items():
        if tuple(value.shape) != tuple(own[name].shape):
            raise ValueError(f"parameter {name!r} has shape {tuple(value.shape)} but the visionpe ViT expects "
                             f"{tuple(own[name].shape)}")
    vit.load_state_dict(state, strict=False)
    if like is not None:
        ref = like.patch_embed.proj.weight
        vit.to(device=ref.device, dtype=ref.dtype)
        flags = {name: p.requires_grad for name, p in like.named_parameters()}
        for name, param in vit.named_parameters():
            param.requires_grad_(flags.get("pos_embed" if name == "pe.pos_embed" else name, True))
        vit.train(like.training)
    return vit


# ----------------------------------------------------------------------------------- saved format
def save_adapted(
    directory: str | Path,
    model: nn.Module,
    build: Mapping[str, Any],
) -> tuple[Path, Path]:
    """Write an adapted model as ``model.safetensors`` + ``model.json`` (both atomically).

    ``model.json`` is ``{"format": ADAPT_FORMAT, "library": "timm" | "visionpe", ...}`` with, for
    ``"timm"``, ``"model_name"``, ``"img_size"`` ``[H, W]`` and ``"create_kwargs"`` (rebuilt by
    ``timm.create_model(model_name, pretrained=False, img_size=img_size, **create_kwargs)``), and for
    ``"visionpe"``, ``"vit_kwargs"`` (rebuilt by ``visionpe.models.ViT(**vit_kwargs)``).
    :func:`load_adapted` reads it back.

    Args:
        directory: output directory (created if needed).
        model: the timm or visionpe model whose ``state_dict()`` is saved.
        build: the ``model.json`` content without ``"format"`` (must be JSON-serialisable).

    Returns:
        The paths of ``model.safetensors`` and ``model.json``.

    Raises:
        ValueError: if ``build["library"]`` is neither ``"timm"`` nor ``"visionpe"``.
    """
    from safetensors.torch import save_file

    if build.get("library") not in ("timm", "visionpe"):
        raise ValueError(f"build['library'] must be 'timm' or 'visionpe', got {build.get('library')!r}")
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp),
                           suffix=".safetensors")
    spec = write_json(directory / "model.json", {"format": ADAPT_FORMAT, **build})
    return weights, spec


def load_adapted(directory: str | Path) -> nn.Module:
    """Rebuild a model written by :func:`save_adapted` (or ``visionpe adapt``) and load its weights.

    Returns:
        A timm ``VisionTransformer`` (with ``pretrained_cfg`` reporting its size) or a visionpe ``ViT``,
        in eval mode.

    Raises:
        ValueError: for a missing file, an unknown format, or weights that do not fit.
    """
    directory = Path(directory)
    spec_path = directory / "model.json"
    if not spec_path.is_file():
        raise ValueError(f"{str(spec_path)!r} does not exist; pass a directory written by visionpe adapt")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != ADAPT_FORMAT:
        raise ValueError(f"{str(spec_path)!r} has format {spec.get('format')!r}, expected {ADAPT_FORMAT!r}")
    state = read_checkpoint(directory / "model.safetensors")
    if spec.get("library") == "timm":
        model = timm.create_model(spec["model_name"], pretrained=False, img_size=tuple(spec["img_size"]),
                                  **spec.get("create_kwargs", {}))
        _load_state(model, state, f"{str(directory)!r}")
        _fix_data_config(model)
    elif spec.get("library") == "visionpe":
        model = _build_vit(spec["vit_kwargs"], state, complete=True)
    else:
        raise ValueError(f"{str(spec_path)!r} names the library {spec.get('library')!r}; expected 'timm' or 'visionpe'")
    return model.eval()
