"""``cpb``: Swin-v2's log-spaced continuous position bias, over the whole token grid (2D and 3D).

A small MLP maps every relative offset ``Δ = p_i − p_j`` (query minus key) to one logit bias per
head, so the bias is defined for offsets of any grid.  Per axis ``a`` the offset is normalised by
the *pre-training* grid and log-spaced (Swin-v2 ``WindowAttention``)::

    Δ̂_a = Δ_a / max(G_pre,a − 1, 1) · 8
    ŝ_a = sign(Δ̂_a) · log2(1 + |Δ̂_a|) / log2(8)
    B[h, i, j] = 16 · sigmoid(MLP(ŝ(p_i − p_j)))_h
    MLP = Linear(A, 512) → ReLU → Linear(512, heads, bias=False)

``ŝ`` lies in ``[−1.057, 1.057]`` on the pre-training grid and grows slowly beyond it (to 1.39 and
1.59 when Swin-v2 goes from an 8×8 window to 16×16 and 24×24).  An axis of length 1 has only the
offset 0, and dividing by ``max(G_pre − 1, 1)`` keeps it finite (timm's Swin-v2 does the same).
A new grid only needs new coordinates; the MLP is unchanged.

Swin-v2 pairs the CPB with scaled cosine attention; here it is an additive bias that works with any
attention, which is a different method when used with dot-product attention.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import Grid, PositionalEmbedding, TableCache, check_grid
from .registry import register_pe
from .rel_bias import gather_rel_bias, relative_position_index

__all__ = ["LogCPB", "log_relative_coords"]


def log_relative_coords(
    grid: Sequence[int],
    pretrained_grid: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Swin-v2 log-spaced coordinates of every relative offset of a grid.

    Args:
        grid: ``(H, W)`` or ``(T, H, W)``; its offsets ``Δ_a ∈ [−(G_a − 1), G_a − 1]``.
        pretrained_grid: the pre-training grid the offsets are normalised by, same number of axes.
        dtype, device: of the result (computed in float64).

    Returns:
        ``(prod(2·grid − 1), A)``; row ``r`` holds ``ŝ(Δ)`` for the offset of row ``r`` of
        :func:`visionpe.rel_bias.relative_position_index` (row-major over ``Δ_0, Δ_1, …``).
    """
    grid, pretrained_grid = check_grid(grid), check_grid(pretrained_grid)
    if len(grid) != len(pretrained_grid):
        raise ValueError(f"grid {grid} and pretrained_grid {pretrained_grid} have different numbers of axes; "
                         f"pass grids with the same number of axes")
    axes = [torch.arange(-(g - 1), g, dtype=torch.float64) / max(p - 1, 1) * 8
            for g, p in zip(grid, pretrained_grid)]
    offsets = torch.stack([m.reshape(-1) for m in torch.meshgrid(*axes, indexing="ij")], dim=-1)
    coords = offsets.sign() * torch.log2(1 + offsets.abs()) / math.log2(8)
    return coords.to(device=device, dtype=dtype)


@register_pe("cpb")
class LogCPB(PositionalEmbedding):
    """Swin-v2 log-spaced continuous position bias with one MLP per layer.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth: see
            :class:`visionpe.base.PositionalEmbedding`.
        grid: the pre-training grid (required): coordinates at every grid are normalised by it.
        hidden_dim: width of the MLP's hidden layer (Swin-v2: 512).

    ``mlps[layer]`` is ``Linear(A, hidden_dim) → ReLU → Linear(hidden_dim, heads, bias=False)``, Swin-v2's
    ``cpb_mlp`` layout, initialised like Swin-v2's model-wide ``_init_weights`` (weights
    ``trunc_normal(std=0.02)``, biases 0).  Exclude it from weight decay (:meth:`no_weight_decay`),
    as Swin-v2 does.
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
        hidden_dim: int = 512,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        self.require_train_grid()
        if isinstance(hidden_dim, bool) or not isinstance(hidden_dim, int) or hidden_dim < 1:
            raise ValueError(f"hidden_dim must be an integer >= 1 (Swin-v2 uses 512), got {hidden_dim!r}")
        self.hidden_dim = hidden_dim
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(num_axes, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_heads, bias=False))
            for _ in range(depth)
        )
        for module in self.mlps.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self._tables = TableCache()

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay."""
        return {name for name, _ in self.named_parameters()}

    def coords_and_index(self, grid: Grid, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Cached :func:`log_relative_coords` ``(L, A)`` and :func:`relative_position_index` ``(N, N)``."""
        return self._tables.get(
            (grid, device, dtype),
            lambda: (log_relative_coords(grid, self.train_grid, dtype, device),
                     relative_position_index(grid).to(device)),
        )

    def patch_bias(self, grid: Sequence[int], layer: int = 0) -> Tensor:
        """Bias between the patch tokens of ``grid``: ``(heads, N, N)`` in ``(0, 16)``, in the MLP's dtype."""
        grid = self.check_grid(grid)
        self.check_layer(layer)
        mlp = self.mlps[layer]
        weight = mlp[0].weight
        coords, index = self.coords_and_index(grid, weight.device, weight.dtype)
        table = 16 * torch.sigmoid(mlp(coords))
        return gather_rel_bias(table, index)

    def attention_bias(self, q: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor:
        """``(1, heads, P + N, P + N)`` bias for ``q`` of shape ``(B, heads, P + N, d)``; prefix rows/columns 0."""
        grid = self.check_grid(grid)
        self.check_tokens(q, grid, "q")
        return self.pad_bias(self.patch_bias(grid, layer)).unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden_dim={self.hidden_dim}"
