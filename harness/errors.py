"""Harness errors: part of the project's single hierarchy (see mock_orders_api.errors)."""

from __future__ import annotations

from mock_orders_api.errors import ConfigError, RaceHarnessError


class ScenarioError(ConfigError):
    """A scenario file is invalid; the message names the file, the field and what was expected."""


class TargetError(RaceHarnessError):
    """The target server could not be started, reached, or does not speak the mock's API."""


class ReportError(RaceHarnessError):
    """A run folder cannot be read back (missing or malformed trials.csv / run.json)."""


class StorageError(RaceHarnessError):
    """A run folder file could not be written (disk full, read-only, permission, I/O error):
    the run stops; the message names the file and the error."""


__all__ = ["RaceHarnessError", "ConfigError", "ScenarioError", "TargetError", "ReportError", "StorageError"]
