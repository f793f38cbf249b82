"""The NumPy reference against hand-computed values and finite differences."""

import math

import numpy as np
import pytest

from ffbench.geometry import MNIST, Geometry
from ffbench.reference import bp, ff, optim
from ffbench.spec import FFSpec, OptimizerSpec
from ffbench.variants import OBJECTIVES


def test_normalize_by_hand():
    x = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(ff.normalize(x, "l2", 0.0), [[0.6, 0.8]])
    rms = math.sqrt((9 + 16) / 2)
    np.testing.assert_allclose(ff.normalize(x, "rms", 0.0), [[3 / rms, 4 / rms]])
    np.testing.assert_allclose(ff.normalize(x, "l2", 1.0), [[3 / 6, 4 / 6]])  # eps added after the sqrt


def goodness(h, kind):
    return OBJECTIVES.get("logistic").goodness(h, FFSpec(goodness=kind), None)


def test_goodness_by_hand():
    h = np.array([[1.0, 2.0, 2.0, 0.0]])
    assert goodness(h, "sum")[0] == 9.0
    assert goodness(h, "mean")[0] == 2.25


def test_overlay_by_hand():
    x = np.full((3, 12), 0.5)
    x[1, 11] = 2.0
    spec = FFSpec()
    out = ff.overlay(x, np.array([0, 9, 3]), spec)
    assert out[0, :10].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert out[1, 9] == 1 and out[1, :9].sum() == 0
    assert (out[:, 10:] == x[:, 10:]).all()
    neutral = ff.overlay(x, None, spec)
    assert np.allclose(neutral[:, :10], 0.1)
    img_max = ff.overlay(x, np.array([0, 9, 3]), FFSpec(label_on_mode="image_max", label_on=2.0))
    assert img_max[1, 9] == 4.0 and img_max[0, 0] == 1.0
    assert (ff.overlay(x, np.array([0, 9, 3]), spec).argmax(axis=1)[[0, 2]] == [0, 3]).all()


def test_loss_is_log2_at_the_threshold_and_signed():
    # A zero layer gives goodness 0: with threshold 0, logit 0, the loss is log 2.
    x = np.ones((4, 5))
    w, b = np.zeros((3, 5)), np.zeros(3)
    st = ff.layer_step(x, x, w, b, FFSpec(threshold=0.0))
    assert st.loss == pytest.approx(math.log(2))
    # goodness 0 < threshold 1: positives cost softplus(1), negatives softplus(-1)
    st = ff.layer_step(x, x, w, b, FFSpec(threshold=1.0))
    assert st.loss == pytest.approx((math.log1p(math.e) + math.log1p(1 / math.e)) / 2)
    # min_ssq flips which side pays: the same number by symmetry of the two halves
    st2 = ff.layer_step(x, x, w, b, FFSpec(threshold=1.0, sign="min_ssq"))
    assert st2.loss == pytest.approx(st.loss)
    # threshold_scale: input_width (the JAX example): 0.2 x 5 inputs = 1, the same as threshold 1
    st3 = ff.layer_step(x, x, w, b, FFSpec(threshold=0.2, threshold_scale="input_width"))
    assert st3.loss == pytest.approx(st.loss)


def test_local_mask_by_hand_and_no_influence_from_outside_the_field():
    m = ff.local_mask(2 * 784, 784, 3, MNIST)
    # the unit at pixel (0, 0) sees the 2x2 corner (cut at the border); at (5, 7) the 3x3 window
    assert sorted(np.flatnonzero(m[0])) == [0, 1, 28, 29]
    assert sorted(np.flatnonzero(m[5 * 28 + 7])) == [r * 28 + c for r in (4, 5, 6) for c in (6, 7, 8)]
    np.testing.assert_array_equal(m[784:], m[:784])  # the second unit per location: the same field
    assert ff.local_mask(784, 1568, 3, MNIST)[0].sum() == 8  # an input of 2 units per location: both seen
    # a unit's pre-activation ignores inputs outside its window (swapping two far pixels keeps the
    # input's norm), while a dense layer's does not; its weight gradient there is 0
    g = np.random.default_rng(0)
    w, b, x = g.normal(size=(784, 784)), g.normal(size=784), g.random((2, 784))
    x2 = x.copy()
    x2[:, [500, 700]] = x[:, [700, 500]]  # pixels in rows 17 and 25
    for k, differs in ((3, False), (None, True)):
        spec = FFSpec(receptive_field=k).bind_image(MNIST)
        z1, z2 = ff.layer_forward(x, w, b, spec)[1], ff.layer_forward(x2, w, b, spec)[1]
        assert (not np.allclose(z1[:, :12 * 28], z2[:, :12 * 28], rtol=1e-12, atol=0)) == differs  # rows 0-11
    st = ff.layer_step(x, x2, w, b, FFSpec(receptive_field=3).bind_image(MNIST))
    assert not st.dw[0, 2:28].any() and not st.dw[0, 30:].any() and st.dw[0, [0, 1, 28, 29]].all()


def test_local_mask_on_a_non_square_colour_grid_by_hand():
    # a 3-channel 4 x 5 image: input value i sits at pixel i mod 20 (row (i mod 20) // 5, column i mod 5)
    image = Geometry(3, 4, 5)
    m = ff.local_mask(20, 60, 3, image)
    corner = [0, 1, 5, 6]  # pixel (0, 0) sees rows 0-1 and columns 0-1, in every channel
    assert sorted(np.flatnonzero(m[0])) == [c * 20 + p for c in range(3) for p in corner]
    inner = [r * 5 + c for r in (1, 2, 3) for c in (2, 3, 4)]  # pixel (2, 3): rows 1-3, columns 2-4
    assert sorted(np.flatnonzero(m[2 * 5 + 3])) == [ch * 20 + p for ch in range(3) for p in inner]
    with pytest.raises(ValueError, match="FFSpec.image is its trial's dataset geometry"):
        ff.effective_weights(np.ones((20, 60)), FFSpec(receptive_field=3))


def test_label_channels_put_the_label_in_the_first_channel_or_in_every_one():
    image = Geometry(3, 4, 5)
    x = np.arange(2 * 60, dtype=np.float64).reshape(2, 60) + 100
    first = ff.overlay(x, np.array([2, 9]), FFSpec(label_on=5.0).bind_image(image))
    every = ff.overlay(x, np.array([2, 9]), FFSpec(label_on=5.0, label_channels="all").bind_image(image))
    np.testing.assert_array_equal(first[:, 10:], x[:, 10:])
    assert first[0, :10].tolist() == [0, 0, 5, 0, 0, 0, 0, 0, 0, 0] and first[1, 9] == 5
    for ch in range(3):  # values ch*20 .. ch*20 + 9 hold the label, the rest of each channel is the image
        assert every[0, ch * 20: ch * 20 + 10].tolist() == [0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
        np.testing.assert_array_equal(every[:, ch * 20 + 10: ch * 20 + 20], x[:, ch * 20 + 10: ch * 20 + 20])
    neutral = ff.overlay(x, None, FFSpec(label_channels="all").bind_image(image))
    assert (neutral.reshape(2, 3, 20)[:, :, :10] == 0.1).all()


def test_glorot_uniform_init_is_bounded_with_zero_bias():
    from ffbench.reference.init import stack_init
    (w, b), = stack_init(0, [300, 100], "glorot_uniform")
    bound = math.sqrt(6 / 400)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound and not b.any()
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # uniform(-a, a): sd a / sqrt(3)


def _objective(x_pos, x_neg, w, b, spec, r_old):
    st = ff.layer_step(x_pos, x_neg, w, b, spec, r_old)
    return st.loss + spec.peer_weight * st.peer_loss


@pytest.mark.parametrize("kw", [
    {}, {"goodness": "sum", "threshold": 8.0, "norm": "l2"}, {"sign": "min_ssq", "threshold": 0.5},
    {"peer_weight": 0.3, "peer_momentum": 0.7}, {"norm_eps": 1e-4, "goodness": "sum", "threshold": 3.0},
])
def test_layer_gradients_match_finite_differences(kw):
    rng = np.random.default_rng(1)
    spec = FFSpec(**kw)
    x_pos, x_neg = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    w, b = rng.normal(size=(6, 7)), rng.normal(size=6) * 0.3
    r_old = rng.uniform(0.2, 0.8, size=6) if spec.peer_weight else None
    st = ff.layer_step(x_pos, x_neg, w, b, spec, r_old)
    eps = 1e-6
    for (i, j) in [(0, 0), (2, 3), (5, 6), (1, 4)]:
        wp, wm = w.copy(), w.copy()
        wp[i, j] += eps
        wm[i, j] -= eps
        fd = (_objective(x_pos, x_neg, wp, b, spec, r_old) - _objective(x_pos, x_neg, wm, b, spec, r_old)) / (2 * eps)
        assert st.dw[i, j] == pytest.approx(fd, rel=1e-5, abs=1e-9)
    for i in range(6):
        bp_, bm = b.copy(), b.copy()
        bp_[i] += eps
        bm[i] -= eps
        fd = (_objective(x_pos, x_neg, w, bp_, spec, r_old) - _objective(x_pos, x_neg, w, bm, spec, r_old)) / (2 * eps)
        assert st.db[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_straight_through_relu_passes_the_gradient_of_dead_units():
    rng = np.random.default_rng(2)
    x = np.abs(rng.normal(size=(4, 5)))
    w, b = np.abs(rng.normal(size=(3, 5))), np.array([-50.0, 0.0, 0.0])  # unit 0 dead, units 1-2 active on every row
    kw = {"peer_weight": 1.0}
    std = ff.layer_step(x, x, w, b, FFSpec(**kw))
    st = ff.layer_step(x, x, w, b, FFSpec(relu_grad="straight_through", **kw))
    assert std.db[0] == 0.0
    assert st.db[0] != 0.0  # peer normalisation pulls the dead unit back
    np.testing.assert_allclose(std.db[1:], st.db[1:])


def test_peer_running_mean_starts_at_half_and_moves():
    x = np.abs(np.random.default_rng(3).normal(size=(4, 3)))
    w, b = np.eye(3), np.zeros(3)
    spec = FFSpec(peer_weight=0.1, peer_momentum=0.9)
    st = ff.layer_step(x, x, w, b, spec)
    h = ff.layer_forward(x, w, b, spec)[2]
    np.testing.assert_allclose(st.running_mean, 0.9 * 0.5 + 0.1 * h.mean(axis=0))


def test_bp_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    params = [(rng.normal(size=(6, 5)), rng.normal(size=6)), (rng.normal(size=(4, 6)), rng.normal(size=4))]
    x, y = rng.normal(size=(7, 5)), rng.integers(0, 4, size=7)
    loss, grads, _ = bp.loss_and_grads(x, y, params)
    eps = 1e-6
    for layer in range(2):
        for idx in [(0, 0), (2, 3)]:
            pp = [(w.copy(), b.copy()) for w, b in params]
            pm = [(w.copy(), b.copy()) for w, b in params]
            pp[layer][0][idx] += eps
            pm[layer][0][idx] -= eps
            fd = (bp.loss_and_grads(x, y, pp)[0] - bp.loss_and_grads(x, y, pm)[0]) / (2 * eps)
            assert grads[layer][0][idx] == pytest.approx(fd, rel=1e-5, abs=1e-9)
    logits = bp.forward(x, params)[0]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(7), y]).mean())


def test_adam_first_step_by_hand():
    spec = OptimizerSpec(name="adam", lr=0.1, eps=1e-8)
    g = [np.array([2.0, -0.5])]
    p = [np.array([1.0, 1.0])]
    new, st = optim.update(spec, g, optim.init(spec, p), p, spec.lr)
    # m_hat = g, v_hat = g^2: the first step is lr * g / (|g| + eps)
    np.testing.assert_allclose(new[0], [1.0 - 0.1 * 2 / (2 + 1e-8), 1.0 + 0.1 * 0.5 / (0.5 + 1e-8)])
    assert st.t == 1


def test_adam_eps_before_bias_correction_by_hand():
    spec = OptimizerSpec(name="adam", lr=0.1, eps=0.1, eps_mode="before_bias_correction")
    g, p = [np.array([0.5])], [np.array([0.0])]
    new, _ = optim.update(spec, g, optim.init(spec, p), p, spec.lr)
    # m = 0.05, v = 0.00025; step = lr*sqrt(1-b2)/(1-b1) * m/(sqrt(v)+eps)
    step = 0.1 * math.sqrt(0.001) / 0.1 * 0.05 / (math.sqrt(0.00025) + 0.1)
    np.testing.assert_allclose(new[0], [-step])
    after = optim.update(OptimizerSpec(name="adam", lr=0.1, eps=0.1), g, optim.init(spec, p), p, 0.1)[0]
    np.testing.assert_allclose(after[0], [-0.1 * 0.5 / (0.5 + 0.1)])  # m_hat=0.5, sqrt(v_hat)=0.5


def test_sgd_momentum_and_weight_decay_by_hand():
    spec = OptimizerSpec(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.5)
    p = [np.array([2.0])]
    st = optim.init(spec, p)
    p1, st = optim.update(spec, [np.array([1.0])], st, p, 0.1)
    # g' = 1 + 0.5*2 = 2; buf = 2; p = 2 - 0.2
    np.testing.assert_allclose(p1[0], [1.8])
    p2, st = optim.update(spec, [np.array([1.0])], st, p1, 0.1)
    # g' = 1 + 0.9 = 1.9; buf = 0.9*2 + 1.9 = 3.7; p = 1.8 - 0.37
    np.testing.assert_allclose(p2[0], [1.43])


def test_linear_cooldown_matches_loewex():
    spec = OptimizerSpec(name="sgd", lr=1.0, cooldown_start=0.5)
    lrs = [optim.lr_at(spec, e, 100) for e in range(100)]
    # loeweX (1-based epoch t): lr if t <= 50, else lr * 2 * (1 + 100 - t) / 100
    loewex = [1.0 if t <= 50 else 2 * (1 + 100 - t) / 100 for t in range(1, 101)]
    np.testing.assert_allclose(lrs, loewex)
    assert optim.lr_at(OptimizerSpec(lr=0.3), 7, 10) == 0.3


def test_goodness_prediction_picks_the_label_with_most_goodness():
    # One layer that copies the 10 label pixels: goodness is largest for the overlaid label
    # that matches the "image" pixel pattern below.
    d = 20
    w = np.zeros((10, d))
    for c in range(10):
        w[c, c] = 1.0
        w[c, 10 + c] = 1.0  # pixel 10+c marks class c
    x = np.zeros((3, d))
    for i, c in enumerate([4, 7, 1]):
        x[i, 10 + c] = 1.0
    spec = FFSpec(norm="l2")
    pred = ff.predict(x, [(w, np.zeros(10))], spec.model_copy(update={"prediction_layers": [0]}))
    assert pred.tolist() == [4, 7, 1]
    spec_min = FFSpec(norm="l2", sign="min_ssq").model_copy(update={"prediction_layers": [0]})
    assert ff.predict(x, [(w, np.zeros(10))], spec_min).tolist() != [4, 7, 1]


@pytest.mark.parametrize("kw, image", [
    ({}, MNIST),
    ({"norm": "l2", "goodness": "sum", "sign": "min_ssq"}, MNIST),
    ({"label_on_mode": "image_max", "label_on": 0.5}, MNIST),
    ({"receptive_field": 5, "relu_grad": "straight_through"}, MNIST),
    ({"label_channels": "all", "label_on_mode": "image_max"}, Geometry(3, 6, 5)),
    ({"label_channels": "all", "receptive_field": 3}, Geometry(3, 6, 5)),
    ({"receptive_field": 3}, Geometry(3, 6, 5)),
])
def test_label_scores_equal_ten_overlaid_forward_passes(kw, image):
    # label_scores computes layer 0 for the ten labels from one matmul; the definition is a
    # forward pass of each label's overlay.
    rng = np.random.default_rng(0)
    spec = FFSpec(**kw).bind_image(image)
    d = image.size
    x = rng.uniform(0, 1, (7, d))
    x[:, :3] = rng.uniform(0, 1, (7, 3))  # pixels under the label are replaced, whatever they hold
    params = [(rng.normal(0, 0.05, (o, i)), rng.normal(0, 0.1, o)) for i, o in [(d, 30), (30, 20), (20, 10)]]
    for layers in ([0], [1, 2], [0, 1, 2]):
        naive = np.stack([
            sum(goodness(hs[i], spec.goodness) for i in layers)
            for hs in (ff.forward_stack(ff.overlay(x, np.full(len(x), c), spec), params, spec) for c in range(10))
        ], axis=1)
        naive = naive if spec.sign == "max_ssq" else -naive
        np.testing.assert_allclose(ff.label_scores(x, params, spec, layers), naive, rtol=1e-12, atol=1e-12)
        assert np.ptp(naive, axis=1).min() > 1e-4  # the labels do change every row's scores


def test_locally_connected_bp_gradients_by_central_differences_and_its_spec():
    from ffbench.spec import parse_trial
    image = Geometry(2, 4, 3)  # 24 values, a 4 x 3 grid
    g = np.random.default_rng(0)
    params = [(g.normal(size=(24, 24)), g.normal(size=24)), (g.normal(size=(10, 24)), g.normal(size=10))]
    x, y = g.random((5, 24)), g.integers(0, 10, 5)
    loss, grads, _ = bp.loss_and_grads(x, y, params, (3, image))
    mask = ff.local_mask(24, 24, 3, image)
    for i, j in [(3, 7), (0, 23), (5, 5), (11, 1)]:
        def f(e, i=i, j=j):
            w = params[0][0].copy()
            w[i, j] += e
            return bp.loss_and_grads(x, y, [(w, params[0][1]), params[1]], (3, image))[0]
        assert grads[0][0][i, j] == pytest.approx(mask[i, j] * (f(1e-6) - f(-1e-6)) / 2e-6, rel=1e-6, abs=1e-9)
    assert (grads[0][0][mask == 0] == 0).all()
    assert np.count_nonzero(grads[1][0]) > 0.5 * grads[1][0].size  # the output layer stays dense (dead units aside)
    far = params[0][0].copy()
    far[mask == 0] = 99.0  # weights outside the windows do nothing
    np.testing.assert_array_equal(bp.forward(x, [(far, params[0][1]), params[1]], (3, image))[0],
                                  bp.forward(x, params, (3, image))[0])
    base = {"algorithm": "bp", "backend": "torch", "seed": 0, "epochs": 1}
    assert parse_trial({**base, "hidden": [784, 1568], "bp": {"receptive_field": 11}}).local == (11, MNIST)
    assert parse_trial({**base, "hidden": [3072], "data": {"name": "cifar10"}, "bp": {"receptive_field": 11}}).local == (
        11, Geometry(3, 32, 32))
    for bad, match in (({"hidden": [784], "bp": {"receptive_field": 4}}, "must be odd"),
                       ({"hidden": [1000], "bp": {"receptive_field": 5}}, r"multiple of 784\); got \[1000\]")):
        with pytest.raises(ValueError, match=match):
            parse_trial({**base, **bad})
