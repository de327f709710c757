"""Video diffusion: the objectives match diffusers' schedulers, samplers recover the data with an oracle
model, the EMA and checkpoints work, scaling rules are swapped only for the sampling call."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from torch.utils.data import DataLoader, TensorDataset

from visionpe.models import VideoDiT
from visionpe.rope import AxialRoPE
from visionpe.scaling import PI, RIFLEx
from visionpe.training.video_diffusion import (
    MIN_SIGMA,
    VideoDiffusionModule,
    diffusion_loss,
    flow_interpolate,
    sample_videos,
    swap_rope_scaling,
)

SMALL = dict(size="micro", video_size=(4, 8, 8), patch_size=(1, 4, 4), pe_kwargs={"dims": (4, 6, 6), "base": 256.0})


class Oracle(VideoDiT):
    """A 'model' that knows the only training video x0 and returns the ideal prediction."""

    def __init__(self, x0: torch.Tensor, objective: str, alphas_cumprod: torch.Tensor | None = None) -> None:
        super().__init__((4, 8, 8), (1, 4, 4), size="micro")
        self.x0, self.objective, self.alphas_cumprod = x0, objective, alphas_cumprod

    def forward(self, x, timesteps, labels=None):
        if self.objective == "flow-x":                        # the clean video itself
            return self.x0.expand_as(x)
        if self.objective == "flow":                          # v = ε − x0 with ε = (x − (1 − σ)x0)/σ
            sigma = (timesteps / 1000).view(-1, 1, 1, 1, 1)
            return (x - self.x0) / sigma
        a = self.alphas_cumprod[timesteps.long()].view(-1, 1, 1, 1, 1)
        return (x - a.sqrt() * self.x0) / (1 - a).sqrt()


def test_flow_noising_is_the_diffusers_scheduler_scale_noise():
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(7)
    x0, noise = torch.randn(1, 3, 4, 8, 8), torch.randn(1, 3, 4, 8, 8)
    for i, t in enumerate(scheduler.timesteps):
        expected = scheduler.scale_noise(x0, t[None], noise)
        sigma = scheduler.sigmas[i].reshape(1)
        assert torch.allclose(flow_interpolate(x0, noise, sigma), expected, atol=1e-6)


@pytest.mark.parametrize("objective", ["flow", "flow-x", "ddpm"])
def test_sampler_with_an_oracle_returns_the_training_video(objective):
    x0 = torch.rand(1, 3, 4, 8, 8) * 1.6 - 0.8                  # inside [-1, 1] so the final clamp is a no-op
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    model = Oracle(x0, objective, ddpm.alphas_cumprod)
    out = sample_videos(model, 2, (4, 8, 8), objective, num_steps=10, ddpm_config=dict(ddpm.config))
    assert out.shape == (2, 3, 4, 8, 8)
    assert torch.allclose(out, ((x0 + 1) / 2).expand(2, -1, -1, -1, -1), atol=1e-3)


def test_sampling_noise_depends_on_seed_not_batch_size():
    torch.manual_seed(0)
    module = VideoDiffusionModule(**SMALL, ema_decay=0.0)
    for p in module.model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    a = sample_videos(module.model, 3, (4, 8, 8), num_steps=3, seed=5, batch_size=1)
    b = sample_videos(module.model, 3, (4, 8, 8), num_steps=3, seed=5, batch_size=3)
    c = sample_videos(module.model, 3, (4, 8, 8), num_steps=3, seed=6, batch_size=3)
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(b, c)


def test_ddpm_loss_uses_the_scheduler_noise_and_flow_loss_the_velocity():
    x0 = torch.randn(2, 3, 4, 8, 8)
    seen = {}

    def spy(x, t, labels):
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    g = torch.Generator().manual_seed(0)
    loss = diffusion_loss(spy, x0, "flow", generator=g)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=g)
    sigma = torch.rand(2, generator=g)
    assert torch.allclose(seen["x"], flow_interpolate(x0, noise, sigma)) and torch.allclose(seen["t"], sigma * 1000)
    assert torch.isclose(loss, (noise - x0).square().mean())
    ddpm = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(1)
    loss = diffusion_loss(spy, x0, "ddpm", ddpm=ddpm, generator=g)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (2,), generator=g)
    assert torch.allclose(seen["x"], ddpm.add_noise(x0, noise, t))
    assert torch.isclose(loss, noise.square().mean())
    with pytest.raises(ValueError, match="needs the DDPMScheduler"):
        diffusion_loss(spy, x0, "ddpm")
    with pytest.raises(ValueError, match="unknown diffusion objective"):
        diffusion_loss(spy, x0, "score")


def _fit(module: VideoDiffusionModule, steps: int, tmp_path) -> L.Trainer:
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(16, 3, 4, 8, 8), torch.randint(0, 3, (16,)))
    trainer = L.Trainer(max_steps=steps, logger=False, default_root_dir=tmp_path, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=1, accelerator="cpu")
    trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    return trainer


@pytest.mark.parametrize("objective", ["flow", "ddpm"])
def test_training_keeps_an_ema_and_reloads_to_the_same_samples(objective, tmp_path):
    module = VideoDiffusionModule(**SMALL, num_classes=3, objective=objective, ema_decay=0.9, lr=3e-3)
    trainer = _fit(module, 12, tmp_path)
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    trained = dict(module.model.named_parameters())
    averaged = dict(module.ema.module.named_parameters())
    assert not torch.equal(trained["blocks.0.qkv.weight"], averaged["blocks.0.qkv.weight"])
    assert all(not p.requires_grad for p in module.ema.parameters())
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = VideoDiffusionModule.load_from_checkpoint(path)
    kwargs = dict(num_frames=4, num_steps=2, labels=torch.tensor([0, 2]), guidance=1.5)
    assert torch.equal(loaded.sample(2, **kwargs), module.sample(2, **kwargs))


def test_sample_swaps_rope_rules_only_for_the_call():
    module = VideoDiffusionModule(**SMALL, ema_decay=0.0)
    for p in module.model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    pe = module.model.pe
    plain = module.sample(1, num_frames=8, num_steps=2)
    riflex = module.sample(1, num_frames=8, num_steps=2, scaling=(RIFLEx(8, k=1), None, None))   # period 2π < 8 frames
    assert module.model.pe is pe and module.model.pe.rules == (None, None, None)
    assert not torch.allclose(plain, riflex)
    assert torch.equal(module.sample(1, num_frames=8, num_steps=2), plain)


def test_with_scaling_keeps_the_rope_and_changes_only_the_rules():
    rope = AxialRoPE(32, 2, 3, grid=(4, 2, 2), dims=(4, 6, 6), base=(256.0, 100.0, 100.0), layout="half")
    scaled = rope.with_scaling((PI(2.0), None, None))
    assert (scaled.dims, scaled.bases, scaled.layout, scaled.train_grid) == (rope.dims, rope.bases, "half", (4, 2, 2))
    cos, _ = rope.cos_sin((8, 2, 2))
    cos2, _ = scaled.cos_sin((8, 2, 2))
    time_cols = torch.tensor([0, 1, 8, 9])                     # half layout, head dim 16: t is 0..1 and 8..9
    space = torch.ones(16, dtype=torch.bool)
    space[time_cols] = False
    assert torch.equal(cos[:, space], cos2[:, space]) and not torch.equal(cos[:, time_cols], cos2[:, time_cols])


def test_scaling_needs_a_rotary_pe_and_sampling_arguments_are_checked():
    model = VideoDiT((4, 8, 8), (1, 4, 4), size="micro", pe="sincos")
    with pytest.raises(ValueError, match="scaling rules apply to rotary PEs"):
        swap_rope_scaling(model, PI(2.0))
    with pytest.raises(ValueError, match="guidance needs a class-conditional model"):
        sample_videos(model, 1, (4, 8, 8), guidance=2.0)
    with pytest.raises(ValueError, match="frame count 3"):
        sample_videos(VideoDiT((4, 8, 8), (2, 4, 4), size="micro"), 1, (3, 8, 8))
    with pytest.raises(ValueError, match="num_videos"):
        sample_videos(model, 0, (4, 8, 8))
    with pytest.raises(ValueError, match="ema_decay"):
        VideoDiffusionModule(**SMALL, ema_decay=1.0)


def test_flow_x_loss_is_zero_for_the_clean_video_and_matches_the_velocity_loss_above_min_sigma():
    x0 = torch.rand(3, 3, 4, 8, 8) * 2 - 1
    oracle = Oracle(x0, "flow-x")
    assert diffusion_loss(oracle, x0, "flow-x", generator=torch.Generator().manual_seed(0)).item() < 1e-10
    # a wrong clean-video guess g gives the velocity error (x0 - g)/σ: the loss equals the "flow" loss
    # of the velocity that g implies, (x_σ - g)/σ, whenever every σ is above MIN_SIGMA
    guess = torch.zeros_like(x0)

    class Guess(VideoDiT):
        def __init__(self, implied_velocity: bool) -> None:
            super().__init__((4, 8, 8), (1, 4, 4), size="micro")
            self.implied = implied_velocity

        def forward(self, x, timesteps, labels=None):
            if not self.implied:
                return guess
            return (x - guess) / (timesteps / 1000).view(-1, 1, 1, 1, 1)

    gen = torch.Generator().manual_seed(3)
    replay = torch.Generator().manual_seed(3)
    torch.randn(x0.shape, generator=replay)                  # the loss draws the noise first, then σ
    assert torch.rand(3, generator=replay).min() > MIN_SIGMA
    lx = diffusion_loss(Guess(False), x0, "flow-x", generator=gen)
    lv = diffusion_loss(Guess(True), x0, "flow", generator=torch.Generator().manual_seed(3))
    assert torch.allclose(lx, lv, rtol=1e-4)


@pytest.mark.parametrize("objective", ["flow", "flow-x"])
def test_training_through_the_loss_memorises_one_clip_and_sampling_returns_it(objective):
    # the learned counterpart of the oracle test: the real loss and sampler, with a plain AdamW loop.
    # tiny-cpu (width 128) because a velocity of 48 values per token does not fit micro's width 32.
    torch.manual_seed(0)
    x0 = torch.rand(1, 3, 4, 8, 8) * 1.6 - 0.8
    model = VideoDiT(video_size=(4, 8, 8), patch_size=(1, 4, 4), size="tiny-cpu",
                     pe_kwargs={"dims": (8, 12, 12), "base": 256.0})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(600):
        loss = diffusion_loss(model, x0.expand(8, -1, -1, -1, -1), objective)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = sample_videos(model, 4, (4, 8, 8), objective, num_steps=20, seed=3) * 2 - 1
    assert ((out - x0) ** 2).mean() < 0.05 * x0.var()         # measured: flow 0.013, flow-x 0.001 of the variance
