"""The optimiser every visionpe training module uses: AdamW with a no-decay group, warm-up and cosine."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["adamw_warmup_cosine"]


def adamw_warmup_cosine(named_parameters: Iterable[tuple[str, nn.Parameter]], no_decay: set[str], lr: float,
                        weight_decay: float, total_steps: int, warmup_frac: float) -> dict:
    """AdamW plus a per-step linear warm-up and cosine decay to 0, in Lightning's return format.

    Args:
        named_parameters: ``(name, parameter)`` pairs (e.g. ``module.named_parameters()``); frozen
            parameters are left out.
        no_decay: names trained without weight decay (PE parameters, tokens, norms, biases).
        lr, weight_decay: AdamW's.
        total_steps: optimiser steps of the whole schedule (>= 1).
        warmup_frac: fraction of ``total_steps`` spent warming up linearly, in ``[0, 1)``.

    Returns:
        ``{"optimizer": AdamW, "lr_scheduler": {"scheduler": LambdaLR, "interval": "step"}}``.
    """
    if not 0 <= warmup_frac < 1:
        raise ValueError(f"warmup_frac must be in [0, 1), got {warmup_frac}")
    if total_steps < 1:
        raise ValueError(f"the schedule needs at least one step, got total_steps={total_steps}")
    decay, plain = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            (plain if name in no_decay else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": plain, "weight_decay": 0.0}], lr=lr)
    warmup = int(warmup_frac * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total_steps - warmup, 1))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
