"""``rel-bias``: learned relative position bias tables (Swin v1, BEiT), over the whole token grid.

Every layer owns a table with one learned logit bias per head for every relative offset
``Δ = p_i − p_j`` (query minus key) that fits in the native grid ``(H, W)``:
``(2H − 1)·(2W − 1)`` rows (``(2T − 1)(2H − 1)(2W − 1)`` for ``(T, H, W)``), ``heads`` columns,
initialised with ``trunc_normal(std=0.02)``.  Row ``idx(Δ)`` is Swin's index, generalised to any
number of axes (row-major over the shifted offsets ``Δ_a + G_a − 1``)::

    2D:  idx = (Δy + H − 1)·(2W − 1) + (Δx + W − 1)
    3D:  idx = ((Δt + T − 1)·(2H − 1) + (Δy + H − 1))·(2W − 1) + (Δx + W − 1)

and the logit bias is ``B[h, i, j] = table[idx(p_i − p_j), h]``.

A grid other than the native one has offsets the table was not trained for.  ``mode`` picks the
rule: ``"bicubic"``/``"bilinear"`` (2D) or ``"trilinear"`` (3D) interpolate the table viewed as
``(heads, 2H − 1, 2W − 1)`` to the new grid's size (Swin's ``load_pretrained`` rule is bicubic);
``"clamp"`` clips every offset to the trained range; ``None`` only allows grids that fit in the
native one (their offsets are an exact centre sub-table).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Grid, PositionalEmbedding, TableCache, check_grid
from .registry import register_pe

__all__ = [
    "RESIZE_MODES",
    "RelPosBias",
    "gather_rel_bias",
    "rel_table_shape",
    "relative_position_index",
    "resize_rel_bias_table",
]

#: interpolation modes of :func:`resize_rel_bias_table`, by number of grid axes
RESIZE_MODES: dict[int, tuple[str, ...]] = {1: ("linear",), 2: ("bicubic", "bilinear"), 3: ("trilinear",)}


def _same_axes(grid: Grid, other: Grid, name: str) -> Grid:
    if len(other) != len(grid):
        raise ValueError(f"{name} {other} has {len(other)} axes but the grid {grid} has {len(grid)}; "
                         f"pass grids with the same number of axes")
    return other


def rel_table_shape(grid: Sequence[int]) -> tuple[int, ...]:
    """Number of relative offsets per axis, ``(2·G_a − 1, …)``, of a table built for ``grid``."""
    return tuple(2 * g - 1 for g in check_grid(grid))


def relative_position_index(
    grid: Sequence[int],
    table_grid: Sequence[int] | None = None,
    clamp: bool = False,
) -> Tensor:
    """Row of a relative table for every (query, key) pair of a grid (Swin's index, 2D and 3D).

    Args:
        grid: the token grid ``(H, W)`` or ``(T, H, W)``; ``N = prod(grid)`` tokens, row-major.
        table_grid: the grid the table was built for (default ``grid``); its table has
            ``prod(2·table_grid − 1)`` rows, offsets along axis ``a`` shifted by ``table_grid[a] − 1``.
        clamp: clip offsets that do not fit in ``table_grid`` to its largest offset on that axis.

    Returns:
        ``(N, N)`` int64; entry ``[i, j]`` is the row of offset ``p_i − p_j``.

    Raises:
        ValueError: if the grids have different numbers of axes, or if ``grid`` has offsets beyond
            ``table_grid`` and ``clamp`` is False.
    """
    grid = check_grid(grid)
    table_grid = grid if table_grid is None else _same_axes(grid, check_grid(table_grid), "table_grid")
    if not clamp and any(g > t for g, t in zip(grid, table_grid)):
        raise ValueError(
            f"grid {grid} has relative offsets beyond those of a table built for {table_grid}; "
            f"pass clamp=True to clip them or resize the table with resize_rel_bias_table"
        )
    num_axes = len(grid)
    index = torch.zeros((1,) * (2 * num_axes), dtype=torch.long)
    for axis, (g, t) in enumerate(zip(grid, table_grid)):
        coords = torch.arange(g)
        delta = (coords[:, None] - coords[None, :]).clamp(-(t - 1), t - 1)
        shape = [1] * (2 * num_axes)
        shape[axis], shape[num_axes + axis] = g, g
        index = index * (2 * t - 1) + (delta + t - 1).view(shape)
    n = math.prod(grid)
    return index.reshape(n, n)


def resize_rel_bias_table(
    table: Tensor,
    old_grid: Sequence[int],
    new_grid: Sequence[int],
    mode: str = "bicubic",
) -> Tensor:
    """Interpolate a relative bias table to the offsets of a new grid (Swin ``load_pretrained``).

    Args:
        table: ``(prod(2·old_grid − 1), heads)``, rows in :func:`relative_position_index` order.
        old_grid: the grid ``table`` was built for.
        new_grid: the grid to build a table for, same number of axes.
        mode: ``"bicubic"`` (Swin) or ``"bilinear"`` for 2D grids, ``"trilinear"`` for 3D,
            ``"linear"`` for 1D; ``align_corners=False`` as in Swin.

    Returns:
        ``(prod(2·new_grid − 1), heads)`` in ``table.dtype`` (interpolated in float32, or float64
        for a float64 table); ``table`` itself when the grids are equal.

    Raises:
        ValueError: on a table whose shape does not match ``old_grid``, grids with different
            numbers of axes, or a mode that does not fit the number of axes.
    """
    old_grid = check_grid(old_grid)
    new_grid = _same_axes(old_grid, check_grid(new_grid), "new_grid")
    modes = RESIZE_MODES[len(old_grid)]
    if mode not in modes:
        raise ValueError(f"mode {mode!r} cannot resize a {len(old_grid)}D relative table; "
                         f"use one of {', '.join(repr(m) for m in modes)}")
    old_shape, new_shape = rel_table_shape(old_grid), rel_table_shape(new_grid)
    if table.dim() != 2 or table.shape[0] != math.prod(old_shape):
        raise ValueError(f"table of shape {tuple(table.shape)} is not (prod(2·G − 1), heads) = "
                         f"({math.prod(old_shape)}, heads) for the grid {old_grid}; pass the grid it was built for")
    if old_grid == new_grid:
        return table
    compute = torch.float64 if table.dtype == torch.float64 else torch.float32
    heads = table.shape[1]
    volume = table.to(compute).t().reshape(1, heads, *old_shape)
    resized = F.interpolate(volume, size=new_shape, mode=mode, align_corners=False)
    return resized.reshape(heads, -1).t().to(table.dtype)


def gather_rel_bias(table: Tensor, index: Tensor) -> Tensor:
    """Per-head logit bias from a relative table.

    Args:
        table: ``(L, heads)``.
        index: ``(N, N)`` rows of ``table``, e.g. :func:`relative_position_index`.

    Returns:
        ``(heads, N, N)`` with ``out[h, i, j] = table[index[i, j], h]``.
    """
    return table[index].permute(2, 0, 1)


def _valid_modes(num_axes: int) -> str:
    return ", ".join(repr(m) for m in ("auto", *RESIZE_MODES[num_axes], "clamp", None))


def _check_mode(mode: str | None, num_axes: int) -> str | None:
    """Validate a new-grid rule; ``"auto"`` resolves to ``"bicubic"`` (2D) or ``"trilinear"`` (3D)."""
    if mode == "auto":
        return RESIZE_MODES[num_axes][0]
    if mode is None or mode == "clamp" or mode in RESIZE_MODES[num_axes]:
        return mode
    raise ValueError(f"unknown new-grid mode {mode!r} for {num_axes}D grids; valid modes: {_valid_modes(num_axes)}")


@register_pe("rel-bias")
class RelPosBias(PositionalEmbedding):
    """Learned relative position bias over the whole token grid, one table per layer (Swin v1, BEiT).

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth: see
            :class:`visionpe.base.PositionalEmbedding`.
        grid: the native grid (required): it sizes the tables.
        mode: rule for other grids: ``"auto"`` (default: ``"bicubic"`` in 2D, as Swin's
            ``load_pretrained``; ``"trilinear"`` in 3D), ``"bicubic"``/``"bilinear"`` (2D),
            ``"trilinear"`` (3D), ``"clamp"`` (clip offsets to the trained range) or ``None``
            (grids that fit in the native grid only; a larger one raises ``ValueError``).

    ``tables[layer]`` is ``(prod(2·grid − 1), heads)``, Swin's ``relative_position_bias_table``
    layout (BEiT's three extra CLS rows are not used: prefix tokens get zero bias).  Exclude the
    tables from weight decay (:meth:`no_weight_decay`), as Swin does.
    """

    hooks = frozenset({"attention_bias"})

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
        mode: str | None = "auto",
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        native = self.require_train_grid()
        self.mode = _check_mode(mode, num_axes)
        rows = math.prod(rel_table_shape(native))
        self.tables = nn.ParameterList(nn.Parameter(torch.empty(rows, num_heads)) for _ in range(depth))
        for table in self.tables:
            nn.init.trunc_normal_(table, std=0.02)
        self._index = TableCache()

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay."""
        return {name for name, _ in self.named_parameters()}

    def index(self, grid: Grid, table_grid: Grid, clamp: bool, device: torch.device) -> Tensor:
        """Cached :func:`relative_position_index` on ``device``."""
        return self._index.get(
            (grid, table_grid, clamp, device),
            lambda: relative_position_index(grid, table_grid, clamp).to(device),
        )

    def patch_bias(self, grid: Sequence[int], layer: int = 0) -> Tensor:
        """Bias between the patch tokens of ``grid``: ``(heads, N, N)`` in the tables' dtype.

        Raises:
            ValueError: for a grid larger than the native one along some axis when ``mode=None``.
        """
        grid = self.check_grid(grid)
        self.check_layer(layer)
        native = self.train_grid
        table = self.tables[layer]
        if grid == native or self.mode is None or self.mode == "clamp":
            if self.mode is None and any(g > n for g, n in zip(grid, native)):
                raise ValueError(
                    f"rel-bias with mode=None cannot grow its table from the native grid {native} to {grid}: "
                    f"the table has no entries for the new offsets and no resize rule was chosen; build it with "
                    f"mode={RESIZE_MODES[self.num_axes][0]!r} (interpolate the table) or mode='clamp' "
                    f"(reuse the edge offsets); valid modes: {_valid_modes(self.num_axes)}"
                )
            index = self.index(grid, native, self.mode == "clamp", table.device)
        else:
            table = resize_rel_bias_table(table, native, grid, self.mode)
            index = self.index(grid, grid, False, table.device)
        return gather_rel_bias(table, index)

    def attention_bias(self, q: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor:
        """``(1, heads, P + N, P + N)`` bias for ``q`` of shape ``(B, heads, P + N, d)``; prefix rows/columns 0."""
        grid = self.check_grid(grid)
        self.check_tokens(q, grid, "q")
        return self.pad_bias(self.patch_bias(grid, layer)).unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode!r}"
