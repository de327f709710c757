"""The cost of a PE's own operations in one ViT training step, measured without the rest of the model.

``visionpe bench speed`` measures the PE overhead of a training step as the step time with the PE
over the step time without it, a difference of a few percent between two ~1.5 s steps, within the
noise of a shared 2-core machine.  This script measures the PE's part directly.  It calls the PE's
hooks as :class:`visionpe.models.vit.ViT` and :func:`visionpe.attend` call them: ``embed`` and any
extra PEG once, then per layer ``attention_input``, ``rotate``, ``attention_bias``, ``extend_qk`` and
``value_residual``, on inputs of the training step's shapes, and runs backward through their
outputs.  It reports the median over rounds, less that of ``none`` (the same pass through identity
hooks: the harness's own summing and backward), next to the median step time of the ViT without a PE.

    python tools/pe_step_cost.py --pes sincos rope-axial rope-mixed --size s --img 224 --batch 8
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from visionpe.bench import variant_kwargs
from visionpe.models.sizes import VIT_SIZES
from visionpe.models.vit import ViT


def step_inputs(model: ViT, batch: int, grid: tuple[int, int]) -> tuple[torch.Tensor, list[tuple[torch.Tensor, ...]]]:
    """Random leaf tensors of a training step's shapes: tokens ``(B, P + N, C)`` and per layer ``(q, k)``,
    each ``(B, heads, P + N, d)``."""
    pe = model.pe
    tokens = model.num_prefix_tokens + grid[0] * grid[1]
    head_dim = pe.dim // pe.num_heads
    x = torch.randn(batch, tokens, pe.dim, requires_grad=True)
    qk = [tuple(torch.randn(batch, pe.num_heads, tokens, head_dim, requires_grad=True) for _ in range(2))
          for _ in range(pe.depth)]
    return x, qk


def hook_pass(model: ViT, grid: tuple[int, int], x: torch.Tensor, qk: list[tuple[torch.Tensor, ...]]) -> None:
    """Forward and backward through every PE hook of ``model``, with the hooks' outputs summed as the loss."""
    pe = model.pe
    outs = [pe.embed(x, grid), *(peg.embed(x, grid) for peg in model.pegs.values())]
    for layer, (q, k) in enumerate(qk):
        outs.append(pe.attention_input(x, grid, layer))
        outs += list(pe.rotate(q, k, grid, layer))
        bias = pe.attention_bias(q, grid, layer)
        extended = pe.extend_qk(q, k, grid, layer, q.shape[-1] ** -0.5)
        extra = pe.value_residual(q, grid, layer)
        outs += [t for t in (bias, extra, *(extended or ())) if isinstance(t, torch.Tensor)]
    sum(o.float().sum() for o in outs if o.requires_grad).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pes", nargs="+", required=True)
    parser.add_argument("--size", default="s")
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    patch, _, depth, _, _ = VIT_SIZES[args.size]
    grid = (args.img // patch, args.img // patch)
    images = torch.randn(args.batch, 3, args.img, args.img)
    labels = torch.randint(0, 10, (args.batch,))
    base = ViT(img_size=args.img, size=args.size, num_classes=10, pe="none")
    opt = torch.optim.AdamW(base.parameters(), lr=1e-4)
    step_times = []
    for _ in range(max(3, args.rounds // 3) + 1):
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(base(images), labels).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_times.append(time.perf_counter() - start)
    step = statistics.median(step_times[1:])
    print(f"ViT-{args.size} {args.img} px batch {args.batch}, no PE: one training step {1e3 * step:.1f} ms (median)")
    print("| PE | hooks fwd+bwd ms | minus `none` (the harness) ms | share of the step |\n|---|---|---|---|")
    harness = None
    for name in ["none", *(p for p in args.pes if p != "none")]:
        kwargs, _ = variant_kwargs(name, depth, args.img, patch)
        model = ViT(img_size=args.img, size=args.size, num_classes=10, **kwargs)
        x, qk = step_inputs(model, args.batch, grid)
        times = []
        for _ in range(args.rounds + 1):
            start = time.perf_counter()
            hook_pass(model, grid, x, qk)
            times.append(time.perf_counter() - start)
        cost = statistics.median(times[1:])
        harness = cost if harness is None else harness
        print(f"| {name} | {1e3 * cost:.2f} | {1e3 * (cost - harness):.2f} | {100 * (cost - harness) / step:.2f}% |")


if __name__ == "__main__":
    main()
