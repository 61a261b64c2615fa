"""Failures the runner expects, each tied to one exit code of the public contract."""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA_TEST_FAILED = 1
EXIT_BAD_CONFIG = 2
EXIT_LOCKED = 3
EXIT_DATABASE = 4


class PipelineError(Exception):
    """An expected failure: printed as one line, mapped to an exit code."""

    exit_code = EXIT_DATABASE


class ConfigError(PipelineError):
    """Bad configuration or usage (exit 2)."""

    exit_code = EXIT_BAD_CONFIG


class DataTestFailed(PipelineError):
    """A dbt data test (or model) failed (exit 1)."""

    exit_code = EXIT_DATA_TEST_FAILED


class LockHeld(PipelineError):
    """Another run holds the run lock (exit 3)."""

    exit_code = EXIT_LOCKED

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message
        """The message without the holder's database role and address (for HTTP answers)."""


class LockLost(PipelineError):
    """The run lock's session ended while the run was going (exit 4: it wrote nothing more)."""

    exit_code = EXIT_DATABASE


class DatabaseError(PipelineError):
    """A database was unreachable or failed (exit 4)."""

    exit_code = EXIT_DATABASE


class RunTimedOut(DatabaseError):
    """The run passed its deadline, ``ATLAS_RUN_TIMEOUT_SECONDS`` (exit 4)."""


class KimaiSchemaError(ConfigError):
    """Kimai lacks a table or column the registry needs (exit 2: it points at the wrong place)."""


class MassDeleteRefused(PipelineError):
    """A run would delete more than the allowed share of a table (exit 4: nothing was changed)."""

    exit_code = EXIT_DATABASE
