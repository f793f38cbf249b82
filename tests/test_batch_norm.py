"""Batch normalisation after a conv layer's pooling (`conv.norm: batch`, CwComp's layer): the
reference by hand, its gradients against central differences, torch's BatchNorm2d as an
independent oracle, and the spec's normal form and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import registry
from ffbench.reference import bp as RB
from ffbench.reference import conv as RC
from ffbench.reference import ff as RF
from ffbench.reference.finite_diff import central_difference
from ffbench.reference.init import bp_init, ff_init
from ffbench.spec import parse_trial, trial_id

BASE = {"algorithm": "ff", "backend": "torch", "seed": 0, "epochs": 1, "batch_size": 8,
        "ff": {"objective": "cwc", "negatives": "none", "norm": "none"}}
NET = {"channels": [10, 20], "groups": [1, 10], "pool": ["none", "max"], "norm": "batch", "bn_eps": 1e-4}


def _trial(**conv):
    return parse_trial({**BASE, "conv": {**NET, **conv}})


def test_batch_statistics_by_hand():
    # one channel, 2 images of 1 x 2: values 1, 3, 5, 7 -> mean 4, biased variance 5, unbiased 20/3
    a = np.array([1.0, 3.0, 5.0, 7.0]).reshape(2, 1, 1, 2)
    y, _, m, v = RC.batch_norm(a, np.array([2.0]), np.array([0.5]), 0.0)
    np.testing.assert_allclose(y.reshape(-1), 2.0 * (np.array([1, 3, 5, 7]) - 4.0) / np.sqrt(5.0) + 0.5)
    assert m[0] == 4.0 and v[0] == pytest.approx(20.0 / 3.0)
    r = RC.running_update(np.array([[0.0], [1.0]]), m, v, 0.1)
    np.testing.assert_allclose(r, [[0.4], [0.9 + 0.1 * 20.0 / 3.0]])
    frozen = RC.batch_norm_frozen(a, np.array([2.0]), np.array([0.5]), np.array([1.0]), np.array([4.0]), 0.0)
    np.testing.assert_allclose(frozen.reshape(-1), 2.0 * (np.array([1, 3, 5, 7]) - 1.0) / 2.0 + 0.5)
    with pytest.raises(ValueError, match="more than one value per channel"):
        RC.batch_norm(a[:1, :, :, :1], np.ones(1), np.zeros(1), 1e-5)


def test_batch_norm_gradients_equal_central_differences():
    g = np.random.default_rng(0)
    a, gamma, beta, dy = g.standard_normal((3, 2, 2, 3)), g.random(2) + 0.5, g.standard_normal(2), g.standard_normal((3, 2, 2, 3))
    _, cache, _, _ = RC.batch_norm(a, gamma, beta, 1e-3)
    da, dgamma, dbeta = RC.batch_norm_backward(dy, cache, gamma)
    loss = lambda a_, g_, b_: float((RC.batch_norm(a_, g_, b_, 1e-3)[0] * dy).sum())  # noqa: E731
    np.testing.assert_allclose(da, central_difference(lambda v: loss(v, gamma, beta), a), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dgamma, central_difference(lambda v: loss(a, v, beta), gamma), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dbeta, central_difference(lambda v: loss(a, gamma, v), beta), rtol=1e-6, atol=1e-8)


def test_a_layer_step_differentiates_through_the_batch_statistics():
    t = _trial()
    g = np.random.default_rng(1)
    x, y = g.random((8, 784)), g.integers(0, 10, 8)
    w, b, gamma, beta = (p.astype(np.float64) for p in ff_init(0, 784, t.hidden, t.ff)[0])
    gamma, beta = gamma + g.standard_normal(10) * 0.1, beta + g.standard_normal(10) * 0.1
    ff = t.ff
    st = RF.layer_step(x, x[:0], w, b, ff, None, 0, y, (gamma, beta))
    assert len(st.grads) == 4 and st.running_mean.shape == (2, 10)

    def obj(w_=w, b_=b, g_=gamma, be_=beta):
        return RF.layer_objective(x, x[:0], w_, b_, ff, None, 0, y, (g_, be_))
    at = np.argsort(-np.abs(st.dw).reshape(-1))[:12]
    np.testing.assert_allclose(st.dw.reshape(-1)[at], central_difference(lambda v: obj(w_=v), w, at), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(st.db, central_difference(lambda v: obj(b_=v), b), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(st.dbn[0], central_difference(lambda v: obj(g_=v), gamma), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(st.dbn[1], central_difference(lambda v: obj(be_=v), beta), rtol=1e-5, atol=1e-9)
    # its output is its batch's normalised map: every channel has mean beta and variance gamma^2 (+ eps)
    maps = st.h_pos.reshape(8, 10, 28, 28)
    np.testing.assert_allclose(maps.mean(axis=(0, 2, 3)), beta, atol=1e-10)
    v = _var(x, w, b)
    np.testing.assert_allclose(maps.var(axis=(0, 2, 3)), gamma ** 2 * v / (v + 1e-4), rtol=1e-8)


def _var(x, w, b):
    z = RC.conv2d(x.reshape(8, 1, 28, 28), w, b, 1, 1, 1)
    return np.maximum(z, 0).var(axis=(0, 2, 3))


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_the_reference_layer_is_torchs_conv_relu_pool_batchnorm2d():
    import torch

    t = _trial()
    g = np.random.default_rng(2)
    x = g.random((6, 784))
    (w0, b0, g0, be0), (w1, b1, g1, be1) = [tuple(p.astype(np.float64) for p in q) for q in ff_init(0, 784, t.hidden, t.ff)]
    g1, be1 = g1 * 1.5, be1 + 0.25
    conv = torch.nn.Conv2d(10, 20, 3, padding=1, groups=10).double()
    bn = torch.nn.BatchNorm2d(20, eps=1e-4).double()
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(w1)), conv.bias.copy_(torch.as_tensor(b1))
        bn.weight.copy_(torch.as_tensor(g1)), bn.bias.copy_(torch.as_tensor(be1))
    h0 = RF.layer_forward(x, w0, b0, t.ff, 0, (g0, be0, None))[2]  # layer 0 frozen at its initial statistics
    inp = torch.as_tensor(h0.reshape(6, 10, 28, 28), dtype=torch.float64).requires_grad_(True)
    out = bn(torch.nn.functional.max_pool2d(torch.relu(conv(inp)), 2))  # training mode: the batch's statistics
    st = RF.layer_step(h0, h0[:0], w1, b1, t.ff, None, 1, g.integers(0, 10, 6), (g1, be1))
    np.testing.assert_allclose(st.h_pos, out.detach().numpy().reshape(6, -1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(st.running_mean, np.stack([bn.running_mean.numpy(), bn.running_var.numpy()]), rtol=1e-10)
    bn.eval()  # evaluation: the running statistics
    frozen = RF.layer_forward(h0, w1, b1, t.ff, 1, (g1, be1, st.running_mean))[2]
    want = bn(torch.nn.functional.max_pool2d(torch.relu(conv(inp)), 2)).detach().numpy().reshape(6, -1)
    np.testing.assert_allclose(frozen, want, rtol=1e-10, atol=1e-12)


def test_normal_form_and_identity():
    base = parse_trial({**BASE, "conv": {"channels": [10, 20]}})
    none = parse_trial({**BASE, "conv": {"channels": [10, 20], "norm": "none"}})
    assert none.conv.norm is None and trial_id(none, "x") == trial_id(base, "x")  # no batch norm: the id it always had
    one, listed = _trial(), _trial(norm=["batch", "batch"])
    assert one.conv.norm == ["batch", "batch"] and trial_id(one, "x") == trial_id(listed, "x") != trial_id(base, "x")
    assert trial_id(_trial(bn_eps=1e-5), "x") != trial_id(one, "x")
    layers = one.conv_layers()
    assert [lay.batch_norm for lay in layers] == [True, True] and layers[0].bn_eps == 1e-4
    assert [len(p) for p in ff_init(0, 784, one.hidden, one.ff)] == [4, 4]
    mixed = _trial(norm=["none", "batch"])
    assert [len(p) for p in ff_init(0, 784, mixed.hidden, mixed.ff)] == [2, 4]
    running = RF.initial_running(mixed.ff, mixed.hidden)
    assert running[0].shape == (10 * 28 * 28,) and np.array_equal(running[1], [[0.0] * 20, [1.0] * 20])


@pytest.mark.parametrize("change, message", [
    ({"conv": {**NET, "norm": ["batch"]}}, "norm: expected one value per layer"),
    ({"conv": {**NET, "norm": "layer"}}, "Input should be 'none' or 'batch'"),
    ({"conv": {**NET, "bn_eps": 0}}, "greater than 0"),
    ({"ff": {"negatives": "hard_label", "norm": "none"}}, "with conv.norm: batch"),
])
def test_refusals(change, message):
    raw = {**BASE, "conv": NET, **change}
    if raw.get("ff") is None:
        raw.pop("ff")
    with pytest.raises(ValueError, match=message):
        parse_trial(raw)


def _bp_twin():
    bp = {k: v for k, v in BASE.items() if k != "ff"}
    t = parse_trial({**bp, "algorithm": "bp", "conv": {**NET, "norm": ["batch", "none"]}})
    g = np.random.default_rng(3)
    params = [tuple(a.astype(np.float64) for a in p) for p in bp_init(t, 784, 10)]
    params[0] = (*params[0][:2], params[0][2] * 1.5, params[0][3] + 0.25)  # gamma, beta away from 1, 0
    return t, params, g.random((6, 784)), g.integers(0, 10, 6)


def test_bp_twin_gradients_through_the_batch_statistics_equal_central_differences():
    t, params, x, y = _bp_twin()
    layers = t.conv_layers()
    assert [len(p) for p in params] == [4, 2, 2]  # batch-normalised layer 0, plain layer 1, the dense output
    loss, grads, running = RB.loss_and_grads(x, y, params, conv=layers)
    assert running[1] is None and running[0].shape == (2, 10)

    def f(v, i, slot):
        pp = [list(p) for p in params]
        pp[i][slot] = v
        return RB.loss_and_grads(x, y, [tuple(p) for p in pp], conv=layers)[0]
    for i, p in enumerate(params):
        for slot, a in enumerate(p):
            at = np.argsort(-np.abs(grads[i][slot]).reshape(-1))[:10]
            fd = central_difference(lambda v, i=i, s=slot: f(v, i, s), a, at)
            np.testing.assert_allclose(grads[i][slot].reshape(-1)[at], fd, rtol=1e-5, atol=1e-9, err_msg=f"layer {i} slot {slot}")


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_the_bp_twin_is_torchs_conv_bn_net_in_training_and_evaluation():
    """torch.nn modules (Conv2d, BatchNorm2d, max pooling, Linear) in float64 as an independent
    oracle of `reference.bp`: the step's loss, every gradient, the running statistics, and the
    evaluated logits on those statistics."""
    import torch

    t, params, x, y = _bp_twin()
    (w0, b0, g0, be0), (w1, b1), (wo, bo) = params
    c0, bn, c1 = torch.nn.Conv2d(1, 10, 3, padding=1).double(), torch.nn.BatchNorm2d(10, eps=1e-4).double(), \
        torch.nn.Conv2d(10, 20, 3, padding=1, groups=10).double()
    out = torch.nn.Linear(wo.shape[1], 10).double()
    with torch.no_grad():
        for m, vals in ((c0, (w0, b0)), (bn, (g0, be0)), (c1, (w1, b1)), (out, (wo, bo))):
            m.weight.copy_(torch.as_tensor(vals[0])), m.bias.copy_(torch.as_tensor(vals[1]))
    net = lambda v: out(torch.nn.functional.max_pool2d(torch.relu(c1(bn(torch.relu(c0(v))))), 2).flatten(1))  # noqa: E731
    inp = torch.as_tensor(x.reshape(6, 1, 28, 28))
    loss = torch.nn.functional.cross_entropy(net(inp), torch.as_tensor(y))
    loss.backward()
    ref_loss, grads, running = RB.loss_and_grads(x, y, params, conv=t.conv_layers())
    assert ref_loss == pytest.approx(loss.item(), rel=1e-12)
    want = [(c0.weight, c0.bias, bn.weight, bn.bias), (c1.weight, c1.bias), (out.weight, out.bias)]
    for got, ws in zip(grads, want):
        for g_, w_ in zip(got, ws):
            np.testing.assert_allclose(g_, w_.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(running[0], np.stack([bn.running_mean.numpy(), bn.running_var.numpy()]), rtol=1e-10)
    bn.eval()
    evaluated = RB.forward(x, params, conv=t.conv_layers(), running=running)[0]
    np.testing.assert_allclose(evaluated, net(inp).detach().numpy(), rtol=1e-10, atol=1e-12)
    assert not np.allclose(evaluated, RB.forward(x, params, conv=t.conv_layers())[0])  # the initial statistics differ
