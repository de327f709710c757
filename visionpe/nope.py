"""``none``: no positional embedding (the permutation-equivariant baseline)."""
from __future__ import annotations

from .base import PositionalEmbedding
from .registry import register_pe

__all__ = ["NoPE"]


@register_pe("none")
class NoPE(PositionalEmbedding):
    """No position information: every hook is the identity.

    Attention without any PE is equivariant to permutations of the patch tokens, so a model
    using it can only recover position from image content.  Works on 2D and 3D grids.
    """

    hooks = frozenset()
