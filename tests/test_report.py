"""`ffbench report`: statistics by hand, golden Markdown/LaTeX, plots, bad input."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ffbench import report, results
from ffbench.cli import main
from ffbench.report import render, stats, tables
from ffbench.spec import parse_trial

GOLDEN = Path(__file__).parent / "golden"


# ------------------------------------------------------------------ statistics by hand

def test_mean_std_by_hand():
    mean, sd, n = stats.mean_std([1.0, 2.0, 3.0, 4.0])
    assert (mean, n) == (2.5, 4) and sd == pytest.approx(math.sqrt(5 / 3))  # ddof=1: 5/3
    assert math.isnan(stats.mean_std([7.0])[1]) and stats.mean_std([])[2] == 0
    assert stats.mean_std([1.0, float("nan"), 3.0])[:2] == (2.0, pytest.approx(math.sqrt(2)))


def test_t_interval_by_hand():
    mean, lo, hi, n = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446 * math.sqrt(5 / 3) / 2  # t(0.975, 3) = 3.182446 from tables
    assert (mean, n) == (2.5, 4) and lo == pytest.approx(2.5 - half, abs=1e-5) and hi == pytest.approx(2.5 + half, abs=1e-5)
    assert math.isnan(stats.t_interval([1.0])[1])


def test_anova_by_hand():
    # groups [1,2,3] and [4,5,6]: SSB = 13.5 (1 dof), SSW = 4 (4 dof), F = 13.5; p = P(F(1,4) > 13.5) = 0.02131
    assert stats.anova_p([[1, 2, 3], [4, 5, 6]]) == pytest.approx(0.02131, abs=2e-5)
    assert stats.anova_p([[1, 2, 3], [1, 2, 3]]) == pytest.approx(1.0)
    assert stats.anova_p([[0.1, 0.1], [0.2, 0.2]]) == 0.0  # no seed noise at all: a real difference
    assert math.isnan(stats.anova_p([[1, 2, 3]]))


def test_max_concurrency_by_hand():
    # [0,2) [1,3) [2,4) [5,6): at most 2 open; touching intervals do not overlap
    assert stats.max_concurrency([0, 1, 2, 5], [2, 3, 4, 6]) == 2
    assert stats.max_concurrency([0, 0, 0], [1, 1, 1]) == 3
    assert stats.max_concurrency([], []) == 0


def test_first_reaching_by_hand():
    assert stats.first_reaching([0, 1, 2], [0.5, 0.3, 0.1], [1.0, 2.0, 3.0], 0.3) == (2, 2.0)
    assert stats.first_reaching([2, 0, 1], [0.1, 0.5, 0.3], [3.0, 1.0, 2.0], 0.3) == (2, 2.0)  # order-free
    assert stats.first_reaching([0, 1], [0.5, 0.4], [1.0, 2.0], 0.05) is None


# ------------------------------------------------------------------ a fixture results folder

FF_ERR = {0: 0.05, 1: 0.06, 2: 0.07}
BP_ERR = {0: 0.02, 1: 0.02, 2: 0.03}


def fixture_dir(root: Path, failed: bool = True, dataset: str = "mnist", shift: float = 0.0) -> Path:
    """FF and BP rows on `dataset` (their errors raised by `shift`), into root/res."""
    out = root / "res"
    for algo, errs, secs in (("ff", FF_ERR, 10.0), ("bp", BP_ERR, 5.0)):
        for seed, err in errs.items():
            err = err + shift
            t = parse_trial({"algorithm": algo, "backend": "torch", "seed": seed, "hidden": [100, 100], "epochs": 3,
                             "data": {"name": dataset},
                             "meta": {"experiment": algo, "reference_error": 0.0136 if algo == "ff" else None}})
            tid = f"{algo}{seed}" + ("" if dataset == "mnist" else f"-{dataset}")
            row = {"trial_id": tid, "algorithm": algo, "backend": "torch", "seed": seed, "status": "ok", "test_error": err,
                   "train_seconds": secs, "samples_per_second": 1000.0,
                   "peak_memory_bytes": 2**20 * (200 if algo == "ff" else 300),
                   "peak_memory_source": "device", "experiment": algo, "reference_error": t.meta.reference_error,
                   "ffbench_version": "0.1.0", "git_sha": "abc", "git_dirty": False,
                   "framework_versions": json.dumps({"torch": "x"}),
                   "device_name": "dev", "dataset_checksum": "d" * 64, "python_version": "3.11", "hostname": "h",
                   "dataset": dataset,
                   **results.spec_row(t)}
            curve = []
            for e in range(3):  # error falls to its final value; train_seconds grows by secs/3 per epoch
                curve += [{"epoch": e, "phase": algo, "metric": "test_error", "layer": None, "value": err + 0.01 * (2 - e)},
                          {"epoch": e, "phase": algo, "metric": "train_seconds", "layer": None, "value": secs * (e + 1) / 3}]
            results.write_trial(out, row, curve)
    if failed:
        t = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 9, "hidden": [100, 100], "epochs": 3})
        results.write_trial(out, {"trial_id": "bad9", "algorithm": "ff", "backend": "torch", "seed": 9, "status": "diverged",
                                  "error": "non-finite loss at ff epoch 2", "experiment": "ff", **results.spec_row(t)})
    return out


def test_paired_differences_and_interval(tmp_path):
    df = results.read_trials(fixture_dir(tmp_path))
    p = tables.paired_ff_minus_bp(df).iloc[0]
    diffs = [FF_ERR[s] - BP_ERR[s] for s in range(3)]  # 0.03, 0.04, 0.04
    sd = np.std(diffs, ddof=1)
    half = 4.302653 * sd / math.sqrt(3)  # t(0.975, 2) = 4.302653
    assert p["pairs"] == 3 and p["ff_minus_bp"] == pytest.approx(np.mean(diffs))
    assert (p["ci_low"] == pytest.approx(np.mean(diffs) - half, abs=1e-6)
            and p["ci_high"] == pytest.approx(np.mean(diffs) + half, abs=1e-6))


def test_time_to_target_including_not_reached(tmp_path):
    out = fixture_dir(tmp_path)
    df, curves = results.read_trials(out), results.read_curves(out)
    # default target: BP at its largest budget (no 20-epoch BP here) = mean(0.02, 0.02, 0.03) + 0.002
    assert tables.default_targets(df) == {"100x100": pytest.approx(0.07 / 3 + 0.002)}
    ttt = tables.time_to_target(df, curves).set_index("algorithm")
    # BP curves: seed0 0.04,0.03,0.02 -> reaches 0.02533 at epoch 3 (5 s); seed2 0.05,0.04,0.03 never
    assert (ttt.loc["bp", "reached"] == "2/3" and ttt.loc["bp", "epochs to target"] == 3
            and ttt.loc["bp", "train s to target"] == 5.0)
    assert ttt.loc["ff", "reached"] == "0/3" and ttt.loc["ff", "epochs to target"] == "not reached"
    loose = tables.time_to_target(df, curves, target=0.0705).set_index("algorithm")
    # FF seeds 0, 1, 2 first reach 7.05% at epochs 1, 2, 3 (train s 10/3, 20/3, 10)
    assert loose.loc["ff", "reached"] == "3/3" and loose.loc["ff", "epochs to target"] == 2.0
    assert loose.loc["ff", "train s to target"] == pytest.approx(20 / 3, abs=0.01)


def test_golden_markdown_and_latex(tmp_path):
    df = results.read_trials(fixture_dir(tmp_path))
    main_t = tables.main_table(df, ["torch"])
    md = render.markdown([("Test error", "caption", main_t)], [])
    tex = render.latex(main_t, "Test error: mean ± std", "tab:x", best_of=["torch"])
    # The golden files were checked by hand: BP 2,2,3 -> 2.33 ± 0.58; FF 5,6,7 -> 6.00 ± 1.00; Δ = 6.00 − 1.36.
    assert md == (GOLDEN / "main.md").read_text()
    assert tex == (GOLDEN / "main.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\textbf{2.33" in tex


def test_report_writes_every_format_and_valid_pngs(tmp_path, capsys):
    out = fixture_dir(tmp_path)
    assert main(["report", str(out)]) == 0
    rep = out / "report"
    for name in ("report.md", "report.tex", "report.html", "summary.csv", "main.csv", "error_vs_epoch.png", "error_vs_epoch.pdf",
                 "time_to_target.png", "memory_vs_depth.png"):
        assert (rep / name).is_file(), name
    import matplotlib.image
    for png in rep.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).shape[2] in (3, 4)
    md = (rep / "report.md").read_text()
    assert "6.00 ± 1.00 (n=3)" in md and "+3.67 [+2.23, +5.10] (n=3)" in md and "+4.64" in md  # Δ = 6.00 − 1.36
    assert "1 trial(s) are not ok" in md and "bad9" in md and "non-finite loss" in md
    assert pd.read_csv(rep / "summary.csv").set_index("algorithm").loc["ff", "n"] == 3
    assert "data:image/png;base64," in (rep / "report.html").read_text()


def test_where_and_group_by(tmp_path, capsys):
    out = fixture_dir(tmp_path)
    assert main(["report", str(out), "--where", 'algorithm=="ff"', "--group-by", "algorithm"]) == 0
    s = pd.read_csv(out / "report" / "summary.csv")
    assert list(s["algorithm"]) == ["ff"] and list(s.columns[:2]) == ["algorithm", "backend"]
    assert main(["report", str(out), "--where", "no_such_column > 1"]) == 2
    assert main(["report", str(out), "--group-by", "colour"]) == 2
    err = capsys.readouterr().err
    assert "--where: cannot apply" in err and "--group-by: unknown column(s) ['colour']" in err


def test_bad_and_empty_folders(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "plain").mkdir()
    assert main(["report", str(tmp_path / "plain")]) == 2
    foreign = tmp_path / "foreign" / "trials"
    foreign.mkdir(parents=True)
    pd.DataFrame({"x": [1, 2]}).to_parquet(foreign / "x.parquet")
    assert main(["report", str(tmp_path / "foreign")]) == 2
    err = capsys.readouterr().err
    assert "nope: no such folder" in err and "plain: not an ffbench results folder" in err and "did not write" in err
    assert err.count("\n") == 3 and "Traceback" not in err
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty")]) == 0
    assert "No trials in this folder yet" in (tmp_path / "empty" / "report" / "report.md").read_text()


def test_variants_are_labelled_with_their_parameters_and_objective_shows_only_when_chosen():
    assert tables.variant_label("cyclic_label", '{"max_offset":5}') == "cyclic_label(max_offset=5)"
    assert tables.variant_label("margin_logistic", '{"margin":0.2,"temperature":2.0}') == \
        "margin_logistic(margin=0.2, temperature=2.0)"
    assert tables.variant_label("wrong_label", None) == "wrong_label" and tables.variant_label(None, None) == "-"
    rows = pd.DataFrame({"experiment": ["a", "b", "c"], "algorithm": ["ff", "ff", "bp"], "spec.hidden": [[10]] * 3,
                         "spec.epochs": [1, 1, 1], "spec.ff.negatives": ["wrong_label", "wrong_label", None],
                         "spec.ff.negatives_params": [None, None, None],
                         "spec.ff.objective": ["logistic", "logistic", None], "spec.ff.objective_params": [None] * 3})
    assert "objective" not in tables.default_config(rows)  # the paper's objective everywhere: no column
    assert list(tables.prepare(rows)["objective"]) == ["logistic", "logistic", "-"]
    rows.loc[1, ["spec.ff.objective", "spec.ff.objective_params"]] = ["margin_logistic", '{"margin":0.2}']
    assert tables.default_config(rows) == tables.CONFIG
    assert list(tables.prepare(rows)["objective"]) == ["logistic", "margin_logistic(margin=0.2)", "-"]


def test_a_folder_of_several_datasets_gives_one_error_table_per_dataset(tmp_path):
    fixture_dir(tmp_path, failed=False)
    out = fixture_dir(tmp_path, failed=False, dataset="fashion_mnist", shift=0.10)  # FF and BP 10 pp worse
    df = results.read_trials(out)
    assert tables.default_config(df)[0] == "dataset"
    paired = tables.paired_ff_minus_bp(df).set_index("dataset")
    diffs = np.mean([FF_ERR[s] - BP_ERR[s] for s in range(3)])  # within each dataset, never across
    assert paired.loc["mnist", "ff_minus_bp"] == pytest.approx(diffs) == paired.loc["fashion_mnist", "ff_minus_bp"]
    report.build(out)
    md = (out / "report" / "report.md").read_text()
    assert "Test error: fashion_mnist" in md and "Test error: mnist" in md
    fashion = md[md.index("Test error: fashion_mnist"):md.index("Test error: mnist")]
    assert "16.00 ± 1.00 (n=3)" in fashion and " 6.00 ± 1.00 (n=3)" not in fashion  # FF on Fashion: 15, 16, 17 %
    tex = (out / "report" / "report.tex").read_text()
    assert "tab:ffbench-test-error-fashion-mnist" in tex and "tab:ffbench-test-error-mnist" in tex
    one = fixture_dir(tmp_path / "one", failed=False)
    report.build(one)
    assert "Test error: mnist" not in (one / "report" / "report.md").read_text()  # one dataset: one table, as before


def test_methods_table_reads_as_a_papers_table(tmp_path):
    """Rows: methods (and their architecture); columns: datasets, the published number beside
    each; cells: mean ± std over the ok seeds, by hand."""
    out = tmp_path / "res"
    errs = {("BP", "mnist"): [0.01, 0.02], ("SymBa", "mnist"): [0.03, 0.05], ("SymBa", "cifar10"): [0.40, 0.44]}
    for (method, dataset), values in errs.items():
        for seed, err in enumerate(values):
            algo = "bp" if method == "BP" else "ff"
            t = parse_trial({"algorithm": algo, "backend": "torch", "seed": seed, "epochs": 1, "data": {"name": dataset},
                             "conv": {"channels": [4, 8], "pool": "max"},
                             "meta": {"method": method, "reference_error": 0.0142 if method == "SymBa" else None}})
            results.write_trial(out, {"trial_id": f"{method}{dataset}{seed}", "algorithm": algo, "backend": "torch",
                                      "seed": seed, "status": "ok", "test_error": err, "dataset": dataset,
                                      "method": method, "reference_error": t.meta.reference_error,
                                      **results.spec_row(t)})
    dense = parse_trial({"algorithm": "bp", "backend": "torch", "seed": 0, "hidden": [10], "epochs": 1})  # no method
    results.write_trial(out, {"trial_id": "other", "algorithm": "bp", "backend": "torch", "seed": 0, "status": "ok",
                              "test_error": 0.5, "dataset": "mnist", **results.spec_row(dense)})
    m = tables.methods_table(results.read_trials(out)).set_index("method")
    assert list(m.index) == ["BP", "SymBa"]
    assert list(m.columns) == ["architecture", "mnist", "mnist ref", "cifar10", "cifar10 ref"]
    assert m.loc["BP", "architecture"] == "conv 4-8"
    assert m.loc["BP", "mnist"] == f"1.50 ± {100 * np.std([0.01, 0.02], ddof=1):.2f} (n=2)" and m.loc["BP", "mnist ref"] == ""
    assert m.loc["SymBa", "cifar10"] == f"42.00 ± {100 * np.std([0.40, 0.44], ddof=1):.2f} (n=2)"
    assert m.loc["SymBa", "mnist ref"] == "1.42" and m.loc["BP", "cifar10"] == ""
