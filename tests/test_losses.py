from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sweeps.losses import batch_hard_triplet, infonce, supcon


def test_supcon_hand_computed():
    # Three unit vectors: 0 and 1 share a label, 2 is alone (an anchor without positives is skipped).
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    t = 0.5
    sims = emb @ emb.T / t
    # anchor 0: log softmax over {1, 2} at 1; anchor 1: over {0, 2} at 0
    l0 = -(sims[0, 1] - torch.logsumexp(sims[0, [1, 2]], 0))
    l1 = -(sims[1, 0] - torch.logsumexp(sims[1, [0, 2]], 0))
    expected = (l0 + l1) / 2
    assert supcon(emb, labels, temperature=t).item() == pytest.approx(expected.item(), rel=1e-6)


def test_supcon_without_positives_is_zero_and_differentiable():
    emb = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    loss = supcon(emb, torch.arange(4), temperature=0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None


def test_infonce_equals_clip_loss_for_distinct_documents():
    q, d = F.normalize(torch.randn(5, 8), dim=1), F.normalize(torch.randn(5, 8), dim=1)
    logits = q @ d.T / 0.07
    target = torch.arange(5)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert infonce(q, d, torch.arange(5), temperature=0.07).item() == pytest.approx(clip.item(), rel=1e-5)


def test_infonce_treats_shared_documents_as_positives():
    # Two captions of the same image, perfectly aligned: both documents are positives, nothing to push away.
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    d = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = infonce(q, d, torch.tensor([7, 7]), temperature=0.1)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # With distinct ids the same batch is maximally confusing: log 2 in each direction.
    assert infonce(q, d, torch.tensor([1, 2]), temperature=0.1).item() == pytest.approx(math.log(2), rel=1e-6)


def test_batch_hard_triplet_hand_computed():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = batch_hard_triplet(emb, labels, margin=0.2)
    # anchor 0: pos dist 0.4, hardest neg dist 1.0 -> 0; anchor 1: pos 0.4, neg 1-0.8=0.2 -> 0.4
    # anchor 2: pos dist 1.0 (to 3), hardest neg 1-0.8=0.2 -> 1.0; anchor 3: pos 1.0, neg 1-(-0.6)=1.6 -> 0
    assert loss.item() == pytest.approx((0 + 0.4 + 1.0 + 0) / 4, rel=1e-6)


def test_batch_hard_triplet_skips_anchors_without_a_positive_and_never_nans():
    # anchor 2 (label 1) has no positive: it is left out of the mean, and its infinities never reach a gradient.
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]).requires_grad_()
    loss = batch_hard_triplet(emb, torch.tensor([0, 0, 1]), margin=0.2)
    # anchor 0: pos 0.4, hardest neg 1.0 -> 0; anchor 1: pos 0.4, hardest neg 0.2 -> 0.4
    assert loss.item() == pytest.approx((0 + 0.4) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(emb.grad).all()
    singletons = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    zero = batch_hard_triplet(singletons, torch.arange(4))
    zero.backward()
    assert zero.item() == 0.0 and torch.isfinite(singletons.grad).all()


@pytest.mark.parametrize("name", ["supcon", "infonce", "batch_hard_triplet"])
def test_losses_never_read_a_device_value_on_the_host(name):
    # `if t.any():` or `x[mask]` would make every training step wait for the GPU (a host sync). Dynamo with
    # fullgraph=True refuses exactly those data-dependent steps, so this checks it on the CPU.
    emb = F.normalize(torch.randn(6, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    losses = {
        "supcon": lambda: supcon(emb, labels, temperature=0.1),
        "infonce": lambda: infonce(emb, emb.flip(0), labels, temperature=0.1),
        "batch_hard_triplet": lambda: batch_hard_triplet(emb, labels),
    }
    torch._dynamo.reset()
    compiled = torch.compile(losses[name], fullgraph=True, backend="eager")
    assert compiled().item() == pytest.approx(losses[name]().item(), rel=1e-6)


def test_supcon_one_label_batch_is_zero():
    # Positives but no negative: nothing to contrast, so no anchor counts (the loss would only push the
    # label's items apart). The batcher avoids such batches too (test_data_split).
    emb = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    loss = supcon(emb, torch.zeros(4, dtype=torch.long), temperature=0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(emb.grad == 0)


@pytest.mark.parametrize("name", ["supcon", "infonce", "batch_hard_triplet"])
def test_losses_compute_in_fp32_inside_autocast(name):
    # The trainer calls the losses inside the towers' bf16 autocast region. Near convergence (cosines ~0.9,
    # scores ~18 at temperature 0.05) a bf16 score matrix changes the loss; the losses must switch it off.
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 64, generator=g), dim=1)
    labels = torch.arange(16) % 4
    emb = F.normalize(centres[labels] + 0.15 * torch.randn(16, 64, generator=g), dim=1)
    losses = {
        "supcon": lambda: supcon(emb, labels, temperature=0.05),
        "infonce": lambda: infonce(emb, emb.roll(1, 0), labels, temperature=0.05),
        "batch_hard_triplet": lambda: batch_hard_triplet(emb, labels),
    }
    expected = losses[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = losses[name]()
    assert got.dtype == torch.float32
    assert got.item() == expected.item()
