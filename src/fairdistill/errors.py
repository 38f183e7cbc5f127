"""User-facing errors: raised for bad configs, data or files; the CLI prints them and exits with code 2."""

from __future__ import annotations


class FairdistillError(Exception):
    """An error caused by the user's input (config, data, paths), reported without a traceback."""


class ConfigError(FairdistillError):
    """A config field is missing, unknown, of the wrong type or out of range."""


class DataError(FairdistillError):
    """A dataset file is missing or its content is not what the loader expects."""
