"""The PyTorch backend against the NumPy reference: ops, optimiser, whole epochs, prediction."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ffbench_backends.torch import ops  # noqa: E402
from ffbench_backends.torch.bp import BPTrainer  # noqa: E402
from ffbench_backends.torch.ff import FFTrainer, readout_objective  # noqa: E402
from ffbench_backends.torch.optim import Optimizer  # noqa: E402

from ffbench.data import Dataset, Split  # noqa: E402
from ffbench.geometry import MNIST, Geometry  # noqa: E402
from ffbench.reference import ff as R  # noqa: E402
from ffbench.reference import negatives as RN  # noqa: E402
from ffbench.reference import optim, rng  # noqa: E402
from ffbench.reference import train as RT  # noqa: E402
from ffbench.reference.init import stack_init  # noqa: E402
from ffbench.spec import FFSpec, OptimizerSpec, parse_trial  # noqa: E402

CPU = torch.device("cpu")


def test_hash_order_and_negatives_match_reference():
    idx = torch.arange(5000, dtype=torch.int64)
    np.testing.assert_array_equal(ops.lowbias32(idx ^ 12345).numpy(), rng.lowbias32(np.arange(5000, dtype=np.uint32) ^ 12345))
    edge = torch.tensor([2**32 - 1, 2**31, 0xDEADBEEF], dtype=torch.int64)
    np.testing.assert_array_equal(ops.lowbias32(edge).numpy(), rng.lowbias32(edge.numpy().astype(np.uint32)))
    np.testing.assert_array_equal(ops.epoch_order(5, 3, 5000, CPU).numpy(), rng.epoch_order(5, 3, 5000))
    y = torch.arange(5000) % 10
    w = ops.wrong_labels(5, 3, idx, y)
    np.testing.assert_array_equal(w.numpy(), rng.wrong_labels(5, 3, np.arange(5000), y.numpy()))
    assert not (w == y).any()


@pytest.mark.parametrize("kw", [{}, {"label_on_mode": "image_max", "label_on": 0.5}])
def test_overlays_match_reference(kw):
    spec = FFSpec(**kw)
    x = np.random.default_rng(0).random((6, 30)).astype(np.float32)
    y = np.array([0, 1, 2, 9, 5, 5])
    np.testing.assert_array_equal(ops.overlay(torch.tensor(x), torch.tensor(y), spec).numpy(), R.overlay(x, y, spec))
    np.testing.assert_array_equal(ops.overlay(torch.tensor(x), None, spec).numpy(), R.overlay(x, None, spec))


@pytest.mark.parametrize("kw, image", [({}, MNIST), ({"label_on_mode": "image_max", "label_on": 0.5, "norm": "l2"}, MNIST),
                                       ({"receptive_field": 3}, MNIST),
                                       ({"label_channels": "all", "receptive_field": 3}, Geometry(3, 6, 5))])
def test_first_layer_for_all_labels_matches_each_overlay(kw, image):
    spec = FFSpec(**kw).bind_image(image)
    g = np.random.default_rng(2)
    x = g.random((6, image.size)).astype(np.float32)
    w, b = g.normal(0, 0.05, (20, image.size)).astype(np.float32), g.normal(0, 0.1, 20).astype(np.float32)
    got = ops.first_layer_all_labels(torch.tensor(x), torch.tensor(w), torch.tensor(b), spec).numpy()
    for c in range(10):
        each = R.layer_forward(R.overlay(x, np.full(6, c), spec).astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                               spec)[2]
        np.testing.assert_allclose(got[c], each, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [
    {}, {"goodness": "sum", "threshold": 20.0, "norm": "l2"}, {"sign": "min_ssq"},
    {"peer_weight": 0.03, "relu_grad": "straight_through"}, {"goodness": "sum", "threshold_scale": "input_width"},
])
def test_layer_loss_and_gradients_match_reference(kw):
    spec = FFSpec(**kw)
    g = np.random.default_rng(1)
    x_pos, x_neg = g.random((16, 40)).astype(np.float32), g.random((16, 40)).astype(np.float32)
    (w, b), = stack_init(0, [40, 24], "uniform_fan_in")
    ref = R.layer_step(x_pos.astype(np.float64), x_neg.astype(np.float64), w.astype(np.float64), b.astype(np.float64), spec)
    W, B = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    h = ops.layer_forward(torch.tensor(np.concatenate([x_pos, x_neg])), W, B, spec)
    from ffbench_backends.torch.objectives import Logistic
    gd = Logistic().goodness(h, spec, None)
    loss = Logistic().loss(h, 16, spec, None, 40)
    total = loss
    if spec.peer_weight:
        peer, _ = ops.peer_loss(h[:16], torch.full((24,), R.PEER_INIT), spec)
        assert peer.item() == pytest.approx(ref.peer_loss, rel=1e-5)
        total = loss + spec.peer_weight * peer
    total.backward()
    assert loss.item() == pytest.approx(ref.loss, rel=1e-5)
    np.testing.assert_allclose(gd[:16].detach().numpy(), ref.g_pos, rtol=1e-5)
    np.testing.assert_allclose(W.grad.numpy(), ref.dw, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(B.grad.numpy(), ref.db, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("spec", [
    OptimizerSpec(name="adam", lr=0.01), OptimizerSpec(name="adam", lr=0.01, eps=1e-3, eps_mode="before_bias_correction"),
    OptimizerSpec(name="adam", lr=0.01, weight_decay=0.1), OptimizerSpec(name="sgd", lr=0.1, momentum=0.9, weight_decay=3e-4),
    OptimizerSpec(name="sgd", lr=0.1),
])
def test_optimizer_matches_reference_after_several_steps(spec):
    """Alone, and in a pack of two (stacked tensors, one learning rate and gradient each)."""
    g = np.random.default_rng(2)
    p0 = [g.normal(size=(3, 4)).astype(np.float32), g.normal(size=4).astype(np.float32)]
    grads = [[[g.normal(size=p.shape).astype(np.float32) for p in p0] for _ in range(5)] for _ in range(2)]
    scale = (1.0, 2.5)  # the members' learning rates: spec.lr and 2.5 spec.lr
    params, stacked = [torch.tensor(p) for p in p0], [torch.tensor(np.stack([p, p])) for p in p0]
    opt, packed = Optimizer(spec, params), Optimizer(spec, stacked, members=2)
    refs = [([p.astype(np.float64) for p in p0], optim.init(spec, p0)) for _ in range(2)]
    for k in range(5):
        lr = spec.lr * (1 - 0.1 * k)
        refs = [optim.update(spec, [x.astype(np.float64) for x in grads[m][k]], st, ref_p, lr * scale[m])
                for m, (ref_p, st) in enumerate(refs)]
        for i, p in enumerate(params):
            p.grad = torch.tensor(grads[0][k][i])
            stacked[i].grad = torch.tensor(np.stack([grads[0][k][i], grads[1][k][i]]))
        opt.plan_epoch(lr, 1)
        opt.step()
        packed.plan_epoch([lr * s for s in scale], 1)
        packed.step()
    with pytest.raises(RuntimeError, match="plan_epoch"):  # each step needs its planned coefficients
        opt.step()
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.numpy(), refs[0][0][i], rtol=1e-5, atol=1e-6)
        for m in range(2):
            np.testing.assert_allclose(stacked[i][m].numpy(), refs[m][0][i], rtol=1e-5, atol=1e-6)


def _tiny_data(n=60, d=784, seed=0):
    g = np.random.default_rng(seed)
    x = g.random((n, d)).astype(np.float32) * (g.random((n, d)) < 0.2)
    y = g.integers(0, 10, n)
    split = Split(x.astype(np.float32), y.astype(np.int64))
    return Dataset("mnist", "test", MNIST, split, None, Split(x[:20], y[:20]))


@pytest.mark.parametrize("ff_kw,opt", [
    ({}, {"name": "adam", "lr": 0.01}),
    ({"peer_weight": 0.03, "relu_grad": "straight_through", "goodness": "sum", "threshold": 16.0},
     {"name": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 3e-4}),
    ({"norm": "l2", "negatives_refresh": "once", "sign": "min_ssq"}, {"name": "adam", "lr": 0.003}),
])
def test_ff_epochs_match_reference_training(ff_kw, opt):
    """Two epochs on the same batches and negatives end at the same parameters."""
    data = _tiny_data()
    trial = parse_trial(dict(algorithm="ff", backend="torch", seed=3, hidden=[16, 16], epochs=2, batch_size=10,
                             optimizer=opt, ff=ff_kw))
    tr = FFTrainer(trial, data, CPU)
    (phase,) = tr.phases()
    tr.begin_phase(phase)
    state = R.ff_init_state([(w.astype(np.float64), b.astype(np.float64)) for w, b in
                             stack_init(3, [784, 16, 16], trial.ff.init)], trial.optimizer)
    x64, draws = data.train.x.astype(np.float64), None
    for epoch in range(2):
        losses = tr.epoch_losses(tr.train_epoch(phase, epoch, trial.optimizer.lr))
        draws = draws or RN.Draws(trial, x64, data.train.y)
        state, ref_losses = RT.ff_simultaneous_epoch(state, x64, data.train.y, trial, epoch, trial.optimizer.lr, draws)
        np.testing.assert_allclose([losses["ff_loss"][i] for i in range(2)], ref_losses, rtol=1e-4)
    for (w, b), (rw, rb) in zip(tr.params, state.params):
        np.testing.assert_allclose(w.detach().numpy(), rw, rtol=1e-3, atol=2e-5)
        np.testing.assert_allclose(b.detach().numpy(), rb, rtol=1e-3, atol=2e-5)


def test_bp_epochs_match_reference_training():
    data = _tiny_data()
    trial = parse_trial(dict(algorithm="bp", backend="torch", seed=1, hidden=[16], epochs=2, batch_size=10,
                             optimizer={"name": "adam", "lr": 0.01}))
    tr = BPTrainer(trial, data, CPU)
    (phase,) = tr.phases()
    tr.begin_phase(phase)
    params = [(w.astype(np.float64), b.astype(np.float64)) for w, b in stack_init(1, [784, 16, 10], "uniform_fan_in")]
    st = optim.init(trial.optimizer, [p for wb in params for p in wb])
    for epoch in range(2):
        loss = tr.epoch_losses(tr.train_epoch(phase, epoch, 0.01))["bp_loss"]
        params, st, ref_loss, _ = RT.bp_epoch(params, st, data.train.x.astype(np.float64), data.train.y, trial, epoch, 0.01)
        assert loss == pytest.approx(ref_loss, rel=1e-4)
    for (w, b), (rw, rb) in zip(tr.params, params):
        np.testing.assert_allclose(w.detach().numpy(), rw, rtol=1e-3, atol=2e-5)
        np.testing.assert_allclose(b.detach().numpy(), rb, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("ff_kw", [{}, {"sign": "min_ssq", "norm": "l2"}, {"prediction_layers": [1]}])
def test_goodness_prediction_matches_reference(ff_kw):
    data = _tiny_data(n=40)
    trial = parse_trial(dict(algorithm="ff", backend="torch", seed=0, hidden=[32, 32], epochs=1, batch_size=10,
                             eval_batch_size=7, ff=ff_kw))
    tr = FFTrainer(trial, data, CPU)
    tr.trained = {0, 1}
    params = [(w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)) for w, b in tr.params]
    ref = R.predict(data.train.x.astype(np.float64), params, trial.ff)
    np.testing.assert_array_equal(tr.predict(torch.tensor(data.train.x)).numpy(), ref)
    assert tr.error("train") == pytest.approx(np.mean(ref != data.train.y))


def test_softmax_readout_gradient_matches_reference():
    data = _tiny_data(n=20)
    trial = parse_trial(dict(algorithm="ff", backend="torch", seed=0, hidden=[12, 12, 12], epochs=1, batch_size=10,
                             ff={"prediction": "softmax"}))
    assert trial.ff.prediction_layers == [1, 2]
    tr = FFTrainer(trial, data, CPU)
    with torch.no_grad():
        tr.readout.copy_(torch.tensor(np.random.default_rng(0).normal(size=tr.readout.shape).astype(np.float32)))
    x, y = torch.tensor(data.train.x[:10]), torch.tensor(data.train.y[:10])
    loss = readout_objective(tr.params, tr.running, tr.readout, x, y, ff=trial.ff, active=tr.readout_layers, widths=trial.hidden,
                             precision="fp32")[0]
    loss.backward()
    params = [(w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)) for w, b in tr.params]
    ref_loss, ref_grad = R.readout_step(data.train.x[:10].astype(np.float64), data.train.y[:10], params,
                                        tr.readout.detach().numpy().astype(np.float64), trial.ff)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(tr.readout.grad.numpy(), ref_grad, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for wb in tr.params for p in wb)  # the read-out never reaches the FF layers
