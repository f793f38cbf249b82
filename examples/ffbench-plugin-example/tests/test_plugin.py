"""The plugin's reference math, by hand (run with the plugin installed: `pip install -e .`)."""

import numpy as np
import pytest
from ffbench_plugin_example.cyclic_label import STREAM

from ffbench.reference import rng
from ffbench.spec import FFSpec, parse_trial
from ffbench.variants import NEGATIVES, OBJECTIVES, Draw, VariantError

TRIAL = {"algorithm": "ff", "backend": "torch", "seed": 7, "hidden": [20], "epochs": 1}


def draw(max_offset: int, n: int = 30_000, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    strategy = NEGATIVES.get("cyclic_label")
    trial = parse_trial({**TRIAL, "ff": {"negatives": "cyclic_label", "negatives_params": {"max_offset": max_offset}}})
    y = np.arange(n) % 10
    params = strategy.params(trial.ff.negatives_params)
    return y, strategy.sample(Draw(trial, np.zeros((n, 1)), y, epoch, params))


def test_cyclic_label_offsets_are_uniform_in_one_to_max_offset():
    y, neg = draw(3)
    offsets = (neg - y) % 10
    assert set(np.unique(offsets)) == {1, 2, 3}  # never 0: never the true label
    np.testing.assert_allclose(np.bincount(offsets)[1:] / len(y), [1 / 3] * 3, atol=0.01)
    assert np.array_equal(draw(3)[1], neg)  # the same seed and epoch: the same draw
    assert np.mean(draw(3, epoch=1)[1] != neg) > 0.5  # another epoch: another draw
    y, neg = draw(1)
    assert np.array_equal(neg, (y + 1) % 10)


def test_cyclic_label_has_its_own_stream():
    assert STREAM == rng.plugin_stream("cyclic_label") and STREAM > 255  # not a built-in stream


def test_margin_logistic_by_hand():
    obj = OBJECTIVES.get("margin_logistic")
    ff = FFSpec(goodness="sum", threshold=1.5, objective="margin_logistic")
    h = np.array([[1.0, 1.0], [0.0, 1.0]])  # goodness 2 (positive), 1 (negative)
    # positive: softplus((1.5 + 0.5 - 2) / 1) = ln 2; negative: softplus((1 - 1.5 + 0.5) / 1) = ln 2
    assert obj.loss(h, 1, ff, obj.params({"margin": 0.5}), 2) == pytest.approx(np.log(2))
    # temperature 2, margin 1: softplus(0.25) and softplus(0.25)
    assert obj.loss(h, 1, ff, obj.params({"margin": 1.0, "temperature": 2.0}), 2) == pytest.approx(np.log1p(np.exp(0.25)))


def test_margin_zero_is_the_builtin_logistic():
    g = np.random.default_rng(0)
    h = np.maximum(g.normal(0.5, 1.0, (12, 7)), 0)
    ff = FFSpec(threshold=0.7)
    plugin, builtin = OBJECTIVES.get("margin_logistic"), OBJECTIVES.get("logistic")
    assert plugin.loss(h, 6, ff, plugin.params({"margin": 0.0}), 5) == pytest.approx(builtin.loss(h, 6, ff, None, 5))


def test_bad_parameters_and_fields_are_one_line_errors():
    with pytest.raises(VariantError, match=r"negative strategy 'cyclic_label': max_offset: .*less than or equal to 9"):
        NEGATIVES.get("cyclic_label").parse_params({"max_offset": 12})
    with pytest.raises(ValueError, match="ff.sign does not apply to ff.objective: margin_logistic"):
        parse_trial({**TRIAL, "ff": {"objective": "margin_logistic", "sign": "min_ssq"}})
