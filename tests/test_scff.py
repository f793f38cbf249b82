"""Self-Contrastive FF (SCFF): its pairs (`self_contrastive`), its shared-weight layer on a pair,
standardised layer inputs (`ff.norm: std`), triangle activities (`ff.activation`) and its
two-threshold loss (`scff`), by hand and against the authors' layer written in torch as their
ContrastFF_MNIST.py writes it (`Layer.forward`, `stdnorm`, `triangle`, `loss1`)."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import registry
from ffbench.geometry import MNIST
from ffbench.reference import ff as RF
from ffbench.reference import negatives as RN
from ffbench.reference import rng
from ffbench.reference.finite_diff import central_difference
from ffbench.spec import parse_trial
from ffbench.variants import NEGATIVES, OBJECTIVES

SCFF = {"negatives": "self_contrastive", "norm": "std", "norm_eps": 1e-10, "activation": "triangle", "objective": "scff",
        "objective_params": {"pos_threshold": [4, 1], "neg_threshold": [6, 1], "penalty": [1e-4, 0]},
        "prediction": "softmax", "prediction_layers": [0, 1], "readout_phase": "after", "readout_epochs": 1}
BASE = {"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [20, 12], "epochs": 2, "batch_size": 8, "ff": SCFF}


def test_view_shifts_are_torchvisions_rounded_uniform():
    """RandomAffine(translate=2/28) on 28 px: round(U(-2, 2)), so -2 and 2 with 1/8 each, -1, 0, 1 with 1/4."""
    dy, dx = RN.view_shifts(rng.stream_key(0, rng.STREAM_MASK, 0), np.arange(200_000), 0, 2)
    for d in (dy, dx):
        freq = np.bincount(d + 2, minlength=5) / len(d)
        np.testing.assert_allclose(freq, [1 / 8, 1 / 4, 1 / 4, 1 / 4, 1 / 8], atol=4e-3)
    assert abs(np.corrcoef(dy, dx)[0, 1]) < 0.01  # the two axes draw independently
    other = RN.view_shifts(rng.stream_key(0, rng.STREAM_MASK, 0), np.arange(200_000), 1, 2)[0]
    assert np.mean(other == dy) < 0.3  # the second view is another draw (1/4+1/16+... = 0.22 by chance)
    assert not np.any(RN.view_shifts(7, np.arange(100), 0, 0)[0])  # max_shift 0: the image as it is


def test_pairing_offsets_pair_each_position_with_another_of_its_batch():
    t = parse_trial(BASE)
    batches = [np.arange(8) + 10 * s for s in range(50)]
    partners = NEGATIVES.get("self_contrastive").sample_by_position(t, None, 3, batches)
    k = RN.pair_offsets(0, 3, 50, 8)
    assert k.min() >= 1 and k.max() <= 7 and len(set(k.tolist())) == 7  # 1..B-1, all of them drawn
    for idx, p, k_s in zip(batches, partners, k):
        np.testing.assert_array_equal(p, idx[(np.arange(8) + k_s) % 8])
        assert not np.any(p == idx)


def test_the_pairs_by_hand():
    t = parse_trial({**BASE, "ff": {**SCFF, "negatives_params": {"max_shift": 0}}})  # no shift: the views are the images
    g = np.random.default_rng(0)
    x, idx = g.random((6, 784)), np.arange(6)
    std = lambda v: (v - v.mean(1, keepdims=True)) / (v.std(1, ddof=1, keepdims=True) + 1e-10)  # noqa: E731
    strat = NEGATIVES.get("self_contrastive")
    np.testing.assert_allclose(strat.positive_inputs(t, x, x, idx, 0), np.hstack([std(x), std(x)]), rtol=1e-12)
    neg = np.array([3, 4, 5, 0, 1, 2])
    np.testing.assert_allclose(strat.inputs(t, x, x, idx, neg, 0), np.hstack([std(x), std(x[neg])]), rtol=1e-12)
    np.testing.assert_allclose(RF.eval_rows(x, t.ff), np.hstack([std(x), std(x)]), rtol=1e-12)
    shifted = parse_trial(BASE)  # max_shift 2: each view its own shift, zeros shifted in before standardising
    v0 = strat.positive_inputs(shifted, x, x, idx, 0)[:, :784]
    dy, dx = RN.view_shifts(rng.stream_key(0, rng.STREAM_MASK, 0), idx, 0, 2)
    from ffbench.reference.augment import shift_images
    np.testing.assert_allclose(v0, std(shift_images(x, dy, dx, MNIST)), rtol=1e-12)


def _authors_layer(torch, x, w, b, concat: bool):
    """ContrastFF_MNIST.py's `Layer.forward` (norm: `standardnorm(dims=[1])`): z, and its `triangle` activity."""
    xd = x - torch.mean(x, dim=1, keepdim=True)
    xd = xd / (1e-10 + torch.std(xd, dim=1, keepdim=True))
    if concat:
        d = x.size(1) // 2
        z = torch.mm(xd[:, :d], w.T) + torch.mm(xd[:, d:], w.T) + 2 * b
    else:
        z = torch.mm(xd, w.T) + b
    return z, torch.relu(z - torch.mean(z, dim=1, keepdim=True))


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
@pytest.mark.parametrize("layer", [0, 1])
def test_a_layer_step_is_the_authors_layer_and_loss(layer):
    """Their layer and `loss1` (a = b = 1) in float64 torch autograd as an independent oracle:
    goodness, loss, dW and db of the reference's `layer_step`, and its output (triangle)."""
    import torch

    t = parse_trial(BASE)
    g = np.random.default_rng(layer)
    d_in = 784 if layer == 0 else 20
    width = 2 * d_in if layer == 0 else d_in  # layer 0 reads pairs
    x_pos, x_neg = g.normal(size=(8, width)), g.normal(size=(8, width))
    w, b = g.normal(size=(20 if layer == 0 else 12, d_in)) * 0.05, g.normal(size=(20 if layer == 0 else 12,)) * 0.1
    th1, th2, lam = [(4.0, 6.0, 1e-4), (1.0, 1.0, 0.0)][layer]
    st = RF.layer_step(x_pos, x_neg, w, b, t.ff, None, layer)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    zp, hp = _authors_layer(torch, torch.tensor(x_pos), wt, bt, layer == 0)
    zn, hn = _authors_layer(torch, torch.tensor(x_neg), wt, bt, layer == 0)
    gp, gn = torch.relu(zp).pow(2).mean([1]), torch.relu(zn).pow(2).mean([1])
    loss = (torch.log(1 + torch.exp(-gp + th1)).mean() + torch.log(1 + torch.exp(gn - th2)).mean()
            + lam * torch.norm(gp[:, None], p=2, dim=1).mean())
    loss.backward()
    assert st.loss == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(st.g_pos, gp.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(st.dw, wt.grad.numpy(), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(st.db, bt.grad.numpy(), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(st.h_pos, hp.detach().numpy(), rtol=1e-12, atol=1e-14)  # what it passes on
    np.testing.assert_allclose(st.h_neg, hn.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_the_scff_gradient_is_the_derivative_of_its_loss():
    obj, ff = OBJECTIVES.get("scff"), parse_trial(BASE).ff
    p = obj.params(ff.objective_params)
    h = np.abs(np.random.default_rng(3).normal(size=(10, 7))) * 1.5
    for layer in (0, 1):
        got = obj.grad_h(h, 4, ff, p, 0, layer=layer)  # 4 positives, 6 negatives: each half's own mean
        want = central_difference(lambda v, layer=layer: obj.loss(v, 4, ff, p, 0, layer=layer), h)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10)
    g = (h * h).mean(1)
    by_hand = np.log1p(np.exp(1 - g[:4])).mean() + np.log1p(np.exp(g[4:] - 1)).mean()  # layer 1: 1, 1, lamda 0
    assert obj.loss(h, 4, ff, p, 0, layer=1) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("change, message", [
    ({"data": {"jitter": 2}}, "data.jitter must be 0"),
    ({"ff": {**SCFF, "readout_phase": "joint", "readout_epochs": None}}, "ff.readout_phase must be after"),
    ({"hidden": None, "conv": {"channels": [4, 6]}}, "conv must be None"),
    ({"ff": {**SCFF, "negatives": "wrong_label", "prediction": "goodness", "prediction_layers": None, "readout_phase": "joint",
             "readout_epochs": None}}, "triangle is defined on feed-forward dense layers read by a softmax"),
    ({"ff": {**SCFF, "objective_params": {"pos_threshold": [4, 1, 1]}}}, "one per layer \\(2\\); got 3"),
    ({"ff": {**SCFF, "negatives": "wrong_label", "activation": "relu", "prediction": "goodness", "prediction_layers": None,
             "readout_phase": "joint", "readout_epochs": None, "objective_params": None}}, None),
])
def test_refusals(change, message):
    raw = {**BASE, **change}
    if message is None:
        parse_trial(raw)  # scff's loss on its own, with any negatives
        return
    with pytest.raises(ValueError, match=message):
        parse_trial(raw)
