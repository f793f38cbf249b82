"""Negative-data strategies: the reference checked by hand, and every backend's ops checked
against the reference exactly on small inputs."""

import importlib

import numpy as np
import pytest

from ffbench import registry
from ffbench.reference import negatives as N
from ffbench.reference import rng
from ffbench.reference.rng import STREAM_NEGATIVES, STREAM_PERMUTE, stream_key
from ffbench.spec import NEGATIVES, parse_trial


def test_every_strategy_is_listed_and_valid():
    assert set(NEGATIVES) == {"wrong_label", "permuted_label", "hard_label", "hard_label_top2"}
    for name in NEGATIVES:
        parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1, "ff": {"negatives": name}})
    with pytest.raises(ValueError, match="needs ff.negatives_refresh: epoch"):
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
