"""Trials as Ray tasks: spread a suite over every GPU of a machine or a cluster.

    with RayExecutor(address=None) as ex:        # None: an embedded local Ray, torn down on exit
        for record in ex.map(units, progress):   # records arrive as trials finish
            ...

Each unit of work (a trial, or a pack of trials trained as one program) is one task asking
for `gpus` (fractions pack several trials on a GPU) and `cpus`, from the trial's
`meta.resources`, else the executor's defaults (1 GPU where the cluster has GPUs, 1 CPU).
Worker processes are pooled per (backend, GPU or not), so a
process never holds two frameworks; a GPU task gets a fresh process (Ray's max_calls=1 for
GPU functions), which sees only its assigned devices through CUDA_VISIBLE_DEVICES, with
JAX preallocation off and TensorFlow memory growth on. A CPU task sees no GPU.

Faults: a worker that dies (killed, OOM, lost node) is retried by Ray up to `max_retries`
times and the attempt number is recorded; a trial running past `trial_timeout` stops at
its next epoch boundary, or is killed `grace` seconds later, and is recorded as `timeout`.
Closing the iterator (Ctrl-C) cancels everything in flight. Rows are written by the
driver only, so a remote worker never touches the results folder.

Security: the embedded cluster listens on 127.0.0.1 only and keeps Ray's token
authentication on (`require_token_auth`; RAY_AUTH_MODE=disabled is refused), so neither
another machine nor a local client without the token can submit work to it. `--address`
joins a cluster with that cluster's own settings: RAY_AUTH_MODE=token and its token in
RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token.

Progress flows back through a small actor (`_Hub`): when a trial really starts (not when
it is queued), its attempt, node and process, and each finished epoch.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ffbench import registry
from ffbench.errors import BackendUnavailable, FFBenchError, ResourcesUnavailable
from ffbench.runner import PlannedTrial, RunProgress, TrialRecord, lost_trial, run_unit

# Pinned into every worker before a framework is imported.
WORKER_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
CPU_ONLY_ENV = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}


# The embedded cluster is this machine's alone: its node address is the loopback one, so its
# GCS, raylet, object manager and worker ports listen on 127.0.0.1 only (Ray's single-machine
# mode, the one it uses on macOS and Windows; read when Ray is imported).
EMBEDDED_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _ray(embedded: bool = False):
    if embedded and "ray" not in sys.modules:
        for k, v in EMBEDDED_ENV.items():
            os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("Ray is not installed: pip install 'ffbench[ray]', or run with --executor local") from None
    return ray


def require_token_auth() -> None:
    """An embedded cluster runs with Ray's token authentication (on by default for local
    clusters since Ray 2.59, the oldest Ray ffbench installs): its ports accept work only from
    a client holding the token Ray generates (~/.ray/auth_token, or $RAY_AUTH_TOKEN /
    $RAY_AUTH_TOKEN_PATH). ffbench never turns it off, and refuses to start one without it."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token":
        raise BackendUnavailable(f"RAY_AUTH_MODE={mode}: ffbench starts its embedded Ray only with token authentication "
                                 "(anyone who reaches an unauthenticated Ray can run code on it); unset RAY_AUTH_MODE")


def default_temp_dir() -> Path:
    """Ray's session files for an embedded run: under $RAY_TMPDIR (or the system temp dir),
    in a folder of this user's (Ray's socket paths must stay short)."""
    return Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / f"ffbench-ray-{os.getuid()}"


def _worker(unit: list[PlannedTrial], entry: dict[str, Any], hub, timeout: float | None) -> list[TrialRecord]:
    """The task body, in a worker process: one trial, or a pack."""
    import ray

    if entry["name"] not in registry.entries():  # a backend the driver registered at run time
        registry.register_backend(registry.BackendEntry(**{**entry, "requires": tuple(entry["requires"])}))
    ctx = ray.get_runtime_context()
    node, devices = ctx.get_node_id(), os.environ.get("CUDA_VISIBLE_DEVICES")
    # Fire and forget: a task blocked in ray.get gives its CPUs back to the scheduler, which
    # would start another trial on them. The attempt number is asked for once the work is done
    # (calls from one caller reach the actor in order).
    for p in unit:
        hub.started.remote(p.trial_id, {"node": node[:8], "pid": os.getpid(), "devices": devices})

    def on_epoch(p: PlannedTrial, done: int, total: int, info: dict[str, Any]) -> None:
        hub.epoch.remote(p.trial_id, done, total, {k: v for k, v in info.items() if isinstance(v, (int, float, str))})

    records = run_unit(unit, on_epoch, timeout)
    attempt = ray.get(hub.attempt.remote(unit[0].trial_id))
    for record in records:
        record.row.update(executor="ray", attempt=attempt, node_id=node, visible_devices=devices)
    return records


class _Hub:
    """Driver-side mailbox (a Ray actor): trial starts, attempt counts and epoch progress."""

    def __init__(self):
        self.attempts: dict[str, int] = {}
        self.events: list[tuple] = []

    def started(self, trial_id: str, where: dict[str, Any]) -> None:
        self.attempts[trial_id] = self.attempts.get(trial_id, 0) + 1
        self.events.append(("started", trial_id, {**where, "attempt": self.attempts[trial_id]}))

    def epoch(self, trial_id: str, done: int, total: int, info: dict[str, Any]) -> None:
        self.events.append(("epoch", trial_id, done, total, info))

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events

    def attempt(self, trial_id: str) -> int:
        return self.attempts.get(trial_id, 0)


def submission_order(units: list[list[PlannedTrial]]) -> list[list[PlannedTrial]]:
    """The units grouped by backend, each group in the suite's order. A Ray worker process
    serves only tasks of its own `runtime_env` (one pool per backend here), and Ray keeps few
    idle workers, so interleaved backends make it start workers again, each loading its
    framework anew. Measured on 2 CPUs, the smoke suite (18 trials, 3 backends), four runs
    each: interleaved, 10-13 worker processes and 49-66 s; grouped, 6-10 and 42-53 s."""
    return sorted(units, key=lambda u: u[0].spec["backend"])


class RayExecutor:
    """Runs each trial as a Ray task; a context manager that connects to (or starts) Ray."""

    def __init__(self, address: str | None = None, *, gpus_per_trial: float | None = None, cpus_per_trial: float | None = None,
                 max_retries: int = 2, trial_timeout: float | None = None, grace: float = 30.0,
                 temp_dir: Path | None = None, num_cpus: int | None = None, num_gpus: int | None = None, poll: float = 0.2):
        self.address, self.gpus, self.cpus = address, gpus_per_trial, cpus_per_trial
        self.max_retries, self.trial_timeout, self.grace, self.poll = max_retries, trial_timeout, grace, poll
        self.temp_dir, self.num_cpus, self.num_gpus = temp_dir, num_cpus, num_gpus
        self.startup_seconds: float | None = None
        self._started_ray = False
        self._has_gpus: bool | None = None

    # ------------------------------------------------------------ connect / start
    def __enter__(self) -> RayExecutor:
        if self.address is None and not ("ray" in sys.modules and sys.modules["ray"].is_initialized()):
            require_token_auth()
        ray = _ray(embedded=self.address is None)
        t0 = time.perf_counter()
        if ray.is_initialized():  # a caller (a test, a notebook) already connected: use that
            pass
        elif self.address is None:
            temp = Path(self.temp_dir or default_temp_dir())
            temp.mkdir(parents=True, exist_ok=True)
            ray.init(address="local", include_dashboard=False, _temp_dir=str(temp), num_cpus=self.num_cpus,
                     num_gpus=self.num_gpus, log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
            self._started_ray = True
        else:
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BackendUnavailable(f"--address {self.address}: cannot connect to a Ray cluster: {msg}") from None
            self._started_ray = True
        self.startup_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        if self._started_ray:
            _ray().shutdown()
            self._started_ray = False

    # ------------------------------------------------------------ resources
    def _nodes(self) -> list[dict[str, float]]:
        return [n["Resources"] for n in _ray().nodes() if n.get("Alive")]

    def resources(self, p: PlannedTrial, cluster_has_gpus: bool) -> tuple[float, float]:
        """(gpus, cpus) for one trial: the run's flags, else the suite's, else the defaults."""
        asked = p.spec["meta"].get("resources") or {}
        gpus = self.gpus if self.gpus is not None else asked.get("gpus")
        cpus = self.cpus if self.cpus is not None else asked.get("cpus")
        return (float(gpus) if gpus is not None else (1.0 if cluster_has_gpus else 0.0),
                float(cpus) if cpus is not None else 1.0)

    def on_gpu(self, spec: dict[str, Any]) -> bool:
        """Whether a trial will run on a GPU (it asks for some): what the runner's packing
        needs to know, without a framework in the driver."""
        return self.resources(PlannedTrial("", spec), self._cluster_has_gpus())[0] > 0

    def _cluster_has_gpus(self) -> bool:
        if self._has_gpus is None:
            self._has_gpus = any(n.get("GPU", 0) > 0 for n in self._nodes())
        return self._has_gpus

    def check_feasible(self, needs: dict[tuple[float, float], list[PlannedTrial]]) -> None:
        """Refuse, before anything is scheduled, a request no node can meet (Ray would wait forever)."""
        nodes = self._nodes()
        for (gpus, cpus), trials in needs.items():
            if not any(n.get("GPU", 0) >= gpus and n.get("CPU", 0) >= cpus for n in nodes):
                have = ", ".join(f"{n.get('GPU', 0):g} GPU/{n.get('CPU', 0):g} CPU" for n in nodes)
                what = trials[0].spec["meta"].get("experiment") or trials[0].trial_id
                raise ResourcesUnavailable(
                    f"{len(trials)} trial(s) (e.g. {what}) ask for {gpus:g} GPU and {cpus:g} CPU each, but no node of "
                    f"the Ray cluster has that much (nodes: {have}); lower --gpus-per-trial / --cpus-per-trial")

    # ------------------------------------------------------------ run
    def map(self, units: list[list[PlannedTrial]], progress: RunProgress) -> Iterator[TrialRecord]:
        """Each unit is one task with the resources of its first trial (a pack asks for what
        one of its trials would)."""
        if not units:
            return
        ray = _ray()
        has_gpus = self._cluster_has_gpus()
        asks = {p.trial_id: self.resources(u[0], has_gpus) for u in units for p in u}
        needs: dict[tuple[float, float], list[PlannedTrial]] = {}
        for u in units:
            needs.setdefault(asks[u[0].trial_id], []).append(u[0])
        self.check_feasible(needs)

        hub = ray.remote(num_cpus=0)(_Hub).remote()
        cpu_task, gpu_task = ray.remote(_worker), ray.remote(max_calls=1)(_worker)
        pending: dict[Any, list[PlannedTrial]] = {}
        for u in submission_order(units):
            gpus, cpus = asks[u[0].trial_id]
            backend, what = u[0].spec["backend"], u[0].spec["meta"].get("experiment") or u[0].spec["algorithm"]
            env = {**WORKER_ENV, "FFBENCH_WORKER_POOL": f"{backend}-{'gpu' if gpus else 'cpu'}", **({} if gpus else CPU_ONLY_ENV)}
            task = gpu_task if gpus else cpu_task
            ref = task.options(num_gpus=gpus, num_cpus=cpus, max_retries=self.max_retries, retry_exceptions=False,
                               name=f"ffbench {what} {u[0].trial_id}" + (f" (+{len(u) - 1} packed)" if len(u) > 1 else ""),
                               runtime_env={"env_vars": env}).remote(u, asdict(registry.entries()[backend]), hub,
                                                                      self.trial_timeout)
            pending[ref] = u

        started: dict[str, float] = {}
        killed: set[str] = set()
        by_id = {p.trial_id: p for u in units for p in u}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=self.poll)
                for event in ray.get(hub.drain.remote()):
                    kind, tid = event[0], event[1]
                    if kind == "started":
                        started[tid] = time.monotonic()
                        progress.trial_started(by_id[tid], {**event[2], "gpus": asks[tid][0], "cpus": asks[tid][1]})
                    elif kind == "epoch":
                        progress.epoch(by_id[tid], *event[2:])
                for ref in ready:
                    u = pending.pop(ref)
                    for record in self._collect(ray, ref, u, hub, killed):
                        gpus, cpus = asks[record.row["trial_id"]]
                        record.row.update(gpus_per_trial=gpus, cpus_per_trial=cpus, executor="ray")
                        yield record
                if self.trial_timeout is not None:
                    now = time.monotonic()
                    for ref, u in pending.items():
                        t = started.get(u[0].trial_id)
                        if t is not None and u[0].trial_id not in killed and now - t > self.trial_timeout + self.grace:
                            killed.add(u[0].trial_id)
                            ray.cancel(ref, force=True)
        finally:
            for ref in pending:  # interrupted: stop what is queued or running
                ray.cancel(ref, force=True)
            ray.kill(hub)

    def _collect(self, ray, ref, unit: list[PlannedTrial], hub, killed: set[str]) -> list[TrialRecord]:
        from ray.exceptions import RayError, TaskCancelledError

        first = unit[0].trial_id
        try:
            return ray.get(ref)
        except TaskCancelledError:
            if first not in killed:
                raise
            attempt = ray.get(hub.attempt.remote(first))
            status, error = "timeout", (f"killed {self.grace:g}s after the {self.trial_timeout:g}s trial timeout "
                                        "(no epoch finished in time)")
        except RayError as exc:  # the worker died on every attempt (killed, out of memory, node lost)
            attempt = ray.get(hub.attempt.remote(first))
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            status, error = "failed", f"{type(exc).__name__} on attempt {attempt} of {self.max_retries + 1}: {line}"
        pack = [p.trial_id for p in unit] if len(unit) > 1 else None
        records = [lost_trial(p, status, error, pack=pack) for p in unit]
        for record in records:
            record.row["attempt"] = attempt
        return records


def executor_for(name: str, address: str | None, **options: Any):
    """`--executor auto|ray|local` -> an executor (a context manager for Ray)."""
    import importlib.util
    from contextlib import nullcontext

    from ffbench.runner import LocalExecutor

    if name == "local":
        if address:
            raise FFBenchError("--address needs the Ray executor (leave out --executor local)")
        return nullcontext(LocalExecutor(options.get("trial_timeout")))
    if name == "auto" and not address and importlib.util.find_spec("ray") is None:
        return nullcontext(LocalExecutor(options.get("trial_timeout")))
    if not address:
        require_token_auth()  # refused before the run takes its results folder
    return RayExecutor(address, **options)
