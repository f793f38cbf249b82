"""The variant registries: built-ins, in-process plugins, entry-point plugins, typed parameters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ffbench import variants
from ffbench.data import dataset_checksum
from ffbench.geometry import Geometry
from ffbench.reference import ff as RF
from ffbench.reference.finite_diff import central_difference, probe_entries
from ffbench.spec import FFSpec, parse_trial, trial_id
from ffbench.strict import Strict
from ffbench.variants import NEGATIVES, OBJECTIVES, Draw, NegativeStrategy

BASE = {"algorithm": "ff", "backend": "torch", "seed": 3, "hidden": [20], "epochs": 1}


class OffsetParams(Strict):
    offset: int = 1


class OffsetLabel(NegativeStrategy):
    """A test plugin: the label (y + offset) mod 10, with a reference only."""

    name = "test_offset_label"
    description = "the image with the label shifted by `offset`"
    Params = OffsetParams
    backends = {}

    def sample(self, draw: Draw) -> np.ndarray:
        return (draw.y + draw.params.offset) % 10


@pytest.fixture
def offset_label():
    strat = NEGATIVES.register(OffsetLabel())
    yield strat
    NEGATIVES.unregister(strat.name)


def test_builtins_are_listed_without_importing_them():
    code = ("import sys, ffbench.variants as v; print(len(v.NEGATIVES.names()), len(v.OBJECTIVES.names()),"
            "any(m.startswith('ffbench.variants.builtin') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["8", "4", "False"]


def test_logistic_gradient_equals_central_differences_of_its_loss():
    g = np.random.default_rng(0)
    h = np.maximum(g.normal(0.5, 1.0, (12, 7)), 0)
    for kw in ({}, {"goodness": "sum", "threshold": 3.0}, {"sign": "min_ssq", "threshold_scale": "input_width"}):
        ff, obj = FFSpec(**kw), OBJECTIVES.get("logistic")
        exact = obj.grad_h(h, 6, ff, None, 5)
        numeric = central_difference(lambda v, obj=obj, ff=ff: obj.loss(v, 6, ff, None, 5), h)
        np.testing.assert_allclose(numeric, exact, rtol=1e-6, atol=1e-9)
        assert np.abs(exact).max() > 1e-3


def test_central_difference_by_hand():
    np.testing.assert_allclose(central_difference(lambda v: float((v ** 3).sum()), np.array([1.0, -2.0])), [3.0, 12.0],
                               rtol=1e-8)


def test_central_difference_at_chosen_entries_and_which_entries():
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    np.testing.assert_allclose(central_difference(lambda v: float((v ** 3).sum()), x, at=np.array([3, 0])), [0.75, 3.0],
                               rtol=1e-8)
    assert probe_entries(np.ones(6), 6) is None  # small enough: every entry
    guide = np.array([0.0, 5.0, -9.0, 0.1, 0.2, 7.0, 0.0, 0.3])
    at = probe_entries(guide, 4, seed=1)
    assert len(at) == 4 and len(set(at.tolist())) == 4 and {2, 5} <= set(at.tolist())  # the largest |guide| first
    np.testing.assert_array_equal(at, probe_entries(guide, 4, seed=1))  # seeded


def test_the_forward_layer_objective_is_what_layer_step_differentiates():
    """central differences of `layer_objective` (loss + peer) equal `layer_step`'s analytic dW, db."""
    g = np.random.default_rng(2)
    x_pos, x_neg = g.random((5, 9)), g.random((5, 9))
    w, b = g.normal(0, 0.5, (4, 9)), g.normal(0.2, 0.1, 4)
    for kw in ({"peer_weight": 0.3}, {"goodness": "sum", "threshold": 1.0, "sign": "min_ssq", "norm": "l2"}):
        ff = FFSpec(**kw)
        st = RF.layer_step(x_pos, x_neg, w, b, ff)
        np.testing.assert_allclose(central_difference(lambda v, ff=ff: RF.layer_objective(x_pos, x_neg, v, b, ff), w),
                                   st.dw, rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(central_difference(lambda v, ff=ff: RF.layer_objective(x_pos, x_neg, w, v, ff), b),
                                   st.db, rtol=1e-6, atol=1e-10)
        assert RF.layer_objective(x_pos, x_neg, w, b, ff) == pytest.approx(st.loss + ff.peer_weight * st.peer_loss)


def test_a_plugin_stream_is_its_own():
    from ffbench.reference import rng
    streams = {rng.plugin_stream(n) for n in ("a", "b", "cyclic_label", "my_strategy")}
    assert len(streams) == 4 and min(streams) > 255 and max(streams) < 2**32
    assert rng.plugin_stream("a") == rng.plugin_stream("a")
    h = rng.sample_hash(0, rng.plugin_stream("a"), 3, np.arange(50_000))
    np.testing.assert_allclose(np.bincount(rng.below(h, 7)) / 50_000, [1 / 7] * 7, atol=0.01)


def test_a_registered_strategy_validates_draws_and_is_refused_where_unimplemented(offset_label):
    t = parse_trial({**BASE, "ff": {"negatives": "test_offset_label", "negatives_params": {"offset": 3}}})
    assert t.ff.negatives_params == {"offset": 3}
    default = parse_trial({**BASE, "ff": {"negatives": "test_offset_label", "negatives_params": {"offset": 1}}})
    assert default.ff.negatives_params is None  # the normal form: defaults dropped, so ids stay
    assert trial_id(default, "d") == trial_id(parse_trial({**BASE, "ff": {"negatives": "test_offset_label"}}), "d")
    from ffbench.reference.negatives import sample_negatives
    y = np.array([0, 4, 9])
    np.testing.assert_array_equal(sample_negatives(t, np.zeros((3, 784)), y, 0, None, 0), [3, 7, 2])
    assert "has no torch implementation" in variants.skip(t)
    from ffbench.packing import never_packed
    assert "one trial at a time" in never_packed(t)
    with pytest.raises(ValueError, match=r"negative strategy 'test_offset_label': offset: Input should be a valid integer"):
        parse_trial({**BASE, "ff": {"negatives": "test_offset_label", "negatives_params": {"offset": "3"}}})
    with pytest.raises(ValueError, match="extra_forbidden|Extra inputs"):
        parse_trial({**BASE, "ff": {"negatives": "test_offset_label", "negatives_params": {"ofset": 3}}})


def test_builtin_strategy_takes_no_parameters():
    with pytest.raises(ValueError, match="negative strategy 'wrong_label': alpha: Extra inputs are not permitted"):
        parse_trial({**BASE, "ff": {"negatives_params": {"alpha": 1}}})


def test_objective_fields_an_objective_does_not_read_are_refused():
    class Plain(variants.LayerObjective):
        name, description, reads = "test_plain", "sum of squares, no threshold", ("goodness",)

    OBJECTIVES.register(Plain())
    try:
        with pytest.raises(ValueError, match="ff.threshold does not apply to ff.objective: test_plain"):
            parse_trial({**BASE, "ff": {"objective": "test_plain", "threshold": 2.0}})
        assert parse_trial({**BASE, "ff": {"objective": "test_plain", "goodness": "sum"}}).ff.objective == "test_plain"
    finally:
        OBJECTIVES._targets.pop("test_plain")
        OBJECTIVES._loaded.pop("test_plain", None)


def test_default_spec_ids_and_reference_scores_are_unchanged():
    # label scores through the objective registry equal the signed sum of goodness
    g = np.random.default_rng(1)
    x, params = g.random((5, 784)), [(g.normal(0, 0.05, (16, 784)), np.zeros(16))]
    for sign in ("max_ssq", "min_ssq"):
        ff = FFSpec(sign=sign, prediction_layers=[0])
        hs = [RF.forward_stack(RF.overlay(x, np.full(5, c), ff), params, ff)[0] for c in range(10)]
        naive = np.stack([(h * h).mean(axis=1) for h in hs], axis=1) * (1 if sign == "max_ssq" else -1)
        np.testing.assert_allclose(RF.label_scores(x, params, ff, [0]), naive, rtol=1e-12)
    assert dataset_checksum("mnist") == variants.DATASETS.get("mnist").checksum


def test_an_entry_point_plugin_is_found_listed_and_validated(tmp_path):
    (tmp_path / "myneg.py").write_text(textwrap.dedent('''
        from ffbench.strict import Strict
        from ffbench.variants import NegativeStrategy

        class Params(Strict):
            offset: int = 1

        class Shift(NegativeStrategy):
            name = "shift_label"
            description = "the label shifted by offset (an entry-point plugin)"
            Params = Params
            backends = {"torch": "myneg:TorchShift"}

            def sample(self, draw):
                return (draw.y + draw.params.offset) % 10
    '''))
    dist = tmp_path / "myneg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myneg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ffbench.negatives]\nshift_label = myneg:Shift\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listing = subprocess.run([sys.executable, "-m", "ffbench", "list"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, check=True).stdout
    assert "shift_label" in listing and "plugin myneg:Shift" in listing
    code = ("from ffbench.spec import parse_trial\n"
            f"t = parse_trial({{**{BASE!r}, 'ff': {{'negatives': 'shift_label', 'negatives_params': {{'offset': 4}}}}}})\n"
            "from ffbench import variants; print(t.ff.negatives_params, variants.skip(t), "
            "variants.skip(t.model_copy(update={'backend': 'jax'})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.startswith("{'offset': 4} None negative strategy 'shift_label' has no jax implementation")


class TinyData(variants.DatasetSource):
    name = "test_tiny_data"
    description = "200 random 28 x 28 images (a registered dataset)"
    checksum = "ab" * 32
    shape = Geometry(1, 28, 28)
    train_size, test_size = 200, 50
    pixel_mean, pixel_std = (0.5,), (0.25,)

    def load(self, path):
        g = np.random.default_rng(0)
        return {"x_train": g.integers(0, 256, (200, 28, 28), dtype=np.uint8), "y_train": np.arange(200, dtype=np.uint8) % 10,
                "x_test": g.integers(0, 256, (50, 28, 28), dtype=np.uint8), "y_test": np.arange(50, dtype=np.uint8) % 10}


def test_a_registered_dataset_is_standardised_with_its_own_statistics_and_recorded_by_its_checksum():
    from ffbench.data import prepare
    from ffbench.spec import DataSpec
    variants.DATASETS.register(TinyData())
    try:
        spec = DataSpec(name="test_tiny_data", validation_size=20, pixel_scale="standardize")
        ds, raw = prepare(spec), TinyData().load(None)
        assert (len(ds.train), len(ds.val), len(ds.test)) == (180, 20, 50) and ds.checksum == "ab" * 32
        np.testing.assert_allclose(ds.train.x[0], (raw["x_train"][0].reshape(-1) / 255.0 - 0.5) / 0.25, atol=1e-6)
        assert dataset_checksum("test_tiny_data") == "ab" * 32
        t = parse_trial({**BASE, "data": {"name": "test_tiny_data", "validation_size": 20}})
        assert trial_id(t, dataset_checksum("test_tiny_data")) != trial_id(t, dataset_checksum("mnist"))
        with pytest.raises(ValueError, match="leaves no training images of the 200 in test_tiny_data"):
            DataSpec(name="test_tiny_data", validation_size=200)
    finally:
        variants.DATASETS.unregister("test_tiny_data")
