"""`ffbench bench`: the FLOP count by hand, and a tiny run on every installed backend (CI keeps it working)."""

import json

import pytest

from ffbench import registry
from ffbench.bench import step_flops
from ffbench.cli import main
from ffbench.spec import parse_trial


def test_step_flops_by_hand():
    ff = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [3], "epochs": 1, "batch_size": 2})
    assert step_flops(ff, input_dim=4) == 2 * (2 * 2) * 4 * 3 * 2  # fwd + dW of 4 rows (2 pos, 2 neg): 192
    bp = parse_trial({"algorithm": "bp", "backend": "torch", "seed": 0, "hidden": [3], "epochs": 1, "batch_size": 2})
    assert step_flops(bp, input_dim=4) == 2 * 2 * 4 * 3 * 2 + 2 * 2 * 3 * 10 * 3  # first layer no dX: 96 + 360
    # the paper's 3x1000 at batch 100: about 4 GFLOP per step (gpu-anchors.md counts 3x for fwd+bwd incl. dX)
    big = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [1000] * 3, "epochs": 1, "batch_size": 100})
    assert 2.0e9 < step_flops(big) < 4.5e9
    # the recurrent net, 4 -> 3 -> 2 (+ label): W0 is 3 x (4 + 2), W1 2 x (3 + 10); 2 iterations, losses of
    # iteration 2: the start and 2 iterations forward, 1 weight gradient, on 4 rows
    rec = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [3, 2], "epochs": 1, "batch_size": 2,
                       "ff": {"recurrent": {"iterations": 2, "loss_from": 2, "score_from": 1, "score_to": 2}}})
    assert step_flops(rec, input_dim=4) == 2 * 4 * (3 * 6 + 2 * 13) * (1 + 2 + 1)
    # greedy 4 -> 3 -> 5: layer 0 trains (fwd + dW) and runs frozen once more under layer 1
    greedy = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [3, 5], "epochs": 1, "batch_size": 2,
                          "ff": {"schedule": "greedy"}})
    assert step_flops(greedy, input_dim=4) == 2 * 4 * 4 * 3 * 3 + 2 * 4 * 3 * 5 * 2


def test_greedy_full_batch_bench_times_every_layer(capsys):
    assert main(["bench", "--backend", "torch", "--hidden", "16,16", "--batch", "full", "--epochs", "2", "--train-subset", "300",
                 "--set", "ff.schedule=greedy", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["batch_size"], row["schedule"], row["samples_per_second"]) == (300, "greedy", 300 / row["epoch_seconds"])
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--batch", "lots"])
    assert exc.value.code == 2 and "expected a number or 'full', got 'lots'" in capsys.readouterr().err


def test_tiny_bench_json_on_every_backend(capsys):
    args = ["bench", "--hidden", "16,16", "--batch", "50", "--epochs", "2", "--train-subset", "200", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in rows] == registry.installed()
    for r in rows:
        assert {"backend", "epoch_seconds", "compile_seconds", "samples_per_second", "peak_memory_bytes", "tflops"} <= set(r)
        assert r["epoch_seconds"] > 0 and r["samples_per_second"] == 200 / r["epoch_seconds"] and len(r["epoch_seconds_all"]) == 2
        assert r["test_images"] == 10000 and 0 < r["eval_seconds"] < 60 and r["eval_warmup_seconds"] > 0
    assert main(["bench", "--backend", "torch", "--algorithm", "bp", "--hidden", "8", "--epochs", "1", "--train-subset", "100",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["algorithm"] == "bp"
    assert main(["bench", "--hidden", "1k"]) == 2
    assert "--hidden '1k': expected comma-separated widths" in capsys.readouterr().err


def test_conv_step_flops_by_hand():
    """A conv layer counts as its im2col matmul: positions x C_out x (C_in/g x k x k) per image."""
    base = {"backend": "torch", "seed": 0, "epochs": 1, "batch_size": 2,
            "conv": {"channels": [4, 6], "kernel": 3, "padding": 1, "stride": [1, 2], "groups": [1, 2], "pool": ["max", "none"]}}
    # layer 0: 28x28 positions x 4 x (1*9); pooled to 14x14; layer 1: stride 2 -> 7x7 positions x 6 x (2*9)
    macs = [784 * 4 * 9, 49 * 6 * 18]
    ff = parse_trial({**base, "algorithm": "ff"})
    assert step_flops(ff) == sum(2 * (2 * 2) * m * 2 for m in macs)
    bp = parse_trial({**base, "algorithm": "bp"})
    assert bp.hidden[-1] == 6 * 49
    assert step_flops(bp) == 2 * 2 * macs[0] * 2 + 2 * 2 * macs[1] * 3 + 2 * 2 * (6 * 49 * 10) * 3
