"""data.jitter: the shifts checked by hand, and every backend's ops against the reference exactly."""

import importlib

import numpy as np
import pytest

from ffbench import registry
from ffbench.reference import augment, rng
from ffbench.reference.rng import STREAM_JITTER, stream_key
from ffbench.spec import parse_trial


def test_shift_by_hand():
    x = np.zeros((2, 784))
    x[0, 10 * 28 + 10] = 1.0  # pixel (10, 10)
    x[1, 0] = 5.0  # pixel (0, 0), shifted off the image
    out = augment.shift_images(x, np.array([2, -1]), np.array([-1, 0]))
    assert out[0, 12 * 28 + 9] == 1.0 and out[0].sum() == 1.0  # down 2, left 1
    assert out[1].sum() == 0.0  # moved up out of the image; zeros came in
    assert (augment.shift_images(x, np.zeros(2, int), np.zeros(2, int)) == x).all()


def test_jitter_is_uniform_over_the_25_shifts_and_new_each_epoch():
    dy, dx = rng.jitter_shifts(0, 0, np.arange(25000), 2)
    assert dy.min() == dx.min() == -2 and dy.max() == dx.max() == 2
    counts = np.bincount((dy + 2) * 5 + (dx + 2), minlength=25)
    assert (np.abs(counts - 1000) < 4 * np.sqrt(1000)).all()
    dy1, dx1 = rng.jitter_shifts(0, 1, np.arange(25000), 2)
    assert (dy1 != dy).mean() > 0.7
    trial = parse_trial({"algorithm": "bp", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1, "data": {"jitter": 2}})
    x = np.random.default_rng(0).random((10, 784))
    assert (augment.batch_images(trial, x, np.arange(3), 0) == augment.shift_images(x[:3], dy[:3], dx[:3])).all()
    plain = trial.model_copy(update={"data": trial.data.model_copy(update={"jitter": 0})})
    assert (augment.batch_images(plain, x, np.arange(3), 0) == x[:3]).all()


@pytest.mark.parametrize("name", ["torch", "jax", "keras"])
def test_backend_jitter_equals_the_reference(name):
    ok, reason = registry.status(name)
    if not ok:
        pytest.skip(reason)
    ops = importlib.import_module(f"ffbench_backends.{name}.ops")
    x = np.random.default_rng(1).random((50, 784)).astype(np.float32)
    idx = np.arange(50)
    want = augment.shift_images(x, *rng.jitter_shifts(4, 3, idx, 2))
    key = stream_key(4, STREAM_JITTER, 3)
    if name == "torch":
        import torch
        got = ops.batch_images(torch.as_tensor(x), torch.as_tensor(idx), key, 2).numpy()
        # a pack of two members: one key each, indices (2, 25), each member's images its own
        keys = [key, stream_key(5, STREAM_JITTER, 3)]
        both = ops.batch_images(torch.as_tensor(x), torch.as_tensor(idx).view(2, 25), torch.tensor(keys), 2).numpy()
        assert (both[0] == want[:25]).all()
        assert (both[1] == augment.shift_images(x[25:], *rng.jitter_shifts(5, 3, idx[25:], 2))).all()
    elif name == "jax":
        import jax.numpy as jnp
        got = np.asarray(ops.batch_images(jnp.asarray(x), jnp.asarray(idx, jnp.int32), jnp.uint32(key), 2))
    else:
        from keras import ops as K
        xt, it = K.convert_to_tensor(x), K.convert_to_tensor(idx.astype(np.int32))
        got = np.asarray(K.convert_to_numpy(ops.batch_images(xt, it, key, 2)))
        # a pack of two members: their rows one after the other, each row keyed by its member
        rows = K.convert_to_tensor(np.repeat(np.array([key, stream_key(5, STREAM_JITTER, 3)], np.uint32), 25))
        both = K.convert_to_numpy(ops.batch_images(xt, it, rows, 2))
        assert (both[:25] == want[:25]).all()
        assert (both[25:] == augment.shift_images(x[25:], *rng.jitter_shifts(5, 3, idx[25:], 2))).all()
    assert (got == want).all()
