"""data.jitter: the shifts checked by hand, and every backend's ops against the reference exactly."""

import importlib

import numpy as np
import pytest

from ffbench import registry
from ffbench.geometry import MNIST, Geometry
from ffbench.reference import augment, rng
from ffbench.reference.rng import STREAM_JITTER, stream_key
from ffbench.spec import parse_trial


def test_shift_by_hand():
    x = np.zeros((2, 784))
    x[0, 10 * 28 + 10] = 1.0  # pixel (10, 10)
    x[1, 0] = 5.0  # pixel (0, 0), shifted off the image
    out = augment.shift_images(x, np.array([2, -1]), np.array([-1, 0]), MNIST)
    assert out[0, 12 * 28 + 9] == 1.0 and out[0].sum() == 1.0  # down 2, left 1
    assert out[1].sum() == 0.0  # moved up out of the image; zeros came in
    assert (augment.shift_images(x, np.zeros(2, int), np.zeros(2, int), MNIST) == x).all()


def test_shift_of_a_colour_image_moves_every_channel_alike():
    image = Geometry(3, 4, 5)  # rows of 60: channel c, row r, column k at c * 20 + r * 5 + k
    x = np.zeros((1, 60))
    x[0, [0 * 20 + 1 * 5 + 2, 1 * 20 + 3 * 5 + 4, 2 * 20 + 0 * 5 + 0]] = [1.0, 2.0, 3.0]
    out = augment.shift_images(x, np.array([1]), np.array([-2]), image)  # down 1, left 2
    assert out[0, 0 * 20 + 2 * 5 + 0] == 1.0 and out[0, 1 * 20 + 4 * 5 + 2] == 0.0  # row 4 is off the image
    assert out[0].sum() == 1.0  # (3, 4) went below the bottom, (0, 0) off the left edge


def test_jitter_is_uniform_over_the_25_shifts_and_new_each_epoch():
    dy, dx = rng.jitter_shifts(0, 0, np.arange(25000), 2)
    assert dy.min() == dx.min() == -2 and dy.max() == dx.max() == 2
    counts = np.bincount((dy + 2) * 5 + (dx + 2), minlength=25)
    assert (np.abs(counts - 1000) < 4 * np.sqrt(1000)).all()
    dy1, dx1 = rng.jitter_shifts(0, 1, np.arange(25000), 2)
    assert (dy1 != dy).mean() > 0.7
    trial = parse_trial({"algorithm": "bp", "backend": "torch", "seed": 0, "hidden": [4], "epochs": 1, "data": {"jitter": 2}})
    x = np.random.default_rng(0).random((10, 784))
    assert (augment.batch_images(trial, x, np.arange(3), 0) == augment.shift_images(x[:3], dy[:3], dx[:3], MNIST)).all()
    plain = trial.model_copy(update={"data": trial.data.model_copy(update={"jitter": 0})})
    assert (augment.batch_images(plain, x, np.arange(3), 0) == x[:3]).all()


@pytest.mark.parametrize("image", [MNIST, Geometry(3, 6, 5)], ids=["mnist", "rgb6x5"])
@pytest.mark.parametrize("name", ["torch", "jax", "keras"])
def test_backend_jitter_equals_the_reference(name, image):
    ok, reason = registry.status(name)
    if not ok:
        pytest.skip(reason)
    ops = importlib.import_module(f"ffbench_backends.{name}.ops")
    x = np.random.default_rng(1).random((50, image.size)).astype(np.float32)
    idx = np.arange(50)
    want = augment.shift_images(x, *rng.jitter_shifts(4, 3, idx, 2), image)
    key = stream_key(4, STREAM_JITTER, 3)
    if name == "torch":
        import torch
        got = ops.batch_images(torch.as_tensor(x), torch.as_tensor(idx), key, 2, image).numpy()
        # a pack of two members: one key each, indices (2, 25), each member's images its own
        keys = [key, stream_key(5, STREAM_JITTER, 3)]
        both = ops.batch_images(torch.as_tensor(x), torch.as_tensor(idx).view(2, 25), torch.tensor(keys), 2, image).numpy()
        assert (both[0] == want[:25]).all()
        assert (both[1] == augment.shift_images(x[25:], *rng.jitter_shifts(5, 3, idx[25:], 2), image)).all()
    elif name == "jax":
        import jax.numpy as jnp
        got = np.asarray(ops.batch_images(jnp.asarray(x), jnp.asarray(idx, jnp.int32), jnp.uint32(key), 2, image))
    else:
        from keras import ops as K
        xt, it = K.convert_to_tensor(x), K.convert_to_tensor(idx.astype(np.int32))
        got = np.asarray(K.convert_to_numpy(ops.batch_images(xt, it, key, 2, image)))
        # a pack of two members: their rows one after the other, each row keyed by its member
        rows = K.convert_to_tensor(np.repeat(np.array([key, stream_key(5, STREAM_JITTER, 3)], np.uint32), 25))
        both = K.convert_to_numpy(ops.batch_images(xt, it, rows, 2, image))
        assert (both[:25] == want[:25]).all()
        assert (both[25:] == augment.shift_images(x[25:], *rng.jitter_shifts(5, 3, idx[25:], 2), image)).all()
    assert (got == want).all()
