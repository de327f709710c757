"""``rope-axial``: axial rotary position embedding for 2D and 3D grids (RoPE-ViT, HunyuanVideo, Wan, CogVideoX).

The head dim ``d`` is split into one block per axis, ``dims = (d_0, …, d_{A−1})`` with
``Σ d_a = d``.  Block ``a`` is a 1D RoPE of the axis-``a`` coordinate ``p_a``: its complex channel ``i``
turns by the angle ``p_a·θ^a_i`` with ``θ^a_i = base_a^(−2i/d_a)`` (optionally changed by a scaling
rule from :mod:`visionpe.scaling`).  Queries and keys are rotated, values are not, so the logit
``⟨R(p)q, R(p′)k⟩`` depends on ``p − p′`` only.

Two pair layouts are in use and they are not interchangeable with pretrained weights:

* ``"interleaved"`` (GPT-J, RoPE-ViT, diffusers ``use_real_unbind_dim=-1``, timm's default): channel
  ``i`` rotates the pair ``(x_{2i}, x_{2i+1})``; cos/sin rows read ``c0 c0 c1 c1 …``;
* ``"half"`` (GPT-NeoX, diffusers ``use_real_unbind_dim=-2``, timm ``rotate_half``): channel ``i``
  rotates ``(x_i, x_{i+d/2})``; cos/sin rows read ``c0 c1 … c0 c1 …``.

The blocks of the axes are concatenated in axis order before the layout is applied, as in
diffusers' HunyuanVideo, Wan and CogVideoX RoPE.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import PositionalEmbedding, TableCache, grid_positions, resolve_device, split_dim
from .registry import register_pe
from .scaling import ScalingRule, find_intrinsic_component, rope_frequencies

__all__ = [
    "LAYOUTS",
    "AxialRoPE",
    "apply_rope",
    "check_layout",
    "compact_table",
    "expand_layout",
    "find_intrinsic_component",
    "grid_positions",
    "prefix_identity",
    "rope_compact_cos_sin",
    "rope_cos_sin",
    "rope_frequencies",
    "rotate_compact",
]

LAYOUTS = ("interleaved", "half")

Scaling = ScalingRule | Sequence[ScalingRule | None] | None


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is one of :data:`LAYOUTS`, else raise ``ValueError`` listing them."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown RoPE layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    return layout


def expand_layout(values: Tensor, layout: str) -> Tensor:
    """Spread per-channel values ``(..., d/2)`` over the ``(..., d)`` channels they rotate.

    ``"interleaved"`` repeats each value twice (``v0 v0 v1 v1 …``); ``"half"`` concatenates two copies
    (``v0 v1 … v0 v1 …``).
    """
    if check_layout(layout) == "interleaved":
        return values.repeat_interleave(2, dim=-1)
    return torch.cat([values, values], dim=-1)


def _per_axis(name: str, value, num_axes: int) -> tuple:
    """``value`` repeated for every axis, or ``value`` itself when it is a per-axis sequence."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return (value,) * num_axes
    if len(value) != num_axes:
        raise ValueError(f"{name} has {len(value)} entries for {num_axes} axes; give one per axis or a single value")
    return tuple(value)


def _check_axes(dims: Sequence[int], base, scaling: Scaling, num_axes: int):
    """Validate ``dims``/``base``/``scaling`` for ``num_axes`` axes and return them as tuples."""
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence):
        raise ValueError(f"dims must be a sequence with one even int per axis, got {dims!r}")
    dims = tuple(dims)
    if len(dims) != num_axes:
        raise ValueError(f"dims={dims} has {len(dims)} entries for {num_axes} axes; "
                         f"give one rotary dim per axis")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0 or d % 2:
            raise ValueError(f"every rotary dim must be an even int >= 0, got dims={dims}; "
                             f"rotary channels come in pairs")
    bases = _per_axis("base", base, num_axes)
    rules = (scaling,) * num_axes if scaling is None or isinstance(scaling, ScalingRule) else \
        _per_axis("scaling", scaling, num_axes)
    for rule in rules:
        if rule is not None and not isinstance(rule, ScalingRule):
            raise ValueError(f"scaling entries must be visionpe.scaling rules (PI, NTK, YaRN, RIFLEx) or None, "
                             f"got {rule!r}")
    return dims, bases, rules


def rope_compact_cos_sin(
    positions: Tensor,
    dims: Sequence[int],
    base: float | Sequence[float] = 10000.0,
    scaling: Scaling = None,
) -> tuple[Tensor, Tensor]:
    """Cos and sin of every rotary channel, one column per channel (before the layout is applied).

    Same arguments as :func:`rope_cos_sin` without ``layout``.

    Returns:
        ``(cos, sin)``, each ``(N, D/2)`` float64 on the device of ``positions`` (the CPU for Apple
        MPS, which has no float64); column ``i`` is the complex channel ``i`` of the concatenated axis
        blocks, multiplied by its rule's ``cos_sin_scale``.
    """
    if not isinstance(positions, Tensor) or positions.dim() != 2:
        raise ValueError(f"positions must be an (N, A) tensor, got "
                         f"{tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__}")
    dims, bases, rules = _check_axes(dims, base, scaling, positions.shape[1])
    # float64 is not available everywhere (Apple MPS): compute on the CPU there
    work = torch.device("cpu") if positions.device.type == "mps" else positions.device
    pos = positions.to(work, torch.float64)
    # (a data-dependent check: skipped while torch.compile traces, where positions come from a grid)
    if not torch.compiler.is_compiling() and not torch.isfinite(pos).all():
        raise ValueError("positions contain NaN or inf; every token needs a finite coordinate")
    cos_blocks, sin_blocks = [], []
    for axis, (d, b, rule) in enumerate(zip(dims, bases, rules)):
        theta = rope_frequencies(d, b) if rule is None else rule.frequencies(d, b)
        angles = pos[:, axis, None] * theta.to(work)[None, :]
        scale = 1.0 if rule is None else rule.cos_sin_scale
        cos_blocks.append(angles.cos() * scale)
        sin_blocks.append(angles.sin() * scale)
    return torch.cat(cos_blocks, dim=-1), torch.cat(sin_blocks, dim=-1)


def rope_cos_sin(
    positions: Tensor,
    dims: Sequence[int],
    base: float | Sequence[float] = 10000.0,
    scaling: Scaling = None,
    layout: str = "interleaved",
) -> tuple[Tensor, Tensor]:
    """Cos and sin tables of an axial RoPE.

    Args:
        positions: ``(N, A)`` coordinates of the tokens (integer or fractional), e.g.
            :func:`grid_positions`; converted to float64.
        dims: one even rotary dim per axis, ``D = sum(dims)``; 0 leaves an axis unrotated.
        base: the RoPE base, one for every axis or one per axis.
        scaling: ``None``, one rule for every axis, or one rule-or-``None`` per axis
            (see :mod:`visionpe.scaling`).
        layout: ``"interleaved"`` or ``"half"`` (see the module docstring).

    Returns:
        ``(cos, sin)``, each ``(N, D)`` float32 on the device of ``positions``.  Angles are computed in
        float64; each axis block is multiplied by its rule's ``cos_sin_scale``.

    Raises:
        ValueError: odd or negative dims, per-axis arguments whose length is not ``A``, non-finite
            positions, an unknown layout, or a rule that rejects its axis (e.g. RIFLEx ``k`` > d_a/2).
    """
    check_layout(layout)
    cos, sin = rope_compact_cos_sin(positions, dims, base, scaling)
    device = positions.device
    return (expand_layout(cos, layout).to(device, torch.float32),
            expand_layout(sin, layout).to(device, torch.float32))


def compact_table(table: Tensor, layout: str) -> Tensor:
    """One column per rotary channel, ``(..., D/2)``, from a ``(..., D)`` cos or sin table in ``layout``.

    The inverse of :func:`expand_layout` (a view, no copy).
    """
    if check_layout(layout) == "interleaved":
        return table[..., ::2]
    return table[..., : table.shape[-1] // 2]


def _pairs(x: Tensor, layout: str) -> tuple[Tensor, Tensor]:
    """The two members ``(a, b)`` of every rotated pair, each ``(..., D/2)`` (views of ``x``)."""
    if layout == "interleaved":
        return x.unflatten(-1, (-1, 2)).unbind(-1)
    return x.unflatten(-1, (2, -1)).unbind(-2)


def _join(a: Tensor, b: Tensor, layout: str) -> Tensor:
    """Inverse of :func:`_pairs`: ``(..., D/2)`` twice -> ``(..., D)``."""
    return torch.stack([a, b], dim=-1).flatten(-2) if layout == "interleaved" else torch.cat([a, b], dim=-1)


def _complex_view_ok(x: Tensor) -> bool:
    """Whether ``x`` ``(..., D)`` can be viewed as ``(..., D/2)`` complex numbers without a copy."""
    return x.stride(-1) == 1 and x.storage_offset() % 2 == 0 and all(s % 2 == 0 for s in x.stride()[:-1])


def rotate_compact(x: Tensor, cos: Tensor, sin: Tensor, layout: str = "interleaved") -> Tensor:
    """Rotate ``x`` by per-channel angles given as compact cos and sin: the fast path of :func:`apply_rope`.

    Args:
        x: ``(..., N, D)`` queries or keys, any float dtype.
        cos, sin: ``(..., N, D/2)`` float32 or float64, broadcastable to ``x`` without the last axis,
            column ``i`` for complex channel ``i`` (:func:`rope_compact_cos_sin`,
            :func:`compact_table`).  A row of ones and zeros leaves its token unchanged (how prefix
            tokens are passed through in one call).
        layout: ``"interleaved"`` or ``"half"``.

    Returns:
        ``(..., N, D)`` in ``x.dtype``, computed in float32 (float64 if ``x`` is float64).

    In eager mode the interleaved layout is one complex multiplication (one pass over ``x``; the
    real-valued formula takes five), and the half layout a multiply and a fused multiply-add per half,
    written in place into the output when no gradient is needed (on the CPU a block at a time, see
    :func:`_rotate_in_chunks`, as for a bf16 or fp16 ``x``).  Under
    ``torch.compile`` the real-valued formula is traced instead, which the compiler fuses into one
    kernel.  Inputs are not validated here; :func:`apply_rope` and the modules do that.
    """
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    cos, sin = cos.to(x.device, compute), sin.to(x.device, compute)
    if torch.compiler.is_compiling():
        a, b = _pairs(x.to(compute), layout)
        return _join(a * cos - b * sin, b * cos + a * sin, layout).to(x.dtype)
    grad = torch.is_grad_enabled() and (x.requires_grad or cos.requires_grad or sin.requires_grad)
    if x.device.type == "cpu" and not grad and (x.dtype != compute or layout == "half"):
        return _rotate_in_chunks(x, cos, sin, layout, compute)
    return _rotate_eager(x.to(compute), cos, sin, layout, grad).to(x.dtype)


def _rotate_eager(xc: Tensor, cos: Tensor, sin: Tensor, layout: str, grad: bool, out: Tensor | None = None) -> Tensor:
    """:func:`rotate_compact` in eager mode for ``xc`` already in the compute dtype (its result in that dtype).

    ``out`` (half layout without autograd only): a tensor of ``xc``'s shape and dtype to write into.
    """
    if layout == "interleaved":
        if not _complex_view_ok(xc):
            xc = xc.contiguous()
        z = torch.view_as_complex(xc.unflatten(-1, (-1, 2))) * torch.complex(cos, sin)
        return torch.view_as_real(z).flatten(-2)
    a, b = _pairs(xc, layout)
    if grad:
        return torch.cat([torch.addcmul(a * cos, b, sin, value=-1), torch.addcmul(b * cos, a, sin)], dim=-1)
    # without autograd, write both halves in place into one output (no concatenation pass)
    if out is None:
        out = torch.empty(xc.shape, dtype=xc.dtype, device=xc.device)
    out_a, out_b = _pairs(out, layout)
    torch.mul(a, cos, out=out_a).addcmul_(b, sin, value=-1)
    torch.mul(b, cos, out=out_b).addcmul_(a, sin)
    return out


#: elements of ``x`` per block of :func:`_rotate_in_chunks` (its float32 temporaries: 4 MiB and less)
CHUNK_ELEMENTS = 1 << 20


def _rotate_in_chunks(x: Tensor, cos: Tensor, sin: Tensor, layout: str, compute: torch.dtype) -> Tensor:
    """No-autograd CPU rotation of a low-precision ``x`` (bf16, fp16), or of any ``x`` in the half
    layout, a block at a time.

    Converting all of ``x`` to float32 first writes and reads back a temporary twice its size (and on
    Linux pays a page fault per 4 KiB of it, since large blocks are fresh ``mmap``s); a block of at
    most :data:`CHUNK_ELEMENTS` elements is converted, rotated and written into the output while its
    float32 copy is still in cache.  The half layout takes two passes over each half of the output
    (a multiply, then a multiply-add); per block, the second finds the first's result in cache.
    Blocks are taken along the leading axes first (whole ``(N, D)`` slices, few and large: ViT
    batches) and along the tokens only when one ``(N, D)`` slice is larger than a block (long
    videos).  Same numbers as the one-shot computation.
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _rotate_blocks(x, out, cos, sin, layout, compute)
    return out


def _rotate_blocks(x: Tensor, out: Tensor, cos: Tensor, sin: Tensor, layout: str, compute: torch.dtype) -> None:
    """Write the rotation of ``x`` ``(..., N, D)`` into ``out``: blocks of rows of the first axis, or,
    when one row of it is larger than a block, each row split the same way (down to the tokens)."""
    if x.numel() <= CHUNK_ELEMENTS:
        _rotate_block(x, out, cos, sin, layout, compute)
        return
    if x.dim() > 2 and x[0].numel() > CHUNK_ELEMENTS:
        for i in range(x.shape[0]):
            _rotate_blocks(x[i], out[i], _table_part(cos, x, i), _table_part(sin, x, i), layout, compute)
        return
    step = max(1, CHUNK_ELEMENTS // x[0].numel())
    for start in range(0, x.shape[0], step):
        rows = slice(start, start + step)
        _rotate_block(x[rows], out[rows], _table_part(cos, x, rows), _table_part(sin, x, rows), layout, compute)


def _table_part(table: Tensor, x: Tensor, index: int | slice) -> Tensor:
    """The part of a cos or sin table (right-aligned with ``x``, broadcastable to it) for ``x[index]``."""
    if table.dim() < x.dim():        # the table has no axis for x's first one: it applies to every row
        return table
    if table.shape[0] == 1:          # a broadcast axis: kept for a slice, dropped for an index
        return table if isinstance(index, slice) else table[0]
    return table[index]


def _rotate_block(x: Tensor, out: Tensor, cos: Tensor, sin: Tensor, layout: str, compute: torch.dtype) -> None:
    """Rotate one block ``x`` into ``out`` (in place for the half layout in the compute dtype)."""
    if out.dtype == compute and layout == "half":
        _rotate_eager(x, cos, sin, layout, grad=False, out=out)
    else:
        out.copy_(_rotate_eager(x.to(compute), cos, sin, layout, grad=False))


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, layout: str = "interleaved") -> Tensor:
    """Rotate ``x`` by the angles whose cos and sin are given: ``x·cos + rot90(x)·sin``.

    Args:
        x: ``(..., N, D)`` queries or keys, any float dtype.
        cos, sin: ``(N, D)`` or broadcastable to ``x`` with trailing ``(N, D)``, e.g.
            ``(heads, N, D)`` for per-head frequencies; in the same ``layout``.
        layout: ``"interleaved"`` rotates pairs ``(x_{2i}, x_{2i+1})``, ``"half"`` rotates
            ``(x_i, x_{i+D/2})``.

    Returns:
        ``(..., N, D)`` in ``x.dtype``; computed in float32 (float64 if ``x`` is float64).

    The tables are read at one column per pair (their two copies must agree, as tables from
    :func:`rope_cos_sin` do); see :func:`rotate_compact` for the computation.
    """
    check_layout(layout)
    if not x.is_floating_point():
        raise ValueError(f"apply_rope needs a floating-point x, got {x.dtype}")
    if x.dim() < 2 or x.shape[-1] % 2:
        raise ValueError(f"x must be (..., N, D) with an even D, got shape {tuple(x.shape)}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos {tuple(cos.shape)} and sin {tuple(sin.shape)} must have the same shape")
    if cos.dim() < 2 or cos.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"cos/sin of shape {tuple(cos.shape)} do not end in (N, D) = {tuple(x.shape[-2:])} of "
                         f"x {tuple(x.shape)}; build them for the same tokens and head dim")
    try:
        broadcast = torch.broadcast_shapes(x.shape, cos.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != x.shape:
        raise ValueError(f"cos/sin of shape {tuple(cos.shape)} do not broadcast to x {tuple(x.shape)}; "
                         f"use (N, D) tables or put per-head tables on the heads axis")
    return rotate_compact(x, compact_table(cos, layout), compact_table(sin, layout), layout)


def prefix_identity(cos: Tensor, sin: Tensor, num_prefix_tokens: int) -> tuple[Tensor, Tensor]:
    """Prepend ``P`` identity rows (cos 1, sin 0) to ``(..., N, C)`` tables: ``(..., P + N, C)``.

    Rotating by them leaves the prefix tokens exactly as they are, so queries and keys with CLS or
    register tokens are rotated in one call, without slicing and concatenating.
    """
    if num_prefix_tokens == 0:
        return cos, sin
    pad = (0, 0, num_prefix_tokens, 0)
    return (torch.nn.functional.pad(cos, pad, value=1.0), torch.nn.functional.pad(sin, pad, value=0.0))


@register_pe("rope-axial")
class AxialRoPE(PositionalEmbedding):
    """Axial RoPE: one 1D RoPE per grid axis on its own block of the head dim.

    Args:
        dim, num_heads, num_axes, num_prefix_tokens, depth, grid: see
            :class:`visionpe.base.PositionalEmbedding` (the same tables serve every layer).
        dims: rotary dims per axis, summing to the head dim; default ``split_dim(head_dim, num_axes)``
            (``(32, 32)`` for 64 over 2 axes, Wan's ``(44, 42, 42)`` for 128 over 3).
        base: RoPE base, one or one per axis; default 100 (RoPE-ViT's axial default; diffusers video
            models use 256 or 10000).
        scaling: ``None``, one rule for every axis, or one rule-or-``None`` per axis.
        layout: ``"interleaved"`` (default) or ``"half"``.

    Positions are the integer patch indices of the current grid (:func:`grid_positions`), so a new
    grid extrapolates to larger offsets unless a scaling rule says otherwise.  Prefix tokens are not
    rotated.
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
        dims: Sequence[int] | None = None,
        base: float | Sequence[float] = 100.0,
        scaling: Scaling = None,
        layout: str = "interleaved",
    ) -> None:
        super().__init__(dim, num_heads, num_axes, num_prefix_tokens, depth, grid)
        dims = split_dim(self.head_dim, num_axes) if dims is None else dims
        self.dims, self.bases, self.rules = _check_axes(dims, base, scaling, num_axes)
        if sum(self.dims) != self.head_dim:
            raise ValueError(f"dims={self.dims} sum to {sum(self.dims)} but the head dim is {self.head_dim} "
                             f"(dim={dim} / num_heads={num_heads}); give per-axis dims that sum to {self.head_dim}")
        self.layout = check_layout(layout)
        # one-token table: rule errors (e.g. a RIFLEx k beyond its axis' dim) surface here, not mid-forward
        rope_compact_cos_sin(torch.zeros(1, num_axes), self.dims, self.bases, self.rules)
        self._cache = TableCache()

    def with_scaling(self, scaling: Scaling) -> AxialRoPE:
        """A copy with the same dims, bases, layout and training grid but other scaling rules.

        ``scaling`` is ``None``, one rule for every axis or one rule-or-``None`` per axis, e.g.
        ``(RIFLEx(32, k=2), None, None)`` to extend only time.  Swap it into a model with
        ``model.pe = model.pe.with_scaling(...)`` (rope-axial has no parameters to keep).
        """
        return AxialRoPE(self.dim, self.num_heads, self.num_axes, self.num_prefix_tokens, self.depth,
                         self.train_grid, self.dims, self.bases, scaling, self.layout)

    def cos_sin(self, grid: Sequence[int], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Cached ``(cos, sin)``, each ``(N, head_dim)`` float32 in this PE's layout, for the patch tokens of ``grid``."""
        grid = self.check_grid(grid)
        device = resolve_device(device)
        return self._cache.get(
            (grid, device, "expanded"),
            lambda: tuple(t.to(device) for t in rope_cos_sin(
                grid_positions(grid), self.dims, self.bases, self.rules, self.layout)),
        )

    def compact_cos_sin(self, grid: Sequence[int], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """Cached ``(cos, sin)``, each ``(P + N, head_dim / 2)`` float32, one column per rotary channel.

        The first ``P = num_prefix_tokens`` rows are the identity (cos 1, sin 0).  This is the table
        :meth:`rotate` uses (:func:`rotate_compact`).
        """
        grid = self.check_grid(grid)
        device = resolve_device(device)

        def build() -> tuple[Tensor, Tensor]:
            cos, sin = rope_compact_cos_sin(grid_positions(grid), self.dims, self.bases, self.rules)
            cos, sin = prefix_identity(cos.float(), sin.float(), self.num_prefix_tokens)
            return cos.to(device), sin.to(device)

        return self._cache.get((grid, device, "compact"), build)

    def rotate(self, q: Tensor, k: Tensor, grid: Sequence[int], layer: int = 0) -> tuple[Tensor, Tensor]:
        """Rotate the patch tokens of ``q`` and ``k``, each ``(B, heads, P + N, head_dim)``."""
        grid = self.check_grid(grid)
        self.check_layer(layer)
        for x, what in ((q, "q"), (k, "k")):
            self.check_tokens(x, grid, what)
            if x.shape[-1] != self.head_dim:
                raise ValueError(f"{what} has head dim {x.shape[-1]} but this PE was built for {self.head_dim}")
            if not x.is_floating_point():
                raise ValueError(f"{what} must be a floating-point tensor, got {x.dtype}")
        cos, sin = self.compact_cos_sin(grid, q.device)
        return rotate_compact(q, cos, sin, self.layout), rotate_compact(k, cos, sin, self.layout)

    def extra_repr(self) -> str:
        rules = None if all(r is None for r in self.rules) else self.rules
        return (f"{super().extra_repr()}, dims={self.dims}, base={self.bases}, scaling={rules}, "
                f"layout={self.layout!r}")
