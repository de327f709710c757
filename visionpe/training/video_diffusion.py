"""Training and sampling of a :class:`~visionpe.models.VideoDiT` with flow matching or DDPM.

Objectives (``objective=``), for a clean video ``x0`` scaled to ``[-1, 1]`` and noise ``ε ~ N(0, I)``:

* ``"flow"`` (rectified flow, SD3 / Wan / HunyuanVideo): ``σ ~ U(0, 1)``,
  ``x_σ = (1 − σ)·x0 + σ·ε`` (diffusers' ``FlowMatchEulerDiscreteScheduler.scale_noise``), the model
  sees timestep ``1000·σ`` and predicts the velocity ``ε − x0``; sampling runs that scheduler's
  Euler steps from ``σ = 1``.
* ``"flow-x"`` (the same flow, clean-video prediction as in JiT, Li & He 2025): the model predicts
  ``x0`` and the loss is taken on the velocity it implies, ``v̂ = (x_σ − x̂0)/max(σ, 0.05)``
  against ``(x_σ − x0)/max(σ, 0.05)``; sampling feeds ``(x_σ − x̂0)/σ`` to the same Euler steps.  Use it in
  pixel space with large patches: a patch of ``8·8·3 = 192`` values does not fit through a token of
  width 128, so a velocity (which contains the full-dimensional noise) cannot be predicted, while the
  clean video lies on a low-dimensional manifold that can (measured: with ``"flow"`` the
  ``tiny-cpu`` model at patch 1×8×8 only ever samples noise; with ``"flow-x"`` it draws the scenes).
* ``"ddpm"``: ``t ~ U{0 … 999}``, ``x_t`` from ``DDPMScheduler.add_noise`` (``beta_schedule``), the
  model predicts ``ε``; sampling runs ``DDIMScheduler`` (η = 0) with the same betas.

The loss is the mean squared error of the prediction.  With class labels, a fraction
``class_dropout`` of them is replaced by the "no label" class so that sampling can use
classifier-free guidance.  An exponential moving average of the weights (``ema_decay``) is kept
and used for sampling.  The PE's scaling rules can be changed at sampling time (``scaling=``), which
is how length extrapolation is studied: train at ``T`` frames, sample ``2T`` frames with PI, NTK,
YaRN or RIFLEx on the temporal axis.
"""
from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..models.video_dit import VideoDiT
from ..rope import AxialRoPE
from .optim import adamw_warmup_cosine

__all__ = ["OBJECTIVES", "VideoDiffusionModule", "diffusion_loss", "flow_interpolate", "sample_videos",
           "swap_rope_scaling"]

OBJECTIVES = ("flow", "flow-x", "ddpm")
#: smallest σ in the denominator of the velocity implied by a clean-video prediction (JiT)
MIN_SIGMA = 0.05
NUM_TRAIN_TIMESTEPS = 1000


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown diffusion objective {objective!r}; use one of {', '.join(OBJECTIVES)}")


def flow_interpolate(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """Rectified-flow noising ``(1 − σ)·x0 + σ·ε`` with ``σ`` ``(B,)`` broadcast over ``(B, ...)`` videos."""
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    return (1 - s) * x0 + s * noise


def diffusion_loss(model: nn.Module, x0: Tensor, objective: str, labels: Tensor | None = None,
                   ddpm: DDPMScheduler | None = None, generator: torch.Generator | None = None) -> Tensor:
    """The training loss for a clean batch.

    Args:
        model: a :class:`VideoDiT` (or anything called as ``model(x, timesteps, labels)``).
        x0: clean videos ``(B, C, T, H, W)`` in ``[-1, 1]``.
        objective: ``"flow"``, ``"flow-x"`` or ``"ddpm"`` (see the module docstring).
        labels: ``(B,)`` class labels or ``None``.
        ddpm: the ``DDPMScheduler`` whose betas define ``"ddpm"`` (required for it).
        generator: optional generator for timesteps and noise (deterministic validation).

    Returns:
        scalar mean squared error of the prediction.
    """
    _check_objective(objective)
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if objective in ("flow", "flow-x"):
        sigma = torch.rand(b, generator=generator, device=x0.device, dtype=x0.dtype)
        xs = flow_interpolate(x0, noise, sigma)
        pred = model(xs, sigma * NUM_TRAIN_TIMESTEPS, labels)
        if objective == "flow":
            return F.mse_loss(pred, noise - x0)
        scale = sigma.clamp(min=MIN_SIGMA).reshape(-1, *([1] * (x0.dim() - 1)))
        return F.mse_loss((xs - pred) / scale, (xs - x0) / scale)
    if ddpm is None:
        raise ValueError("objective='ddpm' needs the DDPMScheduler that defines its noise schedule")
    t = torch.randint(0, ddpm.config.num_train_timesteps, (b,), generator=generator, device=x0.device)
    pred = model(ddpm.add_noise(x0, noise, t), t.to(x0.dtype), labels)
    return F.mse_loss(pred, noise)


def swap_rope_scaling(model: VideoDiT, scaling) -> VideoDiT:
    """Set the scaling rules of a model's ``rope-axial`` PE in place and return the model.

    ``scaling`` is ``None``, one :mod:`visionpe.scaling` rule or one rule-or-``None`` per axis
    ``(t, h, w)``.  Raises ``ValueError`` for a model whose PE is not axial RoPE.
    """
    if not isinstance(model.pe, AxialRoPE):
        raise ValueError(f"scaling rules apply to rotary PEs; this model uses {model.pe_name!r} "
                         f"(train with pe='rope-axial' to compare PI/NTK/YaRN/RIFLEx)")
    model.pe = model.pe.with_scaling(scaling)
    return model


@torch.no_grad()
def sample_videos(model: VideoDiT, num_videos: int, video_size: Sequence[int], objective: str = "flow",
                  num_steps: int = 25, seed: int = 0, labels: Tensor | None = None, guidance: float = 1.0,
                  ddpm_config: dict | None = None, batch_size: int = 16, progress: bool = False) -> Tensor:
    """Generate videos with a diffusers scheduler.

    Args:
        model: a trained :class:`VideoDiT` (its PE's current scaling rules are used).
        num_videos: how many videos.
        video_size: ``(T, H, W)``; each side a multiple of the model's patch on that axis.
        objective: the one the model was trained with.
        num_steps: sampler steps (Euler for ``"flow"``, DDIM for ``"ddpm"``).
        seed: initial noise of video ``i`` is drawn from ``torch.Generator().manual_seed(seed + i)``,
            so the same seed gives the same starting noise whatever the batch size.
        labels: ``(num_videos,)`` class labels for a class-conditional model, or ``None``.
        guidance: classifier-free guidance scale (1 = off; needs a class-conditional model).
        ddpm_config: ``DDPMScheduler`` config of a ``"ddpm"`` model (its betas).
        batch_size: videos per forward pass.
        progress: show a progress bar over the batches.

    Returns:
        ``(num_videos, C, T, H, W)`` float32 in ``[0, 1]`` on the CPU.
    """
    _check_objective(objective)
    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or num_videos < 1:
        raise ValueError(f"num_videos must be a positive integer, got {num_videos!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if guidance != 1.0 and model.num_classes == 0:
        raise ValueError("classifier-free guidance needs a class-conditional model (num_classes > 0); use guidance=1")
    model.grid_for(video_size)
    if labels is not None and labels.shape != (num_videos,):
        raise ValueError(f"labels must have shape (num_videos,) = ({num_videos},), got {tuple(labels.shape)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, num_videos, batch_size)
    from rich.progress import track

    for start in track(starts, description="sampling", disable=not progress):
        n = min(batch_size, num_videos - start)
        noise = torch.stack([torch.randn((model.in_chans, *video_size), generator=torch.Generator().manual_seed(seed + i))
                             for i in range(start, start + n)]).to(device)
        y = None if labels is None else labels[start:start + n].to(device)
        out.append(_denoise(model, noise, objective, num_steps, y, guidance, ddpm_config).cpu())
    model.train(was_training)
    return ((torch.cat(out) + 1) / 2).clamp(0, 1).float()


def _denoise(model: VideoDiT, x: Tensor, objective: str, num_steps: int, labels: Tensor | None,
             guidance: float, ddpm_config: dict | None) -> Tensor:
    if objective in ("flow", "flow-x"):
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS)
    else:
        scheduler = DDIMScheduler.from_config(ddpm_config or DDPMScheduler().config)
    scheduler.set_timesteps(num_steps, device=x.device)
    null = None if labels is None else torch.full_like(labels, model.num_classes)
    for t in scheduler.timesteps:
        timesteps = t.to(x.dtype).expand(x.shape[0])
        pred = model(x, timesteps, labels)
        if guidance != 1.0:
            uncond = model(x, timesteps, null)
            pred = uncond + guidance * (pred - uncond)
        if objective == "flow-x":   # clean-video prediction -> the exact velocity the Euler step expects
            pred = (x - pred) / (timesteps / NUM_TRAIN_TIMESTEPS).clamp(min=1e-6).reshape(-1, 1, 1, 1, 1)
        x = scheduler.step(pred, t, x).prev_sample
    return x


class VideoDiffusionModule(L.LightningModule):
    """Trains a :class:`VideoDiT` on video clips ``(B, C, T, H, W)`` in ``[0, 1]`` with labels.

    Args:
        pe, pe_kwargs, peg_after: the 3D PE (registry name, its arguments, extra PEG blocks).
        size, video_size, patch_size, embed_dim, depth, num_heads, in_chans, num_classes: the model
            (see :class:`VideoDiT`); ``video_size = (T, H, W)`` is the training clip size.
        objective: ``"flow"``, ``"flow-x"`` or ``"ddpm"`` (see the module docstring).
        beta_schedule: betas of ``"ddpm"`` (a ``DDPMScheduler`` schedule name).
        class_dropout: fraction of labels replaced by "no label" during training (CFG).
        ema_decay: decay of the weight EMA used for sampling (0 disables it).
        lr, weight_decay, warmup_frac, schedule_steps: AdamW with warm-up and cosine decay over
            ``schedule_steps`` (default: the trainer's total steps).
    """

    def __init__(
        self,
        pe: str = "rope-axial",
        pe_kwargs: dict | None = None,
        peg_after: list[int] | None = None,
        size: str = "tiny-cpu",
        video_size: tuple[int, int, int] = (16, 32, 32),
        patch_size: tuple[int, int, int] = (1, 8, 8),
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        in_chans: int = 3,
        num_classes: int = 0,
        objective: str = "flow",
        beta_schedule: str = "squaredcos_cap_v2",
        class_dropout: float = 0.1,
        ema_decay: float = 0.995,
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        warmup_frac: float = 0.02,
        schedule_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_objective(objective)
        if not 0 <= class_dropout < 1:
            raise ValueError(f"class_dropout must be in [0, 1), got {class_dropout}")
        if not 0 <= ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1) (0 disables the EMA), got {ema_decay}")
        if schedule_steps is not None and schedule_steps < 1:
            raise ValueError(f"schedule_steps must be >= 1 (or None for the trainer's total), got {schedule_steps}")
        self.model = VideoDiT(tuple(video_size), tuple(patch_size), in_chans, embed_dim, depth, num_heads, size=size,
                              num_classes=num_classes, pe=pe, pe_kwargs=pe_kwargs, peg_after=peg_after or ())
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay)) if ema_decay else None
        if self.ema is not None:
            self.ema.requires_grad_(False)
        self.ddpm = DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=beta_schedule) \
            if objective == "ddpm" else None

    @property
    def sampling_model(self) -> VideoDiT:
        """The EMA model when there is one, else the trained model."""
        return self.model if self.ema is None else self.ema.module

    def forward(self, x: Tensor, timesteps: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, C, T, H, W)``, ``(B,)`` -> prediction ``(B, C, T, H, W)``."""
        return self.model(x, timesteps, labels)

    def _labels(self, labels: Tensor) -> Tensor | None:
        if self.model.num_classes == 0:
            return None
        if self.training and self.hparams.class_dropout > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.hparams.class_dropout
            labels = torch.where(drop, torch.full_like(labels, self.model.num_classes), labels)
        return labels

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """One step of the diffusion loss on a batch ``(videos, labels)``."""
        videos, labels = batch
        loss = diffusion_loss(self.model, videos * 2 - 1, self.hparams.objective, self._labels(labels), self.ddpm)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """The loss of the sampling model at timesteps and noise fixed by ``batch_idx``."""
        videos, labels = batch
        generator = torch.Generator(device=videos.device).manual_seed(batch_idx)
        labels = None if self.model.num_classes == 0 else labels
        loss = diffusion_loss(self.sampling_model, videos * 2 - 1, self.hparams.objective, labels, self.ddpm,
                              generator)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)

    def sample(self, num_videos: int, num_frames: int | None = None, size: Sequence[int] | None = None,
               scaling=None, **kwargs) -> Tensor:
        """Videos ``(num_videos, C, T, H, W)`` in ``[0, 1]`` from the sampling (EMA) model.

        Args:
            num_frames: ``T`` (default: the training length).
            size: ``(H, W)`` (default: the training size).
            scaling: rules for the rope-axial PE during this call (``None``: plain extrapolation);
                the model's own rules are restored afterwards.
            kwargs: passed to :func:`sample_videos` (``num_steps``, ``seed``, ``labels``, ``guidance``, ...).
        """
        t, h, w = self.model.video_size
        video_size = (num_frames or t, *(size or (h, w)))
        model = self.sampling_model
        original = model.pe
        if scaling is not None:
            swap_rope_scaling(model, scaling)
        try:
            ddpm_config = None if self.ddpm is None else dict(self.ddpm.config)
            return sample_videos(model, num_videos, video_size, self.hparams.objective, ddpm_config=ddpm_config,
                                 **kwargs)
        finally:
            model.pe = original

    def _schedule_steps(self) -> int:
        return self.hparams.schedule_steps or max(int(self.trainer.estimated_stepping_batches), 1)

    def configure_optimizers(self):
        """AdamW (no decay on norms, biases, embeddings, PE parameters) + warm-up + cosine, per step."""
        no_decay = {f"model.{n}" for n in self.model.no_weight_decay()}
        params = [(n, p) for n, p in self.named_parameters() if not n.startswith("ema.")]
        return adamw_warmup_cosine(params, no_decay, self.hparams.lr, self.hparams.weight_decay,
                                   self._schedule_steps(), self.hparams.warmup_frac)
