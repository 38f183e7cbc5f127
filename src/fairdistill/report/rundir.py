"""Moved to :mod:`fairdistill.rundir`, the one module that owns a run directory's files (writing and reading);
its public names stay importable from here."""

from fairdistill.rundir import *  # noqa: F403
