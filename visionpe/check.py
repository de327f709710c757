"""Self-check: build every registered PE on a 2D and a 3D grid and run it through attention.

This is what ``visionpe check`` runs.  For each PE and grid it builds the PE with a CLS token,
sends random tokens through :func:`visionpe.base.attend` (every hook, forward and backward),
and verifies that outputs and gradients are finite, that shapes are kept, and that the prefix
token gets no additive position.  It also times one forward pass (after an untimed warm-up).
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

from .base import Grid, attend, check_grid
from .registry import build_pe, list_pes

__all__ = ["CheckResult", "check_pe", "run_checks"]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of :func:`check_pe` for one PE on one grid."""

    name: str
    grid: Grid
    hooks: tuple[str, ...]
    num_params: int
    forward_ms: float
    ok: bool
    message: str

    def as_dict(self) -> dict:
        """JSON-friendly dict."""
        return asdict(self)


def check_pe(
    name: str,
    grid: Sequence[int],
    dim: int = 96,
    num_heads: int = 4,
    depth: int = 2,
    num_prefix_tokens: int = 1,
    batch: int = 2,
    seed: int = 0,
) -> CheckResult:
    """Build PE ``name`` for ``grid`` and run one attention forward/backward through every hook.

    Args:
        name: a name from :func:`visionpe.list_pes`.
        grid: ``(H, W)`` or ``(T, H, W)``; the PE is built with this as its native grid.
        dim, num_heads, depth, num_prefix_tokens: model shape; tokens are ``(batch, P + N, dim)``.

    Returns:
        a :class:`CheckResult`; ``ok`` is False with the reason in ``message`` on any failure.
    """
    grid = check_grid(grid)
    torch.manual_seed(seed)
    pe = build_pe(name, dim=dim, num_heads=num_heads, num_axes=len(grid),
                  num_prefix_tokens=num_prefix_tokens, depth=depth, grid=grid)
    num_params = sum(p.numel() for p in pe.parameters())
    # give zero-initialised parameters a value so that every hook's gradient path is exercised
    with torch.no_grad():
        for p in pe.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    tokens = num_prefix_tokens + math.prod(grid)
    head_dim = dim // num_heads
    x = torch.randn(batch, tokens, dim, requires_grad=True)
    proj = torch.randn(3, dim, dim) / math.sqrt(dim)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        h = pe.embed(inp, grid)
        for layer in range(depth):
            a = pe.attention_input(h, grid, layer)
            q, k, v = (torch.einsum("bnc,cd->bnd", a, w).reshape(batch, tokens, num_heads, head_dim).transpose(1, 2)
                       for w in proj)
            out = attend(q, k, v, pe, grid, layer)
            h = h + out.transpose(1, 2).reshape(batch, tokens, dim)
        return h

    with torch.no_grad():
        forward(x)  # warm-up: first-call costs (lazy kernels, table caches) are not the PE's speed
    start = time.perf_counter()
    h = forward(x)
    forward_ms = (time.perf_counter() - start) * 1e3
    problems = []
    if h.shape != x.shape:
        problems.append(f"output shape {tuple(h.shape)} != input shape {tuple(x.shape)}")
    if not torch.isfinite(h).all():
        problems.append("non-finite output")
    h.square().mean().backward()
    if x.grad is None or not torch.isfinite(x.grad).all():
        problems.append("non-finite input gradient")
    for pname, p in pe.named_parameters():
        if p.grad is None:
            problems.append(f"no gradient reached parameter {pname}")
        elif not torch.isfinite(p.grad).all():
            problems.append(f"non-finite gradient in parameter {pname}")
    with torch.no_grad():
        probe = torch.zeros(1, tokens, dim)
        if "embed" in pe.hooks and num_prefix_tokens and pe.embed(probe, grid)[:, :num_prefix_tokens].abs().max() > 0:
            problems.append("prefix tokens received an additive position")
    return CheckResult(name, grid, tuple(sorted(pe.hooks)), num_params, forward_ms,
                       not problems, "; ".join(problems) or "ok")


def run_checks(names: Iterable[str] | None = None, grids: Iterable[Sequence[int]] = ((8, 8), (4, 6, 6)),
               progress: bool = True, **kwargs) -> list[CheckResult]:
    """Run :func:`check_pe` for every name (default: all registered PEs) on every grid."""
    names = list(list_pes() if names is None else names)
    grids = [check_grid(g) for g in grids]
    jobs = [(n, g) for n in names for g in grids]
    results = []
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("checking PEs", total=len(jobs))
            for n, g in jobs:
                results.append(check_pe(n, g, **kwargs))
                bar.advance(task)
    else:
        results = [check_pe(n, g, **kwargs) for n, g in jobs]
    return results
