"""``rope-mixed``: RoPE-Mixed (Heo et al. 2024, RoPE-ViT) — learned frequency vectors per layer and head.

Each head's ``d/2`` complex channels turn by a phase that mixes all axes::

    φ_c(n) = Σ_a f^a_{l,h,c} · p_a(n)

with ``p_a(n)`` the coordinate of token ``n`` on axis ``a`` and ``f`` a learned parameter of shape
``(depth, num_axes, num_heads, head_dim // 2)``, so a head can attend along diagonals, which axial
RoPE cannot.  Because the phase is linear in the position, ``⟨R(p)q, R(p′)k⟩`` still depends on
``p − p′`` only.

Initialisation (RoPE-ViT's ``init_random_2d_freqs``, generalised to 3D): the ``d/2`` channels form
``num_axes`` equal groups of ``g = d / (2·num_axes)`` channels; the magnitudes are
``m_t = base^(−t/g)``, ``t = 0 … g−1`` (``base^(−4t/d)`` in 2D); every layer and head draws a random
orthonormal frame ``F`` (2D: columns at angles ``α`` and ``α + π/2``, ``α ~ U[0, 2π)``; 3D: a random
rotation, QR of a Gaussian with det +1), and group ``j`` gets ``f_{j·g+t} = m_t · F[:, j]``.  With
``rotate=False`` the frame is the identity and the module is exactly axial RoPE with per-axis dim
``2g`` and base ``base`` (:func:`visionpe.rope.rope_cos_sin`).

The frame is expressed in visionpe's axis order ``(h, w)`` / ``(t, h, w)``; RoPE-ViT and timm write it
in ``(x, y) = (w, h)``.  The learned values carry over by swapping the two axis rows of ``freqs``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import PositionalEmbedding, TableCache, grid_positions
from .registry import register_pe
from .rope import check_layout, expand_layout, prefix_identity, rotate_compact

__all__ = ["MixedRoPE", "init_mixed_frequencies", "mixed_angles", "random_frames"]


def random_frames(depth: int, num_heads: int, num_axes: int) -> Tensor:
    """Random orthonormal frames with det +1, one per layer and head, from the global torch RNG.

    Returns:
        ``(depth, num_heads, num_axes, num_axes)`` float32; ``frame[l, h, :, j]`` is direction ``j``.
        2D: columns ``(cos α, sin α)`` and ``(cos(α+π/2), sin(α+π/2))`` with ``α ~ U[0, 2π)``.
        Otherwise: Haar-random rotations (QR of a Gaussian, signs fixed, det made +1).
    """
    if num_axes == 2:
        alpha = torch.rand(depth, num_heads, 1) * 2 * math.pi
        angles = alpha + torch.tensor([0.0, math.pi / 2])                  # (depth, heads, 2): one per column
        return torch.stack([angles.cos(), angles.sin()], dim=-2)            # rows: axes, columns: directions
    gauss = torch.randn(depth, num_heads, num_axes, num_axes, dtype=torch.float64)
    q, r = torch.linalg.qr(gauss)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # unique (Haar) QR
    flip = torch.ones(depth, num_heads, num_axes, dtype=torch.float64)
    flip[..., -1] = torch.sign(torch.linalg.det(q))
    return (q * flip.unsqueeze(-2)).float()


def init_mixed_frequencies(
    head_dim: int, num_axes: int, num_heads: int, depth: int, base: float = 10.0, rotate: bool = True
) -> Tensor:
    """RoPE-Mixed initial frequencies ``f[l, a, h, j·g + t] = base^(−t/g) · F_{l,h}[a, j]``.

    Args:
        head_dim: ``d``; ``d/2`` must be divisible by ``num_axes``.
        num_axes, num_heads, depth: sizes of the parameter.
        base: magnitude base (RoPE-ViT: 10).
        rotate: random frames (:func:`random_frames`) if True, the identity (axial RoPE) if False.

    Returns:
        ``(depth, num_axes, num_heads, head_dim // 2)`` float32.
    """
    group = head_dim // 2 // num_axes
    magnitudes = base ** (-torch.arange(group, dtype=torch.float64) / group)
    if rotate:
        frames = random_frames(depth, num_heads, num_axes).double()
    else:
        frames = torch.eye(num_axes, dtype=torch.float64).expand(depth, num_heads, num_axes, num_axes)
    freqs = torch.einsum("lhaj,t->lahjt", frames, magnitudes)
    return freqs.reshape(depth, num_axes, num_heads, num_axes * group).float()


def mixed_angles(positions: Tensor, freqs: Tensor) -> Tensor:
    """Phases ``φ[h, n, c] = Σ_a positions[n, a] · freqs[a, h, c]`` in float32.

    Args:
        positions: ``(N, A)`` token coordinates.
        freqs: ``(A, heads, C)`` frequencies of one layer (gradients flow through).

    Returns:
        ``(heads, N, C)`` float32.  Built from elementwise products, so autocast cannot lower it to
        half precision.
    """
    positions = positions.float()
    freqs = freqs.float()
    angles = positions[None, :, 0, None] * freqs[0][:, None, :]
    for axis in range(1, freqs.shape[0]):
        angles = angles + positions[None, :, axis, None] * freqs[axis][:, None, :]
    return angles


@register_pe("rope-mixed")
class MixedRoPE(PositionalEmbedding):
    """RoPE-Mixed: rotary PE with learned, per-layer, per-head frequency vectors mixing all axes.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth, grid: see
            :class:`visionpe.base.PositionalEmbedding`.
        base: magnitude base of the initial frequencies (RoPE-ViT: 10).
        rotate: random initial frames (RoPE-Mixed); ``False`` starts from axial RoPE.
        layout: ``"interleaved"`` (RoPE-ViT, timm) or ``"half"``.

    Positions are the integer patch indices of the current grid, so a new grid extrapolates to
    larger offsets.  Prefix tokens are not rotated.  Exclude ``freqs`` from weight decay
    (:meth:`no_weight_decay`), as RoPE-ViT does.
    """

    hooks = frozenset({"rotate"})

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
        base: float = 10.0,
        rotate: bool = True,
        layout: str = "interleaved",
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        step = 2 * num_axes
        if self.head_dim % step:
            below, above = self.head_dim // step * step, (self.head_dim // step + 1) * step
            suggestion = f"{below} or {above}" if below else f"{above}"
            raise ValueError(
                f"RoPE-Mixed splits the head dim {self.head_dim} into {num_axes} equal groups of complex "
                f"channels, so it must be divisible by {step}; pick dim and num_heads for a head dim of "
                f"{suggestion}"
            )
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not math.isfinite(base) or base <= 0:
            raise ValueError(f"base must be a finite number > 0, got {base!r}")
        self.base = float(base)
        self.random_frames = bool(rotate)
        self.layout = check_layout(layout)
        self.freqs = nn.Parameter(
            init_mixed_frequencies(self.head_dim, num_axes, num_heads, depth, self.base, self.random_frames))
        self._positions = TableCache()

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay."""
        return {"freqs"}

    def angles(self, grid: Sequence[int], layer: int = 0) -> Tensor:
        """Phases of layer ``layer``, ``(heads, N, head_dim / 2)`` float32, one column per rotary channel
        (differentiable in ``freqs``)."""
        grid = self.check_grid(grid)
        self.check_layer(layer)
        device = self.freqs.device
        positions = self._positions.get((grid, device), lambda: grid_positions(grid, torch.float32, device))
        return mixed_angles(positions, self.freqs[layer])

    def cos_sin(self, grid: Sequence[int], layer: int = 0) -> tuple[Tensor, Tensor]:
        """``(cos, sin)`` of layer ``layer``, each ``(heads, N, head_dim)`` float32 (differentiable in ``freqs``)."""
        angles = self.angles(grid, layer)
        return expand_layout(angles.cos(), self.layout), expand_layout(angles.sin(), self.layout)

    def rotate(self, q: Tensor, k: Tensor, grid: Sequence[int], layer: int = 0) -> tuple[Tensor, Tensor]:
        """Rotate the patch tokens of ``q`` and ``k``, each ``(B, heads, P + N, head_dim)``."""
        grid = self.check_grid(grid)
        for x, what in ((q, "q"), (k, "k")):
            self.check_tokens(x, grid, what)
            if x.dim() != 4 or x.shape[1] != self.num_heads or x.shape[-1] != self.head_dim:
                raise ValueError(f"{what} must be (B, {self.num_heads}, P + N, {self.head_dim}), "
                                 f"got {tuple(x.shape)}")
            if not x.is_floating_point():
                raise ValueError(f"{what} must be a floating-point tensor, got {x.dtype}")
        angles = self.angles(grid, layer)
        cos, sin = prefix_identity(angles.cos(), angles.sin(), self.num_prefix_tokens)
        return rotate_compact(q, cos, sin, self.layout), rotate_compact(k, cos, sin, self.layout)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, base={self.base}, rotate={self.random_frames}, "
                f"layout={self.layout!r}")
