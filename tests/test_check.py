"""`ffbench check`: every installed backend passes; a wrong number FAILs; fixtures round-trip."""

import json

import numpy as np
import pytest

from ffbench import check, registry
from ffbench.cli import main

BACKENDS = registry.installed()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_passes(backend):
    results = check.check_backend(backend)
    failed = [c for c in results if not c.passed]
    assert not failed, failed[:5]
    kinds = {c.kind for c in results}
    assert kinds >= {"goodness", "loss", "grad", "params@1", "params@N", "params@N/adam", "logits", "predict"}
    assert any(c.quantity.startswith("ff.greedy") for c in results) and any(c.quantity.startswith("bp.") for c in results)


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
    failed = [c for c in check.check_backend("torch") if not c.passed]
    assert [c.quantity for c in failed] == ["ff.layer1.dW"]
    assert main(["check", "--backends", "torch", "--no-e2e"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "1 failed" in out


def test_check_cli_passes_and_names_unknown_backends(capsys):
    assert main(["check", "--backends", "torch", "--no-e2e"]) == 0
    assert "all" in capsys.readouterr().out
    assert main(["check", "--backends", "tourch", "--no-e2e"]) == 3


def test_spec_file(tmp_path, capsys):
    p = tmp_path / "spec.yaml"
    p.write_text("algorithm: ff\nhidden: [20, 20]\nbatch_size: 8\nepochs: 1\n"
                 "optimizer: {name: sgd, lr: 0.1, momentum: 0.5}\nff: {goodness: sum, threshold: 5.0, norm: l2, sign: min_ssq}\n")
    assert main(["check", "--backends", "torch", "--no-e2e", "--spec", str(p)]) == 0
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
