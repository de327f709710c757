"""Absolute positional embeddings: ``sincos`` (MAE/DiT/CogVideoX sin-cos) and ``learned`` (ViT/DeiT table).

Both add a table ``E`` of shape ``(P + N, C)`` to the tokens once, right after the prefix tokens
are attached: ``x ← x + E``.  Prefix tokens (CLS, registers) get zero rows, except that a learned
table may learn rows for them (``prefix_embed=True``, what timm checkpoints hold).

**Sin-cos (1D).**  For ``C`` channels and position ``p``: ``ω_k = base^(−k/(C/2))``, ``k = 0..C/2−1``,
``PE(p) = [sin(p·ω_0) … sin(p·ω_{C/2−1}) ‖ cos(p·ω_0) … cos(p·ω_{C/2−1})]`` (halves, not interleaved).

**Sin-cos (2D, MAE/DiT).**  ``E(h, w) = [PE_{C/2}(w) ‖ PE_{C/2}(h)]``: the *first* half of the channels
encodes the column ``w``, the second half the row ``h`` (the order of MAE's and diffusers'
``get_2d_sincos_pos_embed``, whose comment says the opposite of what its code does).

**Sin-cos (3D).**  ``"concat"`` (CogVideoX, diffusers ``get_3d_sincos_pos_embed``):
``E(t, h, w) = [PE_{C/4}(t) ‖ E2D_{3C/4}(h, w)]``.  ``"separable"`` (MAE-ST, Latte):
``E(t, h, w) = E2D_C(h, w) + PE_C(t)``.

**Learned.**  A ``(1, P + N, C)`` parameter, ``trunc_normal(std=0.02)``, resampled to another grid by
:func:`resample_pos_embed` (timm's ``resample_abs_pos_embed`` for 2D, plus a temporal axis for 3D).

**LaPE** (Yu et al., ICCV 2023): with ``lape=True`` an additive PE is not added to the token stream;
block ``l`` adds ``P_l = LN_l(P_{l−1})`` (``P_{−1} = E``, one LayerNorm with affine per block) to its
normalised attention input.  :class:`AdditivePE` implements it once for every additive table.
"""
from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Grid, PositionalEmbedding, TableCache, check_grid, resolve_device
from .registry import register_pe

__all__ = [
    "ANTIALIAS_MODES",
    "LAPE_EPS",
    "RESAMPLE_MODES",
    "SINCOS_3D_STYLES",
    "AdditivePE",
    "LearnedPE",
    "SinCosPE",
    "resample_pos_embed",
    "sincos_1d",
    "sincos_2d",
    "sincos_3d",
]

#: spatial interpolation modes accepted by :func:`resample_pos_embed`
RESAMPLE_MODES = ("bicubic", "bilinear", "nearest", "nearest-exact", "area")
#: the modes for which ``F.interpolate`` supports ``antialias=True``
ANTIALIAS_MODES = ("bicubic", "bilinear")
#: channel layouts of :func:`sincos_3d`
SINCOS_3D_STYLES = ("concat", "separable")
#: LayerNorm epsilon of the LaPE norms (timm/DeiT ``partial(nn.LayerNorm, eps=1e-6)``)
LAPE_EPS = 1e-6


# ------------------------------------------------------------------------------------------ sin-cos
def _math_dtype(device: torch.device | str | None) -> torch.dtype:
    """float64 for the angles, except on MPS, which has no float64."""
    return torch.float32 if device is not None and torch.device(device).type == "mps" else torch.float64


def _check_dim(dim: int, multiple: int, what: str) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < multiple or dim % multiple:
        raise ValueError(f"{what} needs a channel count that is a positive multiple of {multiple}, got dim={dim!r}; "
                         f"pick a width divisible by {multiple}")


def _check_base(base: float) -> float:
    if not isinstance(base, (int, float)) or isinstance(base, bool) or not math.isfinite(base) or base <= 0:
        raise ValueError(f"base must be a finite number > 0 (10000 in MAE/DiT), got {base!r}")
    return float(base)


def _check_scale(scale: float | Sequence[float] | None, num_axes: int) -> tuple[float, ...]:
    """Per-axis position divisors: ``None`` → ones, a number → the same for every axis."""
    if scale is None:
        return (1.0,) * num_axes
    values = (scale,) * num_axes if isinstance(scale, (int, float)) else tuple(scale)
    if len(values) != num_axes:
        raise ValueError(f"scale needs one divisor per grid axis ({num_axes}), got {scale!r}")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"every scale divisor must be a finite number > 0, got {scale!r}")
    return tuple(float(v) for v in values)


def sincos_1d(
    positions: Tensor,
    dim: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """1D sin-cos embedding of ``positions`` (MAE convention, halves not interleaved).

    Args:
        positions: ``(N,)`` positions (any real values; integer patch indices in MAE).
        dim: channels ``C`` (even).
        base: frequency base; ``ω_k = base^(−k/(C/2))``.
        dtype: dtype of the result; the angles are computed in float64 (float32 on MPS).

    Returns:
        ``(N, C)``: ``[sin(p·ω) ‖ cos(p·ω)]`` on the device of ``positions``.

    Raises:
        ValueError: for an odd ``dim``, a ``base`` ≤ 0, non-1D or non-finite ``positions``.
    """
    _check_dim(dim, 2, "sincos_1d")
    base = _check_base(base)
    if positions.dim() != 1:
        raise ValueError(f"positions must be a 1D tensor (N,), got shape {tuple(positions.shape)}; flatten it first")
    math_dtype = _math_dtype(positions.device)
    pos = positions.to(math_dtype)
    if not torch.isfinite(pos).all():
        raise ValueError("positions contain inf or nan; pass finite positions")
    omega = base ** (-torch.arange(dim // 2, dtype=math_dtype, device=pos.device) / (dim / 2))
    angles = torch.outer(pos, omega)
    return torch.cat([angles.sin(), angles.cos()], dim=1).to(dtype)


def sincos_2d(
    grid: Sequence[int],
    dim: int,
    base: float = 10000.0,
    scale: float | Sequence[float] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """2D sin-cos table of an ``(H, W)`` grid (MAE/DiT convention).

    Token ``n = h·W + w`` (row-major) gets ``[PE_{C/2}(w / s_w) ‖ PE_{C/2}(h / s_h)]``: the first half
    of the channels encodes the column ``w``.  With ``scale=(H / b, W / b)`` this equals diffusers'
    ``get_2d_sincos_pos_embed(C, (H, W), base_size=b)``; with ``scale=None`` and a square grid
    ``H = W = b`` both use plain integer indices.

    Args:
        grid: ``(H, W)``.
        dim: channels ``C``, a multiple of 4.
        base: frequency base of :func:`sincos_1d`.
        scale: per-axis divisors ``(s_h, s_w)`` of the integer positions (position interpolation),
            or one number for both; ``None`` means 1.
        dtype, device: of the result; angles are computed in float64.

    Returns:
        ``(H·W, C)``.
    """
    h, w = check_grid(grid, 2)
    _check_dim(dim, 4, "sincos_2d")
    s_h, s_w = _check_scale(scale, 2)
    math_dtype = _math_dtype(device)
    emb_w = sincos_1d(torch.arange(w, dtype=math_dtype, device=device) / s_w, dim // 2, base, math_dtype)
    emb_h = sincos_1d(torch.arange(h, dtype=math_dtype, device=device) / s_h, dim // 2, base, math_dtype)
    table = torch.cat([emb_w.expand(h, w, dim // 2), emb_h[:, None].expand(h, w, dim // 2)], dim=-1)
    return table.reshape(h * w, dim).to(dtype)


def sincos_3d(
    grid: Sequence[int],
    dim: int,
    base: float = 10000.0,
    style: str = "concat",
    scale: float | Sequence[float] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """3D sin-cos table of a ``(T, H, W)`` grid.

    Token ``n = (t·H + h)·W + w`` gets, with ``t, h, w`` divided by ``scale = (s_t, s_h, s_w)``:

    * ``"concat"`` (CogVideoX; diffusers ``get_3d_sincos_pos_embed(C, (W, H), T,
      spatial_interpolation_scale=s, temporal_interpolation_scale=s_t)`` with ``s_h = s_w = s``):
      ``[PE_{C/4}(t) ‖ sincos_2d_{3C/4}(h, w)]``; ``C`` must be a multiple of 16;
    * ``"separable"`` (MAE-ST / Latte: a spatial and a temporal table, summed):
      ``sincos_2d_C(h, w) + PE_C(t)``; ``C`` must be a multiple of 4.

    Args:
        grid: ``(T, H, W)``.
        dim: channels ``C``.
        base: frequency base of :func:`sincos_1d`.
        style: ``"concat"`` or ``"separable"``.
        scale: per-axis position divisors ``(s_t, s_h, s_w)`` or one number; ``None`` means 1.
        dtype, device: of the result; angles are computed in float64.

    Returns:
        ``(T·H·W, C)``.
    """
    t, h, w = check_grid(grid, 3)
    if style not in SINCOS_3D_STYLES:
        raise ValueError(f"unknown 3D sin-cos style {style!r}; valid styles: {', '.join(SINCOS_3D_STYLES)}")
    _check_dim(dim, 16 if style == "concat" else 4, f"sincos_3d(style={style!r})")
    s_t, s_h, s_w = _check_scale(scale, 3)
    math_dtype = _math_dtype(device)
    frames = torch.arange(t, dtype=math_dtype, device=device) / s_t
    if style == "concat":
        temporal = sincos_1d(frames, dim // 4, base, math_dtype)
        spatial = sincos_2d((h, w), 3 * dim // 4, base, (s_h, s_w), math_dtype, device)
        table = torch.cat([temporal[:, None].expand(t, h * w, dim // 4), spatial.expand(t, h * w, 3 * dim // 4)], -1)
    else:
        spatial = sincos_2d((h, w), dim, base, (s_h, s_w), math_dtype, device)
        table = spatial[None] + sincos_1d(frames, dim, base, math_dtype)[:, None]
    return table.reshape(t * h * w, dim).to(dtype)


# ---------------------------------------------------------------------------------------- resampling
def _check_resample_mode(mode: str, antialias: bool) -> None:
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; valid modes: {', '.join(RESAMPLE_MODES)}")
    if not isinstance(antialias, bool):
        raise ValueError(f"antialias must be True or False, got {antialias!r}")
    if antialias and mode not in ANTIALIAS_MODES:
        raise ValueError(f"antialias=True works only with the modes {', '.join(ANTIALIAS_MODES)}, not {mode!r}; "
                         f"pass antialias=False or pick one of those modes")


def _interpolate(x: Tensor, size: Sequence[int], mode: str, antialias: bool) -> Tensor:
    """``F.interpolate`` of a float32 ``(B, C, *grid)`` tensor, ``align_corners=False`` where it applies."""
    align = False if mode in ("linear", "bilinear", "bicubic", "trilinear") else None
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=align, antialias=antialias)


def resample_pos_embed(
    pos_embed: Tensor,
    new_grid: Sequence[int],
    old_grid: Sequence[int] | None = None,
    num_prefix_tokens: int = 0,
    mode: str = "bicubic",
    antialias: bool = True,
) -> Tensor:
    """Resample an absolute position table from ``old_grid`` to ``new_grid``.

    The first ``num_prefix_tokens`` rows are kept as they are.  The patch rows, viewed as a
    ``(1, C, H, W)`` image, are interpolated in float32 with ``F.interpolate(size=new_grid, mode=mode,
    antialias=antialias, align_corners=False)`` and cast back to the input dtype; for 2D this is
    exactly timm's ``resample_abs_pos_embed(pos_embed, new_grid, old_grid, num_prefix_tokens, mode,
    antialias)``.  For 3D grids ``(T, H, W)`` every frame is first resampled spatially this way, then
    the temporal axis is resampled with 1D ``linear`` interpolation (``align_corners=False``, no
    antialiasing).  An axis whose size does not change is left as it is; the same grid returns
    ``pos_embed`` itself.

    Args:
        pos_embed: ``(1, P + N, C)`` or ``(P + N, C)``, ``N = prod(old_grid)``.
        new_grid: ``(H', W')`` or ``(T', H', W')``.
        old_grid: the grid of ``pos_embed``; for 2D it may be left out when ``N`` is a square
            (the grid is then ``(√N, √N)``); required for 3D.
        num_prefix_tokens: ``P``, rows (CLS, registers) that are not resampled.
        mode: spatial mode, one of :data:`RESAMPLE_MODES` (DeiT/timm: ``"bicubic"``; FlexiViT:
            ``"bilinear"``).
        antialias: low-pass filter when down-sampling; only with ``"bilinear"``/``"bicubic"``.

    Returns:
        ``(1, P + N', C)`` or ``(P + N', C)`` (the rank of ``pos_embed``), ``N' = prod(new_grid)``,
        in the dtype of ``pos_embed``; differentiable.

    Raises:
        ValueError: for a batch dimension other than 1, grids with entries < 1 or different numbers
            of axes, a token count other than ``P + prod(old_grid)``, a non-square ``N`` without
            ``old_grid``, a 3D resample without ``old_grid``, an unknown mode, or ``antialias=True``
            with a mode other than bilinear/bicubic.
    """
    if pos_embed.dim() not in (2, 3) or (pos_embed.dim() == 3 and pos_embed.shape[0] != 1):
        raise ValueError(f"pos_embed must be (1, P + N, C) or (P + N, C), got shape {tuple(pos_embed.shape)}; "
                         f"resample one table at a time")
    new_grid = check_grid(new_grid)
    if len(new_grid) not in (2, 3):
        raise ValueError(f"new_grid must be (H, W) or (T, H, W), got {new_grid}")
    if not isinstance(num_prefix_tokens, int) or isinstance(num_prefix_tokens, bool) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be an integer >= 0, got {num_prefix_tokens!r}")
    _check_resample_mode(mode, antialias)
    table = pos_embed if pos_embed.dim() == 3 else pos_embed[None]
    num_patches = table.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(num_patches, 0))
        if len(new_grid) == 3:
            raise ValueError("old_grid is required to resample a 3D table; pass old_grid=(T, H, W)")
        if num_patches < 1 or side * side != num_patches:
            raise ValueError(f"cannot infer a square grid from {num_patches} patch rows "
                             f"({table.shape[1]} rows − {num_prefix_tokens} prefix); pass old_grid=(H, W)")
        old_grid = (side, side)
    old_grid = check_grid(old_grid)
    if len(old_grid) != len(new_grid):
        raise ValueError(f"old_grid {old_grid} and new_grid {new_grid} have different numbers of axes; "
                         f"resample between grids of the same kind")
    if num_patches != math.prod(old_grid):
        raise ValueError(f"pos_embed has {table.shape[1]} rows but num_prefix_tokens={num_prefix_tokens} plus "
                         f"old_grid {old_grid} needs {num_prefix_tokens + math.prod(old_grid)}; "
                         f"check old_grid and num_prefix_tokens")
    if old_grid == new_grid:
        return pos_embed

    prefix, patches = table[:, :num_prefix_tokens], table[:, num_prefix_tokens:]
    channels = table.shape[-1]
    field = patches.float().reshape(*old_grid, channels)
    if len(old_grid) == 2:
        field = _interpolate(field.permute(2, 0, 1)[None], new_grid, mode, antialias)[0].permute(1, 2, 0)
    else:
        frames = field.permute(0, 3, 1, 2)  # (T, C, H, W)
        if old_grid[1:] != new_grid[1:]:
            frames = _interpolate(frames, new_grid[1:], mode, antialias)
        if old_grid[0] != new_grid[0]:
            series = frames.reshape(old_grid[0], -1).T[None]  # (1, C·H'·W', T)
            series = _interpolate(series, new_grid[:1], "linear", False)
            frames = series[0].T.reshape(new_grid[0], channels, *new_grid[1:])
        field = frames.permute(0, 2, 3, 1)
    out = torch.cat([prefix, field.reshape(1, -1, channels).to(table.dtype)], dim=1)
    return out if pos_embed.dim() == 3 else out[0]


# ------------------------------------------------------------------------------------------ modules
class AdditivePE(PositionalEmbedding, abc.ABC):
    """Base of the PEs that add a table ``E = table(grid)`` of shape ``(P + N, C)`` to the tokens.

    ``embed(x, grid) = x + E`` (``E`` cast to ``x.dtype``).  With ``lape=True`` (LaPE) the table is
    not added there (``embed`` is the identity) but to the normalised attention input of every
    block: ``attention_input(h, grid, l) = h + P_l`` with ``P_0 = LN_0(E)``, ``P_l = LN_l(P_{l−1})``,
    one ``LayerNorm(C, eps=1e-6)`` with affine per block (``depth`` of them, in ``lape_norms``).
    The norms see every row of ``E``, prefix rows included (as in the official code).

    Subclasses implement :meth:`table`.
    """

    hooks = frozenset({"embed"})

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
        lape: bool = False,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        if not isinstance(lape, bool):
            raise ValueError(f"lape must be True or False, got {lape!r}")
        self.lape = lape
        self.lape_norms = nn.ModuleList(nn.LayerNorm(dim, eps=LAPE_EPS) for _ in range(depth)) if lape else None
        if lape:
            self.hooks = frozenset({"attention_input"})

    @abc.abstractmethod
    def table(self, grid: Sequence[int], device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> Tensor:
        """The additive PE of ``grid``: ``(P + N, C)`` on ``device`` in ``dtype``."""

    def lape_table(self, grid: Sequence[int], layer: int = 0, device: torch.device | str | None = None) -> Tensor:
        """LaPE's ``P_layer = LN_layer(… LN_0(table(grid)))``: ``(P + N, C)`` in the norms' dtype.

        Raises:
            ValueError: if the PE was built with ``lape=False`` or ``layer`` is out of range.
        """
        if self.lape_norms is None:
            raise ValueError(f"{type(self).__name__} was built with lape=False, so it has no per-layer tables; "
                             f"build it with lape=True")
        self.check_layer(layer)
        pe = self.table(grid, device, self.lape_norms[0].weight.dtype)
        for norm in self.lape_norms[: layer + 1]:
            pe = norm(pe)
        return pe

    def embed(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """``x + table(grid)`` for ``x`` of shape ``(B, P + N, C)``; ``x`` itself when ``lape=True``."""
        grid = self.check_grid(grid)
        self.check_tokens(x, grid)
        if self.lape:
            return x
        return x + self.table(grid, x.device, x.dtype)

    def attention_input(self, h: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor:
        """``h + P_layer`` (LaPE) for ``h`` of shape ``(B, P + N, C)``; ``h`` itself when ``lape=False``."""
        grid = self.check_grid(grid)
        self.check_tokens(h, grid, "h")
        self.check_layer(layer)
        if not self.lape:
            return h
        return h + self.lape_table(grid, layer, h.device).to(h.dtype)

    def _pad_prefix(self, patches: Tensor) -> Tensor:
        """Prepend ``P`` zero rows to a ``(N, C)`` table."""
        return F.pad(patches, (0, 0, self.num_prefix_tokens, 0))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lape={self.lape}"


@register_pe("sincos")
class SinCosPE(AdditivePE):
    """Fixed sin-cos table (MAE/DiT 2D; CogVideoX or MAE-ST/Latte 3D), recomputed for every grid.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth, grid: see
            :class:`~visionpe.base.PositionalEmbedding`; ``grid`` is the training grid.
        base: frequency base (10000).
        style: 3D channel layout, ``"concat"`` (``C`` a multiple of 16) or ``"separable"``
            (see :func:`sincos_3d`); 2D grids use :func:`sincos_2d` and accept only ``"concat"``.
        positions: ``"index"``: integer patch indices, so a larger grid extrapolates to new
            positions; ``"normalized"``: positions ``p·G_train/G`` per axis, so any grid spans the
            training grid's range (diffusers' ``base_size`` rule, the table "interpolated" by
            recomputation); needs ``grid``.
        lape: add the table per layer through LayerNorms (LaPE) instead of once.

    Prefix rows are zero.  Tables are cached per ``(grid, device, dtype)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
        base: float = 10000.0,
        style: str = "concat",
        positions: str = "index",
        lape: bool = False,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid, lape)
        self.base = _check_base(base)
        if style not in SINCOS_3D_STYLES:
            raise ValueError(f"unknown 3D sin-cos style {style!r}; valid styles: {', '.join(SINCOS_3D_STYLES)}")
        if num_axes == 2 and style != "concat":
            raise ValueError(f"style={style!r} applies to 3D grids only; leave style='concat' for 2D grids")
        if positions not in ("index", "normalized"):
            raise ValueError(f"positions must be 'index' or 'normalized', got {positions!r}")
        if positions == "normalized":
            self.require_train_grid()
        multiple = 16 if num_axes == 3 and style == "concat" else 4
        _check_dim(dim, multiple, f"sincos ({num_axes}D, style={style!r})")
        self.style = style
        self.positions = positions
        self._cache = TableCache()

    def patch_table(self, grid: Sequence[int], device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
        """The sin-cos table of the patch tokens, ``(N, C)`` (not cached)."""
        grid = self.check_grid(grid)
        scale = None if self.positions == "index" else tuple(g / g0 for g, g0 in zip(grid, self.train_grid))
        if self.num_axes == 2:
            return sincos_2d(grid, self.dim, self.base, scale, dtype, device)
        return sincos_3d(grid, self.dim, self.base, self.style, scale, dtype, device)

    def table(self, grid: Sequence[int], device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> Tensor:
        """Cached ``(P + N, C)`` table, zero prefix rows; float32 unless ``dtype`` is given."""
        grid = self.check_grid(grid)
        device = resolve_device(device)
        dtype = torch.float32 if dtype is None else dtype
        return self._cache.get((grid, device, dtype),
                               lambda: self._pad_prefix(self.patch_table(grid, device, dtype)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, base={self.base}, style={self.style!r}, positions={self.positions!r}"


@register_pe("learned")
class LearnedPE(AdditivePE):
    """Learned absolute table (ViT/DeiT), resampled to other grids (timm's rule; 3D adds time).

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth: see
            :class:`~visionpe.base.PositionalEmbedding`.
        grid: the native grid the table is built for (required).
        mode: interpolation used at another grid (:data:`RESAMPLE_MODES`; ``"bicubic"`` as in
            DeiT/timm, ``"bilinear"`` as in FlexiViT), or ``None`` to forbid other grids.
        antialias: low-pass filter when down-sampling (timm's default True; DeiT and RoPE-ViT
            interpolate without it); only with bilinear/bicubic.
        prefix_embed: learn a row for every prefix token (what timm checkpoints hold; set it when
            loading one); by default prefix rows are zero like every other visionpe PE.
        lape: add the table per layer through LayerNorms (LaPE) instead of once.

    The parameter ``pos_embed`` is ``(1, P + N, C)`` (``(1, N, C)`` with the default ``prefix_embed=False``),
    ``trunc_normal(std=0.02)``.  At another grid it is resampled by :func:`resample_pos_embed` on
    every call while gradients are enabled (the result is differentiable); under ``no_grad`` the
    result is cached per grid and parameter version.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
        mode: str | None = "bicubic",
        antialias: bool = True,
        prefix_embed: bool = False,
        lape: bool = False,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid, lape)
        native = self.require_train_grid()
        if mode is not None:
            _check_resample_mode(mode, antialias)
        if not isinstance(prefix_embed, bool):
            raise ValueError(f"prefix_embed must be True or False, got {prefix_embed!r}")
        self.mode = mode
        self.antialias = antialias
        self.prefix_embed = prefix_embed
        self.num_learned_prefix = num_prefix_tokens if prefix_embed else 0
        self.pos_embed = nn.Parameter(torch.empty(1, self.num_learned_prefix + math.prod(native), dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self._cache = TableCache()

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (the table, as in timm/DeiT)."""
        return {"pos_embed"}

    def _resampled(self, grid: Grid) -> Tensor:
        return resample_pos_embed(self.pos_embed, grid, self.train_grid, self.num_learned_prefix,
                                  self.mode, self.antialias)[0]

    def table(self, grid: Sequence[int], device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> Tensor:
        """``(P + N, C)`` table for ``grid`` (the parameter's dtype unless ``dtype`` is given).

        Raises:
            ValueError: for a grid other than the native one when ``mode=None``.
        """
        grid = self.check_grid(grid)
        if grid == self.train_grid:
            rows = self.pos_embed[0]
        elif self.mode is None:
            raise ValueError(
                f"learned PE was built with mode=None, so its table for the native grid {self.train_grid} has no "
                f"resize rule for the grid {grid}; build it with mode='bicubic' (DeiT/timm) or mode='bilinear' "
                f"(FlexiViT), or run it on {self.train_grid}"
            )
        elif torch.is_grad_enabled():
            rows = self._resampled(grid)
        else:
            p = self.pos_embed
            rows = self._cache.get((grid, p.device, p.dtype, p._version, p.data_ptr()), lambda: self._resampled(grid))
        if self.num_learned_prefix != self.num_prefix_tokens:
            rows = self._pad_prefix(rows)
        return rows.to(device=device, dtype=dtype)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, mode={self.mode!r}, antialias={self.antialias}, "
                f"prefix_embed={self.prefix_embed}")
