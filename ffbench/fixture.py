"""`ffbench check --fixture F.npz --out DIR`: one FF layer stack from a file of the user's own
(format in the README), run on every backend and on the reference, compared as `ffbench check`
compares (`ffbench.check.compare`).

The file is untrusted: nothing in it is unpickled (object arrays are refused), and a damaged
file, a missing or mis-shaped array, NaN or infinity, a spec that is not a JSON object, or
`steps` outside 1..MAX_FIXTURE_STEPS is one line (ConfigError) naming the array at fault.
"""

from __future__ import annotations

import numpy as np

from ffbench import registry
from ffbench.parity import Comparison, compare
from ffbench.reference import ff as RF
from ffbench.spec import FFSpec, OptimizerSpec

MAX_FIXTURE_STEPS = 10_000


def read_fixture(path) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray, FFSpec, OptimizerSpec, int]:
    """Read a fixture file (format in the README); raises ConfigError with the field at fault."""
    import json

    from pydantic import ValidationError

    from ffbench.datafiles import CORRUPT
    from ffbench.errors import ConfigError

    def bad(msg: str, field: str | None = None) -> ConfigError:
        return ConfigError(msg, file=str(path), field=field)

    try:
        z = np.load(path, allow_pickle=False)
    except CORRUPT as exc:
        raise bad(f"cannot read fixture ({type(exc).__name__}: {exc}); expected an .npz file") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise bad("a single array, not an .npz of named arrays")
    with z:
        keys = set(z.files)
        for need in ("x_pos", "x_neg", "spec", "W0", "b0"):
            if need not in keys:
                raise bad("missing array; a fixture holds W0..W{L-1}, b0..b{L-1}, x_pos, x_neg and spec", need)
        depth = sum(1 for k in keys if k.startswith("W") and k[1:].isdigit())
        arrays = {}
        for k in ["x_pos", "x_neg", *(f"{w}{i}" for i in range(depth) for w in "Wb")]:
            if k not in keys:
                raise bad(f"missing array (the fixture has W0..W{depth - 1})", k)
            try:
                a = z[k]
            except CORRUPT as exc:  # a damaged member, or an object array (never unpickled)
                raise bad(f"cannot read ({type(exc).__name__}: {exc})", k) from None
            if a.dtype.kind not in "fiu" or not np.isfinite(a).all():
                raise bad(f"expected finite real numbers; got dtype {a.dtype}" + ("" if a.dtype.kind not in "fiu" else
                                                                                  " with NaN or infinity"), k)
            arrays[k] = a.astype(np.float32)
        try:
            spec = json.loads(str(z["spec"]))
        except CORRUPT as exc:
            raise bad(f"cannot read ({type(exc).__name__}: {exc})", "spec") from None
        except json.JSONDecodeError as exc:
            raise bad(f"not JSON: {exc}", "spec") from None
    x_pos, x_neg = arrays["x_pos"], arrays["x_neg"]
    if x_pos.ndim != 2 or x_neg.shape != x_pos.shape or not len(x_pos):
        raise bad(f"x_pos and x_neg must be 2-D (N, in) arrays of one shape; got {x_pos.shape} and {x_neg.shape}", "x_neg")
    width = x_pos.shape[1]
    params = []
    for i in range(depth):
        W, b = arrays[f"W{i}"], arrays[f"b{i}"]
        if W.ndim != 2 or W.shape[1] != width or b.shape != (W.shape[0],):
            raise bad(f"expected W{i} of shape (out, {width}) and b{i} of shape (out,); got {W.shape} and {b.shape}", f"W{i}")
        params.append((W, b))
        width = W.shape[0]
    if not isinstance(spec, dict):
        raise bad(f"expected a JSON object; got {type(spec).__name__}", "spec")
    try:
        ff = FFSpec(**{k: spec[k] for k in ("goodness", "threshold", "norm", "norm_eps") if k in spec})
        opt = OptimizerSpec(**spec["optimizer"])
        steps = spec["steps"]
    except (ValidationError, KeyError, TypeError) as exc:
        msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else f"missing or invalid {exc}"
        raise bad(msg, "spec") from None
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_FIXTURE_STEPS:
        raise bad(f"steps: expected a whole number from 1 to {MAX_FIXTURE_STEPS}; got {steps!r}", "spec")
    return params, x_pos, x_neg, ff, opt, steps


def fixture_outputs(layers: list[dict], final: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i, layer in enumerate(layers):
        out.update({f"g_pos{i}": layer["g_pos"], f"g_neg{i}": layer["g_neg"], f"loss{i}": np.asarray(layer["loss"]),
                    f"dW{i}": layer["dW"], f"db{i}": layer["db"]})
    for i, (w, b) in enumerate(final):
        out[f"W{i}_final"], out[f"b{i}_final"] = w, b
    return out


def reference_fixture(params, x_pos, x_neg, ff, opt: OptimizerSpec, steps: int) -> dict[str, np.ndarray]:
    p64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in params]
    layers, h_pos, h_neg = [], x_pos.astype(np.float64), x_neg.astype(np.float64)
    for w, b in p64:
        st = RF.layer_step(h_pos, h_neg, w, b, ff)
        layers.append({"g_pos": st.g_pos, "g_neg": st.g_neg, "loss": st.loss, "dW": st.dw, "db": st.db})
        h_pos, h_neg = st.h_pos, st.h_neg
    state = RF.ff_init_state(p64, opt)
    for _ in range(steps):
        state, _ = RF.simultaneous_step(state, x_pos.astype(np.float64), x_neg.astype(np.float64), ff, opt, opt.lr)
    return fixture_outputs(layers, state.params)


def run_fixture(path, out_dir, backends: list[str]) -> dict[str, list[Comparison]]:
    """Write DIR/<backend>.npz (and DIR/reference.npz); compare each backend with the reference."""
    from pathlib import Path
    params, x_pos, x_neg, ff, opt, steps = read_fixture(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = reference_fixture(params, x_pos, x_neg, ff, opt, steps)
    np.savez(out_dir / "reference.npz", **ref)
    results = {}
    for name in backends:
        probe = registry.load(name).probe()
        got = fixture_outputs(probe.ff_layers(params, x_pos, x_neg, ff), probe.ff_steps(params, x_pos, x_neg, ff, opt, steps))
        np.savez(out_dir / f"{name}.npz", **got)
        results[name] = [compare(name, k, _fixture_kind(k, opt), got[k], ref[k]) for k in ref]
    return results


def _fixture_kind(key: str, opt: OptimizerSpec) -> str:
    if key.endswith("_final"):
        return "params@N/adam" if opt.name == "adam" else "params@N"
    return {"g": "goodness", "l": "loss", "d": "grad"}[key[0]]
