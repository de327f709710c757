"""The one interface every positional embedding (PE) in visionpe implements.

A transformer that supports visionpe calls six hook points and never needs to know
which PE family it was given.  Every hook is the identity (or returns ``None``) for
families where it does not apply, so calling all of them is always correct:

=====================================  ==========================================================
hook                                   where the model calls it
=====================================  ==========================================================
``embed(x, grid)``                     once, on the tokens ``(B, P + N, C)`` right after the
                                       prefix tokens are attached (additive and conditional PEs)
``attention_input(h, grid, layer)``    on the normalised input ``(B, P + N, C)`` of the attention
                                       of block ``layer`` (LaPE: the PE joins every layer here)
``rotate(q, k, grid, layer)``          on queries/keys ``(B, heads, P + N, d)`` (rotary PEs)
``attention_bias(q, grid, layer)``     returns an additive logit bias broadcastable to
                                       ``(B, heads, P + N, P + N)``, or ``None`` (relative PEs)
``extend_qk(q, k, grid, layer, scale)`` returns ``(q', k')`` with ``e`` channels appended,
                                       ``(B, heads, P + N, d + e)``, whose extra products add a
                                       relative bias to the logits without an ``(N, N)`` tensor,
                                       or ``None`` (decomposed rel-pos); the logit scale stays
                                       ``scale`` (that of ``d``) and ``v`` keeps ``d`` channels
``value_residual(v, grid, layer)``     returns a term ``(B, heads, P + N, d)`` added to
                                       ``softmax(qk^T) v``, or ``None`` (ResFormer's LPE)
=====================================  ==========================================================

``grid`` is the token grid ``(H, W)`` or ``(T, H, W)``; the ``N = prod(grid)`` patch tokens
are in row-major order (the last axis varies fastest).  ``P = num_prefix_tokens`` prefix
tokens (CLS, registers) come first and are handled the same way by every family: they
get no position (zero additive PE), zero relative bias in their rows and columns, and are
not rotated.  One PE object serves a whole model: per-layer parameters (relative tables,
learned frequencies) live inside it and are selected with ``layer``.

:func:`attend` is a reference attention that calls the hooks in the documented order.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

Grid = tuple[int, ...]

__all__ = [
    "Grid",
    "PositionalEmbedding",
    "TableCache",
    "attend",
    "check_grid",
    "resolve_device",
    "grid_positions",
    "split_dim",
]


def check_grid(grid: Sequence[int], num_axes: int | None = None) -> Grid:
    """Validate a token grid and return it as a tuple of ints.

    Args:
        grid: ``(H, W)`` or ``(T, H, W)``, every entry a positive integer.
        num_axes: if given, the number of axes the grid must have.

    Raises:
        ValueError: if the grid is malformed or has the wrong number of axes.
    """
    # fast path for the common case (called on every forward): a valid tuple of plain ints (a loop,
    # not all() over a generator: this runs in every layer of every forward)
    if type(grid) is tuple and 0 < len(grid) < 4 and (num_axes is None or len(grid) == num_axes):
        for g in grid:
            if type(g) is not int or g < 1:
                break
        else:
            return grid
    if isinstance(grid, (str, bytes)):
        raise ValueError(f"grid must be a sequence of ints such as (H, W) or (T, H, W), got the string {grid!r}")
    try:
        out = tuple(int(g) for g in grid)
    except (TypeError, ValueError) as err:
        raise ValueError(f"grid must be a sequence of ints such as (H, W) or (T, H, W), got {grid!r}") from err
    if any(isinstance(g, bool) or int(g) != g for g in grid):
        raise ValueError(f"grid entries must be integers, got {tuple(grid)!r}")
    if len(out) not in (1, 2, 3):
        raise ValueError(f"grid must have 1, 2 or 3 axes, got {len(out)}: {out}")
    if any(g < 1 for g in out):
        raise ValueError(f"every grid axis must be >= 1, got {out}")
    if num_axes is not None and len(out) != num_axes:
        raise ValueError(
            f"this PE was built for {num_axes}-axis grids but got the {len(out)}-axis grid {out}; "
            f"build it with num_axes={len(out)} or pass a grid with {num_axes} axes"
        )
    return out


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device`` (``None`` is the CPU); cheap when it already is one (cache keys)."""
    if type(device) is torch.device:
        return device
    return torch.device("cpu" if device is None else device)


def grid_positions(grid: Sequence[int], dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Integer coordinates of every token of a grid, row-major.

    Args:
        grid: ``(H, W)`` or ``(T, H, W)``.

    Returns:
        ``(N, A)`` float tensor, ``N = prod(grid)``, ``A = len(grid)``; row ``n`` holds the
        coordinates ``(t, h, w)`` (or ``(h, w)``) of token ``n``; the last axis varies fastest.
    """
    grid = check_grid(grid)
    axes = [torch.arange(g, dtype=dtype, device=device) for g in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def split_dim(total: int, num_axes: int) -> tuple[int, ...]:
    """Default split of ``total`` channels among ``num_axes`` axes, every part even.

    The last ``num_axes - 1`` axes get ``2 * (total // (2 * num_axes))`` channels each and the
    first axis gets the rest (Wan's rule: 128 over 3 axes gives ``(44, 42, 42)``; 64 over 2
    gives ``(32, 32)``).

    Raises:
        ValueError: if ``total`` is odd or too small to give every axis two channels.
    """
    if total % 2 or total < 2 * num_axes:
        raise ValueError(
            f"cannot split {total} channels into {num_axes} even, non-empty parts; "
            f"use an even size of at least {2 * num_axes} or pass the split explicitly"
        )
    rest = 2 * (total // (2 * num_axes))
    return (total - rest * (num_axes - 1),) + (rest,) * (num_axes - 1)


class TableCache:
    """Cache of derived tables keyed on ``(grid, device, dtype, ...)``.

    Cached tensors are handed out without copying (a copy would cost as much as a cheap
    rebuild).  A caller that modifies one in place cannot corrupt later calls: each hit
    checks the tensor's autograd version counter, and a table that was written to since it
    was cached is rebuilt.  Tables are built under ``torch.no_grad()`` (and outside inference
    mode, so they stay usable everywhere); only tables that do not depend on trainable
    parameters may be cached.  The oldest entry is dropped past ``max_entries``.

    While ``torch.compile`` traces a model, a hit is returned without the version check (Dynamo
    cannot guard on version counters, and the check would break the graph): the compiled graph
    uses the table as it was when traced.
    """

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        # key -> (value as handed out, its tensors, their version counters when cached)
        self._store: dict[tuple, tuple[Tensor | tuple[Tensor, ...], tuple[Tensor, ...], list[int]]] = {}

    def get(self, key: tuple, build: Callable[[], Tensor | tuple[Tensor, ...]]):
        """Return the cached value for ``key``, building it with ``build()`` on a miss."""
        hit = self._store.get(key)
        if hit is not None:
            value, tensors, versions = hit
            if torch.compiler.is_compiling() or [t._version for t in tensors] == versions:
                return value
        # built as normal tensors even under inference_mode, so the version check works
        with torch.inference_mode(False), torch.no_grad():
            value = build()
        if not isinstance(value, Tensor):
            value = tuple(value)
        tensors = (value,) if isinstance(value, Tensor) else value
        if len(self._store) >= self.max_entries:
            self._store.pop(next(iter(self._store)))
        self._store[key] = (value, tensors, [t._version for t in tensors])
        return value

    def clear(self) -> None:
        """Drop every cached table."""
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)


class PositionalEmbedding(nn.Module):
    """Base class of every visionpe positional embedding.

    Args:
        dim: model width ``C`` (channels of a token).
        num_heads: attention heads; the head dim is ``d = dim // num_heads``.
        num_axes: 2 for image grids ``(H, W)``, 3 for video grids ``(T, H, W)``.
        num_prefix_tokens: ``P``, tokens before the patch tokens (CLS, registers).
        depth: number of transformer blocks the PE serves (per-layer parameters).
        grid: the native (training) grid ``(H, W)`` or ``(T, H, W)``, stored as ``train_grid``.
            Families with grid-sized parameters (learned tables, relative tables) require it;
            for the others it records the training grid that scaling rules refer to.

    Subclasses override only the hooks they need; see the module docstring for the contract.
    The class attribute ``hooks`` names the hooks a family actually implements, so a model can
    skip the others (calling them anyway is always correct).
    """

    hooks: frozenset[str] = frozenset()
    #: number of axes this family supports; ``None`` means 2 and 3
    supported_axes: tuple[int, ...] = (2, 3)

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        num_axes: int = 2,
        num_prefix_tokens: int = 0,
        depth: int = 1,
        grid: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (("dim", dim, 1), ("num_heads", num_heads, 1), ("depth", depth, 1),
                                 ("num_prefix_tokens", num_prefix_tokens, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}; pick a width that is")
        if num_axes not in self.supported_axes:
            raise ValueError(
                f"{type(self).__name__} supports grids with {self.supported_axes} axes, got num_axes={num_axes}"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.num_axes = num_axes
        self.num_prefix_tokens = num_prefix_tokens
        self.depth = depth
        self.train_grid: Grid | None = None if grid is None else check_grid(grid, num_axes)

    def require_train_grid(self) -> Grid:
        """Return ``train_grid`` or raise ``ValueError`` saying that ``grid=`` is needed."""
        if self.train_grid is None:
            raise ValueError(
                f"{type(self).__name__} has parameters sized by the token grid: pass the native grid, "
                f"e.g. grid=(14, 14) or grid=(8, 16, 16)"
            )
        return self.train_grid

    # ----------------------------------------------------------------- helpers for subclasses
    def check_grid(self, grid: Sequence[int]) -> Grid:
        """Validate ``grid`` against ``num_axes``; see :func:`check_grid`."""
        return check_grid(grid, self.num_axes)

    def check_tokens(self, x: Tensor, grid: Grid, what: str = "x") -> None:
        """Raise ``ValueError`` unless ``x.shape[-2] == num_prefix_tokens + prod(grid)``."""
        expected = self.num_prefix_tokens + math.prod(grid)
        if x.dim() < 2 or x.shape[-2] != expected:
            raise ValueError(
                f"{what} has {x.shape[-2] if x.dim() >= 2 else '?'} tokens but grid {grid} with "
                f"{self.num_prefix_tokens} prefix tokens needs {expected}; check the grid and num_prefix_tokens"
            )

    def check_layer(self, layer: int) -> None:
        """Raise ``ValueError`` unless ``0 <= layer < depth``."""
        if not 0 <= layer < self.depth:
            raise ValueError(f"layer={layer} is out of range for a PE built with depth={self.depth}")

    def pad_bias(self, bias: Tensor) -> Tensor:
        """Zero-pad a ``(..., N, N)`` bias to ``(..., P + N, P + N)`` for the prefix tokens."""
        p = self.num_prefix_tokens
        return bias if p == 0 else nn.functional.pad(bias, (p, 0, p, 0))

    # ----------------------------------------------------------------------------- the hooks
    def embed(self, x: Tensor, grid: Sequence[int]) -> Tensor:
        """Add (or condition on) position. ``x``: ``(B, P + N, C)`` -> ``(B, P + N, C)``."""
        return x

    def attention_input(self, h: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor:
        """Per-layer PE on the attention input ``h``: ``(B, P + N, C)`` -> ``(B, P + N, C)``."""
        return h

    def rotate(self, q: Tensor, k: Tensor, grid: Sequence[int], layer: int = 0) -> tuple[Tensor, Tensor]:
        """Rotate queries and keys, each ``(B, heads, P + N, d)``; prefix tokens stay as they are."""
        return q, k

    def attention_bias(self, q: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor | None:
        """Additive logit bias broadcastable to ``(B, heads, P + N, P + N)``, or ``None``.

        ``q`` is ``(B, heads, P + N, d)`` (used by query-dependent biases such as MViTv2's).
        """
        return None

    def extend_qk(self, q: Tensor, k: Tensor, grid: Sequence[int], layer: int = 0,
                  scale: float | None = None) -> tuple[Tensor, Tensor] | None:
        """``(q', k')``, each ``(B, heads, P + N, d + e)``, or ``None``.

        ``q'·k'^T · scale = q·k^T · scale + bias``: the appended channels carry a relative bias in
        ``O(N·e)`` memory.  ``scale`` is the logit scale the attention applies (``d^−1/2`` when
        ``None``); ``q`` and ``k`` are the rotated ones.
        """
        return None

    def value_residual(self, v: Tensor, grid: Sequence[int], layer: int = 0) -> Tensor | None:
        """Term ``(B, heads, P + N, d)`` added to the attention output, or ``None``."""
        return None

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, num_axes={self.num_axes}, "
                f"num_prefix_tokens={self.num_prefix_tokens}, depth={self.depth}, grid={self.train_grid}")


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pe: PositionalEmbedding,
    grid: Sequence[int],
    layer: int = 0,
    scale: float | None = None,
) -> Tensor:
    """Reference scaled dot-product attention that calls every PE hook.

    Args:
        q, k, v: ``(B, heads, P + N, d)``.
        pe: any visionpe positional embedding.
        grid: ``(H, W)`` or ``(T, H, W)``.
        layer: block index for per-layer PEs.
        scale: logit scale, ``1 / sqrt(d)`` by default.

    Returns:
        ``(B, heads, P + N, d)``: ``softmax(q' k'^T * scale + bias) v + value_residual(v)``, with ``q'``,
        ``k'`` rotated and (for :meth:`PositionalEmbedding.extend_qk`) extended.  When the extension
        makes ``q'`` wider than ``v``, ``v`` is zero-padded to the same width for the attention kernel
        (PyTorch's fused kernels need equal widths) and the output is cut back to ``d``.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k = pe.rotate(q, k, grid, layer)
    bias = pe.attention_bias(q, grid, layer)
    if bias is not None:
        bias = bias.to(q.dtype)
    extended = pe.extend_qk(q, k, grid, layer, scale)
    width = v.shape[-1]
    if extended is not None:
        q, k = extended
        if q.shape[-1] > width:
            v = nn.functional.pad(v, (0, q.shape[-1] - width))
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)[..., :width]
    extra = pe.value_residual(v[..., :width], grid, layer)
    return out if extra is None else out + extra
