"""A Vision Transformer whose blocks call the visionpe hook points, so any registered PE plugs in by name.

The layout and parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``reg_token``, ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``, ``norm``, ``fc_norm``,
``head``), so timm weights
load into it (see :mod:`visionpe.adapt`).  The PE lives in ``pe``; extra PEGs (CPVT) after chosen
blocks live in ``pegs``.

Per block ``l``, with ``grid`` the patch grid of the current input::

    a = pe.attention_input(norm1(x), grid, l)                # LaPE adds its per-layer table here
    x = x + proj(attend(q(a), k(a), v(a), pe, grid, l))      # rotate, attention_bias, value_residual
    x = x + mlp(norm2(x))
    x = pegs[l].embed(x, grid)                               # only for l in peg_after
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath
from torch import Tensor, nn

from ..base import PositionalEmbedding, attend
from ..conditional import PEG
from ..registry import build_pe
from .sizes import VIT_SIZES

__all__ = ["WEIGHT_INITS", "Attention", "Block", "ViT", "valid_sizes"]

WEIGHT_INITS = ("auto", "timm", "torch")


def valid_sizes(size: int, patch_size: int, count: int = 2) -> list[int]:
    """The ``count`` multiples of ``patch_size`` nearest to ``size`` (for error messages)."""
    below = (size // patch_size) * patch_size
    options = [s for s in (below, below + patch_size, below - patch_size, below + 2 * patch_size) if s > 0]
    return sorted(sorted(set(options), key=lambda s: abs(s - size))[:count])


class Attention(nn.Module):
    """Multi-head self-attention that hands q, k, v to :func:`visionpe.attend` with the block's PE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, pe: PositionalEmbedding, grid: tuple[int, ...], layer: int) -> Tensor:
        """``x``: ``(B, P + N, C)`` -> ``(B, P + N, C)``."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = attend(q, k, v, pe, grid, layer)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Two-layer GELU MLP (timm's ``Mlp`` names: ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., C) -> (..., C)``."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; the PE reaches attention through its hooks."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, pe: PositionalEmbedding, grid: tuple[int, ...], layer: int) -> Tensor:
        """``x``: ``(B, P + N, C)`` -> ``(B, P + N, C)``."""
        a = pe.attention_input(self.norm1(x), grid, layer)
        x = x + self.drop_path(self.attn(a, pe, grid, layer))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """Vision Transformer with a pluggable positional embedding.

    Args:
        img_size: training image size, ``int`` or ``(H, W)``; it fixes the native grid of PEs with
            grid-sized tables.  Any other size divisible by ``patch_size`` runs too, with each PE's
            own rule for a new grid.
        patch_size, embed_dim, depth, num_heads, mlp_ratio: the usual; or ``size`` to take them
            from :data:`VIT_SIZES` (explicit arguments win).
        in_chans, num_classes: input channels and classes (``num_classes=0``: no head).
        pe: a registry name (:func:`visionpe.list_pes`).
        pe_kwargs: extra keyword arguments for that PE (e.g. ``{"mode": "bilinear"}``).
        peg_after: block indices after which an extra CPVT PEG runs (e.g. ``[0]`` for CPVT's default).
        class_token: prepend a CLS token (a prefix token: no position, zero bias, not rotated).
        reg_tokens: number of register tokens, prefix tokens placed after the CLS token (timm's order
            ``[CLS, reg_1 … reg_R, patches]``).
        global_pool: ``"token"`` (CLS) or ``"avg"`` (mean of patch tokens).
        fc_norm: apply the final LayerNorm to the pooled feature instead of to every token (timm's
            ``fc_norm``, its default with ``global_pool="avg"``); ``norm`` is then the identity.
        qkv_bias, drop_path_rate: as in timm.
        pos_mask_token: add a learnable ``[MASK_POS]`` token that replaces the additive PE of
            masked tokens (DropPos); see :meth:`forward_features`.
        weight_init: initialisation of the blocks' and head's linear layers: ``"timm"``
            (``trunc_normal(std=0.02)``, zero biases: timm's ViT), ``"torch"`` (PyTorch's default,
            uniform with bound ``1/sqrt(fan_in)``) or ``"auto"`` (``"timm"`` from width 192 up, else
            ``"torch"``).  A fixed std of 0.02 suits widths near 768 (``≈ 0.55/sqrt(768)``); at width 64
            it is 6× below ``1/sqrt(64)``, the residual branches start almost silent, and on the
            procedural Dir8 task additive PEs (learned, sin-cos) stayed at chance for 2,000 steps where
            the PyTorch default starts learning after ~250 (docs/vit.md).

    Shapes: images ``(B, in_chans, H, W)`` -> tokens ``(B, P + N, C)`` with ``N = (H/p)(W/p)`` and
    ``P = class_token + reg_tokens`` -> logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 32,
        patch_size: int | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float | None = None,
        size: str = "tiny-cpu",
        in_chans: int = 3,
        num_classes: int = 10,
        pe: str = "learned",
        pe_kwargs: dict | None = None,
        peg_after: Sequence[int] = (),
        class_token: bool = True,
        global_pool: str = "token",
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        pos_mask_token: bool = False,
        reg_tokens: int = 0,
        fc_norm: bool = False,
        weight_init: str = "auto",
    ) -> None:
        super().__init__()
        if size not in VIT_SIZES:
            raise ValueError(f"unknown ViT size {size!r}; choose one of {sorted(VIT_SIZES)}")
        defaults = VIT_SIZES[size]
        patch_size, embed_dim, depth, num_heads, mlp_ratio = (
            d if v is None else v for v, d in zip((patch_size, embed_dim, depth, num_heads, mlp_ratio), defaults))
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if len(img_size) != 2 or any(not isinstance(s, int) or s <= 0 for s in img_size):
            raise ValueError(f"img_size must be a positive int or (H, W), got {img_size!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                             f"pick a width that is a multiple of the head count")
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True; use global_pool='avg' without a CLS token")
        if not isinstance(reg_tokens, int) or isinstance(reg_tokens, bool) or reg_tokens < 0:
            raise ValueError(f"reg_tokens must be an integer >= 0, got {reg_tokens!r}")
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"unknown weight_init {weight_init!r}; use one of {', '.join(WEIGHT_INITS)}")
        if not isinstance(fc_norm, bool):
            raise ValueError(f"fc_norm must be True or False, got {fc_norm!r}")
        bad = [i for i in peg_after if not 0 <= i < depth]
        if bad:
            raise ValueError(f"peg_after has block indices {bad} outside 0..{depth - 1} for depth={depth}")
        self.patch_size = patch_size
        self.img_size = img_size
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.depth = depth
        self.global_pool = global_pool
        self.num_prefix_tokens = (1 if class_token else 0) + reg_tokens
        self.pe_name = pe
        self.grid = self.grid_for(img_size)

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        self.pe = build_pe(pe, dim=embed_dim, num_heads=num_heads, num_axes=2,
                           num_prefix_tokens=self.num_prefix_tokens, depth=depth, grid=self.grid,
                           **(pe_kwargs or {}))
        self.pos_mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pos_mask_token else None
        if pos_mask_token and "embed" not in self.pe.hooks:
            raise ValueError(f"pos_mask_token (DropPos) replaces an additive PE, but {pe!r} has hooks "
                             f"{sorted(self.pe.hooks)}; use an additive PE such as 'sincos' or 'learned'")
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, r) for r in rates)
        self.pegs = nn.ModuleDict({str(i): PEG(embed_dim, num_heads, 2, self.num_prefix_tokens)
                                   for i in sorted(set(peg_after))})
        self.norm = nn.Identity() if fc_norm else nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6) if fc_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.weight_init = ("timm" if embed_dim >= 192 else "torch") if weight_init == "auto" else weight_init
        self._init_weights()

    def _init_weights(self) -> None:
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        if self.pos_mask_token is not None:
            nn.init.normal_(self.pos_mask_token, std=0.02)
        if self.weight_init == "torch":
            return                      # nn.Linear's own initialisation
        for block in self.blocks:
            for m in block.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def grid_for(self, img_size: Sequence[int]) -> tuple[int, int]:
        """Patch grid ``(H/p, W/p)`` for an image size ``(H, W)``.

        Raises:
            ValueError: if a side is not a multiple of the patch size (names the nearest valid sizes).
        """
        p = self.patch_size
        for name, s in zip(("height", "width"), img_size):
            if s % p:
                raise ValueError(f"image {name} {s} is not divisible by the patch size {p}; "
                                 f"use e.g. {valid_sizes(s, p)} (or resize/crop the input)")
        return (img_size[0] // p, img_size[1] // p)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to train without weight decay: PE parameters (as each family asks),
        CLS/register/mask tokens, norms and biases."""
        names = {n for n, p in self.named_parameters() if p.ndim <= 1 or n.endswith(".bias")}
        names |= {n for n in ("cls_token", "reg_token", "pos_mask_token") if getattr(self, n) is not None}
        for prefix, module in [("pe", self.pe), *((f"pegs.{k}", v) for k, v in self.pegs.items())]:
            if hasattr(module, "no_weight_decay"):
                names |= {f"{prefix}.{n}" for n in module.no_weight_decay()}
        return names

    def forward_features(self, x: Tensor, pos_mask: Tensor | None = None) -> Tensor:
        """Images ``(B, in_chans, H, W)`` -> normalised tokens ``(B, P + N, C)`` (not normalised with
        ``fc_norm=True``: the norm then follows the pooling).

        Args:
            pos_mask: optional ``(B, N)`` bool; where True the patch token's additive PE is replaced by
                ``pos_mask_token`` (DropPos).  Needs ``pos_mask_token=True``.
        """
        if x.dim() != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        grid = self.grid_for(x.shape[-2:])
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)  # (B, N, C)
        prefix = [t.expand(tokens.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if prefix:
            tokens = torch.cat([*prefix, tokens], dim=1)
        h = self.pe.embed(tokens, grid)
        if pos_mask is not None:
            h = self._mask_positions(tokens, h, pos_mask)
        for layer, block in enumerate(self.blocks):
            h = block(h, self.pe, grid, layer)
            if str(layer) in self.pegs:
                h = self.pegs[str(layer)].embed(h, grid)
        return self.norm(h)

    def _mask_positions(self, tokens: Tensor, embedded: Tensor, pos_mask: Tensor) -> Tensor:
        if self.pos_mask_token is None:
            raise ValueError("pos_mask needs a model built with pos_mask_token=True")
        n = tokens.shape[1] - self.num_prefix_tokens
        if pos_mask.shape != (tokens.shape[0], n) or pos_mask.dtype != torch.bool:
            raise ValueError(f"pos_mask must be a bool tensor of shape (B, N) = {(tokens.shape[0], n)}, "
                             f"got {pos_mask.dtype} {tuple(pos_mask.shape)}")
        position = embedded - tokens
        mask = torch.cat([pos_mask.new_zeros(pos_mask.shape[0], self.num_prefix_tokens), pos_mask], dim=1)
        return tokens + torch.where(mask[..., None], self.pos_mask_token.to(position.dtype), position)

    def pool(self, features: Tensor) -> Tensor:
        """``(B, P + N, C)`` -> ``(B, C)``: the CLS token or the mean patch token."""
        if self.global_pool == "token":
            return features[:, 0]
        return features[:, self.num_prefix_tokens:].mean(dim=1)

    def pre_logits(self, features: Tensor) -> Tensor:
        """``(B, P + N, C)`` -> the normalised pooled feature ``(B, C)`` the head sees."""
        return self.fc_norm(self.pool(features))

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, P + N, C)`` -> logits ``(B, num_classes)``."""
        return self.head(self.pre_logits(features))

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, in_chans, H, W)`` -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))
