"""CwComp's channel-wise competitive objective (`cwc`) and the strategy of no negative data
(`none`): the reference by hand, its gradient against central differences, its refusals, its
label-free prediction, and one backend's training against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import registry
from ffbench.parity import compare_trained, dataset, ref_train, train
from ffbench.reference import ff as RF
from ffbench.reference.finite_diff import central_difference
from ffbench.reference.init import ff_init
from ffbench.spec import FFSpec, parse_trial
from ffbench.variants import OBJECTIVES

CWC = OBJECTIVES.get("cwc")
BASE = {"algorithm": "ff", "backend": "torch", "seed": 0, "epochs": 1, "batch_size": 8,
        "ff": {"objective": "cwc", "negatives": "none", "norm": "none"}}


def _ff(**kw) -> FFSpec:
    return parse_trial({**BASE, "hidden": [20], **kw}).ff


def test_class_groups_by_hand():
    # 2 rows of 20 units: group k is units 2k and 2k+1, its goodness the mean of their squares
    h = np.zeros((2, 20))
    h[0, 4:6] = [1.0, 3.0]  # group 2 of row 0: (1 + 9) / 2 = 5
    h[1, 18] = 2.0  # group 9 of row 1: 4 / 2 = 2
    gf = CWC.class_scores(h, _ff(), None)
    want = np.zeros((2, 10))
    want[0, 2], want[1, 9] = 5.0, 2.0
    np.testing.assert_array_equal(gf, want)
    # the loss is the cross-entropy of gf against the labels: row 0 labelled 2, row 1 labelled 0
    ce = [np.log(9 + np.exp(5.0)) - 5.0, np.log(9 + np.exp(2.0)) - 0.0]
    assert CWC.loss(h, 2, _ff(), None, 784, labels=np.array([2, 0])) == pytest.approx(np.mean(ce), rel=1e-12)
    assert np.allclose(CWC.goodness(h, _ff(), None), [10 / 20, 4 / 20])


def test_class_groups_of_a_conv_map_are_its_channel_groups():
    # a flat C x H x W row: group k is channels k*C/10 ... (k+1)*C/10 - 1, over every position
    g = np.random.default_rng(0)
    maps = g.standard_normal((3, 20, 4, 4))
    gf = CWC.class_scores(maps.reshape(3, -1), _ff(), None)
    want = np.stack([(maps[:, 2 * k:2 * k + 2] ** 2).mean(axis=(1, 2, 3)) for k in range(10)], axis=1)
    np.testing.assert_allclose(gf, want, rtol=1e-12)


def test_gradient_equals_central_differences():
    g = np.random.default_rng(1)
    h, y = g.random((6, 30)), g.integers(0, 10, 6)
    ff = _ff(hidden=[30])
    exact = CWC.grad_h(h, 6, ff, None, 784, labels=y)
    fd = central_difference(lambda v: CWC.loss(v, 6, ff, None, 784, labels=y), h)
    np.testing.assert_allclose(exact, fd, rtol=1e-6, atol=1e-8)  # central differences: ~1e-10 noise


def test_a_layer_step_of_positives_alone_and_its_gradient():
    g = np.random.default_rng(2)
    x, y = g.random((8, 784)), g.integers(0, 10, 8)
    w, b = g.standard_normal((20, 784)) * 0.05, g.standard_normal(20) * 0.05
    ff = _ff()
    st = RF.layer_step(x, x[:0], w, b, ff, None, 0, y)
    assert st.g_neg.shape == (0,) and st.h_neg.shape == (0, 20)
    fd_w = central_difference(lambda v: RF.layer_objective(x, x[:0], v, b, ff, None, 0, y), w)
    np.testing.assert_allclose(st.dw, fd_w, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("change, message", [
    ({"ff": {"objective": "cwc", "negatives": "wrong_label"}}, "ff.objective: cwc needs ff.negatives: none"),
    ({"ff": {"negatives": "none"}}, "ff.negatives: none leaves ff.objective: logistic nothing to contrast"),
    ({"hidden": [24]}, "cwc splits each layer's units into 10 class groups: [24] are not multiples of 10"),
    ({"hidden": None, "conv": {"channels": [10, 15]}}, "channels into 10 class groups: [15]"),
    ({"ff": {**BASE["ff"], "threshold": 3.0}}, "ff.threshold does not apply to ff.objective: cwc"),
])
def test_refusals(change, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_trial({**BASE, "hidden": [20], **change})


def test_prediction_is_the_argmax_of_the_summed_class_groups_of_one_label_free_pass():
    g = np.random.default_rng(3)
    x = g.random((5, 784))
    params = [(g.standard_normal((20, 784)) * 0.05, np.zeros(20)), (g.standard_normal((30, 20)) * 0.3, np.zeros(30))]
    ff = parse_trial({**BASE, "hidden": [20, 30], "ff": {**BASE["ff"], "prediction_layers": [1]}}).ff
    h1 = np.maximum(np.maximum(x @ params[0][0].T, 0) @ params[1][0].T, 0)
    want = (h1 ** 2).reshape(5, 10, 3).mean(axis=2).argmax(axis=1)
    np.testing.assert_array_equal(RF.predict(x, params, ff), want)
    both = parse_trial({**BASE, "hidden": [20, 30]}).ff  # default: every layer's class scores, summed
    h0 = np.maximum(x @ params[0][0].T, 0)
    summed = (h0 ** 2).reshape(5, 10, 2).mean(axis=2) + (h1 ** 2).reshape(5, 10, 3).mean(axis=2)
    np.testing.assert_array_equal(RF.predict(x, params, both), summed.argmax(axis=1))


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_torch_trains_a_conv_net_with_no_negatives_as_the_reference_does():
    # CwComp's shape in small: grouped channels (groups 10 on the second layer), max pooling,
    # per-layer CwC losses, no input normalisation; two epochs of Adam through the real trainer
    g = np.random.default_rng(4)
    x, y = g.random((48, 784), dtype=np.float32), g.integers(0, 10, 48)
    t = parse_trial({**BASE, "hidden": None, "epochs": 2, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.01},
                     "conv": {"channels": [10, 20], "groups": [1, 10], "pool": ["none", "max"]}})
    out = []
    compare_trained(out, registry.load("torch"), "torch", "cwc", t, x, y)
    assert out and all(c.passed for c in out), [c for c in out if not c.passed]
    # it learnt: the trained weights moved from the initial ones
    trained, init = ref_train(t, x, y), ff_init(t.seed, 784, t.hidden, t.ff)
    assert all(np.abs(tw - iw).max() > 1e-3 for (tw, _), (iw, _) in zip(trained, init))
    state = train(registry.load("torch"), t, x, y)
    backend_tr = registry.load("torch").trainer(t, dataset(x, y))
    backend_tr.load_state(state)
    got = np.asarray(backend_tr.predict(backend_tr.splits["test"][0]))
    params = [(state[f"W{i}"].astype(np.float64), state[f"b{i}"].astype(np.float64)) for i in range(2)]
    np.testing.assert_array_equal(got, RF.predict(x.astype(np.float64), params, t.ff))
