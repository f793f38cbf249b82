"""Conv nets: the spec's geometry, the reference's conv and pooling by hand and against finite
differences, and the FF conv layer and its BP twin end to end in the reference."""

import numpy as np
import pytest
from pydantic import ValidationError

from ffbench.geometry import Geometry
from ffbench.reference import bp, ff
from ffbench.reference import conv as C
from ffbench.reference.finite_diff import central_difference
from ffbench.reference.init import bp_init, ff_init
from ffbench.spec import normal_form, parse_trial, trial_id

BASE = {"algorithm": "ff", "backend": "torch", "seed": 0, "epochs": 1, "data": {"name": "synthetic_gray28"}}


def trial(conv, **extra):
    return parse_trial({**BASE, "conv": conv, **extra})


# ---------------------------------------------------------------- spec
def test_widths_follow_from_the_layers():
    t = trial({"channels": [20, 80, 240, 480], "pool": ["none", "max", "none", "max"], "groups": [1, 10, 1, 10]})
    # 28x28 stays 28x28 (k3 p1 s1); the max pools halve it: 20x28x28, 80x14x14, 240x14x14, 480x7x7
    assert t.hidden == [20 * 784, 80 * 196, 240 * 196, 480 * 49]
    assert t.architecture == "conv 20-80g10-240-480g10" and parse_trial({**BASE, "hidden": [500, 200]}).architecture == "500x200"
    layer = t.ff.conv_layer(1)
    assert layer.input == Geometry(20, 28, 28) and layer.weight_shape == (80, 2, 3, 3) and layer.fan_in == 18
    strided = trial({"channels": [4], "kernel": 5, "stride": 2, "padding": 0})
    assert strided.hidden == [4 * 12 * 12]  # (28 - 5) // 2 + 1 = 12


def test_one_value_for_all_layers_has_the_same_id_as_one_per_layer():
    a = trial({"channels": [8, 16], "pool": "max"})
    b = trial({"channels": [8, 16], "pool": ["max", "max"], "kernel": [3, 3]})
    assert normal_form(a) == normal_form(b) and trial_id(a, "x") == trial_id(b, "x")
    assert trial_id(a, "x") != trial_id(trial({"channels": [8, 16], "pool": "avg"}), "x")
    # the dense nets' identity does not move: no conv key where there is none
    dense = parse_trial({**BASE, "hidden": [100]})
    assert "conv" not in normal_form(dense)


@pytest.mark.parametrize("conv, extra, match", [
    ({"channels": [8, 16], "pool": ["max"]}, {}, "one value per layer"),
    ({"channels": [8], "kernel": 3, "padding": 3}, {}, "smaller than the kernel"),
    ({"channels": [8, 15], "groups": [1, 4]}, {}, "groups 4 must divide"),
    ({"channels": [4, 4, 4, 4, 4], "pool": "max"}, {}, "leaves no output"),
    ({"channels": [8]}, {"hidden": [100]}, "disagrees with conv"),
    ({"channels": [8]}, {"ff": {"receptive_field": 5}}, "does not combine with conv"),
    ({"channels": [8], "pool": "max"}, {"ff": {"relu_grad": "straight_through"}}, "max pool"),
])
def test_bad_conv_specs_are_refused(conv, extra, match):
    with pytest.raises(ValidationError, match=match):
        trial(conv, **extra)


def test_position_goodness_needs_a_conv_net():
    with pytest.raises(ValidationError, match="needs conv"):
        parse_trial({**BASE, "hidden": [100], "ff": {"goodness_over": "position"}})


# ---------------------------------------------------------------- conv and pooling
def test_conv_by_hand():
    x = np.arange(9.0).reshape(1, 1, 3, 3)  # 0 1 2 / 3 4 5 / 6 7 8
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[y, x] - x[y+1, x+1]
    z = C.conv2d(x, w, np.array([0.5]), stride=1, padding=0, groups=1)
    np.testing.assert_array_equal(z, [[[[0 - 4 + 0.5, 1 - 5 + 0.5], [3 - 7 + 0.5, 4 - 8 + 0.5]]]])
    # padding 1, stride 2: outputs at (-1,-1), (-1,1), (1,-1), (1,1) of the unpadded grid
    z = C.conv2d(x, w, np.zeros(1), stride=2, padding=1, groups=1)
    np.testing.assert_array_equal(z, [[[[0 - 0, 0 - 2], [0 - 6, 4 - 8]]]])


def test_groups_read_their_own_block_of_channels():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(2, 4, 5, 5)), rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6)
    z = C.conv2d(x, w, b, 1, 1, groups=2)
    lo = C.conv2d(x[:, :2], w[:3], b[:3], 1, 1, 1)
    hi = C.conv2d(x[:, 2:], w[3:], b[3:], 1, 1, 1)
    np.testing.assert_allclose(z, np.concatenate([lo, hi], axis=1))


def test_pooling_by_hand():
    a = np.array([[[[1.0, 5.0, 2.0], [3.0, 4.0, 9.0], [7.0, 7.0, 7.0]]]])  # 3x3: the last row and column fill no window
    assert C.pool(a, "max", 2).tolist() == [[[[5.0]]]]
    assert C.pool(a, "avg", 2).tolist() == [[[[13.0 / 4]]]]
    d = C.pool_backward(np.array([[[[2.0]]]]), a, "max", 2)
    assert d[0, 0].tolist() == [[0, 2, 0], [0, 0, 0], [0, 0, 0]]
    tie = np.ones((1, 1, 2, 2))
    assert C.pool_backward(np.ones((1, 1, 1, 1)), tie, "max", 2)[0, 0].tolist() == [[0.25, 0.25], [0.25, 0.25]]


@pytest.mark.parametrize("stride, padding, groups", [(1, 1, 1), (2, 0, 1), (2, 1, 2)])
def test_conv_gradients_match_central_differences(stride, padding, groups):
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(2, 4, 6, 6)), rng.normal(size=(4, 4 // groups, 3, 3)), rng.normal(size=4)
    zshape = C.conv2d(x, w, b, stride, padding, groups).shape
    r = rng.normal(size=zshape)
    loss = lambda x_, w_, b_: float((C.conv2d(x_, w_, b_, stride, padding, groups) * r).sum())  # noqa: E731
    dw, db, dx = C.conv2d_backward(r, x, w, stride, padding, groups, need_dx=True)
    np.testing.assert_allclose(dw, central_difference(lambda v: loss(x, v, b), w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, central_difference(lambda v: loss(x, w, v), b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, central_difference(lambda v: loss(v, w, b), x), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- the FF conv layer and the BP twin
def small(goodness_over="map", objective="logistic", pool="max"):
    t = trial({"channels": [4, 6], "pool": pool, "stride": [1, 2]},
              ff={"goodness_over": goodness_over, "objective": objective})
    x = np.random.default_rng(2).random((6, 784)) * (np.random.default_rng(3).random((6, 784)) < 0.3)
    return t, x


@pytest.mark.parametrize("goodness_over, objective, pool", [("map", "logistic", "max"), ("position", "logistic", "avg"),
                                                             ("position", "symba", "max")])
def test_ff_conv_layer_gradient_matches_central_differences(goodness_over, objective, pool):
    t, x = small(goodness_over, objective, pool)
    spec, y = t.ff, np.arange(6) % 10
    params = [(w.astype(np.float64), b.astype(np.float64)) for w, b in ff_init(0, 784, t.hidden, spec)]
    assert params[0][0].shape == (4, 1, 3, 3) and params[1][0].shape == (6, 4, 3, 3)
    x_pos, x_neg = ff.overlay(x, y, spec), ff.overlay(x, (y + 3) % 10, spec)
    h_pos, h_neg = ff.forward_stack(x_pos, params[:1], spec)[0], ff.forward_stack(x_neg, params[:1], spec)[0]
    for i, (xp, xn) in enumerate(((x_pos, x_neg), (h_pos, h_neg))):
        w, b = params[i]
        st = ff.layer_step(xp, xn, w, b, spec, None, i)
        # steps of 1e-8: the sparse images put pre-activations within 1e-6 of ReLU's kink
        def obj(w_, b_, xp=xp, xn=xn, i=i):
            return ff.layer_objective(xp, xn, w_, b_, spec, None, i)
        fd_w = central_difference(lambda v: obj(v, b), w, rel_step=1e-8)  # noqa: B023 (used at once)
        fd_b = central_difference(lambda v: obj(w, v), b, rel_step=1e-8)  # noqa: B023
        np.testing.assert_allclose(st.dw, fd_w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(st.db, fd_b, rtol=1e-5, atol=1e-7)
        assert st.h_pos.shape == (6, t.hidden[i])


def test_position_goodness_by_hand():
    """Two positions of two channels: goodness per position, then the objective averages them."""
    t = trial({"channels": [2]}, ff={"goodness_over": "position", "goodness": "sum"})
    spec = t.ff
    h = np.zeros((2, 2 * 784))
    h[0, 0], h[0, 784] = 1.0, 2.0  # image 0, position 0: channels (1, 2) -> goodness 5
    rows = ff.objective_rows(h, spec, 0)
    assert rows.shape == (2 * 784, 2) and rows[0].tolist() == [1.0, 2.0] and not rows[1:].any()
    np.testing.assert_array_equal(ff.rows_back(rows, spec, 0), h)
    g = ff.image_scores((rows ** 2).sum(axis=1), spec, 0)
    np.testing.assert_allclose(g, [5.0 / 784, 0.0])


def test_conv_predictions_score_every_label():
    t, x = small()
    params = ff_init(0, 784, t.hidden, t.ff)
    p64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params]
    scores = ff.label_scores(x, p64, t.ff, [0, 1])
    for c in (0, 7):
        hs = ff.forward_stack(ff.overlay(x, np.full(6, c), t.ff), p64, t.ff)
        want = sum((h ** 2).mean(axis=1) for h in hs)
        np.testing.assert_allclose(scores[:, c], want, rtol=1e-12)


def test_bp_twin_gradients_match_central_differences():
    t = parse_trial({**BASE, "algorithm": "bp", "conv": {"channels": [3, 4], "pool": ["max", "avg"], "stride": [1, 2]}})
    layers = t.conv_layers()
    params = [(w.astype(np.float64), b.astype(np.float64)) for w, b in bp_init(t, 784, 10)]
    assert [w.shape for w, _ in params] == [(3, 1, 3, 3), (4, 3, 3, 3), (10, t.hidden[-1])]
    rng = np.random.default_rng(4)
    x, y = rng.random((5, 784)), rng.integers(0, 10, 5)
    loss, grads, _ = bp.loss_and_grads(x, y, params, conv=layers)
    for i, (w, b) in enumerate(params):
        def f(v, i=i, slot=0):
            pp = [list(p) for p in params]
            pp[i][slot] = v
            return bp.loss_and_grads(x, y, [tuple(p) for p in pp], conv=layers)[0]
        np.testing.assert_allclose(grads[i][0], central_difference(f, w), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(grads[i][1], central_difference(lambda v, i=i: f(v, i, 1), b), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 0, 2), (1, 2, 4)])
def test_jax_cpu_conv_as_matmul_is_xla_convolution(stride, padding, groups):
    """The jax backend's CPU form (im2col, then one contraction) against XLA's own convolution
    and the reference, values and the kernel's and input's gradients."""
    jax = pytest.importorskip("jax")
    from ffbench_backends.jax.ops import HIGHEST, conv_as_matmul
    from jax import lax
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 9, 8)).astype(np.float32)
    w = rng.normal(size=(8, 4 // groups, 3, 3)).astype(np.float32)

    def xla(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding),) * 2, precision=HIGHEST,
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=groups)

    def ours(x, w):
        return conv_as_matmul(x, w, stride, padding, groups, HIGHEST)

    ref = C.conv2d(x.astype(np.float64), w.astype(np.float64), np.zeros(8), stride, padding, groups)
    np.testing.assert_allclose(np.asarray(ours(x, w)), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(xla(x, w)), ref, rtol=1e-5, atol=1e-5)
    dz = rng.normal(size=ref.shape).astype(np.float32)
    loss = lambda f: lambda x, w: (f(x, w) * dz).sum()  # noqa: E731
    for a, b in zip(jax.grad(loss(ours), argnums=(0, 1))(x, w), jax.grad(loss(xla), argnums=(0, 1))(x, w)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
    assert ours(np.zeros((0, 4, 9, 8), np.float32), w).shape == (0, 8, *ref.shape[2:])  # a step with no negatives


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 0, 2), (1, 2, 4)])
def test_keras_cpu_conv_as_matmul_is_the_reference_convolution(stride, padding, groups):
    """Keras's channels-last, group-major im2col form against the reference (its gradients are
    held to the reference by `ffbench check`'s conv sections)."""
    from ffbench import registry
    if not registry.status("keras")[0]:
        pytest.skip(registry.status("keras")[1])
    from ffbench_backends.keras.conv import conv_as_matmul
    from keras import ops
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4, 9, 8)).astype(np.float32)
    w = rng.normal(size=(8, 4 // groups, 3, 3)).astype(np.float32)
    xp = np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    z = ops.convert_to_numpy(conv_as_matmul(ops.convert_to_tensor(xp), ops.convert_to_tensor(w.transpose(2, 3, 1, 0)),
                                            stride, groups))
    ref = C.conv2d(x.astype(np.float64), w.astype(np.float64), np.zeros(8), stride, padding, groups)
    np.testing.assert_allclose(z.transpose(0, 3, 1, 2), ref, rtol=1e-5, atol=1e-5)


def _tied_maps(rng, shape):
    """ReLU-like maps with ties: zeros, and positive values drawn from {1, 2, 3}."""
    return np.maximum(rng.integers(-2, 4, size=shape), 0).astype(np.float32)


@pytest.mark.parametrize("shape,q", [((2, 3, 8, 8), 2), ((2, 2, 7, 9), 2), ((1, 2, 9, 6), 3)])
def test_jax_max_pool_is_the_reference_with_its_gradient_split_among_ties(shape, q):
    jax = pytest.importorskip("jax")
    from ffbench_backends.jax.ops import max_pool
    rng = np.random.default_rng(5)
    a = _tied_maps(rng, shape)
    ref = C.pool(a.astype(np.float64), "max", q)
    g = rng.normal(size=ref.shape).astype(np.float32)
    out, vjp = jax.vjp(lambda t: max_pool(t, q), a)
    np.testing.assert_array_equal(np.asarray(out), ref)
    np.testing.assert_allclose(np.asarray(vjp(g)[0]), C.pool_backward(g.astype(np.float64), a.astype(np.float64), "max", q),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape,q", [((2, 3, 8, 8), 2), ((2, 2, 7, 9), 2), ((1, 2, 9, 6), 3)])
def test_keras_max_pool_is_the_reference_with_its_gradient_split_among_ties(shape, q):
    from ffbench import registry
    if not registry.status("keras")[0]:
        pytest.skip(registry.status("keras")[1])
    from ffbench_backends.keras.conv import max_pool
    from ffbench_backends.keras.ops import value_and_grads
    from keras import ops
    rng = np.random.default_rng(5)
    a = _tied_maps(rng, shape)
    ref = C.pool(a.astype(np.float64), "max", q)
    g = rng.normal(size=ref.shape).astype(np.float32)
    to_last = lambda t: t.transpose(0, 2, 3, 1)  # noqa: E731
    (_, out), (da,) = value_and_grads(lambda t: (ops.sum(max_pool(t, q) * to_last(g)), max_pool(t, q)),
                                      ops.convert_to_tensor(to_last(a)))
    np.testing.assert_array_equal(ops.convert_to_numpy(out), to_last(ref))
    expected = C.pool_backward(g.astype(np.float64), a.astype(np.float64), "max", q)
    np.testing.assert_allclose(ops.convert_to_numpy(da), to_last(expected), rtol=1e-6, atol=1e-7)
