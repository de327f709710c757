"""The video DiT: every 3D PE plugs in, patch order is right, adaLN-Zero starts at zero, errors."""
from __future__ import annotations

import pytest
import torch

from visionpe.models import VideoDiT

PES = [
    ("rope-axial", {"dims": (4, 6, 6), "base": 256.0}),
    ("rope-axial", {"dims": (8, 4, 4), "layout": "half"}),
    ("sincos", {"style": "concat"}),
    ("sincos", {"style": "separable"}),
    ("learned", {}),
    ("peg", {}),
    ("rel-decomposed", {}),
    ("none", {}),
]


def _randomise(model: VideoDiT) -> VideoDiT:
    """Give the zero-initialised adaLN-Zero layers weights so that the output depends on the input."""
    torch.manual_seed(1)
    for p in model.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.1)
    return model


@pytest.mark.parametrize("pe,kwargs", PES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(PES)])
def test_every_3d_pe_runs_at_train_and_longer_length(pe, kwargs):
    torch.manual_seed(0)
    model = _randomise(VideoDiT((4, 16, 16), (1, 4, 4), size="micro", pe=pe, pe_kwargs=kwargs))
    x = torch.randn(2, 3, 4, 16, 16)
    out = model(x, torch.tensor([10.0, 900.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    longer = model(torch.randn(1, 3, 8, 16, 24), torch.tensor([500.0]))   # 2x frames, wider frames
    assert longer.shape == (1, 3, 8, 16, 24) and torch.isfinite(longer).all()


def test_peg_after_blocks_and_temporal_patches():
    model = VideoDiT((4, 16, 16), (2, 4, 4), size="micro", pe="rope-axial", pe_kwargs={"dims": (4, 6, 6)},
                     peg_after=[0, 1])
    assert model.grid == (2, 4, 4)
    out = _randomise(model)(torch.randn(1, 3, 8, 16, 16), torch.tensor([3.0]))
    assert out.shape == (1, 3, 8, 16, 16)


def test_adaln_zero_predicts_zero_at_init():
    model = VideoDiT((4, 16, 16), (1, 4, 4), size="micro", num_classes=3)
    out = model(torch.randn(2, 3, 4, 16, 16), torch.tensor([1.0, 2.0]), torch.tensor([0, 3]))
    assert torch.equal(out, torch.zeros_like(out))


def test_without_pe_the_model_is_equivariant_to_patch_permutations():
    """No PE: attention is permutation-equivariant, so shuffling frames or rolling whole patches moves the
    output the same way; this pins down the patchify/unpatchify order."""
    torch.manual_seed(0)
    model = _randomise(VideoDiT((4, 16, 16), (1, 4, 4), size="micro", pe="none")).eval()
    x, t = torch.randn(1, 3, 4, 16, 16), torch.tensor([250.0])
    out = model(x, t)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(model(x[:, :, perm], t), out[:, :, perm], atol=1e-5)
    rolled = torch.roll(x, shifts=(4, 8), dims=(3, 4))          # one patch down, two patches right
    assert torch.allclose(model(rolled, t), torch.roll(out, shifts=(4, 8), dims=(3, 4)), atol=1e-5)


def test_rope_makes_the_model_see_frame_order():
    torch.manual_seed(0)
    model = _randomise(VideoDiT((4, 16, 16), (1, 4, 4), size="micro", pe="rope-axial",
                                pe_kwargs={"dims": (4, 6, 6)})).eval()
    x, t = torch.randn(1, 3, 4, 16, 16), torch.tensor([250.0])
    perm = torch.tensor([2, 0, 3, 1])
    assert not torch.allclose(model(x[:, :, perm], t), model(x, t)[:, :, perm], atol=1e-4)


def test_class_conditioning_changes_the_output_and_none_means_no_label():
    model = _randomise(VideoDiT((4, 16, 16), (1, 4, 4), size="micro", num_classes=3)).eval()
    x, t = torch.randn(1, 3, 4, 16, 16), torch.tensor([100.0])
    assert not torch.allclose(model(x, t, torch.tensor([0])), model(x, t, torch.tensor([1])))
    assert torch.equal(model(x, t, None), model(x, t, torch.tensor([3])))


def test_no_weight_decay_lists_norms_biases_and_embeddings():
    model = VideoDiT((4, 16, 16), (1, 4, 4), size="micro", num_classes=3, pe="learned")
    names = model.no_weight_decay()
    assert "label_embed.weight" in names and "blocks.0.qkv.bias" in names
    assert "blocks.0.qkv.weight" not in names
    assert any(n.startswith("pe.") for n in names)


@pytest.mark.parametrize("call,match", [
    (lambda: VideoDiT((4, 16, 16), (1, 4, 4), size="nope"), "unknown video DiT size"),
    (lambda: VideoDiT((5, 16, 16), (2, 4, 4), size="micro"), r"frame count 5 is not divisible by the patch size 2.*\[4, 6\]"),
    (lambda: VideoDiT((4, 18, 16), (1, 4, 4), size="micro"), "height 18"),
    (lambda: VideoDiT((4, 16), (1, 4, 4), size="micro"), "three positive ints"),
    (lambda: VideoDiT((4, 16, 16), (1, 4, 4), size="micro", embed_dim=30, num_heads=4), "not divisible by num_heads"),
    (lambda: VideoDiT((4, 16, 16), (1, 4, 4), size="micro", peg_after=[5]), "peg_after"),
    (lambda: VideoDiT((4, 16, 16), (1, 4, 4), size="micro", pe="nope"), "unknown PE 'nope'; known PEs"),
    (lambda: VideoDiT((4, 16, 16), (1, 4, 4), size="micro", num_classes=-1), "num_classes"),
])
def test_bad_construction(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_inputs():
    model = VideoDiT((4, 16, 16), (2, 4, 4), size="micro", num_classes=3)
    with pytest.raises(ValueError, match="frame count 7 is not divisible by the patch size 2"):
        model(torch.randn(1, 3, 7, 16, 16), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"expected a video \(B, 3, T, H, W\)"):
        model(torch.randn(1, 1, 4, 16, 16), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="labels must be"):
        model(torch.randn(1, 3, 4, 16, 16), torch.tensor([1.0]), torch.tensor([4]))
    with pytest.raises(ValueError, match="timesteps must be"):
        model(torch.randn(2, 3, 4, 16, 16), torch.tensor([1.0, 2.0, 3.0]))
    unconditional = VideoDiT((4, 16, 16), (1, 4, 4), size="micro")
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(torch.randn(1, 3, 4, 16, 16), torch.tensor([1.0]), torch.tensor([0]))
