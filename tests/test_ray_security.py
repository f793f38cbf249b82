"""The embedded Ray lets nobody else in: every port on loopback, token authentication on,
and never started with authentication off. A module of its own, so that it starts its own
embedded cluster (test_ray.py's simulated cluster is module-scoped, and a Ray that a caller
has already connected to is reused by the executor)."""

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ffbench.ray_executor import RayExecutor

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


def _listening_ports(pids: set[int]) -> dict[int, str]:
    """port -> local address of every TCP socket in LISTEN state owned by `pids` (from /proc)."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            pass
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                addr, port = local.split(":")
                raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, len(addr), 8))  # 32-bit words, little-endian
                found[int(port, 16)] = ipaddress.ip_address(raw)
    return found


def _is_loopback(addr) -> bool:
    return addr.is_loopback or bool(getattr(addr, "ipv4_mapped", None) and addr.ipv4_mapped.is_loopback)


def test_the_embedded_cluster_listens_on_loopback_and_refuses_a_client_without_its_token(tmp_path, ray_tmp, monkeypatch):
    """Nobody but this run can submit work to the embedded Ray: every port it opens is on
    127.0.0.1, and a client that has no token (RAY_AUTH_MODE=disabled, as an attacker would
    run) or the wrong one is refused by the GCS; the run itself (holding the token) is not."""
    import ray

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert not ray.is_initialized(), "another test's Ray is still connected"
    with RayExecutor(num_cpus=1) as ex:
        assert ex._started_ray
        gcs = ray.get_runtime_context().gcs_address
        assert gcs.startswith("127.0.0.1:"), gcs
        ray_pids = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and str(ray_tmp) in (Path(p, "cmdline").read_bytes().decode(errors="replace")
                                         if Path(p, "cmdline").exists() else "")}
        ports = _listening_ports(ray_pids | {os.getpid()})
        assert ports, "found no listening Ray port"
        assert all(_is_loopback(addr) for addr in ports.values()), ports
        code = (f"import ray; ray.init(address={gcs!r}, log_to_driver=False)\n"
                "print('RAN', ray.get(ray.remote(lambda: 42).remote()))")
        home = tmp_path / "home"  # no ~/.ray/auth_token there
        home.mkdir()
        # RAY_NUM_REDIS_GET_RETRIES: a refused client gives up after 2 tries of about a second, not 20
        base = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}, "RAY_NUM_REDIS_GET_RETRIES": "2"}
        for attacker in ({"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}):
            r = subprocess.run([sys.executable, "-c", code], env={**base, "HOME": str(home), **attacker},
                               capture_output=True, text=True, timeout=120)
            assert r.returncode != 0 and "RAN" not in r.stdout, (attacker, r.stdout)
            assert "Authentication token is missing or incorrect" in r.stderr, (attacker, r.stderr[-2000:])
        # The same client with the token this cluster generated gets in.
        ok = subprocess.run([sys.executable, "-c", code], env={**base, "RAY_AUTH_MODE": "token"},
                            capture_output=True, text=True, timeout=120)
        assert "RAN 42" in ok.stdout, ok.stderr[-2000:]


def test_ray_auth_disabled_is_refused_for_the_embedded_cluster(tmp_path, monkeypatch, capsys):
    from ffbench.cli import main

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    out = tmp_path / "out"
    assert main(["run", str(ROOT / "suites" / "smoke.yaml"), "--out", str(out), "--executor", "ray", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "RAY_AUTH_MODE=disabled" in err and "token authentication" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
