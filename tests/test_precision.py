"""`precision`: fp32 (the parity-checked default), tf32 (a device setting), bf16 (bfloat16 matmuls)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ffbench import registry
from ffbench.parity import train
from ffbench.spec import normal_form, parse_trial

BASE = {"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [32, 32], "epochs": 2, "batch_size": 50,
        "optimizer": {"name": "sgd", "momentum": 0.9, "lr": 0.05}}


def bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 (ties to even), as float64: by hand, on the bits."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def test_precision_is_a_validated_field_and_fp32_keeps_old_ids():
    assert parse_trial(BASE).precision == "fp32"
    assert "precision" not in normal_form(parse_trial(BASE))  # the default: ids from before the field stay valid
    assert normal_form(parse_trial({**BASE, "precision": "bf16"}))["precision"] == "bf16"
    with pytest.raises(ValidationError, match="fp32"):
        parse_trial({**BASE, "precision": "fp16"})


def test_bf16_rounding_by_hand():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9, -3.0e-3], np.float32)
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1); 1 + 3*2^-8 ties up to 1 + 2^-6
    np.testing.assert_array_equal(bf16(x)[:4], [1.0, 1.0, 1 + 2**-6, 1.0])
    assert abs(bf16(x)[4] / -3.0e-3 - 1) < 2**-8


def _linear(name: str, x, w, b, precision):
    if name == "torch":
        import torch
        from ffbench_backends.torch import ops
        return ops.linear(torch.as_tensor(x), torch.as_tensor(w), torch.as_tensor(b), precision).numpy()
    from ffbench_backends.jax import ops
    return np.asarray(ops.linear(x, w, b, precision))


@pytest.mark.parametrize("name", [n for n in ("torch", "jax") if registry.status(n)[0]])
def test_linear_precisions_against_the_definition(name):
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((8, 64), (16, 64), (16,)))
    exact = x.astype(np.float64) @ w.T.astype(np.float64) + b
    for p in ("fp32", "tf32"):  # on a CPU, tf32 is fp32
        np.testing.assert_allclose(_linear(name, x, w, b, p), exact, rtol=1e-5, atol=1e-5)
    want = bf16((bf16(x) @ bf16(w).T).astype(np.float32)) + b  # operands and product in bfloat16, bias in float32
    got = _linear(name, x, w, b, "bf16")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2**-8, atol=1e-6)  # within one bfloat16 rounding of the product
    assert np.abs(got - exact).max() > 1e-3  # and really not float32


def _train(name: str, precision: str, x, y) -> dict:
    return train(registry.load(name), parse_trial({**BASE, "backend": name, "precision": precision}), x, y)


def test_bf16_training_is_close_to_fp32_and_the_same_in_torch_and_jax():
    names = [n for n in ("torch", "jax") if registry.status(n)[0]]
    rng = np.random.default_rng(1)
    x, y = rng.random((200, 784), dtype=np.float32), rng.integers(0, 10, 200).astype(np.int64)
    runs = {(n, p): _train(n, p, x, y) for n in names for p in ("fp32", "bf16")}
    for n in names:
        fp32, low = runs[(n, "fp32")]["W1"], runs[(n, "bf16")]["W1"]
        drift = np.abs(low - fp32).max() / np.abs(fp32).max()
        assert 1e-5 < drift < 5e-2, (n, drift)  # bf16 is in use, and stays an approximation of fp32
    if len(names) == 2:
        a, b = runs[("torch", "bf16")]["W1"], runs[("jax", "bf16")]["W1"]
        assert np.abs(a - b).max() / np.abs(a).max() < 2e-3  # measured 1.7e-4; fp32 agrees to 1.4e-7


@pytest.mark.skipif(not registry.status("keras")[0], reason="keras is not installed")
def test_keras_refuses_bf16_with_a_reason():
    backend = registry.load("keras")
    assert "bf16" in backend.skip(parse_trial({**BASE, "backend": "keras", "precision": "bf16"}))
    assert backend.skip(parse_trial({**BASE, "backend": "keras", "precision": "tf32"})) is None
