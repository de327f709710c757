"""``rel-decomposed``: MViTv2's decomposed relative position embeddings (2D and 3D), over the whole grid.

Each layer owns one table per grid axis, ``R_a ∈ R^{(2·G_a − 1) × d}`` (``d`` the head dim), shared
by all heads and initialised with ``trunc_normal(std=0.02)``.  Row ``Δ + G_a − 1`` holds the
embedding of the offset ``Δ = a(i) − a(j)`` (query minus key) along axis ``a``.  The logit bias
of query ``i`` and key ``j`` is query-dependent::

    E[i, j] = q_i · R_h[h(i) − h(j)] + q_i · R_w[w(i) − w(j)]   (+ q_i · R_t[t(i) − t(j)] in 3D)

with the *unscaled* ``q`` as in the official code (mvit ``cal_rel_pos_spatial``, SlowFast,
timm); ``scale_q=True`` multiplies ``q`` by ``d^−1/2``, the paper's form.  As in the official code
the terms are computed per axis, ``rel_a[b, m, n, k] = Σ_c q[b, m, n, c]·R_a[a(n), k, c]``
(``O(N·(T + H + W)·d)``), and only then broadcast-added into the ``(N, N)`` bias.

Memory: with ``memory_efficient=True`` (the default) the bias never exists as an ``(N, N)``
tensor.  The terms are appended to the queries as ``Σ_a G_a`` extra channels and the keys get the
matching one-hot coordinates, so ``q′·k′ = q·k + Σ_a rel_a[i, a(j)]`` and the attention kernel
adds the bias inside its own product (:meth:`PositionalEmbedding.extend_qk`): ``O(N·(T + H + W))``
memory.  ``memory_efficient=False`` hands the attention the full ``(B, heads, N, N)`` bias, the
official code's form (on the CPU it was the faster of the two at 14×14 tokens).

Other grids: ``"linear"`` interpolates each 1D table along its offset axis to ``2·G′ − 1`` rows
(SlowFast ``get_rel_pos``, SAM/ViTDet, timm ``mvitv2.checkpoint_filter_fn``); ``"clamp"`` clips
offsets to the trained range; ``None`` only allows grids that fit in the native one.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import PositionalEmbedding, TableCache, check_grid, resolve_device
from .registry import register_pe

__all__ = [
    "MODES",
    "DecomposedRelPos",
    "decomposed_rel_pos_bias",
    "decomposed_rel_pos_terms",
    "get_rel_pos",
    "resize_rel_pos_table",
]

#: new-grid rules of :class:`DecomposedRelPos` and :func:`resize_rel_pos_table`
MODES = ("linear", "clamp", None)


def _check_table(table: Tensor, what: str = "table") -> None:
    if not isinstance(table, Tensor) or table.dim() != 2 or table.shape[0] % 2 == 0:
        shape = tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__
        raise ValueError(f"{what} must be a (2·G − 1, d) tensor with an odd number of rows, got {shape}")


def _check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _interpolate_rows(table: Tensor, rows: int) -> Tensor:
    """Linear interpolation (``align_corners=False``) of ``table`` ``(L, d)`` to ``(rows, d)``."""
    compute = torch.float64 if table.dtype == torch.float64 else torch.float32
    line = table.to(compute).t().unsqueeze(0)
    return F.interpolate(line, size=rows, mode="linear", align_corners=False)[0].t().to(table.dtype)


def get_rel_pos(table: Tensor, q_size: int, k_size: int) -> Tensor:
    """Embedding of every (query, key) offset along one axis (SlowFast / SAM ``get_rel_pos``).

    If ``table`` does not have ``2·max(q_size, k_size) − 1`` rows it is linearly interpolated to that
    length first.  When the query and key axes differ in size (pooling attention) the shorter one is
    stretched: ``dist[i, j] = ⌊i·q_ratio − j·k_ratio + (k_size − 1)·k_ratio⌋`` with
    ``q_ratio = max(k_size / q_size, 1)`` and ``k_ratio = max(q_size / k_size, 1)`` (computed in
    exact integer arithmetic).

    Args:
        table: ``(L, d)`` embeddings of the offsets ``−(L−1)/2 … (L−1)/2``; ``L`` odd.
        q_size: length of the query axis.
        k_size: length of the key axis.

    Returns:
        ``(q_size, k_size, d)``: ``out[i, j]`` is the embedding of the offset between query ``i``
        and key ``j`` (``table[i − j + G − 1]`` when ``q_size == k_size == G``).
    """
    _check_table(table)
    q_size, k_size = _check_size("q_size", q_size), _check_size("k_size", k_size)
    rows = 2 * max(q_size, k_size) - 1
    if table.shape[0] != rows:
        table = _interpolate_rows(table, rows)
    i = torch.arange(q_size, device=table.device)[:, None]
    j = torch.arange(k_size, device=table.device)[None, :]
    if k_size >= q_size:  # q_ratio = k/q, k_ratio = 1
        dist = (i * k_size) // q_size - j + (k_size - 1)
    else:  # q_ratio = 1, k_ratio = q/k
        dist = i + ((k_size - 1 - j) * q_size) // k_size
    return table[dist]


def resize_rel_pos_table(table: Tensor, size: int, mode: str | None = "linear") -> Tensor:
    """A 1D relative table for an axis of ``size`` tokens, from one trained for ``G`` tokens.

    Args:
        table: ``(2·G − 1, d)``.
        size: the new axis length ``G′``.
        mode: ``"linear"``: interpolate along the offset axis (``align_corners=False``, float32);
            ``"clamp"``: offset ``Δ`` reads row ``clip(Δ, −(G−1), G−1)``; ``None``: exact centre rows,
            only for ``G′ ≤ G``.

    Returns:
        ``(2·G′ − 1, d)``; ``table`` itself when ``G′ == G``.

    Raises:
        ValueError: for an unknown mode, a malformed table, or ``G′ > G`` with ``mode=None``.
    """
    _check_table(table)
    size = _check_size("size", size)
    if mode not in MODES:
        raise ValueError(f"unknown new-grid mode {mode!r}; valid modes: {', '.join(repr(m) for m in MODES)}")
    old = (table.shape[0] + 1) // 2
    if size == old:
        return table
    if mode == "linear":
        return _interpolate_rows(table, 2 * size - 1)
    if mode is None and size > old:
        raise ValueError(
            f"a relative table trained for {old} positions has no entries for the offsets of {size} positions "
            f"and mode=None gives no rule to grow it; use mode='linear' (interpolate the table) or mode='clamp' "
            f"(reuse the edge offsets)"
        )
    offsets = torch.arange(-(size - 1), size, device=table.device).clamp(-(old - 1), old - 1)
    return table[offsets + old - 1]


def _check_q_tables(q: Tensor, grid: Sequence[int], tables: Sequence[Tensor]) -> tuple[int, ...]:
    grid = check_grid(grid)
    if not isinstance(q, Tensor) or q.dim() != 4 or q.shape[2] != math.prod(grid):
        shape = tuple(q.shape) if isinstance(q, Tensor) else type(q).__name__
        raise ValueError(f"q must be (B, heads, N, d) with N = prod({grid}) = {math.prod(grid)} patch tokens "
                         f"(drop the prefix tokens first), got {shape}")
    if len(tables) != len(grid):
        raise ValueError(f"got {len(tables)} tables for the {len(grid)}-axis grid {grid}; pass one per axis")
    for axis, (table, g) in enumerate(zip(tables, grid)):
        _check_table(table, f"tables[{axis}]")
        if table.shape != (2 * g - 1, q.shape[-1]):
            raise ValueError(f"tables[{axis}] has shape {tuple(table.shape)} but axis {axis} of the grid {grid} "
                             f"with head dim {q.shape[-1]} needs ({2 * g - 1}, {q.shape[-1]}); resize it with "
                             f"resize_rel_pos_table")
    return grid


def decomposed_rel_pos_terms(q: Tensor, grid: Sequence[int], tables: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Per-axis terms of the decomposed bias, without building the ``(N, N)`` tensor.

    Args:
        q: ``(B, heads, N, d)`` queries of the patch tokens (no prefix tokens), ``N = prod(grid)``.
        grid: ``(H, W)`` or ``(T, H, W)``.
        tables: one ``(2·G_a − 1, d)`` table per axis, in grid order.

    Returns:
        One ``(B, heads, N, G_a)`` tensor per axis:
        ``rel_a[b, m, n, k] = Σ_c q[b, m, n, c]·R_a[a(n) − k + G_a − 1, c]``; the bias between query
        ``n`` and the key at coordinates ``(k_0, k_1, …)`` is ``Σ_a rel_a[…, n, k_a]``.  Computed in the
        promoted dtype of ``q`` and the tables.
    """
    grid = _check_q_tables(q, grid, tables)
    letters = "thw"[-len(grid):]
    batch, heads, n, d = q.shape
    terms = []
    for axis, (table, g) in enumerate(zip(tables, grid)):
        dtype = torch.promote_types(q.dtype, table.dtype)
        q_grid = q.to(dtype).reshape(batch, heads, *grid, d)
        rel = get_rel_pos(table.to(dtype), g, g)
        out = torch.einsum(f"bm{letters}c,{letters[axis]}kc->bm{letters}k", q_grid, rel)
        terms.append(out.reshape(batch, heads, n, g))
    return tuple(terms)


def decomposed_rel_pos_bias(q: Tensor, grid: Sequence[int], tables: Sequence[Tensor]) -> Tensor:
    """Decomposed relative position bias ``(B, heads, N, N)`` between the patch tokens.

    Args: as :func:`decomposed_rel_pos_terms`.

    Returns:
        ``E[b, m, i, j] = Σ_a q[b, m, i]·R_a[a(i) − a(j)]`` (unscaled ``q``: scale it beforehand for
        the paper's ``/√d`` form).
    """
    terms = decomposed_rel_pos_terms(q, grid, tables)
    grid = check_grid(grid)
    batch, heads, n, _ = q.shape
    bias = None
    for axis, term in enumerate(terms):
        shape = [batch, heads, n] + [1] * len(grid)
        shape[3 + axis] = grid[axis]
        term = term.reshape(shape)
        bias = term if bias is None else bias + term
    return bias.reshape(batch, heads, n, n)


@register_pe("rel-decomposed")
class DecomposedRelPos(PositionalEmbedding):
    """MViTv2 decomposed relative position embeddings over the whole token grid, per layer.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth: see
            :class:`visionpe.base.PositionalEmbedding`.
        grid: the native grid (required): it sizes the tables.
        mode: rule for other grids: ``"linear"`` (default; 1D interpolation of every table, the
            SlowFast/timm checkpoint rule), ``"clamp"`` (clip offsets to the trained range) or ``None``
            (grids that fit in the native grid only; a larger one raises ``ValueError``).
        scale_q: multiply ``q`` by ``d^−1/2`` before the bias (the paper's equation); the default
            ``False`` matches the official code and its checkpoints.
        memory_efficient: add the bias through extra ``q``/``k`` channels (``extend_qk``,
            ``O(N·(T + H + W))`` memory) instead of an ``(N, N)`` ``attention_bias``; both give the
            same logits.

    ``tables[layer][axis]`` is ``(2·G_axis − 1, head_dim)``; axes in grid order, so MViTv2's
    ``rel_pos_h``/``rel_pos_w`` are ``tables[layer][0]``/``[1]`` in 2D and ``rel_pos_t``/``rel_pos_h``/
    ``rel_pos_w`` are ``[0]``/``[1]``/``[2]`` in 3D.  Exclude them from weight decay
    (:meth:`no_weight_decay`), as MViTv2 does.
    """

    hooks = frozenset({"extend_qk"})  # {"attention_bias"} for an instance with memory_efficient=False

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
        mode: str | None = "linear",
        scale_q: bool = False,
        memory_efficient: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        if not isinstance(memory_efficient, bool):
            raise ValueError(f"memory_efficient must be True or False, got {memory_efficient!r}")
        self.memory_efficient = memory_efficient
        self.hooks = frozenset({"extend_qk" if memory_efficient else "attention_bias"})
        self._onehots = TableCache()
        native = self.require_train_grid()
        if mode not in MODES:
            raise ValueError(f"unknown new-grid mode {mode!r}; valid modes: {', '.join(repr(m) for m in MODES)}")
        self.mode = mode
        self.scale_q = bool(scale_q)
        self.tables = nn.ModuleList(
            nn.ParameterList(nn.Parameter(torch.empty(2 * g - 1, self.head_dim)) for g in native)
            for _ in range(depth)
        )
        for table in self.parameters():
            nn.init.trunc_normal_(table, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay."""
        return {name for name, _ in self.named_parameters()}

    def layer_tables(self, grid: Sequence[int], layer: int = 0) -> tuple[Tensor, ...]:
        """The per-axis tables of ``layer`` for ``grid``, each ``(2·G_a − 1, head_dim)``, after ``mode``.

        Raises:
            ValueError: for a grid larger than the native one along some axis when ``mode=None``.
        """
        grid = self.check_grid(grid)
        self.check_layer(layer)
        if self.mode is None and any(g > n for g, n in zip(grid, self.train_grid)):
            raise ValueError(
                f"rel-decomposed with mode=None cannot grow its tables from the native grid {self.train_grid} to "
                f"{grid}: they have no entries for the new offsets; build it with mode='linear' (interpolate the "
                f"tables) or mode='clamp' (reuse the edge offsets)"
            )
        return tuple(resize_rel_pos_table(table, g, self.mode) for table, g in zip(self.tables[layer], grid))

    def _patch_queries(self, q: Tensor, grid: Sequence[int]) -> tuple[tuple[int, ...], Tensor]:
        grid = self.check_grid(grid)
        self.check_tokens(q, grid, "q")
        if q.dim() != 4 or q.shape[-1] != self.head_dim:
            raise ValueError(f"q must be (B, heads, P + N, {self.head_dim}), got {tuple(q.shape)}")
        q_patch = q[:, :, self.num_prefix_tokens:]
        return grid, (q_patch * self.head_dim ** -0.5 if self.scale_q else q_patch)

    def bias(self, q: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor:
        """The full ``(B, heads, P + N, P + N)`` query-dependent bias; ``q`` is ``(B, heads, P + N, head_dim)``.

        Prefix rows and columns are zero.  The bias is in the promoted dtype of ``q`` and the tables.
        """
        grid, q_patch = self._patch_queries(q, grid)
        return self.pad_bias(decomposed_rel_pos_bias(q_patch, grid, self.layer_tables(grid, layer)))

    def attention_bias(self, q: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor | None:
        """:meth:`bias` when built with ``memory_efficient=False``, else ``None`` (see :meth:`extend_qk`)."""
        return None if self.memory_efficient else self.bias(q, grid, layer)

    def key_coordinates(self, grid: Sequence[int], device: torch.device | str | None = None) -> Tensor:
        """Cached one-hot key coordinates ``(P + N, Σ_a G_a)`` float32: row ``j`` has a 1 in the block of
        every axis ``a`` at column ``a(j)``; prefix rows are zero."""
        grid = self.check_grid(grid)
        device = resolve_device(device)

        def build() -> Tensor:
            coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij"), -1).reshape(-1, len(grid))
            onehot = torch.cat([F.one_hot(coords[:, a], g) for a, g in enumerate(grid)], dim=-1).float()
            return F.pad(onehot, (0, 0, self.num_prefix_tokens, 0)).to(device)

        return self._onehots.get((grid, device), build)

    def extend_qk(self, q: Tensor, k: Tensor, grid: Sequence[int], layer: int = 0,
                  scale: float | None = None) -> tuple[Tensor, Tensor] | None:
        """``q`` and ``k`` ``(B, heads, P + N, head_dim)`` with ``Σ_a G_a`` channels appended (``None`` when
        built with ``memory_efficient=False``).

        ``q′ = [q, rel_0 … rel_{A−1}] / scale`` and ``k′ = [k, one-hot coordinates]``, so that
        ``q′·k′ · scale`` is the logit plus :meth:`bias`.  The extra channels are zero-padded to a
        multiple of 8 (fused attention kernels prefer such widths).
        """
        if not self.memory_efficient:
            return None
        grid, q_patch = self._patch_queries(q, grid)
        scale = self.head_dim ** -0.5 if scale is None else scale
        terms = decomposed_rel_pos_terms(q_patch, grid, self.layer_tables(grid, layer))
        q_extra = torch.cat(terms, dim=-1) / scale
        width = q_extra.shape[-1]
        pad = -(q.shape[-1] + width) % 8
        q_extra = F.pad(q_extra, (0, pad, self.num_prefix_tokens, 0))
        k_extra = F.pad(self.key_coordinates(grid, k.device), (0, pad))
        k_extra = k_extra.to(k.dtype).expand(*k.shape[:-1], width + pad)
        return torch.cat([q, q_extra.to(q.dtype)], dim=-1), torch.cat([k, k_extra], dim=-1)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, mode={self.mode!r}, scale_q={self.scale_q}, "
                f"memory_efficient={self.memory_efficient}")
