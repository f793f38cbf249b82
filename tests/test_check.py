"""`ffbench check`: every installed backend passes; a wrong number FAILs; fixtures round-trip."""

import json

import numpy as np
import pytest

from ffbench import check, registry
from ffbench.cli import main
from ffbench.variants import NEGATIVES, OBJECTIVES
from ffbench.variants.builtin_objectives import Logistic

BACKENDS = registry.installed()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_passes(backend):
    results = check.check_backend(backend)
    failed = [c for c in results if not c.passed]
    assert not failed, failed[:5]
    kinds = {c.kind for c in results}
    assert kinds >= {"goodness", "loss", "grad", "grad/fd", "params@1", "params@N", "params@N/adam", "logits", "predict"}
    assert any(c.quantity.startswith("ff.greedy") for c in results) and any(c.quantity.startswith("bp.") for c in results)
    quantities = {c.quantity for c in results}
    recurrent = {"ff.recurrent[hard_label, sgd-strict].params@N.W1", "ff.recurrent[wrong_label, adam].params@N.W0",
                 "ff.recurrent.local.params@N.W1", "ff.recurrent.local.predict", "ff.recurrent.softmax.predict"}
    assert recurrent <= quantities, recurrent - quantities  # the recurrent net (paper sec. 3.4) is held to the reference
    bn = {"ff.conv[map.cwc.bn].layer0.dgamma", "ff.conv[map.cwc.bn].layer1.dbeta",
          "ff.conv[map.cwc.bn].greedy[sgd-strict].params@N.gamma1", "ff.conv[map.cwc.bn].simultaneous[sgd-strict].params@N.bn1",
          "ff.conv[map.cwc.bn].predict.goodness", "ff.conv[map.cwc.bn].predict.softmax",
          "ff.conv[map.cwc.windows][adam].params@N.W1",
          "ff.conv[map.cwc.bn.windows][sgd-strict].params@N.bn1"}
    assert bn <= quantities, bn - quantities  # CwComp's batch norm: its gradients, running statistics and predictions
    for name in NEGATIVES:  # every registered variant, with its gradients against finite differences
        assert f"ff.negatives[{name}].params@N.W0" in quantities
    for name in OBJECTIVES:
        assert {f"ff.objective[{name}].layer{i}.fd.{p}" for i in range(3) for p in ("dW", "db")} <= quantities


class ScaledTorchLogistic:
    """A torch translation with a bug: its loss is 1.001 times the reference's."""

    def __init__(self):
        from ffbench_backends.torch.objectives import Logistic
        self.inner = Logistic()
        self.goodness, self.score = self.inner.goodness, self.inner.score

    def loss(self, *args):
        return 1.001 * self.inner.loss(*args)


class WrongHandGradient(Logistic):
    """A reference whose hand-derived gradient is 1% off (its forward `loss` is right)."""

    name = "test_wrong_hand_gradient"
    backends = {"torch": "ffbench_backends.torch.objectives:Logistic"}
    packs = False

    def grad_h(self, *args):
        return 1.01 * super().grad_h(*args)


class WrongTranslation(Logistic):
    name = "test_wrong_translation"
    backends = {"torch": ScaledTorchLogistic}
    packs = False


class JaxOnly(Logistic):
    name = "test_jax_only"
    backends = {"jax": "ffbench_backends.jax.objectives:Logistic"}
    packs = False


@pytest.fixture
def flawed_objectives():
    names = [OBJECTIVES.register(cls()).name for cls in (WrongHandGradient, WrongTranslation, JaxOnly)]
    yield names
    for name in names:
        OBJECTIVES.unregister(name)


def test_finite_differences_pin_a_wrong_gradient_on_the_side_that_has_it(flawed_objectives, capsys):
    pytest.importorskip("torch")
    got = {c.quantity: c for c in check.check_backend("torch", variants=set(flawed_objectives))}
    hand, translation = "ff.objective[test_wrong_hand_gradient]", "ff.objective[test_wrong_translation]"
    for i in range(3):
        # the reference's hand derivation is off: the backend's autodiff disagrees with it,
        # and agrees with central differences of the reference's forward objective
        assert not got[f"{hand}.layer{i}.dW"].passed and got[f"{hand}.layer{i}.fd.dW"].passed
        assert got[f"{hand}.layer{i}.fd.dW"].max_rel < 1e-5 and got[f"{hand}.layer{i}.fd.db"].passed
        # the translation is off: its loss, and so its gradients, fail against the forward
        assert not got[f"{translation}.layer{i}.loss"].passed and not got[f"{translation}.layer{i}.fd.dW"].passed
        assert got[f"{translation}.layer{i}.fd.dW"].max_rel == pytest.approx(1e-3, rel=0.05)
    assert not got[f"{hand}.params@N.W0"].passed  # and the reference trained with its wrong gradient
    skipped = got["ff.objective[test_jax_only]"]
    assert skipped.kind == "skipped" and skipped.passed
    assert skipped.note == "layer objective 'test_jax_only' has no torch implementation (implemented for: jax)"
    assert main(["check", "--backends", "torch", "--variant", "test_jax_only"]) == 0
    out = capsys.readouterr().out
    assert "SKIP ff.objective[test_jax_only] on torch: layer objective 'test_jax_only' has no torch" in out
    assert "all 0 comparisons PASS (1 skipped)" in out


def test_check_of_an_unknown_variant_is_one_line(capsys):
    assert main(["check", "--backends", "torch", "--variant", "wrong_lable"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ffbench: error: --variant: unknown 'wrong_lable'; expected a negative strategy (")
    assert "\n" not in err


def test_compare_by_hand():
    c = check.compare("x", "q", "grad", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert c.max_abs == 1.0 and c.max_rel == 0.25 and not c.passed
    assert check.compare("x", "q", "grad", [1.0], [1.0]).passed
    assert not check.compare("x", "q", "grad", [np.nan], [1.0]).passed
    assert not check.compare("x", "q", "grad", [1.0, 2.0], [1.0]).passed  # shape mismatch


def test_a_perturbed_backend_fails(monkeypatch, capsys):
    probe = registry.load("torch").probe()
    real = probe.ff_layers

    def off_by_a_little(*a, **k):
        out = real(*a, **k)
        out[1]["dW"] = out[1]["dW"] * (1 + 1e-3)  # 1e-3 relative: a real bug, far above float32 noise
        return out

    monkeypatch.setattr(probe, "ff_layers", off_by_a_little)
    seen, real_check = [], check.check_backend
    monkeypatch.setattr(check, "check_backend", lambda *a, **k: seen.extend(real_check(*a, **k)) or seen)
    # one run of the check's sections that read the probe (the trainers never do), through the CLI
    assert main(["check", "--backends", "torch", "--section", "layers", "--section", "variants", "--section", "conv"]) == 1
    # the spec's own layer check, in each built-in objective's section the same gradient and the
    # gradient against central differences of the reference's forward objective, and each conv
    # net's (its second conv layer's kernel)
    assert sorted(c.quantity for c in seen if not c.passed) == sorted(["ff.layer1.dW"] + [
        f"ff.objective[{name}].layer1.{q}" for name in ("logistic", "symba", "cwc", "scff") for q in ("dW", "fd.dW")] + [
        f"ff.conv[{case}].layer1.dW" for case in ("map", "position", "position.symba", "map.cwc", "map.cwc.bn")])
    out = capsys.readouterr().out
    assert "FAIL" in out and "14 failed" in out


def test_check_cli_passes_and_names_unknown_backends(capsys):
    # one variant's sections through the CLI (test_every_backend_passes runs the whole check)
    assert main(["check", "--backends", "torch", "--no-e2e", "--variant", "wrong_label"]) == 0
    assert "all" in capsys.readouterr().out
    assert main(["check", "--backends", "tourch", "--no-e2e"]) == 3


def test_sections_run_alone_and_an_unknown_one_is_one_line(capsys):
    got = check.check_backend("torch", sections={"jitter", "bp.local"})
    assert {c.quantity.split(".params")[0] for c in got} == {"ff.jitter", "bp.local", "bp.rgb.local"}
    assert all(c.passed for c in got)
    assert {c.quantity for c in got} == {c.quantity for c in check.check_backend("torch", sections={"jitter"})} | {
        c.quantity for c in check.check_backend("torch", sections={"bp.local"})}
    with pytest.raises(ValueError, match="unknown check sections"):
        check.check_backend("torch", sections={"conv", "convs"})
    capsys.readouterr()
    assert main(["check", "--backends", "torch", "--section", "convs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ffbench: error: --section: unknown 'convs'; expected one of layers, schedules,")
    assert err.count("\n") == 1
    assert main(["check", "--backends", "torch", "--section", "conv", "--variant", "symba"]) == 2
    assert "--section and --variant: give one" in capsys.readouterr().err


def test_spec_file(tmp_path, capsys):
    p = tmp_path / "spec.yaml"
    p.write_text("algorithm: ff\nhidden: [20, 20]\nbatch_size: 8\nepochs: 1\n"
                 "optimizer: {name: sgd, lr: 0.1, momentum: 0.5}\nff: {goodness: sum, threshold: 5.0, norm: l2, sign: min_ssq}\n")
    # the spec's trial in the sections of its own objective and strategy (the whole check: test_every_backend_passes)
    assert main(["check", "--backends", "torch", "--no-e2e", "--spec", str(p), "--variant", "logistic",
                 "--variant", "wrong_label"]) == 0
    p.write_text("algorithm: ff\nhidden: [20, 20]\nepochs: 1\nff: {threshhold: 5.0}\n")
    assert main(["check", "--backends", "torch", "--no-e2e", "--spec", str(p)]) == 2
    assert "spec.yaml:4: ff.threshhold: unknown field (did you mean 'threshold'?)" in capsys.readouterr().err


# ------------------------------------------------------------------ fixtures

def independent_fixture(fx: dict) -> dict:
    """The fixture semantics in float64 with torch autograd and torch.optim: independent of
    ffbench's analytic gradients and optimiser code."""
    torch = pytest.importorskip("torch")
    spec = json.loads(str(fx["spec"]))
    depth = sum(k.startswith("W") for k in fx)
    Ws = [torch.tensor(fx[f"W{i}"], dtype=torch.float64, requires_grad=True) for i in range(depth)]
    bs = [torch.tensor(fx[f"b{i}"], dtype=torch.float64, requires_grad=True) for i in range(depth)]
    pos, neg = (torch.tensor(fx[k], dtype=torch.float64) for k in ("x_pos", "x_neg"))

    def norm(x):
        r = (x * x).sum(1, keepdim=True) if spec["norm"] == "l2" else (x * x).mean(1, keepdim=True)
        return x / (r.sqrt() + spec["norm_eps"])

    def losses():
        out, h = [], torch.cat([pos, neg])
        for W, b in zip(Ws, bs):
            h = torch.relu(norm(h.detach()) @ W.T + b)
            g = (h * h).sum(1) if spec["goodness"] == "sum" else (h * h).mean(1)
            n = pos.shape[0]
            loss = torch.cat([torch.nn.functional.softplus(-(g[:n] - spec["threshold"])),
                              torch.nn.functional.softplus(g[n:] - spec["threshold"])]).mean()
            out.append((g, loss))
        return out

    result = {}
    ls = losses()
    sum(loss for _, loss in ls).backward()
    for i, (g, loss) in enumerate(ls):
        n = pos.shape[0]
        result.update({f"g_pos{i}": g[:n].detach().numpy(), f"g_neg{i}": g[n:].detach().numpy(),
                       f"loss{i}": loss.item(), f"dW{i}": Ws[i].grad.numpy().copy(), f"db{i}": bs[i].grad.numpy().copy()})
    o = spec["optimizer"]
    if o["name"] == "adam":
        opt = torch.optim.Adam([*Ws, *bs], lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    else:
        opt = torch.optim.SGD([*Ws, *bs], lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    for _ in range(spec["steps"]):
        opt.zero_grad()
        sum(loss for _, loss in losses()).backward()
        opt.step()
    for i in range(depth):
        result[f"W{i}_final"], result[f"b{i}_final"] = Ws[i].detach().numpy(), bs[i].detach().numpy()
    return result


def make_fixture(path, spec: dict, seed=0):
    g = np.random.default_rng(seed)
    widths = [30, 20, 16]
    fx = {"x_pos": g.random((12, 30)).astype(np.float32), "x_neg": g.random((12, 30)).astype(np.float32),
          "spec": np.array(json.dumps(spec))}
    for i in range(2):
        fx[f"W{i}"] = (g.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i])).astype(np.float32)
        fx[f"b{i}"] = (g.normal(size=widths[i + 1]) * 0.1).astype(np.float32)
    np.savez(path, **fx)
    return dict(np.load(path))


@pytest.mark.parametrize("spec", [
    {"goodness": "mean", "threshold": 0.5, "norm": "l2", "norm_eps": 1e-8,
     "optimizer": {"name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, "steps": 5},
    {"goodness": "sum", "threshold": 10.0, "norm": "rms", "norm_eps": 1e-6,
     "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3}, "steps": 5},
])
def test_fixture_matches_an_independent_float64_implementation(tmp_path, spec, capsys):
    fx = make_fixture(tmp_path / "f.npz", spec)
    assert main(["check", "--fixture", str(tmp_path / "f.npz"), "--out", str(tmp_path / "out")]) == 0
    expected = independent_fixture(fx)
    for name in [*BACKENDS, "reference"]:
        got = dict(np.load(tmp_path / "out" / f"{name}.npz"))
        assert set(got) == set(expected)
        for k, v in expected.items():
            scale = max(np.max(np.abs(v)), 1e-12)
            assert np.max(np.abs(got[k] - v)) / scale < 1e-3, (name, k)


def test_bad_fixture_is_one_line(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", x_pos=np.zeros((2, 3), np.float32))
    assert main(["check", "--fixture", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "bad.npz: x_neg: missing array" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_agreement_on_mnist(capsys):
    comparisons, errors = check.agreement(BACKENDS, check.e2e_spec())
    assert all(c.passed for c in comparisons), comparisons
    assert len({round(e, 4) for e in errors.values()}) == 1, errors  # same test error everywhere, reference included
    assert errors["reference"] < 0.35
