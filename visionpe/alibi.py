"""``alibi``: 2D-ALiBi (CROMA), a fixed distance penalty per head, generalised to 3D grids.

The logit bias of query ``i`` and key ``j`` in head ``h`` is minus a head slope times their
Euclidean distance in patch units::

    B_h(i, j) = −scale · m_h · ‖(p_i − p_j) ⊙ w‖₂

with per-axis weights ``w`` (default all 1; e.g. weight time differently from space in video).
The slopes are ALiBi's: for ``M`` heads, ``M`` a power of two, ``m_h = 2^(−8h/M)`` for
``h = 1 … M``; otherwise with ``n`` the largest power of two below ``M``, the ``n`` slopes of ``n``
heads followed by every other slope of ``2n`` heads (``[0::2]``), the first ``M − n`` of them
(CROMA ``get_2dalibi``, ALiBi ``get_slopes``).

Nothing is learned and the bias is the same for every layer; a new grid just gets its own
distances, so it extrapolates by construction.  The bias is symmetric and radial, i.e. blind to
direction.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import PositionalEmbedding, TableCache, grid_positions
from .registry import register_pe

__all__ = ["ALiBi2D", "alibi_bias", "alibi_slopes", "grid_distances"]


def _power_of_two_slopes(n: int) -> list[float]:
    return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi head slopes ``(num_heads,)`` float64.

    ``2^(−8h/M)``, ``h = 1 … M`` for ``M`` a power of two (4 heads: 0.25, 0.0625, 0.015625,
    0.00390625); otherwise the slopes of the largest power of two ``n < M`` followed by
    ``alibi_slopes(2n)[0::2][:M − n]`` (6 heads: the 4-head slopes, then 0.5, 0.125).
    """
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be an integer >= 1, got {num_heads!r}")
    n = 2 ** math.floor(math.log2(num_heads))
    slopes = _power_of_two_slopes(n)
    if n < num_heads:
        slopes += _power_of_two_slopes(2 * n)[0::2][: num_heads - n]
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_bias(
    grid: Sequence[int],
    slopes: Tensor,
    scale: float = 1.0,
    axis_weights: Sequence[float] | None = None,
) -> Tensor:
    """Distance bias between the tokens of a grid.

    Args:
        grid: ``(H, W)`` or ``(T, H, W)``, ``N = prod(grid)`` tokens, row-major.
        slopes: ``(heads,)`` head slopes ``m_h``, e.g. :func:`alibi_slopes`.
        scale: global multiplier (> 0, finite).
        axis_weights: one weight per axis (>= 0, finite, not all 0); default all 1.

    Returns:
        ``(heads, N, N)`` float64 with ``out[h, i, j] = −scale·m_h·‖(p_i − p_j) ⊙ w‖₂``.
    """
    _check_scale(scale)
    if not isinstance(slopes, Tensor) or slopes.dim() != 1:
        raise ValueError(f"slopes must be a (heads,) tensor, got "
                         f"{tuple(slopes.shape) if isinstance(slopes, Tensor) else type(slopes).__name__}")
    return -scale * slopes.to(torch.float64)[:, None, None] * grid_distances(grid, axis_weights)


def grid_distances(grid: Sequence[int], axis_weights: Sequence[float] | None = None) -> Tensor:
    """``(N, N)`` float64 weighted Euclidean distances ``‖(p_i − p_j) ⊙ w‖₂`` between the tokens of a grid."""
    positions = grid_positions(grid)
    weights = _check_axis_weights(axis_weights, positions.shape[1])
    squared = torch.zeros(positions.shape[0], positions.shape[0], dtype=torch.float64)
    for axis in range(positions.shape[1]):
        coords = positions[:, axis] * weights[axis]
        squared += (coords[:, None] - coords[None, :]).square()
    return squared.sqrt()


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def _check_axis_weights(axis_weights: Sequence[float] | None, num_axes: int) -> Tensor:
    if axis_weights is None:
        return torch.ones(num_axes, dtype=torch.float64)
    if isinstance(axis_weights, (str, bytes)) or not isinstance(axis_weights, Sequence) \
            or len(axis_weights) != num_axes:
        raise ValueError(f"axis_weights must be a sequence of {num_axes} numbers, one per grid axis, "
                         f"got {axis_weights!r}")
    if any(isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0
           for w in axis_weights) or not any(w > 0 for w in axis_weights):
        raise ValueError(f"axis_weights must be finite numbers >= 0, at least one > 0, got {tuple(axis_weights)}")
    return torch.tensor([float(w) for w in axis_weights], dtype=torch.float64)


@register_pe("alibi")
class ALiBi2D(PositionalEmbedding):
    """2D-ALiBi (CROMA) over the whole token grid, also for 3D grids.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth, grid: see
            :class:`visionpe.base.PositionalEmbedding` (no parameters; every layer gets the same bias).
        scale: multiplier of every slope (> 0); 1 is CROMA, LookHere tunes a global scale for
            extrapolation.
        axis_weights: per-axis weights ``w`` of the distance (>= 0, at least one > 0); default all 1.

    The bias is cached per ``(grid, device, dtype)``.
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
        scale: float = 1.0,
        axis_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        self.scale = _check_scale(scale)
        self.axis_weights = tuple(_check_axis_weights(axis_weights, num_axes).tolist())
        self.slopes = tuple(alibi_slopes(num_heads).tolist())
        self._cache = TableCache()

    def bias(self, grid: Sequence[int], device: torch.device | str, dtype: torch.dtype) -> Tensor:
        """Cached ``(1, heads, P + N, P + N)`` bias in ``dtype`` on ``device`` (computed in float64).

        Built head by head into the output, so the peak memory is the bias plus one ``(N, N)`` float64
        distance table (the values are those of :func:`alibi_bias`).
        """
        grid = self.check_grid(grid)
        device = torch.device(device)

        def build() -> Tensor:
            distances = grid_distances(grid, self.axis_weights)
            p, n = self.num_prefix_tokens, distances.shape[0]
            out = torch.zeros(1, len(self.slopes), p + n, p + n, dtype=dtype, device=device)
            for head, slope in enumerate(self.slopes):
                out[0, head, p:, p:] = (-self.scale * slope * distances).to(device=device, dtype=dtype)
            return out

        return self._cache.get((grid, device, dtype), build)

    def attention_bias(self, q: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor:
        """``(1, heads, P + N, P + N)`` bias in ``q``'s floating dtype (float32 for other dtypes)."""
        grid = self.check_grid(grid)
        self.check_layer(layer)
        self.check_tokens(q, grid, "q")
        dtype = q.dtype if q.is_floating_point() else torch.float32
        return self.bias(grid, q.device, dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}, axis_weights={self.axis_weights}"
