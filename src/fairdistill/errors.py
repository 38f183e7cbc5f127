"""User-facing errors: raised for bad configs, data or files; the CLI prints them and exits with code 2.

:func:`as_user_error` is the one place that decides which other exceptions are the user's to fix (a full
disk, a read-only output folder) rather than a bug; :func:`shown_value` bounds any value echoed in a message.
"""

from __future__ import annotations

import errno
import reprlib


class FairdistillError(Exception):
    """An error caused by the user's input (config, data, paths), reported without a traceback."""


class ConfigError(FairdistillError):
    """A config field is missing, unknown, of the wrong type or out of range."""


class DataError(FairdistillError):
    """A dataset file is missing or its content is not what the loader expects."""


class TrainingDivergedError(FairdistillError):
    """A model's loss became NaN or infinite during training (usually a too-large step size or weight)."""


#: Longest text of a user's value repeated in an error message (a value is cut, never echoed whole).
SHOWN_VALUE_CHARS = 120

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxdict = 6
_SHORT_REPR.maxlist = 6
_SHORT_REPR.maxtuple = 6
_SHORT_REPR.maxset = 6
_SHORT_REPR.maxstring = 80
_SHORT_REPR.maxother = 80
_SHORT_REPR.maxlong = 40


def shown_value(value: object) -> str:
    """``repr(value)`` bounded in size and in time (nested or shared structures are abbreviated with ...)."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def as_user_error(exc: BaseException, where: object = None) -> FairdistillError | None:
    """The user-facing form of ``exc``, or None when it is a bug or an interruption (kept as a traceback).

    Besides fairdistill's own errors, a full disk or quota and a read-only file system are the user's to fix;
    ``where`` (e.g. the run directory) names the place when the error itself does not.
    """
    if isinstance(exc, FairdistillError):
        return exc
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the OSError may be the cause of a library's error
        seen.add(id(current))
        if isinstance(current, OSError):
            place = current.filename or where
            at = f" holding {place}" if place else ""
            if current.errno in _DISK_FULL:
                return FairdistillError(f"no space left on the device{at}; free some space and run again")
            if current.errno == errno.EROFS:
                return FairdistillError(f"the file system{at} is read-only; choose another output folder")
        current = current.__cause__ or current.__context__
    return None
