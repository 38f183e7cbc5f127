"""Moved to :mod:`fairdistill.evaluate.analysis`: the sections derived from the saved predictions (bootstrap
intervals, amplification, margins) are computed in evaluate/, and the report only reads them; the names stay
importable from here."""

from fairdistill.evaluate.analysis import *  # noqa: F403
from fairdistill.evaluate.analysis import CONFIDENCE, RESAMPLES, SPLIT  # noqa: F401
