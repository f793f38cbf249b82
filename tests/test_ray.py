"""Trials as Ray tasks: placement and packing on a simulated cluster, retries after a killed
worker, timeouts, infeasible requests, an interrupted driver, and `--address`."""

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from ffbench import registry, results, runner
from ffbench.errors import ResourcesUnavailable
from ffbench.ray_executor import RayExecutor, submission_order
from ffbench.registry import BackendEntry
from ffbench.report.stats import max_concurrency
from ffbench.spec import parse_trial

pytestmark = pytest.mark.ray
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAKE = BackendEntry("fake", "fake_backend", ("numpy",), "-", "test double")


class Recorder:
    """A quiet progress that remembers what it was told, and can act when a trial starts."""

    def __init__(self, on_start=None):
        self.started, self.epochs, self.on_start = [], [], on_start

    def skipped(self, n):
        self.n_skipped = n

    def trial_started(self, p, where):
        self.started.append((p.trial_id, where))
        if self.on_start:
            self.on_start(p, where)

    def epoch(self, p, done, total, info):
        self.epochs.append((p.trial_id, done, total))

    def trial_finished(self, p, row):
        pass


def fake_trials(seeds, width=10, epochs=2):
    """Fake trials; seeds 100-199 sleep width/10 s per epoch (see fake_backend.py)."""
    return runner.plan(parse_trial({"algorithm": "ff", "backend": "fake", "seed": s, "hidden": [width], "epochs": epochs,
                                    "data": {"train_subset": 100, "validation_size": 0}}) for s in seeds)


def max_overlap(df: pd.DataFrame) -> int:
    """The most trials running at one instant, from each row's started_at/finished_at."""
    return max_concurrency(df["started_at"], df["finished_at"])


def session_processes(sid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    pids.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def test_units_are_submitted_grouped_by_backend_in_suite_order():
    """A CPU worker is reused only by its own backend's next task: interleaved backends made
    Ray start workers (and load frameworks) again and again."""
    planned = runner.plan(parse_trial({"algorithm": "bp", "backend": b, "seed": s, "hidden": [10], "epochs": 1})
                          for s, b in enumerate(["torch", "jax", "keras", "torch", "jax", "torch"]))
    units = [[p] for p in planned]
    order = [(u[0].spec["backend"], u[0].spec["seed"]) for u in submission_order(units)]
    assert order == [("jax", 1), ("jax", 4), ("keras", 2), ("torch", 0), ("torch", 3), ("torch", 5)]


@pytest.fixture(scope="module")
def cluster():
    """A head with no GPU and two nodes declaring one GPU each (logical GPUs: nothing touches a device)."""
    import ray
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as mp:
        temp = tempfile.mkdtemp(prefix="ffc-", dir="/tmp")
        mp.setenv("RAY_TMPDIR", temp)
        mp.setenv("PYTHONPATH", str(TESTS))  # workers import fake_backend
        mp.syspath_prepend(str(TESTS))
        mp.setitem(registry._REGISTRY, "fake", FAKE)
        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
        gpu_nodes = {c.add_node(num_cpus=4, num_gpus=1).node_id for _ in range(2)}
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False)
        try:
            yield gpu_nodes
        finally:
            ray.shutdown()
            c.shutdown()
            subprocess.run(["rm", "-rf", temp], check=False)


def test_gpu_trials_land_only_on_gpu_nodes_and_never_exceed_the_gpus(cluster, tmp_path):
    trials = fake_trials(range(100, 106), width=15)
    with RayExecutor(gpus_per_trial=1) as ex:
        summary = runner.run(trials, tmp_path, ex, Recorder())
    df = results.read_trials(tmp_path)
    assert summary.failed == 0 and len(df) == 6 and set(df["status"]) == {"ok"}
    assert set(df["node_id"]) <= cluster, "a GPU trial ran on the GPU-less head"
    assert max_overlap(df) <= 2, "more trials ran at once than there are GPUs"
    assert set(df["gpus_per_trial"]) == {1.0} and set(df["visible_devices"]) == {"0"} and set(df["attempt"]) == {1}


def test_cpu_requests_bound_concurrency_too(cluster, tmp_path):
    trials = fake_trials(range(130, 134), width=10)
    with RayExecutor(gpus_per_trial=0, cpus_per_trial=4) as ex:
        runner.run(trials, tmp_path, ex, Recorder())
    df = results.read_trials(tmp_path)
    assert set(df["status"]) == {"ok"} and set(df["node_id"]) <= cluster  # only the GPU nodes have 4 CPUs
    assert max_overlap(df) <= 2 and set(df["visible_devices"]) == {""}  # a CPU trial sees no GPU


def test_fractional_gpu_requests_pack_several_trials_per_gpu(cluster, tmp_path):
    trials = fake_trials(range(110, 118), width=15, epochs=3)
    rec = Recorder()
    with RayExecutor(gpus_per_trial=0.5) as ex:
        runner.run(trials, tmp_path, ex, rec)
    df = results.read_trials(tmp_path)
    assert set(df["status"]) == {"ok"} and set(df["node_id"]) <= cluster
    assert 3 <= max_overlap(df) <= 4, "0.5 GPU per trial packs two trials on each of the two GPUs"
    assert {w["gpus"] for _, w in rec.started} == {0.5} and len(rec.epochs) >= 8  # epoch progress reached the driver


def test_an_infeasible_request_is_refused_up_front(cluster, tmp_path):
    with RayExecutor(gpus_per_trial=2) as ex, pytest.raises(ResourcesUnavailable,
                                                             match="ask for 2 GPU and 1 CPU each, but no node"):
        runner.run(fake_trials([0]), tmp_path, ex, Recorder())
    assert not (tmp_path / "trials").exists()


def test_a_killed_worker_is_retried_and_the_count_recorded(cluster, tmp_path):
    def kill_first_attempt(p, where):
        if where["attempt"] == 1:
            os.kill(where["pid"], signal.SIGKILL)

    trials = fake_trials([120], width=10)
    with RayExecutor(gpus_per_trial=1, max_retries=2) as ex:
        runner.run(trials, tmp_path, ex, Recorder(kill_first_attempt))
    row = results.read_trials(tmp_path).iloc[0]
    assert row["status"] == "ok" and row["attempt"] == 2 and row["epochs_run"] == 2

    # Out of retries: the trial is a failed row naming the crash, and the suite goes on.
    trials = fake_trials([121, 0], width=10)
    with RayExecutor(gpus_per_trial=1, max_retries=0) as ex:
        summary = runner.run(trials, tmp_path / "b", ex, Recorder(kill_first_attempt))
    df = results.read_trials(tmp_path / "b").set_index("seed")
    assert summary.failed == 2 and df.loc[121, "status"] == "failed" and df.loc[121, "attempt"] == 1
    assert "attempt 1 of 1" in df.loc[121, "error"] and "Worker" in df.loc[121, "error"]


def test_a_hung_trial_is_killed_at_its_timeout(cluster, tmp_path):
    trials = fake_trials([3, 0], epochs=1)
    t0 = time.monotonic()
    with RayExecutor(gpus_per_trial=1, trial_timeout=4.0, grace=1.0) as ex:
        runner.run(trials, tmp_path, ex, Recorder())
    df = results.read_trials(tmp_path).set_index("seed")
    assert df.loc[3, "status"] == "timeout" and "killed 1s after the 4s trial timeout" in df.loc[3, "error"]
    assert df.loc[0, "status"] == "ok"
    assert time.monotonic() - t0 < 60


# ---------------------------------------------------------------- the command, end to end

TORCH_SUITE = """
name: tiny
defaults: {backend: torch, hidden: [64], epochs: 3, batch_size: 20, data: {train_subset: 2000, validation_size: 0},
           optimizer: {name: adam, lr: 0.003}, eval_every: 0}
experiments:
  - {name: ff, algorithm: ff, seed: [0, 1, 2, 3, 4, 5]}
"""


def _env(ray_tmp: Path) -> dict[str, str]:
    return {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONUNBUFFERED": "1"}


def _fragments(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "trials").glob("*.parquet"))}


def _interrupt_after(cmd, out: Path, n: int, sig: int, ray_tmp: Path) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, env=_env(ray_tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list((out / "trials").glob("*.parquet"))) >= n:
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_an_interrupted_run_resumes_without_rerunning_or_losing_trials(tmp_path, ray_tmp):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(TORCH_SUITE)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ffbench.cli", "run", str(suite), "--out", str(out), "--executor", "ray", "--quiet"]

    code, err = _interrupt_after(cmd, out, 1, signal.SIGINT, ray_tmp)  # Ctrl-C
    first = _fragments(out)
    assert code == 130 and "interrupted; finished trials are saved" in err, err
    assert 1 <= len(first) < 6

    code, err = _interrupt_after(cmd, out, len(first) + 1, signal.SIGTERM, ray_tmp)
    second = _fragments(out)
    assert code in (130, 0), err
    assert {k: second[k] for k in first} == first, "a finished fragment was rewritten"

    done = subprocess.run(cmd[:-1] + ["--cpus-per-trial", "2"], env=_env(ray_tmp), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"skipping {len(second)} trial(s) already done" in done.stderr
    final = _fragments(out)
    assert len(final) == 6 and {k: final[k] for k in second} == second
    df = results.read_trials(out)
    assert df["trial_id"].is_unique and set(df["status"]) == {"ok"}
    assert not list(out.rglob(".*.tmp")), "a temporary file was left behind"
    # Ray went away with the driver each time: no process of these runs is left.
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", str(ray_tmp)], capture_output=True, text=True).stdout.split()
    assert not left, f"Ray processes left running: {left}"

    # The same suite run sequentially in one process: the same trials, the same numbers.
    from ffbench.cli import main
    local = tmp_path / "local"
    assert main(["run", str(suite), "--out", str(local), "--executor", "local", "--quiet"]) == 0
    seq = results.read_trials(local).set_index("trial_id").sort_index()
    par = df.set_index("trial_id").sort_index()
    assert list(seq.index) == list(par.index)
    assert seq["test_error"].to_numpy() == pytest.approx(par["test_error"].to_numpy(), abs=2e-3)
    assert seq["train_error"].to_numpy() == pytest.approx(par["train_error"].to_numpy(), abs=2e-3)


def test_an_infeasible_run_exits_up_front_with_one_line(tmp_path, ray_tmp):
    from ffbench.cli import main
    out = tmp_path / "out"
    code = subprocess.run([sys.executable, "-m", "ffbench.cli", "run", str(ROOT / "suites" / "smoke.yaml"), "--out", str(out),
                           "--backend", "torch", "--gpus-per-trial", "1", "--quiet"], env=_env(ray_tmp), capture_output=True,
                          text=True, timeout=120)
    assert code.returncode == 3, code.stderr
    assert code.stderr.count("\n") == 1 and "ask for 1 GPU and 1 CPU each, but no node of the Ray cluster" in code.stderr
    assert not (out / "trials").exists()
    with pytest.raises(SystemExit) as exc:
        main(["run", str(ROOT / "suites" / "smoke.yaml"), "--gpus-per-trial", "1.5", "--dry-run"])
    assert exc.value.code == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_session(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):  # only the processes this test started (its session)
        for p in session_processes(pid):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        time.sleep(1)


def test_address_joins_a_head_started_with_ray_start(tmp_path, ray_tmp):
    """The head runs with a token of the test's own; the run that joins it passes the same
    token (RAY_AUTH_TOKEN, the cluster's own setting), all over 127.0.0.1."""
    port = _free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    env = {**_env(ray_tmp), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen([str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = head.communicate(timeout=120)
        assert head.returncode == 0, log
        out = tmp_path / "out"
        run = subprocess.run([sys.executable, "-m", "ffbench.cli", "run", str(ROOT / "suites" / "smoke.yaml"), "--out", str(out),
                              "--address", f"127.0.0.1:{port}", "--backend", "torch", "--quiet",
                              "--set", "epochs=1", "--set", "data.train_subset=400", "--set", "data.validation_size=0"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        df = results.read_trials(out)
        assert len(df) == 6 and set(df["status"]) == {"ok"} and set(df["executor"]) == {"ray"}
        assert df["node_id"].nunique() == 1
        # The head outlives the run that joined it.
        assert session_processes(head.pid), "the ffbench run shut down a cluster it did not start"
    finally:
        _stop_session(head.pid)
