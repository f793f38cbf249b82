"""Faults around a run: a corrupt fragment in the results folder, a disk that fills or a
folder that is read-only while fragments are written, and framework chatter on stderr.
Each ends with one line (or one warning line per bad file), loses nothing that finished,
and a re-run finishes the rest."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from ffbench import results
from ffbench.cli import main

SUITE = """
name: fakes
defaults: {backend: fake, hidden: [4], epochs: 2, data: {train_subset: 100, validation_size: 0}}
experiments:
  - {name: e, algorithm: ff, seed: [0, 4, 5]}
"""


def _run(tmp_path: Path, *extra: str) -> int:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    return main(["run", str(suite), "--out", str(tmp_path / "out"), "--executor", "local", "--quiet", *extra])


def _ids(out: Path) -> list[str]:
    return sorted(p.stem for p in (out / "trials").glob("*.parquet"))


def _no_temporaries(out: Path) -> bool:
    return not [p for p in out.rglob(".*") if p.name != ".ffbench.lock"]


def test_a_corrupt_fragment_is_set_aside_reported_and_run_again(tmp_path, fake_backend, capsys):
    out = tmp_path / "out"
    assert _run(tmp_path) == 0
    ids = _ids(out)
    victim = out / "trials" / f"{ids[0]}.parquet"
    cut = victim.read_bytes()[: victim.stat().st_size // 2]  # a copy that broke off
    victim.write_bytes(cut)
    capsys.readouterr()

    # The report goes on without it, with a warning line that names it.
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(victim) in err[0] and "unreadable" in err[0] and "left out of the report" in err[0]
    assert "- trials: 2 (2 ok)" in (out / "report" / "report.md").read_text()

    # A dry run says so and moves nothing; a run sets it aside and runs only that trial again.
    assert main(["run", str(tmp_path / "suite.yaml"), "--out", str(out), "--dry-run", "--json"]) == 0
    err = capsys.readouterr().err
    assert str(victim) in err and "a run sets it aside" in err and victim.read_bytes() == cut
    assert _run(tmp_path) == 0
    err = capsys.readouterr().err.splitlines()
    kept = out / "quarantine" / "trials" / victim.name
    assert len(err) == 1 and str(victim) in err[0] and f"moved to {kept}, its trial runs again" in err[0]
    assert kept.read_bytes() == cut  # never deleted
    df = results.read_trials(out)
    assert sorted(df["trial_id"]) == ids and set(df["status"]) == {"ok"}  # nothing lost, nothing twice
    assert results.unreadable(out) == []


def test_a_corrupt_curve_fragment_runs_its_trial_again_whole(tmp_path, fake_backend, capsys):
    out = tmp_path / "out"
    assert _run(tmp_path) == 0
    ids = _ids(out)
    (out / "curves" / f"{ids[1]}.parquet").write_bytes(b"PAR1garbage")
    first_rows = {i: (out / "trials" / f"{i}.parquet").read_bytes() for i in ids}
    assert _run(tmp_path) == 0
    assert (out / "quarantine" / "curves" / f"{ids[1]}.parquet").read_bytes() == b"PAR1garbage"
    assert (out / "quarantine" / "trials" / f"{ids[1]}.parquet").read_bytes() == first_rows[ids[1]]
    assert _ids(out) == ids and results.unreadable(out) == []
    curves = results.read_curves(out)
    assert set(curves["trial_id"]) == set(ids)
    # the other trials were not run again
    assert all((out / "trials" / f"{i}.parquet").read_bytes() == first_rows[i] for i in ids if i != ids[1])


def test_a_full_disk_mid_run_stops_with_one_line_and_a_rerun_finishes(tmp_path, fake_backend, capsys, monkeypatch):
    out = tmp_path / "out"
    real = results.pq.write_table
    calls = []

    def fills_up(table, where, *a, **k):
        calls.append(where)
        if len(calls) > 2:  # the first trial's curves and row fit; then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
        return real(table, where, *a, **k)

    monkeypatch.setattr(results.pq, "write_table", fills_up)
    assert _run(tmp_path) == 3
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "re-run the same command to finish the rest" in err[0]
    assert len(_ids(out)) == 1 and _no_temporaries(out)
    done = _ids(out)

    monkeypatch.setattr(results.pq, "write_table", real)
    assert _run(tmp_path) == 0
    df = results.read_trials(out)
    assert len(df) == 3 and df["trial_id"].is_unique and set(df["status"]) == {"ok"} and set(done) <= set(df["trial_id"])
    assert _no_temporaries(out)


def test_a_read_only_results_folder_is_one_line_exit_3(tmp_path, fake_backend, capsys, monkeypatch):
    out = tmp_path / "out"
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if self == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert _run(tmp_path) == 3
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{out}: cannot write: Read-only file system" in err[0]
    assert not out.exists()


def test_stderr_holds_only_ffbench_lines_unless_verbose(tmp_path):
    """Native writes to fd 2, Python warnings and log records from a framework never reach
    the terminal; ffbench's own lines do; --verbose lets everything through."""
    script = textwrap.dedent("""
        import logging, os, sys, warnings
        from ffbench.stderr_guard import only_ffbench_lines, say
        with only_ffbench_lines(verbose=sys.argv[1] == "verbose"):
            os.write(2, b"I0000 00:00:1 cpu_feature_guard.cc:227] native chatter\\n")
            warnings.warn("a framework warning")
            logging.getLogger("jax").warning("a log record")
            print("a stray print", file=sys.stderr)
            say("ffbench: own line")
        print("after", file=sys.stderr)
    """)
    quiet = subprocess.run([sys.executable, "-c", script, "quiet"], capture_output=True, text=True, timeout=60)
    assert quiet.stderr == "ffbench: own line\nafter\n"
    loud = subprocess.run([sys.executable, "-c", script, "verbose"], capture_output=True, text=True, timeout=60)
    for line in ("native chatter", "a framework warning", "a log record", "a stray print", "ffbench: own line", "after"):
        assert line in loud.stderr


def test_framework_chatter_stays_off_the_terminal(tmp_path):
    """`ffbench check --fixture` on jax with XLA's logging turned up: nothing on stderr, while
    --verbose shows XLA's lines (so there was chatter to keep off)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_check import make_fixture

    make_fixture(tmp_path / "f.npz", {"goodness": "mean", "threshold": 0.5, "norm": "l2", "norm_eps": 1e-8,
                                      "optimizer": {"name": "sgd", "lr": 0.01}, "steps": 2})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    cmd = [sys.executable, "-m", "ffbench", "check", "--fixture", str(tmp_path / "f.npz"), "--out", str(tmp_path / "o"),
           "--backends", "jax"]
    quiet = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "PASS" in quiet.stdout
    loud = subprocess.run(cmd + ["--verbose"], capture_output=True, text=True, timeout=300, env=env)
    assert loud.returncode == 0 and ".cc:" in loud.stderr, loud.stderr


@pytest.mark.parametrize("cut", [0, 4, 100])
def test_unreadable_names_every_bad_fragment(tmp_path, cut):
    good = tmp_path / "trials" / "aaaa.parquet"
    results.write_trial(tmp_path, {"trial_id": "aaaa", "status": "ok", "algorithm": "ff", "backend": "x", "seed": 0})
    bad = tmp_path / "trials" / "bbbb.parquet"
    bad.write_bytes(good.read_bytes()[:cut])
    assert [b.path for b in results.unreadable(tmp_path)] == [bad]
    assert list(results.read_trials(tmp_path)["trial_id"]) == ["aaaa"]
    assert isinstance(results.read_trials(tmp_path), pd.DataFrame)
