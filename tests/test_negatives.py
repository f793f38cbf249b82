"""Negative-data strategies: the reference checked by hand, and every backend's ops checked
against the reference exactly on small inputs."""

import importlib

import numpy as np
import pytest

from ffbench import registry
from ffbench.geometry import MNIST, Geometry
from ffbench.reference import negatives as N
from ffbench.reference import rng
from ffbench.reference.rng import STREAM_NEGATIVES, STREAM_PERMUTE, stream_key
from ffbench.spec import parse_trial
from ffbench.variants import NEGATIVES


def test_every_strategy_is_listed_and_valid():
    assert set(NEGATIVES) == {"wrong_label", "permuted_label", "hard_label", "hard_label_top2", "hybrid_image", "class_split",
                              "none", "self_contrastive"}
    for name in set(NEGATIVES) - {"none"}:
        parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1,
                     "ff": {"negatives": name, "prediction": "softmax"} | (
                         {"readout_phase": "after", "readout_epochs": 1} if name == "self_contrastive" else {}),
                     "data": {"classes": [0, 1, 2, 3, 4]} if name == "class_split" else {}})
    cwc = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [40], "epochs": 1,
                       "ff": {"negatives": "none", "objective": "cwc", "goodness_over": "map", "norm": "none"}})
    assert (cwc.ff.negatives, cwc.ff.prediction) == ("none", "goodness")
    with pytest.raises(ValueError, match="ff.negatives: none leaves ff.objective: logistic nothing to contrast"):
        parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [40], "epochs": 1, "ff": {"negatives": "none"}})
    with pytest.raises(ValueError, match="set both, or neither"):
        parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1,
                     "ff": {"negatives": "class_split", "prediction": "softmax"}})
    with pytest.raises(ValueError, match="class_split is unsupervised"):
        parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1,
                     "ff": {"negatives": "class_split"}, "data": {"classes": [0, 1]}})
    with pytest.raises(ValueError, match="distinct classes"):
        parse_trial({"algorithm": "bp", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1, "data": {"classes": [3, 3]}})
    with pytest.raises(ValueError, match="hybrid_image is unsupervised"):
        parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1,
                     "ff": {"negatives": "hybrid_image"}})
    with pytest.raises(ValueError, match="needs ff.negatives_refresh: epoch or episode"):
        parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1,
                     "ff": {"negatives": "hard_label", "negatives_refresh": "once"}})


def test_wrong_labels_never_equal_the_truth_and_cover_the_nine_others():
    y = np.repeat(np.arange(10), 2000)
    wrong = rng.wrong_labels(3, 1, np.arange(len(y)), y)
    assert not np.any(wrong == y)
    for c in range(10):
        counts = np.bincount(wrong[y == c], minlength=10)
        assert counts[c] == 0 and (np.abs(counts[np.arange(10) != c] - 2000 / 9) < 4 * np.sqrt(2000 / 9)).all()


def test_permuted_labels_are_a_permutation_of_each_batch_and_collide_as_expected():
    y = np.random.default_rng(0).integers(0, 10, 20000)
    perms = rng.batch_permutations(5, 0, 200, 100)
    assert (np.sort(perms, axis=1) == np.arange(100)).all()
    batches = [np.arange(s * 100, (s + 1) * 100) for s in range(200)]
    trial = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 5, "hidden": [4], "epochs": 1, "batch_size": 100,
                         "ff": {"negatives": "permuted_label"}})
    negs = N.epoch_labels(trial, None, y, 0, batches, None, 0)
    for idx, neg in zip(batches, negs):
        assert sorted(neg) == sorted(y[idx])  # the batch's own labels, reordered
    # a position keeps its own label (1/B), or draws another of the same class (~1/10 for uniform labels)
    assert N.collision_rate(negs, batches, y) == pytest.approx(1 / 100 + 99 / 100 * 0.1, abs=0.005)
    assert not all((a == b).all() for a, b in zip(negs, N.epoch_labels(trial, None, y, 1, batches, None, 0)))


def test_class_split_uses_each_pool_image_once_per_draw():
    """n positives get pool images P[i mod r]: with n <= r each pool image at most once; past r
    the permutation wraps; a new draw is a new permutation."""
    neg = N.split_negatives(7, 0, 40, 100)
    assert (neg >= 40).all() and len(set(neg)) == 40
    wrap = N.split_negatives(7, 0, 250, 100) - 250
    assert sorted(wrap[:100]) == list(range(100)) and (wrap[100:200] == wrap[:100]).all()
    assert not (N.split_negatives(7, 1, 40, 100) == neg).all()
    trial = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 7, "hidden": [4], "epochs": 1, "batch_size": 10,
                         "data": {"classes": [0, 1]}, "ff": {"negatives": "class_split", "prediction": "softmax"}})
    x = np.arange(140 * 784, dtype=np.float64).reshape(140, 784)  # 40 positives, then the pool of 100
    idx = np.arange(10)
    np.testing.assert_array_equal(N.negative_inputs(trial, x, x[idx], idx, neg[idx], 0), x[neg[idx]])
    assert N.sample_negatives(trial, x, np.zeros(40, np.int64), 0, None, 0).tolist() == neg.tolist()


def _ff(**kw):
    return parse_trial({"algorithm": "ff", "backend": "torch", "seed": 5, "epochs": 2, "hidden": [4, 4, 4], **kw})


def test_the_refresh_cadence_picks_the_epoch_whose_draw_is_used():
    every = _ff(ff={"schedule": "greedy", "episodes": 3})
    episode = _ff(ff={"schedule": "greedy", "episodes": 3, "negatives_refresh": "episode"})
    once = _ff(ff={"schedule": "greedy", "episodes": 3, "negatives_refresh": "once"})
    # an episode: 2 epochs x 3 layers = global epochs 0-5, 6-11, 12-17
    assert [N.negatives_epoch(every, e) for e in (0, 5, 7)] == [0, 5, 7]
    assert [N.negatives_epoch(episode, e) for e in (0, 5, 6, 11, 12, 17)] == [0, 0, 6, 6, 12, 12]
    assert [N.negatives_epoch(once, e) for e in (0, 7, 17)] == [0, 0, 0]


def test_permuted_labels_drawn_once_are_one_permutation_of_the_training_set_kept_per_sample():
    """The popular PyTorch script: y[randperm(n)] once; each sample keeps its negative label."""
    y = np.random.default_rng(1).integers(0, 10, 1000)
    trial = _ff(batch_size=100, ff={"negatives": "permuted_label", "negatives_refresh": "once"})
    draws = N.Draws(trial, None, y)
    per_sample = {}
    for epoch in (0, 1, 2):
        batches = [np.asarray(b) for b in np.array_split(rng.epoch_order(5, epoch, 1000), 10)]
        for idx, neg in zip(batches, draws.epoch(epoch, batches, None, 0)):
            for i, label in zip(idx, neg):
                assert per_sample.setdefault(int(i), int(label)) == label
    labels = np.array([per_sample[i] for i in range(1000)])
    assert sorted(labels) == sorted(y) and not (labels == y).all()  # the set's labels, reassigned
    assert np.mean(labels == y) == pytest.approx(np.sum(np.bincount(y) ** 2) / 1000 ** 2, abs=0.03)


def test_hard_negatives_refreshed_per_episode_are_scored_once_per_episode():
    """Within an episode the draw is kept even though the weights move; the next episode rescores."""
    x = np.random.default_rng(2).random((50, 784))
    y = np.arange(50) % 10
    trial = _ff(batch_size=10, hidden=[6], epochs=2,
                ff={"schedule": "greedy", "episodes": 2, "negatives": "hard_label_top2", "negatives_refresh": "episode"})
    g = np.random.default_rng(3)
    weights = lambda: [(g.normal(size=(6, 784)), g.normal(size=6))]  # noqa: E731
    batches = [np.arange(s * 10, (s + 1) * 10) for s in range(5)]
    draws = N.Draws(trial, x, y)
    first = draws.epoch(0, batches, weights(), 0)
    assert all((a == b).all() for a, b in zip(first, draws.epoch(1, batches, weights(), 0)))  # same episode: kept
    w = weights()
    second = draws.epoch(2, batches, w, 0)  # episode 1: scored with these weights
    expect = N.best_wrong(N.label_scores(x, w, trial.ff, [0]), y)
    assert all((neg == expect[idx]).all() for neg, idx in zip(second, batches))
    assert all((neg != y[idx]).all() for neg, idx in zip(second, batches))


def test_hard_label_samples_the_models_distribution_over_wrong_classes():
    p = np.array([5.0, 1, 2, 3, 4, 5, 6, 7, 8, 9])  # class 0 is the truth: excluded
    scores = np.log(p)[None, :].repeat(4500, axis=0)
    u = (np.arange(4500) + 0.5) / 4500  # an even grid: the inverse CDF hits each class in proportion
    picked = N.sample_wrong(scores, np.zeros(4500, np.int64), u)
    counts = np.bincount(picked, minlength=10)
    assert counts[0] == 0
    assert counts[1:] == pytest.approx(4500 * p[1:] / p[1:].sum(), abs=1)  # by hand: 100, 200, ..., 900
    # u just below 1 cannot fall off the end; the best wrong class is the runner-up, ties to the lowest index
    assert N.sample_wrong(scores[:1], np.array([9]), np.array([1 - 2**-24]))[0] == 8
    assert N.best_wrong(np.array([[3.0, 9, 1, 9, 0, 0, 0, 0, 0, 0]]), np.array([1]))[0] == 3
    assert N.best_wrong(np.array([[3.0, 9, 1, 2, 0, 0, 0, 0, 0, 0]]), np.array([0]))[0] == 1


def test_blur_by_hand():
    m = np.zeros((1, 28, 28))
    m[0, 10, 10] = 1.0
    b = N.blur(m, 1)  # the outer product of [1/4, 1/2, 1/4] with itself around (10, 10)
    assert b[0, 9:12, 9:12] == pytest.approx(np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]))
    assert b.sum() == pytest.approx(1.0) and b[0, :8].sum() == 0
    edge = np.zeros((1, 28, 28))
    edge[0, 0, 0] = 1.0  # the border pixel repeated outside: 3/4 stays in the corner along each axis
    assert N.blur(edge, 1)[0, 0, 0] == pytest.approx(0.75 * 0.75)
    ones = np.ones((1, 28, 28))
    assert (N.blur(ones, 6) == 1.0).all()  # a constant survives blurring, borders included


def test_hybrid_masks_have_the_blur_and_threshold_statistics():
    m = N.hybrid_masks(0, 0, np.arange(3000), 6, MNIST)
    assert set(np.unique(m)) == {0.0, 1.0} and m.mean() == pytest.approx(0.5, abs=0.01)  # symmetric: half of each image
    img = m.reshape(-1, 28, 28)
    same_h = (img[:, :, 1:] == img[:, :, :-1]).mean()
    bits = rng.lowbias32(np.arange(3000 * 784, dtype=np.uint32)
                         ^ np.uint32(rng.stream_key(0, rng.STREAM_MASK, 0))) >> np.uint32(31)
    raw = bits.reshape(-1, 28, 28)
    assert (raw[:, :, 1:] == raw[:, :, :-1]).mean() == pytest.approx(0.5, abs=0.01)  # the bits: independent
    assert same_h > 0.85  # blurred then thresholded: large blobs, neighbours mostly agree
    fewer = N.hybrid_masks(0, 0, np.arange(3000), 1, MNIST).reshape(-1, 28, 28)
    assert (fewer[:, :, 1:] == fewer[:, :, :-1]).mean() < same_h  # more passes, larger blobs
    assert (N.hybrid_masks(0, 0, np.arange(5), 6, MNIST) == m[:5]).all()
    assert not (N.hybrid_masks(0, 1, np.arange(5), 6, MNIST) == m[:5]).all()


def test_hybrid_partners_are_always_of_another_class_and_spread_over_it():
    y = np.random.default_rng(2).integers(0, 10, 20000)
    partners = N.hybrid_partners(3, 0, np.arange(len(y)), y)
    assert not (y[partners] == y).any()
    for c in range(10):
        counts = np.bincount(y[partners[y == c]], minlength=10)
        assert counts[c] == 0 and (counts[np.arange(10) != c] > 0.7 * (y == c).sum() / 9).all()
    assert len(np.unique(partners)) > 0.55 * len(y)  # spread over the members, not a few favourites
    trial = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 3, "hidden": [4], "epochs": 1, "batch_size": 4,
                         "ff": {"negatives": "hybrid_image", "prediction": "softmax"}})
    x = np.random.default_rng(0).random((20000, 784))
    idx = np.arange(4)
    neg = N.negative_inputs(trial, x, x[idx], idx, partners[idx], 0)
    m = N.hybrid_masks(3, 0, idx, 6, MNIST)
    assert neg == pytest.approx(m * x[idx] + (1 - m) * x[partners[idx]])
    with pytest.raises(ValueError, match=r"classes \[3\] are missing"):
        N.check_data(trial.ff, y[y != 3])


def test_score_layers():
    ff = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [4, 4, 4], "epochs": 1,
                      "ff": {"prediction_layers": [1, 2]}}).ff
    assert N.score_layers(ff, 2) == [1, 2] and N.score_layers(ff, 1) == [1] and N.score_layers(ff, 0) == [0]


# ---------------------------------------------------------------- each backend's ops, exactly

def _backend_ops(name):
    ok, reason = registry.status(name)
    if not ok:
        pytest.skip(reason)
    return importlib.import_module(f"ffbench_backends.{name}.ops")


def _run(name, ops, seed, epoch, scores, y, u_index):
    """(wrong, permutations, hard, top2) from a backend's ops, as NumPy."""
    neg_key, perm_key = stream_key(seed, STREAM_NEGATIVES, epoch), stream_key(seed, STREAM_PERMUTE, epoch)
    if name == "torch":
        import torch
        t = lambda a: torch.as_tensor(a)
        idx = t(np.arange(len(y), dtype=np.int64))
        u = ops.uniform24(ops.negatives_hash(seed, epoch, idx))
        out = (ops.wrong_labels(seed, epoch, idx, t(y)), ops.batch_permutations(seed, epoch, 4, 25, "cpu"),
               ops.sample_wrong(t(scores), t(y), u), ops.best_wrong(t(scores), t(y)))
        return [o.numpy() for o in out]
    if name == "jax":
        import jax.numpy as jnp
        idx, yy, ss = jnp.arange(len(y), dtype=jnp.uint32), jnp.asarray(y, jnp.int32), jnp.asarray(scores)
        u = ops.uniform24(ops.negatives_hash(jnp.uint32(neg_key), idx))
        out = (ops.wrong_labels(jnp.uint32(neg_key), idx, yy), ops.batch_permutations(jnp.uint32(perm_key), 4, 25),
               ops.sample_wrong(ss, yy, u), ops.best_wrong(ss, yy))
        return [np.asarray(o) for o in out]
    from keras import ops as K
    idx, yy, ss = K.arange(len(y), dtype="uint32"), K.convert_to_tensor(y.astype(np.int32)), K.convert_to_tensor(scores)
    u = ops.uniform24(ops.negatives_hash(neg_key, idx))
    out = (ops.wrong_labels(neg_key, idx, yy), ops.batch_permutations(perm_key, 4, 25), ops.sample_wrong(ss, yy, u),
           ops.best_wrong(ss, yy))
    return [np.asarray(K.convert_to_numpy(o)) for o in out]


def _hybrid(name, ops, seed, epoch, y, image):
    """(partners, masks of the first 8) from a backend's ops, as NumPy."""
    from ffbench.reference.rng import STREAM_HYBRID, STREAM_MASK
    hk, mk = stream_key(seed, STREAM_HYBRID, epoch), stream_key(seed, STREAM_MASK, epoch)
    if name == "torch":
        import torch
        idx, yy = torch.arange(len(y)), torch.as_tensor(y)
        packed = ops.hybrid_masks(torch.tensor([mk, 0]), idx[:16].view(2, 8), 6, image)  # a pack of two: one key each
        assert (packed[1] == ops.hybrid_masks(0, idx[8:16], 6, image)).all()
        return ops.hybrid_partners(seed, epoch, idx, yy, ops.class_table(yy)).numpy(), packed[0].numpy()
    if name == "jax":
        import jax.numpy as jnp
        idx, yy = jnp.arange(len(y), dtype=jnp.uint32), jnp.asarray(y, jnp.int32)
        return (np.asarray(ops.hybrid_partners(jnp.uint32(hk), idx, yy, ops.class_table(yy))),
                np.asarray(ops.hybrid_masks(jnp.uint32(mk), idx[:8], 6, image)))
    from keras import ops as K
    idx, yy = K.arange(len(y), dtype="uint32"), K.convert_to_tensor(y.astype(np.int32))
    rows = K.convert_to_tensor(np.repeat(np.array([0, mk], np.uint32), 8))  # a pack of two: each row keyed by its member
    packed = K.convert_to_numpy(ops.hybrid_masks(rows, idx[:16], 6, image))
    assert (packed[:8] == K.convert_to_numpy(ops.hybrid_masks(0, idx[:8], 6, image))).all()
    assert (packed[8:] == K.convert_to_numpy(ops.hybrid_masks(mk, idx[8:16], 6, image))).all()
    return (np.asarray(K.convert_to_numpy(ops.hybrid_partners(hk, idx, yy, ops.class_table(yy)))),
            np.asarray(K.convert_to_numpy(ops.hybrid_masks(mk, idx[:8], 6, image))))


@pytest.mark.parametrize("image", [MNIST, Geometry(3, 6, 5)], ids=["mnist", "rgb6x5"])
@pytest.mark.parametrize("name", ["torch", "jax", "keras"])
def test_backend_hybrid_ops_equal_the_reference(name, image):
    ops = _backend_ops(name)
    y = np.random.default_rng(4).integers(0, 10, 3000)
    partners, masks = _hybrid(name, ops, 9, 1, y, image)
    assert (partners == N.hybrid_partners(9, 1, np.arange(3000), y)).all()
    assert (masks == N.hybrid_masks(9, 1, np.arange(8), 6, image)).all()


def test_hybrid_masks_of_a_colour_image_are_one_grid_mask_in_every_channel():
    image = Geometry(3, 6, 5)
    m = N.hybrid_masks(2, 0, np.arange(40), 6, image).reshape(40, 3, 30)
    assert (m[:, 1] == m[:, 0]).all() and (m[:, 2] == m[:, 0]).all()
    gray = N.hybrid_masks(2, 0, np.arange(40), 6, Geometry(1, 6, 5))  # the same grid's hashes and blur
    assert (m[:, 0] == gray).all() and 0.3 < gray.mean() < 0.7


@pytest.mark.parametrize("name", ["torch", "jax", "keras"])
def test_backend_negative_ops_equal_the_reference(name):
    ops = _backend_ops(name)
    g = np.random.default_rng(1)
    y = g.integers(0, 10, 100)
    scores = (g.normal(size=(100, 10)) * 3).astype(np.float32)
    wrong, perms, hard, top2 = _run(name, ops, 7, 2, scores, y, None)
    assert (wrong == rng.wrong_labels(7, 2, np.arange(100), y)).all()
    assert (perms == rng.batch_permutations(7, 2, 4, 25)).all()
    u = rng.uniform24(rng.negatives_hash(7, 2, np.arange(100)))
    assert (hard == N.sample_wrong(scores.astype(np.float64), y, u)).all() and not (hard == y).any()
    assert (top2 == N.best_wrong(scores, y)).all()


def test_every_backend_records_the_same_collision_rate_as_the_reference(mnist_dir):
    """permuted_label's per-epoch `negative_collision_rate`: the fraction of the epoch's
    negatives that carry the true label, counted on the device, equals the reference's count."""
    from ffbench.data import prepare
    from ffbench.loop import fit
    from ffbench.reference.train import batch_size_for, batches
    spec = {"algorithm": "ff", "seed": 3, "hidden": [20], "epochs": 2, "batch_size": 25,
            "data": {"train_subset": 500, "test_subset": 100}, "ff": {"negatives": "permuted_label"}}
    trial = parse_trial({**spec, "backend": "torch"})
    data = prepare(trial.data)
    x, y = data.train.x.astype(np.float64), data.train.y
    draws = N.Draws(trial, x, y)
    want = []
    for e in range(2):
        bs = batches(trial.seed, e, len(y), batch_size_for(trial, len(y)))
        want.append(N.collision_rate(draws.epoch(e, bs, None, 0), bs, y))
    for name in registry.installed():
        outcome = fit(registry.load(name), parse_trial({**spec, "backend": name}), data)
        got = [r["value"] for r in outcome.curves if r["metric"] == "negative_collision_rate"]
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)  # one miscount in 500 is 2e-3
    assert 0.05 < np.mean(want) < 0.25  # about 1/25 + 24/25 * 0.1
