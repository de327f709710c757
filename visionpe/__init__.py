"""visionpe: positional embeddings for vision and video transformers behind one interface."""
from .base import Grid, PositionalEmbedding, TableCache, attend, check_grid, grid_positions, split_dim
from .registry import build_pe, get_pe_class, list_pes, register_pe

__version__ = "0.1.0"

__all__ = [
    "Grid", "PositionalEmbedding", "TableCache", "attend", "build_pe", "check_grid", "get_pe_class", "grid_positions",
    "list_pes", "register_pe", "split_dim",
]

# each family module registers its PEs on import
from . import (  # noqa: E402,F401
    absolute,
    alibi,
    conditional,
    cpb,
    nope,
    rel_bias,
    rel_decomposed,
    rope,
    rope_mixed,
    scaling,
)
