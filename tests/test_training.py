"""Tests of the classification Lightning module: ResFormer loss, DropPos targets, optimiser groups, steps."""
from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from visionpe.training import ClassifierModule
from visionpe.training.classifier import droppos_targets, resformer_loss


def test_resformer_loss_matches_the_formula():
    torch.manual_seed(0)
    labels = torch.tensor([0, 2, 1])
    logits = [torch.randn(3, 4) for _ in range(3)]
    feats = [torch.randn(3, 6) for _ in range(3)]
    total, consistency = resformer_loss(logits, feats, labels, alpha=0.5)
    ce = sum(F.cross_entropy(lg, labels) for lg in logits)
    def whiten(f):
        return (f - f.mean(-1, keepdim=True)) / torch.sqrt(f.var(-1, unbiased=False, keepdim=True) + 1e-6)
    kd = F.smooth_l1_loss(feats[1], whiten(feats[0])) + F.smooth_l1_loss(feats[2], whiten(feats[1]))
    torch.testing.assert_close(total, (ce + 0.5 * kd) / 3)
    torch.testing.assert_close(consistency, kd / 2)


def test_resformer_teacher_is_detached():
    teacher = torch.randn(2, 5, requires_grad=True)
    student = torch.randn(2, 5, requires_grad=True)
    total, _ = resformer_loss([torch.zeros(2, 3), torch.zeros(2, 3)], [teacher, student], torch.tensor([0, 1]))
    total.backward()
    assert teacher.grad is None and student.grad is not None


def test_droppos_targets():
    t = droppos_targets((3, 4), sigma=1.0)
    assert t.shape == (12, 12)
    torch.testing.assert_close(t.sum(1), torch.ones(12))
    assert (t.argmax(1) == torch.arange(12)).all()
    # row 0 (cell (0,0)): neighbours at distance 1 get exp(-1) of the centre weight
    torch.testing.assert_close(t[0, 1] / t[0, 0], torch.exp(torch.tensor(-1.0)))
    assert torch.equal(droppos_targets((2, 2), sigma=0.0), torch.eye(4))


class _Batches(torch.utils.data.IterableDataset):
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def _fit(module, batches, steps=2):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(_Batches(batches), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return trainer


@pytest.mark.parametrize("kwargs", [{"pe": "rope-axial"}, {"pe": "sincos", "droppos_weight": 0.5}])
def test_single_resolution_steps_update_weights(kwargs):
    torch.manual_seed(1)
    module = ClassifierModule(size="micro", img_size=16, num_classes=3, **kwargs)
    before = module.model.head.weight.detach().clone()
    data = [(torch.randn(4, 3, 16, 16), torch.randint(0, 3, (4,))) for _ in range(2)]
    trainer = _fit(module, data)
    assert not torch.equal(before, module.model.head.weight)
    assert "train/loss" in trainer.callback_metrics
    if kwargs.get("droppos_weight"):
        assert "train/droppos" in trainer.callback_metrics


def test_multi_resolution_step_logs_consistency():
    torch.manual_seed(2)
    module = ClassifierModule(pe="glpe", size="micro", img_size=16, num_classes=3)
    data = [((torch.randn(4, 3, 16, 16), torch.randn(4, 3, 12, 12), torch.randn(4, 3, 8, 8)),
             torch.randint(0, 3, (4,))) for _ in range(2)]
    trainer = _fit(module, data)
    assert trainer.callback_metrics["train/consistency"] > 0


def test_optimizer_groups_follow_no_weight_decay():
    module = ClassifierModule(pe="rope-mixed", size="micro", img_size=16, num_classes=3)
    _fit(module, [(torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))], steps=1)
    decay, plain = module.trainer.optimizers[0].param_groups
    assert decay["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert any(p is module.model.pe.freqs for p in plain["params"])
    assert any(p is module.model.blocks[0].attn.qkv.weight for p in decay["params"])
    assert len(decay["params"]) + len(plain["params"]) == len(list(module.parameters()))


def test_errors():
    with pytest.raises(ValueError, match="pe=None"):
        ClassifierModule(pe=None, size="micro", img_size=16)
    with pytest.raises(ValueError, match="droppos_ratio"):
        ClassifierModule(pe="sincos", size="micro", img_size=16, droppos_weight=1.0, droppos_ratio=0.0)
    module = ClassifierModule(pe="sincos", size="micro", img_size=16, droppos_weight=1.0, num_classes=3)
    data = [(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))]
    with pytest.raises(ValueError, match="single resolution"):
        _fit(module, data, steps=1)
