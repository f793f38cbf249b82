"""Errors that the CLI turns into one clear line and a meaningful exit code."""

from __future__ import annotations

# Exit codes of the `ffbench` command (documented in the README).
EXIT_OK = 0
EXIT_TRIALS_FAILED = 1  # the suite ran, but some trials failed, diverged or timed out
EXIT_BAD_INPUT = 2  # a suite, spec or argument is wrong; nothing was run or written
EXIT_ENVIRONMENT = 3  # a backend, the data, Ray or the resources a suite asks for are missing; or DIR is busy
EXIT_INTERRUPTED = 130


class FFBenchError(Exception):
    """Base class: the message is one line meant for a person; no traceback is shown."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(FFBenchError):
    """A suite or spec that does not validate: where, which field, what was expected."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}{field + ': ' if field else ''}{message}")


class BackendUnavailable(FFBenchError):
    exit_code = EXIT_ENVIRONMENT


class DataError(FFBenchError):
    exit_code = EXIT_ENVIRONMENT


class ResourcesUnavailable(FFBenchError):
    """A trial asks for more GPUs or CPUs than any node of the cluster has."""

    exit_code = EXIT_ENVIRONMENT


class TrialTimeout(Exception):
    """Raised inside a trial that ran past its time limit: the trial is recorded as `timeout`."""


class Diverged(Exception):
    """Raised inside a trial when a loss becomes NaN or infinite: the trial is recorded as `diverged`."""

    def __init__(self, where: str):
        super().__init__(f"non-finite loss at {where}")
