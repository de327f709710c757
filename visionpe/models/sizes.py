"""The named model sizes, kept apart from the models so that the command line can list them without
importing timm, diffusers or Lightning."""
from __future__ import annotations

__all__ = ["VIDEO_DIT_SIZES", "VIT_SIZES"]

#: ViT: name -> (patch_size, embed_dim, depth, num_heads, mlp_ratio)
VIT_SIZES: dict[str, tuple[int, int, int, int, float]] = {
    "micro": (4, 32, 2, 2, 2.0),     # unit tests
    "tiny-cpu": (4, 64, 4, 4, 2.0),  # the CPU benchmark (§17.3 of the notes): ~0.14M parameters
    "ti": (16, 192, 12, 3, 4.0),
    "s": (16, 384, 12, 6, 4.0),
    "b": (16, 768, 12, 12, 4.0),
}

#: video DiT: name -> (embed_dim, depth, num_heads, mlp_ratio)
VIDEO_DIT_SIZES: dict[str, tuple[int, int, int, float]] = {
    "micro": (32, 2, 2, 2.0),      # unit tests
    "tiny-cpu": (128, 4, 4, 2.0),  # the CPU length benchmark: head dim 32, e.g. RoPE split (8, 12, 12)
    "s": (384, 12, 6, 4.0),        # DiT-S
    "b": (768, 12, 12, 4.0),       # DiT-B
}
