"""Conditional (convolutional) positional embeddings: ``peg`` (CPVT) and ``glpe`` (ResFormer).

**PEG** (Chu et al., CPVT; official code: Meituan-AutoML/Twins ``gvt.py::PosCNN``).  The patch tokens,
viewed as a feature map ``X`` of shape ``(B, C, H, W)`` (or ``(B, C, T, H, W)``), become
``X + DWConv_k(X)``: a depthwise ``k×k`` (``k×k×k``) convolution with ``groups=C``, stride 1, zero
padding ``(k−1)/2`` and a bias.  The convolution is translation-equivariant; absolute position leaks in
only through the zero padding at the borders.  It runs on any grid, and it is just a function of
``x`` and the grid, so a model may call :meth:`PEG.embed` after any block (CPVT puts one after the
first block; several PEGs are several PEG objects).

**GLPE** (Tian et al., ResFormer; official code: ruitian12/resformer ``image_classification/models.py``).
Global part, added once in ``embed``: a normalised sin-cos field (:func:`normalized_sincos`) refined
by a depthwise ``3×3`` (``3×3×3``) convolution with a bias (PyTorch's default init).  Local part, in
every block: ``softmax(QKᵀ/√d)V + DWConv_l(V)``, a zero-initialised depthwise ``3×3`` (``3×3×3``)
convolution over the ``d`` channels of a head, shared by the heads of layer ``l``.

Prefix tokens are not convolved and get no position (zero rows).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import PositionalEmbedding, TableCache, check_grid, split_dim
from .registry import register_pe

__all__ = ["GLPE", "NORMALIZE_EPS", "PEG", "depthwise_conv", "normalized_positions", "normalized_sincos"]

#: ResFormer's offset in ``p / (G + eps) · 2π``
NORMALIZE_EPS = 1e-6


def depthwise_conv(channels: int, num_axes: int, kernel_size: int = 3) -> nn.Conv2d | nn.Conv3d:
    """Depthwise ``Conv2d``/``Conv3d`` (``groups=channels``, stride 1, zero padding ``k // 2``, bias).

    Keeps the spatial size of its input for an odd ``kernel_size``; PyTorch's default init.
    """
    conv = nn.Conv2d if num_axes == 2 else nn.Conv3d
    return conv(channels, channels, kernel_size, stride=1, padding=kernel_size // 2, groups=channels, bias=True)


def _tokens_to_field(tokens: Tensor, grid: tuple[int, ...]) -> Tensor:
    """``(B, N, C)`` row-major tokens -> ``(B, C, *grid)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def _field_to_tokens(field: Tensor) -> Tensor:
    """``(B, C, *grid)`` -> ``(B, N, C)`` row-major tokens."""
    return field.flatten(2).transpose(1, 2)


def normalized_positions(
    grid: Sequence[int],
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """ResFormer's normalised coordinates: ``p_a = (i_a + 1) / (G_a + 1e−6) · 2π`` per axis.

    Every coordinate lies in ``(0, 2π)``, for every grid: the field spans the image, not the grid.

    Args:
        grid: ``(H, W)`` or ``(T, H, W)``.

    Returns:
        ``(N, A)``, row ``n`` holds the coordinates of token ``n`` (row-major, axis order of ``grid``).
    """
    grid = check_grid(grid)
    axes = [torch.arange(1, g + 1, dtype=torch.float64, device=device) / (g + NORMALIZE_EPS) * (2 * math.pi)
            for g in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1).to(dtype)


def normalized_sincos(
    grid: Sequence[int],
    dim: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """ResFormer's (DETR-style) normalised sin-cos table, generalised to any ``(H, W)`` / ``(T, H, W)``.

    The ``C`` channels are split among the axes with :func:`~visionpe.base.split_dim` (``C/2`` each in
    2D when ``4 | C``) and concatenated in grid-axis order (2D: ``[y ‖ x]`` as in the official code;
    3D: ``[t ‖ y ‖ x]``).  Axis ``a`` with ``C_a`` channels and coordinate ``p_a`` from
    :func:`normalized_positions` fills channel ``i`` with ``sin(p_a / base^(2⌊i/2⌋/C_a))`` for even
    ``i`` and ``cos(…)`` for odd ``i`` (interleaved; a pair shares its frequency).

    Returns:
        ``(N, C)``; angles computed in float64.

    Raises:
        ValueError: if ``dim`` cannot give every axis an even, non-empty share, or ``base`` ≤ 0.
    """
    grid = check_grid(grid)
    if not isinstance(base, (int, float)) or isinstance(base, bool) or not math.isfinite(base) or base <= 0:
        raise ValueError(f"base must be a finite number > 0 (10000 in ResFormer), got {base!r}")
    dims = split_dim(dim, len(grid))
    pos = normalized_positions(grid, torch.float64, device)
    parts = []
    for axis, channels in enumerate(dims):
        index = torch.arange(channels, dtype=torch.float64, device=device)
        angles = pos[:, axis, None] / float(base) ** (2 * torch.div(index, 2, rounding_mode="floor") / channels)
        parts.append(torch.where(index % 2 == 0, angles.sin(), angles.cos()))
    return torch.cat(parts, dim=1).to(dtype)


@register_pe("peg")
class PEG(PositionalEmbedding):
    """CPVT's positional encoding generator: ``X + DWConv_k(X)`` on the patch tokens, zero padding.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth, grid: see
            :class:`~visionpe.base.PositionalEmbedding` (no grid-sized parameters).
        kernel_size: odd ``k`` (3 in CPVT); 3D grids use a ``k×k×k`` kernel.

    The conv weight is drawn from ``N(0, √(2 / fan_out))``, ``fan_out = k^A·C / groups = k^A``
    (Twins' init), the bias is 0.  Exclude both from weight decay (:meth:`no_weight_decay`).
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
        kernel_size: int = 3,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1 (3 in CPVT) so that the grid keeps its size, "
                             f"got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.proj = depthwise_conv(dim, num_axes, kernel_size)
        fan_out = kernel_size**num_axes  # k^A · C / groups, groups = C
        nn.init.normal_(self.proj.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(self.proj.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (CPVT/Twins exclude the PEG)."""
        return {"proj.weight", "proj.bias"}

    def embed(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """``x`` ``(B, P + N, C)`` with its patch tokens ``X`` replaced by ``X + DWConv(X)``; prefix unchanged."""
        grid = self.check_grid(grid)
        self.check_tokens(x, grid)
        p = self.num_prefix_tokens
        field = _tokens_to_field(x[:, p:], grid)
        return torch.cat([x[:, :p], _field_to_tokens(field + self.proj(field))], dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"


@register_pe("glpe")
class GLPE(PositionalEmbedding):
    """ResFormer's global-local PE: conv-refined normalised sin-cos at the input + conv on V in every block.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth, grid: see
            :class:`~visionpe.base.PositionalEmbedding` (no grid-sized parameters).
        base: frequency base of :func:`normalized_sincos` (10000).

    ``global_conv`` is ``DWConv3×3(C)`` (``3×3×3`` in 3D) with PyTorch's default init;
    ``local_convs[l]`` is a zero-initialised ``DWConv3×3(d)`` per layer, ``d`` the head dim, so the
    local term is 0 at init.  ResFormer excludes both from weight decay (:meth:`no_weight_decay`).
    """

    hooks = frozenset({"embed", "value_residual"})

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
        base: float = 10000.0,
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        if not isinstance(base, (int, float)) or isinstance(base, bool) or not math.isfinite(base) or base <= 0:
            raise ValueError(f"base must be a finite number > 0 (10000 in ResFormer), got {base!r}")
        split_dim(dim, num_axes)  # raises ValueError for widths the field cannot be split into
        self.base = float(base)
        self.global_conv = depthwise_conv(dim, num_axes, 3)
        self.local_convs = nn.ModuleList(depthwise_conv(self.head_dim, num_axes, 3) for _ in range(depth))
        for conv in self.local_convs:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self._fields = TableCache()

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (ResFormer: ``pos_embed`` and ``get_v``)."""
        return {name for name, _ in self.named_parameters()}

    def global_table(self, grid: Sequence[int]) -> Tensor:
        """The global PE ``(P + N, C)``: ``DWConv(normalized_sincos(grid))``, zero prefix rows.

        On the device and in the dtype of ``global_conv``; the sin-cos field is cached per grid.
        """
        grid = self.check_grid(grid)
        weight = self.global_conv.weight
        field = self._fields.get(
            (grid, weight.device, weight.dtype),
            lambda: _tokens_to_field(normalized_sincos(grid, self.dim, self.base, weight.dtype, weight.device)[None],
                                     grid),
        )
        patches = _field_to_tokens(self.global_conv(field))[0]
        return F.pad(patches, (0, 0, self.num_prefix_tokens, 0))

    def embed(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """``x + global_table(grid)`` for ``x`` of shape ``(B, P + N, C)``."""
        grid = self.check_grid(grid)
        self.check_tokens(x, grid)
        return x + self.global_table(grid).to(x.dtype)

    def value_residual(self, v: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor:
        """ResFormer's local PE ``DWConv_layer(V)`` for ``v`` of shape ``(B, heads, P + N, d)``; prefix rows 0.

        Each head's patch values, viewed as ``(d, *grid)``, go through the layer's conv (shared by
        the heads).  Returns ``(B, heads, P + N, d)``.
        """
        grid = self.check_grid(grid)
        self.check_tokens(v, grid, "v")
        self.check_layer(layer)
        if v.dim() != 4 or v.shape[-1] != self.head_dim:
            raise ValueError(f"v must be (B, heads, P + N, {self.head_dim}), got shape {tuple(v.shape)}; "
                             f"split the heads before calling value_residual")
        b, heads, tokens, d = v.shape
        p = self.num_prefix_tokens
        field = _tokens_to_field(v[:, :, p:].reshape(b * heads, tokens - p, d), grid)
        local = _field_to_tokens(self.local_convs[layer](field)).reshape(b, heads, tokens - p, d)
        return F.pad(local, (0, 0, p, 0))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, base={self.base}"
