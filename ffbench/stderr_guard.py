"""Keep the terminal to ffbench's own lines: framework chatter is dropped unless --verbose.

Native libraries write to file descriptor 2 directly, past Python's `sys.stderr` and past
TF_CPP_MIN_LOG_LEVEL (absl's "All log messages before absl::InitializeLog() is called",
oneDNN's notice, XLA's and CUDA's start-up lines); the frameworks' Python side writes
warnings and log records to `sys.stderr`. While a command runs under `only_ffbench_lines()`,
both point at an anonymous temporary file, which vanishes with the process, and ffbench's
own lines (errors, warnings, progress) go to `OWN`, the real stderr.

A Python exception that escapes the command is printed after the guard is lifted, so a bug
still shows its traceback. `--verbose` (every subcommand has it) turns the guard off.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_own: TextIO | None = None


class _Own:
    """File-like: ffbench's own stderr, wherever it is at the moment of each write."""

    def _file(self) -> TextIO:
        return _own or sys.stderr

    def write(self, text: str) -> int:
        return self._file().write(text)

    def flush(self) -> None:
        self._file().flush()

    def isatty(self) -> bool:
        return self._file().isatty()

    def fileno(self) -> int:
        return self._file().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._file(), "encoding", None) or "utf-8"


OWN = _Own()


def say(line: str) -> None:
    """One line of ffbench's own on stderr."""
    print(line, file=OWN, flush=True)


def _is_fd2(stream: TextIO) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a test's capture object, a closed stream
        return False


@contextmanager
def only_ffbench_lines(verbose: bool = False) -> Iterator[None]:
    """Send fd 2 and `sys.stderr` to a discarded temporary file for the duration; ffbench's
    own lines go to the real stderr through `OWN` (or `say`)."""
    global _own
    if verbose or _own is not None:  # asked for everything, or already guarded
        yield
        return
    saved = sys.stderr
    saved.flush()
    try:
        fd2 = os.dup(2)
    except OSError:  # no fd 2 to guard
        yield
        return
    sink = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
    # Where sys.stderr writes to fd 2 (a real process), ffbench's lines need a stream of their
    # own on the saved descriptor; elsewhere (a test's capture) they keep going where they went.
    _own = os.fdopen(os.dup(fd2), "w", buffering=1, encoding=getattr(saved, "encoding", None) or "utf-8",
                     errors="backslashreplace") if _is_fd2(saved) else saved
    os.dup2(sink.fileno(), 2)
    sys.stderr = sink
    try:
        yield
    finally:
        own, _own = _own, None
        try:
            own.flush()
            sink.flush()
        finally:
            sys.stderr = saved
            os.dup2(fd2, 2)
            os.close(fd2)
            if own is not saved:
                own.close()
            sink.close()
