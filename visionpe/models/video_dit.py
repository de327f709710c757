"""A small video diffusion transformer (DiT / Latte style) whose attention calls the visionpe hooks.

Every 3D PE in the registry plugs in by name (``rope-axial`` with any per-axis split, ``sincos`` in
the ``concat`` and ``separable`` space-time styles, ``learned`` with temporal resampling, ``peg``,
``rel-decomposed``, ...).  The model works on pixels or latents alike: a video ``(B, C, T, H, W)`` is
cut into ``pt × ph × pw`` patches by a 3D convolution, giving the token grid
``(T/pt, H/ph, W/pw)``; every block is DiT's adaLN-Zero block::

    shift1, scale1, gate1, shift2, scale2, gate2 = adaLN(c)          # c = timestep (+ class) embedding
    x = x + gate1 · proj(attend(qkv(modulate(norm1(x), shift1, scale1)), pe, grid, l))
    x = x + gate2 · mlp(modulate(norm2(x), shift2, scale2))
    x = pegs[l].embed(x, grid)                                       # only for l in peg_after

and a final adaLN layer maps every token back to its ``pt·ph·pw·C`` values.  The gates and the
output layer start at zero (adaLN-Zero), so the untrained model predicts zero.

The timestep embedding is diffusers' ``Timesteps`` + ``TimestepEmbedding`` (the DiT/SD3 one).  With
``num_classes > 0`` the model is class-conditional; label ``num_classes`` is the "no label" class
that classifier-free guidance uses.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from einops import rearrange
from torch import Tensor, nn

from ..base import PositionalEmbedding, attend
from ..conditional import PEG
from ..registry import build_pe
from .sizes import VIDEO_DIT_SIZES
from .vit import Mlp, valid_sizes

__all__ = ["VideoDiT", "VideoDiTBlock"]


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """DiT's modulation of ``x`` ``(B, N, C)`` by per-sample ``shift``/``scale`` ``(B, C)``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class VideoDiTBlock(nn.Module):
    """adaLN-Zero transformer block; the PE reaches attention through its hooks."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, pe: PositionalEmbedding, grid: tuple[int, ...], layer: int) -> Tensor:
        """``x``: ``(B, N, C)`` tokens, ``c``: ``(B, C)`` conditioning -> ``(B, N, C)``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)
        b, n, d = x.shape
        h = pe.attention_input(_modulate(self.norm1(x), shift1, scale1), grid, layer)
        q, k, v = self.qkv(h).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = attend(q, k, v, pe, grid, layer).transpose(1, 2).reshape(b, n, d)
        x = x + gate1[:, None] * self.proj(attn)
        return x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class VideoDiT(nn.Module):
    """Video diffusion transformer with a pluggable 3D positional embedding.

    Args:
        video_size: training clip size ``(T, H, W)`` in frames and pixels (or latent cells); it fixes
            the native grid of PEs with grid-sized tables and the training length that scaling rules
            refer to.  Other sizes divisible by the patch run with each PE's own rule.
        patch_size: ``(pt, ph, pw)``, or an int for ``(1, p, p)``.
        in_chans: channels of the video (3 for RGB pixels, the VAE's latent channels otherwise).
        embed_dim, depth, num_heads, mlp_ratio: the usual; or ``size`` to take them from
            :data:`VIDEO_DIT_SIZES` (explicit arguments win).
        num_classes: 0 for an unconditional model, else the number of class labels (label
            ``num_classes`` means "no label", for classifier-free guidance).
        pe: a registry name that supports 3D grids (:func:`visionpe.list_pes`).
        pe_kwargs: extra keyword arguments for that PE (e.g. ``{"dims": (8, 12, 12), "base": 256}``).
        peg_after: block indices after which an extra 3D PEG runs.

    Shapes: video ``(B, in_chans, T, H, W)``, timesteps ``(B,)`` in ``[0, 1000]``, labels ``(B,)`` ->
    prediction ``(B, in_chans, T, H, W)`` (noise or velocity, as the training objective says).
    """

    def __init__(
        self,
        video_size: Sequence[int] = (16, 32, 32),
        patch_size: int | Sequence[int] = (1, 8, 8),
        in_chans: int = 3,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float | None = None,
        size: str = "tiny-cpu",
        num_classes: int = 0,
        pe: str = "rope-axial",
        pe_kwargs: dict | None = None,
        peg_after: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if size not in VIDEO_DIT_SIZES:
            raise ValueError(f"unknown video DiT size {size!r}; choose one of {sorted(VIDEO_DIT_SIZES)}")
        embed_dim, depth, num_heads, mlp_ratio = (
            d if v is None else v for v, d in zip((embed_dim, depth, num_heads, mlp_ratio), VIDEO_DIT_SIZES[size]))
        patch_size = (1, patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        video_size = tuple(video_size)
        for name, value in (("video_size", video_size), ("patch_size", patch_size)):
            if len(value) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
                raise ValueError(f"{name} must be three positive ints (T, H, W), got {value!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                             f"pick a width that is a multiple of the head count")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0 (0: unconditional), got {num_classes!r}")
        bad = [i for i in peg_after if not 0 <= i < depth]
        if bad:
            raise ValueError(f"peg_after has block indices {bad} outside 0..{depth - 1} for depth={depth}")
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.depth = depth
        self.num_classes = num_classes
        self.pe_name = pe
        self.video_size = video_size
        self.grid = self.grid_for(video_size)

        self.patch_embed = nn.Conv3d(in_chans, embed_dim, patch_size, patch_size)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, embed_dim)
        self.label_embed = nn.Embedding(num_classes + 1, embed_dim) if num_classes else None
        self.pe = build_pe(pe, dim=embed_dim, num_heads=num_heads, num_axes=3, num_prefix_tokens=0,
                           depth=depth, grid=self.grid, **(pe_kwargs or {}))
        self.blocks = nn.ModuleList(VideoDiTBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.pegs = nn.ModuleDict({str(i): PEG(embed_dim, num_heads, 3) for i in sorted(set(peg_after))})
        self.norm_out = nn.LayerNorm(embed_dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_out = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * embed_dim))
        self.proj_out = nn.Linear(embed_dim, in_chans * patch_size[0] * patch_size[1] * patch_size[2])
        self._init_weights()

    def _init_weights(self) -> None:
        for block in self.blocks:
            for m in (block.qkv, block.proj, block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            nn.init.zeros_(block.adaLN[-1].weight)
            nn.init.zeros_(block.adaLN[-1].bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        if self.label_embed is not None:
            nn.init.normal_(self.label_embed.weight, std=0.02)
        for m in (self.adaLN_out[-1], self.proj_out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def grid_for(self, video_size: Sequence[int]) -> tuple[int, int, int]:
        """Token grid ``(T/pt, H/ph, W/pw)`` of a clip size ``(T, H, W)``.

        Raises:
            ValueError: if a side is not a multiple of its patch size (names the nearest valid sizes).
        """
        for name, s, p in zip(("frame count", "height", "width"), video_size, self.patch_size):
            if s % p:
                raise ValueError(f"{name} {s} is not divisible by the patch size {p} on that axis; "
                                 f"use e.g. {valid_sizes(s, p)}")
        return tuple(s // p for s, p in zip(video_size, self.patch_size))

    def no_weight_decay(self) -> set[str]:
        """Parameters to train without weight decay: norms, biases, embeddings and the PE's own list."""
        names = {n for n, p in self.named_parameters() if p.ndim <= 1 or n.endswith(".bias")}
        if self.label_embed is not None:
            names.add("label_embed.weight")
        for prefix, module in [("pe", self.pe), *((f"pegs.{k}", v) for k, v in self.pegs.items())]:
            if hasattr(module, "no_weight_decay"):
                names |= {f"{prefix}.{n}" for n in module.no_weight_decay()}
        return names

    def condition(self, timesteps: Tensor, labels: Tensor | None, batch: int) -> Tensor:
        """The ``(B, C)`` conditioning vector from timesteps ``(B,)`` (or a scalar) and labels ``(B,)``."""
        timesteps = torch.as_tensor(timesteps, device=self.patch_embed.weight.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(batch)
        if timesteps.shape != (batch,):
            raise ValueError(f"timesteps must be a scalar or have shape (B,) = ({batch},), got {tuple(timesteps.shape)}")
        c = self.time_embed(self.time_proj(timesteps).to(self.patch_embed.weight.dtype))
        if self.label_embed is None:
            if labels is not None:
                raise ValueError("this model is unconditional (num_classes=0) but labels were given")
            return c
        if labels is None:
            labels = torch.full((batch,), self.num_classes, device=c.device, dtype=torch.long)
        if labels.shape != (batch,) or labels.min() < 0 or labels.max() > self.num_classes:
            raise ValueError(f"labels must be (B,) ints in 0..{self.num_classes} ({self.num_classes} = no label), "
                             f"got shape {tuple(labels.shape)}")
        return c + self.label_embed(labels)

    def forward(self, x: Tensor, timesteps: Tensor, labels: Tensor | None = None) -> Tensor:
        """Video ``(B, C, T, H, W)``, timesteps ``(B,)`` -> prediction ``(B, C, T, H, W)``."""
        if x.dim() != 5 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected a video (B, {self.in_chans}, T, H, W), got shape {tuple(x.shape)}")
        grid = self.grid_for(x.shape[2:])
        c = self.condition(timesteps, labels, x.shape[0])
        h = self.pe.embed(self.patch_embed(x).flatten(2).transpose(1, 2), grid)
        for layer, block in enumerate(self.blocks):
            h = block(h, c, self.pe, grid, layer)
            if str(layer) in self.pegs:
                h = self.pegs[str(layer)].embed(h, grid)
        shift, scale = self.adaLN_out(c).chunk(2, dim=-1)
        out = self.proj_out(_modulate(self.norm_out(h), shift, scale))
        (t, hh, ww), (pt, ph, pw) = grid, self.patch_size
        return rearrange(out, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
                         t=t, h=hh, w=ww, pt=pt, ph=ph, pw=pw)
