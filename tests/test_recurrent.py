"""The recurrent FF net's reference (`ffbench.reference.recurrent`): by hand, by central
differences, and the spec's refusals. The backends are held to it by `ffbench check`."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench.reference import ff as RF
from ffbench.reference import recurrent as R
from ffbench.reference.finite_diff import central_difference
from ffbench.reference.init import ff_init
from ffbench.spec import parse_trial
from ffbench.variants.objectives import objective


def trial(hidden, **ff):
    return parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": hidden, "epochs": 1,
                        "batch_size": 4, "ff": ff})


def test_weight_shapes_put_the_layer_above_and_the_label_beside_the_layer_below():
    assert R.weight_shapes(784, [2000, 2000]) == [(2000, 2784), (2000, 2010)]
    assert [w.shape for w, _ in ff_init(0, 784, [30, 20], trial([30, 20], recurrent={}).ff)] == [(30, 804), (20, 40)]


def test_one_layer_run_by_hand():
    """One layer of 2 units under the image x = (3, 4) and label 2, l2 norm, damping 0.5, zero start:
    u = (0.6, 0.8, e_2), z = (0.6 + 0.8 + 1, 0.6 - 0.8), h^1 = 0.5 relu(z), h^2 = 0.5 h^1 + 0.5 relu(z)."""
    t = trial([2], norm="l2", recurrent={"iterations": 2, "damping": 0.5, "init": "zeros", "score_from": 0, "score_to": 2})
    w = np.zeros((2, 12))
    w[0, :2], w[1, :2], w[0, 2 + 2] = (1, 1), (1, -1), 1.0
    states = R.run(np.array([[3.0, 4.0]]), np.array([2]), [(w, np.zeros(2))], t.ff)
    np.testing.assert_allclose(states[0][0], [[0, 0]])
    np.testing.assert_allclose(states[1][0], [[1.2, 0]], atol=1e-7)
    np.testing.assert_allclose(states[2][0], [[1.8, 0]], atol=1e-7)
    # the label enters only through its top-down column: label 5 has none, z0 = 1.4
    np.testing.assert_allclose(R.run(np.array([[3.0, 4.0]]), np.array([5]), [(w, np.zeros(2))], t.ff)[2][0], [[1.05, 0]],
                               atol=1e-7)


def test_updates_are_synchronous_from_the_previous_states():
    """Layer 0 at t sees layer 1 at t-1: with a bottom-up start of zero weights but a bias on
    layer 1 only, layer 0's top-down input is zero at t = 1 (h_1^0 = relu(b_1) ... is the
    start) and then follows h_1."""
    t = trial([3, 2], norm="l2", recurrent={"iterations": 2, "damping": 0.0, "score_from": 0, "score_to": 2})
    w0, w1 = np.zeros((3, 2 + 2)), np.zeros((2, 3 + 10))
    w0[0, 2:] = (1.0, 0.0)  # unit 0 of layer 0 reads unit 0 of layer 1
    w1[:, 3 + 7] = (2.0, 0.0)  # layer 1's unit 0 reads label 7
    params = [(w0, np.zeros(3)), (w1, np.zeros(2))]
    s = R.run(np.array([[1.0, 0.0]]), np.array([7]), params, t.ff)
    np.testing.assert_allclose(s[0][1], [[0, 0]])  # bottom-up start: no label yet
    np.testing.assert_allclose(s[1][1], [[2, 0]])  # the label reaches layer 1 at t = 1 ...
    np.testing.assert_allclose(s[1][0], [[0, 0, 0]])  # ... while layer 0 still sees h_1^0 = 0
    np.testing.assert_allclose(s[2][0], [[1, 0, 0]])  # and at t = 2 the normalised h_1^1


def test_top_down_label_weights_decide_the_prediction():
    """Zero bottom-up weights, every unit's top-down weight from label 6 positive: only label 6
    gives goodness, so it is predicted for every image (max-ssq), and never for min-ssq."""
    t = trial([4, 3], recurrent={"iterations": 4, "score_from": 2, "score_to": 3})
    params = [(np.zeros((4, 5 + 3)), np.zeros(4)), (np.zeros((3, 4 + 10)), np.zeros(3))]
    params[1][0][:, 4 + 6] = 1.0
    x = np.random.default_rng(0).random((7, 5))
    assert (R.predict(x, params, t.ff) == 6).all()
    scores = R.label_scores(x, params, t.ff, [0, 1])
    assert scores.shape == (7, 10) and (np.delete(scores, 6, axis=1) == 0).all() and (scores[:, 6] > 0).all()
    t_min = trial([4, 3], sign="min_ssq", recurrent={"iterations": 4, "score_from": 2, "score_to": 3})
    assert (R.predict(x, params, t_min.ff) != 6).all()


@pytest.mark.parametrize("kw", [{}, {"sign": "min_ssq", "norm": "l2"}, {"receptive_field": 3}])
def test_step_gradients_match_central_differences_of_each_iterations_local_losses(kw):
    """dW of `step` = d/dW of the mean over the loss iterations (2 and 3 of 3) of the summed
    layer losses, each from that iteration's inputs u^t and previous state held constant: no
    gradient through time or between layers. With a receptive field: 7x7 maps, 2 and 1 units
    per location, 3x3 windows (masked entries get no gradient)."""
    local_field = kw.pop("receptive_field", None)
    hidden, d_in = ([98, 49], 49) if local_field else ([6, 5], 8)
    ff = trial([6, 5], **kw, recurrent={"iterations": 3, "loss_from": 2, "damping": 0.4, "score_from": 1, "score_to": 3}).ff
    if local_field:
        ff = ff.model_copy(update={"receptive_field": local_field}).bind_image((1, 7, 7))
    g = np.random.default_rng(1)
    x = g.random((4, d_in))
    params = [(g.normal(0, 0.5, w.shape), g.normal(0, 0.1, b.shape)) for w, b in ff_init(0, d_in, hidden, ff)]
    y_pos, y_neg = np.array([0, 1, 2, 3]), np.array([5, 6, 7, 8])
    _, grads = R.step(x, y_pos, y_neg, params, ff)
    obj = objective(ff)
    p, d = obj.params(ff.objective_params), ff.recurrent.damping
    x2, y1 = np.concatenate([x, x]), R.one_hot(np.concatenate([y_pos, y_neg]))
    hs, frozen = R.start(x2, params, ff), []
    for t in range(1, 4):
        us, _, new = R.iterate(x2, y1, params, ff, hs)
        if t >= 2:
            frozen.append((us, hs))
        hs = new
    for i, (w0, b0) in enumerate(params):
        top = R.label_columns(i, len(hidden))

        def local(w, i=i, top=top, b0=b0):
            return sum(obj.loss(d * prev[i] + (1 - d) * np.maximum(us[i] @ R.weights(w, top, ff).T + b0, 0),
                                4, ff, p, w.shape[1]) for us, prev in frozen) / len(frozen)
        m = R.mask(*w0.shape, top, ff)
        fd = central_difference(local, w0) * (1 if m is None else m)
        assert np.abs(fd).max() > 1e-6
        np.testing.assert_allclose(grads[i][0], fd, atol=1e-8, rtol=1e-5)
        if m is not None:
            assert (grads[i][0][m == 0] == 0).all()


def test_the_receptive_field_mask_spans_both_maps_and_leaves_the_label_dense():
    t = trial([784, 784], receptive_field=3, recurrent={})
    m0, m1 = R.mask(784, 784 + 784, 0, t.ff), R.mask(784, 784 + 10, 10, t.ff)
    local = RF.local_mask(784, 784, 3, t.ff.image)
    np.testing.assert_array_equal(m0, np.concatenate([local, local], axis=1))
    np.testing.assert_array_equal(m1[:, :784], local)
    assert (m1[:, 784:] == 1).all() and m0[0].sum() == 8  # a corner unit: 2x2 of each map


@pytest.mark.parametrize("ff, message", [
    ({"schedule": "greedy"}, "simultaneous"),
    ({"peer_weight": 0.03}, "peer"),
    ({"negatives": "hybrid_image", "prediction": "softmax"}, "no labels"),
    ({"prediction": "softmax", "recurrent": {"init": "zeros"}}, "bottom_up"),
    ({"label_channels": "all"}, "label_"),
    ({"recurrent": {"iterations": 4}}, "score_to"),
    ({"recurrent": {"loss_from": 5, "loss_to": 4}}, "loss_to"),
])
def test_the_spec_refuses_what_the_recurrent_net_does_not_define(ff, message):
    with pytest.raises(ValueError, match=message):
        trial([8, 8], **{"recurrent": {}, **ff})
