"""The SymBa layer objective (`ffbench.variants.builtin_objectives.SymBa`): hand-computed
losses and gradients, in the reference and in every backend."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import registry
from ffbench.reference.finite_diff import central_difference
from ffbench.spec import parse_trial
from ffbench.variants import OBJECTIVES
from ffbench.variants.registry import VariantError

SYMBA = OBJECTIVES.get("symba")
# two pairs: positives' goodness (sum of squares) 1 and 4, negatives' 2 and 0
H = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])


def _ff(**kw):
    return parse_trial(dict(algorithm="ff", backend="torch", seed=0, hidden=[2], epochs=1, ff={"objective": "symba", **kw})).ff


def test_the_loss_is_softplus_of_minus_alpha_times_each_pairs_separation():
    ff = _ff(goodness="sum")
    p = SYMBA.params(ff.objective_params)
    assert p.alpha == 4.0  # the sources' default
    # separations 1 - 2 = -1 and 4 - 0 = 4: mean(log(1 + e^4), log(1 + e^-16))
    expect = (np.log1p(np.exp(4.0)) + np.log1p(np.exp(-16.0))) / 2
    assert SYMBA.loss(H, 2, ff, p, 2) == pytest.approx(expect, rel=1e-12)
    mean = _ff(goodness="mean", objective_params={"alpha": 2.0})  # goodness / units: separations -0.5 and 2
    assert SYMBA.loss(H, 2, mean, SYMBA.params(mean.objective_params), 2) == pytest.approx(
        (np.log1p(np.exp(1.0)) + np.log1p(np.exp(-4.0))) / 2, rel=1e-12)
    np.testing.assert_allclose(SYMBA.score(H, ff, p), [1, 4, 2, 0])


@pytest.mark.parametrize("goodness", ["sum", "mean"])
def test_its_exact_gradient_matches_central_differences(goodness):
    ff = _ff(goodness=goodness, objective_params={"alpha": 1.5})
    p, h = SYMBA.params(ff.objective_params), np.random.default_rng(0).random((6, 5))
    np.testing.assert_allclose(SYMBA.grad_h(h, 3, ff, p, 5),
                               central_difference(lambda v: SYMBA.loss(v, 3, ff, p, 5), h), rtol=1e-6, atol=1e-9)


def test_it_refuses_unpaired_rows_a_threshold_and_a_non_positive_alpha():
    with pytest.raises(ValueError, match="symba pairs each positive with one negative: got 1 positives, 3 negatives"):
        SYMBA.loss(H, 1, _ff(goodness="sum"), SYMBA.params(None), 2)
    with pytest.raises(ValueError, match="ff.threshold does not apply to ff.objective: symba"):
        _ff(threshold=3.0)
    with pytest.raises((ValueError, VariantError), match="alpha"):
        _ff(objective_params={"alpha": 0.0})


@pytest.mark.parametrize("backend", ["torch", "jax", "keras"])
def test_each_backend_gives_the_reference_loss_and_its_autodiff_the_exact_gradient(backend):
    if not registry.status(backend)[0]:
        pytest.skip(f"{backend} is not installed")
    ff = _ff(goodness="mean", objective_params={"alpha": 4.0})
    p, h = SYMBA.params(ff.objective_params), np.random.default_rng(1).random((8, 3)).astype(np.float32)
    impl = SYMBA.implementation(backend)
    if backend == "torch":
        import torch
        t = torch.tensor(h, requires_grad=True)
        loss = impl.loss(t, 4, ff, p, 3)
        loss.backward()
        got, grad = float(loss), t.grad.numpy()
    elif backend == "jax":
        import jax
        got, grad = jax.value_and_grad(lambda v: impl.loss(v, 4, ff, p, 3))(h)
    else:
        from ffbench_backends.keras import ops as kops
        from keras import ops
        got, grad = kops.grad_h(lambda v: impl.loss(v, 4, ff, p, 3), ops.convert_to_tensor(h))
        got, grad = ops.convert_to_numpy(got), ops.convert_to_numpy(grad)
    h64 = h.astype(np.float64)
    assert float(got) == pytest.approx(SYMBA.loss(h64, 4, ff, p, 3), rel=1e-5)
    np.testing.assert_allclose(np.asarray(grad), SYMBA.grad_h(h64, 4, ff, p, 3), rtol=1e-4, atol=1e-7)
