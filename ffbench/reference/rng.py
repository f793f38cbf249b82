"""Counter-based randomness shared by every backend.

Data order and negative labels must be identical in every backend for the same seed, and
must be generated on the device. So they are not drawn from any framework's RNG: they come
from a 32-bit integer hash (Wellons' `lowbias32`) of (key, sample index), which every
framework can evaluate elementwise with integer ops. The per-epoch key is a Python int
computed on the host, so only the elementwise part runs on the device.

- The order of epoch `e` is `argsort(hash(key(seed, ORDER, e) ^ i))` over sample indices
  `i`. The hash is a bijection, so the keys are distinct and the argsort is unique.
- The wrong label of sample `i` in epoch `e` is `(y + 1 + k) % 10` with
  `k = ((h >> 8) * 9) >> 24` in 0..8 and `h = hash(key(seed, NEGATIVES, e) ^ i)`:
  uniform over the 9 wrong classes (bias below 2**-24), and never the true label.

Initial weights are drawn once on the host with NumPy's PCG64 and copied to the device.
"""

from __future__ import annotations

import zlib

import numpy as np

MASK32 = 0xFFFFFFFF
MUL1 = 0x7FEB352D
MUL2 = 0x846CA68B

# Streams: independent sequences derived from one seed.
STREAM_ORDER = 1
STREAM_NEGATIVES = 2
STREAM_PERMUTE = 3
STREAM_HYBRID = 4  # hybrid_image: the partner image
STREAM_MASK = 5  # hybrid_image: the mask's random bits
STREAM_JITTER = 6  # data.jitter: each training image's shift
STREAM_SPLIT = 7  # class_split: the order of the negatives' pool
STREAM_PAIRING = 8  # self_contrastive: each minibatch's pairing offset


def plugin_stream(name: str) -> int:
    """The stream of a plugin variant called `name`: derived from the name (CRC-32), and
    never one of the built-in streams above (those are below 256)."""
    return 0x100 | (zlib.crc32(name.encode()) << 8) & MASK32


def lowbias32(x: np.ndarray) -> np.ndarray:
    """Elementwise 32-bit hash of a uint32 array (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint32)
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(MUL1)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(MUL2)
    return x ^ (x >> np.uint32(16))


def _hash_int(v: int) -> int:
    return int(lowbias32(np.array([v & MASK32], dtype=np.uint32))[0])


def stream_key(seed: int, stream: int, epoch: int) -> int:
    """The 32-bit key of one (seed, stream, epoch): a Python int, computed on the host."""
    return _hash_int(_hash_int(_hash_int(seed) ^ stream) ^ epoch)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of `n` training samples used in `epoch` (int64 indices)."""
    h = lowbias32(np.uint32(stream_key(seed, STREAM_ORDER, epoch)) ^ np.arange(n, dtype=np.uint32))
    return np.argsort(h, kind="stable").astype(np.int64)


def wrong_label_offset(h: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Map a uint32 hash to an offset in 1..num_classes-1."""
    k = ((np.asarray(h, np.uint32) >> np.uint32(8)) * np.uint32(num_classes - 1)) >> np.uint32(24)
    return k.astype(np.int64) + 1


def wrong_labels(seed: int, epoch: int, index: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Wrong labels for samples `index` (dataset indices) with true `labels`, in `epoch`."""
    return (np.asarray(labels, np.int64) + wrong_label_offset(negatives_hash(seed, epoch, index), num_classes)) % num_classes


def negatives_hash(seed: int, epoch: int, index: np.ndarray) -> np.ndarray:
    """The per-sample uint32 hash behind a sample's negative label in `epoch`."""
    return lowbias32(np.uint32(stream_key(seed, STREAM_NEGATIVES, epoch)) ^ np.asarray(index).astype(np.uint32))


def sample_hash(seed: int, stream: int, epoch: int, index: np.ndarray) -> np.ndarray:
    """The uint32 hash of each sample `index` in (seed, stream, epoch): the random bits of one
    draw, the same in every backend (each backend's ops: `sample_hash(stream_key, index)`)."""
    return lowbias32(np.uint32(stream_key(seed, stream, epoch)) ^ np.asarray(index).astype(np.uint32))


def below(h: np.ndarray, n: int) -> np.ndarray:
    """A uint32 hash -> an integer in 0..n-1, uniform up to a bias below n * 2**-24 (int64)."""
    return (((np.asarray(h, np.uint32) >> np.uint32(8)) * np.uint32(n)) >> np.uint32(24)).astype(np.int64)


def uniform24(h: np.ndarray) -> np.ndarray:
    """A uint32 hash -> a uniform number in [0, 1) with 24 bits (exact in float32)."""
    return (np.asarray(h, np.uint32) >> np.uint32(8)).astype(np.float64) * 2.0**-24


def batch_permutations(seed: int, epoch: int, steps: int, batch_size: int) -> np.ndarray:
    """(steps, batch_size): for each minibatch of `epoch`, a permutation of its positions."""
    h = lowbias32(np.uint32(stream_key(seed, STREAM_PERMUTE, epoch)) ^ np.arange(steps * batch_size, dtype=np.uint32))
    return np.argsort(h.reshape(steps, batch_size), axis=1, kind="stable").astype(np.int64)


def jitter_shifts(seed: int, epoch: int, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) in [-k, k] of each sample in `epoch`: uniform over the (2k + 1)^2 shifts."""
    h = lowbias32(np.uint32(stream_key(seed, STREAM_JITTER, epoch)) ^ np.asarray(index).astype(np.uint32))
    n = np.uint32(2 * k + 1)
    dy = ((h >> np.uint32(8)) * n) >> np.uint32(24)
    dx = ((lowbias32(h) >> np.uint32(8)) * n) >> np.uint32(24)
    return dy.astype(np.int64) - k, dx.astype(np.int64) - k


def init_rng(seed: int) -> np.random.Generator:
    """The generator for initial weights (host side, once per trial)."""
    return np.random.Generator(np.random.PCG64([seed, 0xFFBE]))
