"""Where and with what a trial ran: recorded in every results row."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import cache
from pathlib import Path

from ffbench import __version__

_SOURCE = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def environment() -> dict[str, object]:
    """ffbench version, git SHA (None outside a checkout) and dirtiness, Python, host."""
    sha = _git("rev-parse", "HEAD")
    dirty = None
    if sha is not None:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", "ffbench", "backends")
        dirty = bool(status) if status is not None else None
    return {
        "ffbench_version": __version__,
        "git_sha": sha,
        "git_dirty": dirty,
        "python_version": platform.python_version(),
        "hostname": socket.gethostname(),
    }
