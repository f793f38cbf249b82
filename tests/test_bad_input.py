"""A corpus of broken and hostile input: suite files, --set values, CLI flags, results
folders, fixtures and dataset files. Every case must end with its exit code (2 bad input,
3 environment), exactly one line on stderr naming what is wrong, no traceback, nothing
written under --out, and within its time limit.

The cases run in-process through `ffbench.cli.main` (fast enough to run in CI on every
change); `test_hostile_files_in_a_real_process` runs a few of them as a real `python -m
ffbench` to show the same from outside, where a traceback or a hang could not hide.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ffbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
GOOD = "defaults: {backend: torch, hidden: [10], epochs: 1, seed: 0}\nexperiments:\n  - {name: e, algorithm: ff}\n"


def _laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, levels + 1):
        text += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]\n"
    return text


def _grid(n: int) -> str:
    axis = "[" + ", ".join(str(i) for i in range(n)) + "]"
    lrs = "[" + ", ".join(f"0.00{i + 1}" for i in range(n)) + "]"
    return (f"defaults: {{backend: torch, hidden: [10], epochs: 1}}\nexperiments:\n"
            f"  - {{name: big, algorithm: ff, seed: {axis}, optimizer: {{lr: {lrs}}}, ff: {{threshold: {lrs}}}}}\n")


@dataclass
class Case:
    id: str
    argv: Callable[[Path], list[str]]  # given the case's folder; it may write files there
    code: int
    needle: str
    limit: float = 10.0  # seconds
    env: dict[str, str] | None = None


def suite_case(id: str, text: str | bytes, needle: str, *extra: str, code: int = 2, limit: float = 10.0,
               dry: bool = True) -> Case:
    def argv(d: Path) -> list[str]:
        p = d / "suite.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["run", str(p), "--out", str(d / "out"), *(["--dry-run"] if dry else []), *extra]
    return Case(id, argv, code, needle, limit)


def _fixture(d: Path, **arrays) -> Path:
    g = np.random.default_rng(0)
    base = {"W0": g.normal(size=(4, 6)).astype(np.float32), "b0": np.zeros(4, np.float32),
            "x_pos": g.random((3, 6)).astype(np.float32), "x_neg": g.random((3, 6)).astype(np.float32),
            "spec": np.array('{"goodness": "mean", "threshold": 1.0, "norm": "rms", "norm_eps": 1e-8, '
                             '"optimizer": {"name": "sgd", "lr": 0.1}, "steps": 2}')}
    base.update(arrays)
    for k in [k for k, v in base.items() if v is None]:
        del base[k]
    p = d / "f.npz"
    np.savez(p, **base)
    return p


def fixture_case(id: str, needle: str, code: int = 2, make: Callable[[Path], Path] | None = None, **arrays) -> Case:
    def argv(d: Path) -> list[str]:
        path = make(d) if make else _fixture(d, **arrays)
        return ["check", "--fixture", str(path), "--out", str(d / "out"), "--backends", "torch"]
    return Case(id, argv, code, needle)


def data_case(id: str, make: Callable[[Path], Path], needle: str) -> Case:
    """`ffbench run` with FFBENCH_DATA_DIR pointing at a damaged dataset: exit 3, nothing written."""
    def argv(d: Path) -> list[str]:
        target = make(d)
        p = d / "suite.yaml"
        p.write_text(GOOD)
        return ["run", str(p), "--out", str(d / "out"), "--executor", "local", "--data-dir-for-test", str(target)]
    return Case(id, argv, 3, needle, limit=20.0)


def _damaged_npz(folder: str, damage: Callable[[bytearray], bytes]) -> Callable[[Path], Path]:
    """A copy of the real mnist.npz, damaged, in its own folder."""
    def make(d: Path) -> Path:
        data = bytearray((Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz").read_bytes())
        (d / folder).mkdir()
        (d / folder / "mnist.npz").write_bytes(damage(data))
        return d / folder
    return make


def _flip_middle_byte(data: bytearray) -> bytes:
    data[len(data) // 2] ^= 0x01
    return bytes(data)


def _text_as_npz(d: Path) -> Path:
    (d / "mnist.npz").write_text("this is not a zip file\n")
    return d / "mnist.npz"


def _truncated_idx(d: Path) -> Path:
    import gzip
    folder = d / "idx"
    folder.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        header = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        (folder / f"{stem}.gz").write_bytes(gzip.compress(header + bytes(100))[:-5])  # cut inside the gzip stream
    return folder


def _results_dir(d: Path, *files: tuple[str, bytes]) -> Path:
    out = d / "res"
    (out / "trials").mkdir(parents=True)
    for name, data in files:
        (out / "trials" / name).write_bytes(data)
    return out


def report_case(id: str, make: Callable[[Path], Path], needle: str, *extra: str) -> Case:
    return Case(id, lambda d: ["report", str(make(d)), *extra], 2, needle)


def _a_file(d: Path) -> Path:
    (d / "plain.txt").write_text("x")
    return d / "plain.txt"


CASES = [
    # ---------------------------------------------------------------- suite files
    suite_case("typo-in-defaults-before-missing", "defaults: {backend: torch, hidden: [10], epohcs: 2, seed: 0}\n"
               "experiments:\n  - {algorithm: ff}\n", "defaults.epohcs: unknown field (did you mean 'epochs'?)"),
    suite_case("billion-laughs", _laughs() + GOOD, "expands to more than 50,000 values", limit=1.0),
    suite_case("deep-nesting", "experiments: " + "[" * 20000 + "]" * 20000 + "\n", "nested deeper than 32 levels", limit=1.0),
    suite_case("deep-mapping", "experiments:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)) + "  " * 60 + "v: 1\n",
               "nested deeper than 32 levels", limit=1.0),
    suite_case("binary-file", bytes(range(256)) * 4, "not UTF-8 text (byte 128 is 0x80)", limit=1.0),
    suite_case("latin-1-file", "name: caf\xe9\n".encode("latin-1") + GOOD.encode(), "not UTF-8 text (byte 9 is 0xe9)"),
    suite_case("nul-character", "name: a\x00b\n" + GOOD, "invalid YAML: unacceptable character #x0000"),
    suite_case("huge-file", "#" + "x" * (1 << 20) + "\n" + GOOD, "more than the 1,048,576 a suite file may have", limit=1.0),
    suite_case("empty-file", "", "a suite is a mapping with `experiments:`"),
    suite_case("python-object-tag", "experiments: !!python/object/apply:os.system ['echo pwned']\n",
               "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
    suite_case("python-name-scalar", "name: !!python/name:os.system\n" + GOOD, "invalid YAML: could not determine a constructor"),
    suite_case("set-tag", "experiments: !!set {a, b}\n", "tag 'tag:yaml.org,2002:set' is not allowed"),
    suite_case("nan-threshold", GOOD.replace("algorithm: ff}", "algorithm: ff, ff: {threshold: .nan}}"),
               "experiments[0].ff.threshold: input should be a finite number"),
    suite_case("inf-learning-rate", GOOD.replace("algorithm: ff}", "algorithm: ff, optimizer: {lr: .inf}}"),
               "experiments[0].optimizer.lr: input should be a finite number"),
    suite_case("minus-inf-label", GOOD.replace("algorithm: ff}", "algorithm: ff, ff: {label_neutral: -.inf}}"),
               "experiments[0].ff.label_neutral: input should be a finite number"),
    suite_case("nan-reference-error", GOOD.replace("algorithm: ff}", "algorithm: ff, reference_error: .nan}"),
               "input should be a finite number"),
    suite_case("huge-epochs", GOOD.replace("epochs: 1", "epochs: 100000000000000000000000000000"),
               "defaults.epochs: input should be less than or equal to 1000000"),
    suite_case("huge-width", GOOD.replace("hidden: [10]", "hidden: [1000000000]"),
               "defaults.hidden[0]: input should be less than or equal to 100000"),
    suite_case("zero-width", GOOD.replace("hidden: [10]", "hidden: [0]"), "defaults.hidden[0]: input should be greater than 0"),
    suite_case("bool-for-int", GOOD.replace("epochs: 1", "epochs: true"), "defaults.epochs: input should be a valid integer"),
    suite_case("text-for-int", GOOD.replace("epochs: 1", 'epochs: "3"'), "defaults.epochs: input should be a valid integer"),
    suite_case("negative-seed", GOOD.replace("seed: 0", "seed: -1"), "defaults.seed: input should be greater than or equal to 0"),
    suite_case("million-trial-grid", _grid(100), "expands to 1,000,000 trials, more than the limit of 10,000", limit=2.0),
    suite_case("grid-past-a-lowered-limit", _grid(3), "expands to 27 trials, more than the limit of 20", "--max-trials", "20"),
    suite_case("duplicate-experiment-name", GOOD + "  - {name: e, algorithm: bp}\n",
               "experiments[1].name: experiment name 'e' is already used by experiments[0]"),
    suite_case("path-in-suite-name", "name: ../../etc\n" + GOOD, "name: expected a folder name of letters, digits"),
    suite_case("unicode-field", GOOD.replace("algorithm: ff}", "algorithm: ff, ﬀ: {threshold: 1}}"),
               "experiments[0].ﬀ: unknown field"),
    suite_case("duplicate-key", GOOD + "experiments: []\n", "duplicate key 'experiments'"),
    suite_case("experiments-not-a-list", "experiments: {a: 1}\n", "experiments: Input should be a valid list"),
    suite_case("experiment-not-a-mapping", "experiments: [1, 2]\n", "experiments.0: Input should be a valid dictionary"),
    suite_case("unknown-algorithm", GOOD.replace("algorithm: ff", "algorithm: ffx"), "expected one of: ff, bp; got 'ffx'"),
    suite_case("unknown-backend", GOOD.replace("backend: torch", "backend: tensorflow"), "unknown backend 'tensorflow'"),
    suite_case("merge-of-a-scalar", "x: &x 3\n" + GOOD.replace("{name: e, algorithm: ff}", "{<<: *x, name: e, algorithm: ff}"),
               "`<<` merges a mapping"),
    suite_case("suite-is-a-folder", b"", "is a folder; expected a YAML file"),  # argv patched below
    # ---------------------------------------------------------------- --set values
    suite_case("set-nan", GOOD, "--set ff.threshold: input should be a finite number", "--set", "ff.threshold=.nan"),
    suite_case("set-through-a-value", GOOD, "epochs is a value, not a block of fields", "--set", "epochs.x=1"),
    suite_case("set-no-key", GOOD, "expected a dotted field name before '='", "--set", "=3"),
    suite_case("set-no-equals", GOOD, "expected KEY=VALUE", "--set", "epochs"),
    suite_case("set-deep-value", GOOD, "cannot read the value: nested deeper than 32 levels", "--set",
               "hidden=" + "[" * 5000 + "]" * 5000, limit=1.0),
    suite_case("set-bad-yaml", GOOD, "cannot read the value: invalid YAML", "--set", "hidden=[1, 2"),
    suite_case("batch-larger-than-split", GOOD, "batch_size: batch_size 60000 exceeds the 50000 training images",
               "--set", "batch_size=60000", "--executor", "local", dry=False, limit=20.0),
    suite_case("subset-larger-than-split", GOOD, "data.train_subset: 55000 exceeds the 50000 training images",
               "--set", "data.train_subset=55000", "--executor", "local", dry=False, limit=20.0),
    # ---------------------------------------------------------------- CLI flags
    suite_case("max-trials-zero", GOOD, "argument --max-trials: expected a whole number >= 1", "--max-trials", "0"),
    suite_case("pack-size-negative", GOOD, "argument --pack-size: expected a whole number >= 1", "--pack-size", "-1"),
    suite_case("timeout-nan", GOOD, "argument --trial-timeout: expected a number > 0", "--trial-timeout", "nan"),
    suite_case("timeout-inf", GOOD, "argument --trial-timeout: expected a number > 0", "--trial-timeout", "inf"),
    suite_case("cpus-text", GOOD, "argument --cpus-per-trial: expected a number", "--cpus-per-trial", "two"),
    suite_case("gpus-fraction-above-one", GOOD, "more than 1 GPU per trial must be a whole number", "--gpus-per-trial", "1.5"),
    suite_case("max-retries-negative", GOOD, "--max-retries -1: expected 0 or more", "--max-retries", "-1", dry=False),
    suite_case("unknown-tag", GOOD, "--only: no trial has tag 'nope'", "--only", "nope"),
    suite_case("unknown-backend-flag", GOOD, "--backend: no trial runs on 'jaxx'", "--backend", "jaxx"),
    suite_case("json-without-dry-run", GOOD, "--json goes with --dry-run", "--json", dry=False),
    Case("unknown-command", lambda d: ["frobnicate"], 2, "invalid choice"),
    Case("out-is-a-file", lambda d: ["run", str(ROOT / "suites" / "smoke.yaml"), "--out", str(_a_file(d)), "--dry-run"], 2,
         "plain.txt: --out: is a file; expected a results folder"),
    suite_case("out-inside-a-file", GOOD, "plain.txt/sub: --out: is a file, or inside one; expected a results folder",
               "--executor", "local", "--out", "plain.txt/sub", dry=False, limit=20.0),
    # ---------------------------------------------------------------- results folders
    report_case("report-missing-folder", lambda d: d / "nope", "nope: no such folder"),
    report_case("report-on-a-file", _a_file, "plain.txt: is a file; expected a results folder"),
    report_case("report-no-trials", lambda d: (d / "empty").mkdir() or d / "empty", "not an ffbench results folder (no trials/"),
    report_case("report-only-garbage", lambda d: _results_dir(d, ("a.parquet", b"PAR1 not really"), ("b.parquet", b"")),
                "not an ffbench results folder: no fragment in trials/ reads as ffbench rows"),
    # ---------------------------------------------------------------- fixtures
    fixture_case("fixture-missing-file", "cannot read fixture (FileNotFoundError", make=lambda d: d / "nope.npz"),
    fixture_case("fixture-not-npz", "cannot read fixture (",
                 make=lambda d: (d / "g.npz").write_bytes(b"garbage" * 10) and d / "g.npz"),
    fixture_case("fixture-single-array", "a single array, not an .npz",
                 make=lambda d: np.save(d / "a.npy", np.zeros(3)) or d / "a.npy"),
    fixture_case("fixture-object-array",
                 "x_pos: cannot read (ValueError: Object arrays cannot be loaded when allow_pickle=False)",
                 x_pos=np.array([{"a": 1}, None], dtype=object)),
    fixture_case("fixture-missing-bias", "b1: missing array (the fixture has W0..W1)", W1=np.zeros((2, 4), np.float32)),
    fixture_case("fixture-shape-mismatch", "W0: expected W0 of shape (out, 6)", W0=np.zeros((4, 5), np.float32)),
    fixture_case("fixture-nan-input", "x_pos: expected finite real numbers; got dtype float32 with NaN or infinity",
                 x_pos=np.full((3, 6), np.nan, np.float32)),
    fixture_case("fixture-huge-steps", "steps: expected a whole number from 1 to 10000",
                 spec=np.array('{"optimizer": {"name": "sgd", "lr": 0.1}, "steps": 1000000000}')),
    fixture_case("fixture-nan-threshold", "spec: Input should be a finite number",
                 spec=np.array('{"threshold": NaN, "optimizer": {"name": "sgd", "lr": 0.1}, "steps": 1}')),
    fixture_case("fixture-spec-a-list", "spec: expected a JSON object; got list", spec=np.array("[1, 2]")),
    Case("fixture-without-out", lambda d: ["check", "--fixture", str(_fixture(d)), "--backends", "torch"], 2,
         "--fixture needs --out DIR"),
    # ---------------------------------------------------------------- dataset files (environment: exit 3)
    data_case("mnist-one-flipped-byte", _damaged_npz("flip", _flip_middle_byte), "not a readable Keras-style mnist.npz ("),
    data_case("mnist-cut-short", _damaged_npz("cut", lambda data: bytes(data[: len(data) // 3])),
              "not a readable Keras-style mnist.npz ("),
    data_case("mnist-not-a-zip", _text_as_npz, "not a readable Keras-style mnist.npz ("),
    data_case("mnist-idx-cut-short", _truncated_idx, "cannot read (EOFError"),
    data_case("data-dir-missing", lambda d: d / "nowhere", "nowhere: no such file or folder"),
]


def _argv(case: Case, d: Path, monkeypatch) -> list[str]:
    argv = case.argv(d)
    if "--data-dir-for-test" in argv:  # the dataset cases point FFBENCH_DATA_DIR at their damaged copy
        i = argv.index("--data-dir-for-test")
        monkeypatch.setenv("FFBENCH_DATA_DIR", argv[i + 1])
        del argv[i: i + 2]
    if case.id == "out-inside-a-file":
        (d / "plain.txt").write_text("x")
    if case.id == "suite-is-a-folder":
        (d / "folder.yaml").mkdir()
        argv[1] = str(d / "folder.yaml")
    return argv


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything written by default (results/<name>/) would land here
    argv = _argv(case, tmp_path, monkeypatch)
    before = set(tmp_path.rglob("*"))
    t0 = time.monotonic()
    code = run_cli(argv)
    elapsed = time.monotonic() - t0
    captured = capsys.readouterr()
    err = captured.err
    assert code == case.code, (code, err)
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err  # exactly one line
    assert err.startswith("ffbench: error: ") and case.needle in err, err
    assert "Traceback" not in err + captured.out
    assert set(tmp_path.rglob("*")) == before, "something was written"
    assert elapsed < case.limit, f"took {elapsed:.2f}s (limit {case.limit}s)"


def test_the_corpus_is_large_and_covers_every_kind_of_input():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    kinds = {c.argv.__qualname__.split(".")[0] for c in CASES}
    assert {"suite_case", "fixture_case", "data_case", "report_case"} <= kinds
    assert {c.code for c in CASES} == {2, 3}


@pytest.mark.parametrize("body,needle", [
    (_laughs(), "expands to more than 50,000 values"),
    ("experiments: " + "[" * 100000 + "]" * 100000 + "\n", "nested deeper than 32 levels"),
    ("\udcff", "not UTF-8 text"),
])
def test_hostile_files_in_a_real_process(tmp_path, body, needle):
    """As a user would see it: `python -m ffbench` answers at once, with one line and exit 2."""
    p = tmp_path / "s.yaml"
    p.write_bytes(body.encode("utf-8", "surrogateescape"))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ffbench", "run", str(p), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert time.monotonic() - t0 < 15 and not (tmp_path / "out").exists()


def test_a_grid_at_the_limit_runs_and_the_limit_can_be_raised(tmp_path, capsys):
    import json
    p = tmp_path / "s.yaml"
    p.write_text(_grid(3))  # 27 trials
    assert main(["run", str(p), "--dry-run", "--json", "--max-trials", "27"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 27
    assert main(["run", str(p), "--dry-run", "--max-trials", "26"]) == 2


def test_unicode_names_and_tags_are_fine(tmp_path, capsys):
    p = tmp_path / "s.yaml"
    p.write_text(GOOD.replace("name: e,", "name: 'FF ✓ naïve', tags: [ünïcode, 数据],"))
    assert main(["run", str(p), "--dry-run", "--json", "--only", "数据"]) == 0
    assert "FF \\u2713 na\\u00efve" in capsys.readouterr().out
