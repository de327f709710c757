"""Lightning module that trains a ViT classifier with any PE, optionally multi-resolution (ResFormer) and DropPos.

Losses per step, for a batch ``(images, labels)``:

* single resolution: ``CE(logits, y)`` (optional label smoothing);
* multi-resolution (the data module yields a tuple of images of the same scenes at several sizes;
  ResFormer): sizes sorted from largest to smallest, ``cls_i`` the pooled pre-logit feature at
  size ``i``::

      L = (1/r) Σ_i [ CE(head(cls_i), y) + α · SmoothL1(cls_{i+1}, LN(cls_i).detach()) ]

  where ``LN`` is an affine-free LayerNorm (eps 1e-6) and the last size has no distillation term;
* DropPos (``droppos_weight > 0``): a second forward in which the additive PE of a random
  ``droppos_ratio`` of the patches is replaced by a learned ``[MASK_POS]`` token; a linear head
  classifies each masked token's grid cell against Gaussian-smoothed targets
  ``y_k ∝ exp(−‖p − p_k‖² / σ²)`` (σ decays linearly from ``droppos_sigma`` to 0 over training);
  ``L += droppos_weight · mean soft-CE over masked tokens``.

The optimiser is AdamW without weight decay on PE parameters, tokens, norms and biases, with a
linear warm-up and cosine decay to 0 over the trainer's total steps (or ``schedule_steps``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import grid_positions
from ..models.vit import ViT
from .optim import adamw_warmup_cosine

__all__ = ["ClassifierModule", "resformer_loss", "droppos_targets"]


def resformer_loss(
    logits: Sequence[Tensor], features: Sequence[Tensor], labels: Tensor, alpha: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """ResFormer's multi-resolution loss.

    Args:
        logits: per resolution, largest first, each ``(B, classes)``.
        features: the pooled pre-logit features in the same order, each ``(B, C)``.
        labels: ``(B,)``.
        alpha: weight of the scale-consistency (self-distillation) term.

    Returns:
        ``(total, consistency)``: the loss above and its distillation part (for logging).
    """
    ce = sum(F.cross_entropy(lg, labels, label_smoothing=label_smoothing) for lg in logits)
    consistency = logits[0].new_zeros(())
    for teacher, student in zip(features[:-1], features[1:]):
        target = F.layer_norm(teacher, teacher.shape[-1:], eps=1e-6).detach()
        consistency = consistency + F.smooth_l1_loss(student, target)
    return (ce + alpha * consistency) / len(logits), consistency / max(len(logits) - 1, 1)


def droppos_targets(grid: Sequence[int], sigma: float, device: torch.device | None = None) -> Tensor:
    """DropPos targets ``(N, N)`` for a grid of ``N`` cells: row ``i`` is ``exp(−‖p_i − p_k‖² / σ²)``
    over the cells ``k``, normalised to sum 1; ``σ = 0`` gives one-hot rows."""
    pos = grid_positions(grid, device=device)
    if sigma <= 0:
        return torch.eye(pos.shape[0], device=device)
    d2 = torch.cdist(pos, pos).square()
    weights = torch.exp(-d2 / sigma**2)
    return (weights / weights.sum(dim=1, keepdim=True)).float()


class ClassifierModule(L.LightningModule):
    """Image classification with a visionpe :class:`~visionpe.models.ViT` (or an adapted timm ViT).

    Args:
        pe, pe_kwargs, peg_after: the PE (registry name, its arguments, extra PEG blocks).
        size, img_size, patch_size, embed_dim, depth, num_heads, global_pool, drop_path_rate, weight_init:
            the ViT (see :class:`~visionpe.models.ViT`); ``img_size`` is the training size.
        num_classes, in_chans: from the data.
        timm_model: build the network from this timm ViT name instead (``pretrained=False``, with
            ``timm_kwargs`` for ``timm.create_model``), loading ``timm_checkpoint`` (a local file)
            when given, moved to ``img_size`` with ``resize_mode``/``resize_antialias``; ``pe=None``
            keeps its learned table, any other PE replaces it; a class count other than the
            checkpoint's gets a fresh head (see :mod:`visionpe.adapt`).
        lr, weight_decay, warmup_frac, label_smoothing: optimisation.
        schedule_steps: length of the warm-up + cosine schedule (and of DropPos' σ decay); default the
            trainer's total steps.  Set it when a run is trained in several chunks (``max_steps`` below
            the planned length, then resumed with ``ckpt_path``) so every chunk follows one schedule.
        consistency_alpha: weight of ResFormer's scale-consistency loss in multi-resolution steps.
        droppos_weight, droppos_ratio, droppos_sigma: the DropPos auxiliary task (off at weight 0).

    Batches: ``(images (B, C, H, W), labels (B,))`` or, for multi-resolution training,
    ``((images at size 1, images at size 2, ...), labels)``.
    """

    def __init__(
        self,
        pe: str | None = "learned",
        pe_kwargs: dict | None = None,
        peg_after: list[int] | None = None,
        size: str = "tiny-cpu",
        img_size: int = 32,
        num_classes: int = 8,
        in_chans: int = 3,
        patch_size: int | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        global_pool: str = "token",
        drop_path_rate: float = 0.0,
        weight_init: str = "auto",
        timm_model: str | None = None,
        timm_checkpoint: str | None = None,
        timm_kwargs: dict | None = None,
        resize_mode: str = "bicubic",
        resize_antialias: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_frac: float = 0.05,
        label_smoothing: float = 0.0,
        schedule_steps: int | None = None,
        consistency_alpha: float = 1.0,
        droppos_weight: float = 0.0,
        droppos_ratio: float = 0.75,
        droppos_sigma: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if schedule_steps is not None and schedule_steps < 1:
            raise ValueError(f"schedule_steps must be >= 1 (or None for the trainer's total), got {schedule_steps}")
        if not 0 <= warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {warmup_frac}")
        if droppos_weight < 0 or not 0 < droppos_ratio <= 1:
            raise ValueError(f"droppos_weight must be >= 0 and droppos_ratio in (0, 1], "
                             f"got {droppos_weight} and {droppos_ratio}")
        droppos = droppos_weight > 0
        if timm_model is not None:
            from ..adapt import from_timm, load_timm_vit

            source = load_timm_vit(timm_model, checkpoint=timm_checkpoint, **(timm_kwargs or {}))
            if source.patch_embed.proj.in_channels != in_chans:
                raise ValueError(f"the timm model takes {source.patch_embed.proj.in_channels}-channel images but the "
                                 f"data has {in_chans}; use data with as many channels (or in_chans in timm_kwargs "
                                 f"without a checkpoint)")
            self.model = from_timm(source, pe=pe, pe_kwargs=pe_kwargs, peg_after=peg_after or (),
                                   img_size=img_size, mode=resize_mode, antialias=resize_antialias,
                                   num_classes=num_classes)
            if droppos:
                raise ValueError("DropPos is not available for adapted timm models; train a visionpe ViT with it")
        else:
            if pe is None:
                raise ValueError("pe=None only means 'keep the timm table' with timm_model; name a PE "
                                 "(visionpe.list_pes()) for a visionpe ViT")
            self.model = ViT(img_size, patch_size, embed_dim, depth, num_heads, size=size, in_chans=in_chans,
                             num_classes=num_classes, pe=pe, pe_kwargs=pe_kwargs, peg_after=peg_after or (),
                             global_pool=global_pool, drop_path_rate=drop_path_rate, pos_mask_token=droppos,
                             weight_init=weight_init)
        grid = self.model.grid
        self.pos_head = nn.Linear(self.model.embed_dim, math.prod(grid)) if droppos else None

    # ----------------------------------------------------------------------------------- forward
    def forward(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> logits ``(B, classes)``."""
        return self.model(images)

    def _schedule_steps(self) -> int:
        return self.hparams.schedule_steps or max(int(self.trainer.estimated_stepping_batches), 1)

    def _droppos_sigma(self) -> float:
        total = self._schedule_steps()
        return self.hparams.droppos_sigma * max(0.0, 1.0 - self.global_step / total)

    def _droppos_loss(self, images: Tensor) -> Tensor:
        grid = self.model.grid_for(images.shape[-2:])
        if grid != self.model.grid:
            raise ValueError(f"DropPos classifies positions on the training grid {self.model.grid}, but the batch "
                             f"has grid {grid}; train DropPos at a single resolution")
        b, n = images.shape[0], math.prod(grid)
        mask = torch.rand(b, n, device=images.device).argsort(dim=1) < round(self.hparams.droppos_ratio * n)
        features = self.model.forward_features(images, pos_mask=mask)[:, self.model.num_prefix_tokens:]
        log_probs = self.pos_head(features[mask]).log_softmax(dim=-1)       # (M, N)
        targets = droppos_targets(grid, self._droppos_sigma(), images.device)
        cells = torch.arange(n, device=images.device).expand(b, n)[mask]    # (M,)
        return -(targets[cells] * log_probs).sum(dim=-1).mean()

    def training_step(self, batch: tuple, batch_idx: int) -> Tensor:
        """One optimisation step (single- or multi-resolution)."""
        images, labels = batch
        smoothing = self.hparams.label_smoothing
        if isinstance(images, (tuple, list)):
            views = sorted(images, key=lambda t: t.shape[-1] * t.shape[-2], reverse=True)
            features = [self.model.pre_logits(self.model.forward_features(v)) for v in views]
            logits = [self.model.head(f) for f in features]
            loss, consistency = resformer_loss(logits, features, labels, self.hparams.consistency_alpha, smoothing)
            self.log("train/consistency", consistency)
            main_logits, main_images = logits[0], views[0]
        else:
            main_logits = self.model(images)
            loss = F.cross_entropy(main_logits, labels, label_smoothing=smoothing)
            main_images = images
        if self.pos_head is not None:
            pos_loss = self._droppos_loss(main_images)
            self.log("train/droppos", pos_loss)
            loss = loss + self.hparams.droppos_weight * pos_loss
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (main_logits.argmax(-1) == labels).float().mean(), prog_bar=True)
        return loss

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        """Loss and top-1 at the validation size."""
        images, labels = batch
        logits = self.model(images)
        self.log("val/loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log("val/acc", (logits.argmax(-1) == labels).float().mean(), prog_bar=True, sync_dist=True)

    # ------------------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        """AdamW (no decay on PE parameters, tokens, norms, biases) + warm-up + cosine, stepped per batch."""
        no_decay = {f"model.{n}" for n in self.model.no_weight_decay()}
        if self.pos_head is not None:
            no_decay.add("pos_head.bias")
        return adamw_warmup_cosine(self.named_parameters(), no_decay, self.hparams.lr, self.hparams.weight_decay,
                                   self._schedule_steps(), self.hparams.warmup_frac)
