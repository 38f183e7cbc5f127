"""Distillation methods: per-example losses composed with weightings (docs/methods.md)."""

from fairdistill.distill import (  # noqa: F401  (register dkd, rkd, ctkd, kdpp)
    ctkd,
    dkd,
    fair_constraint,  # noqa: F401  (registers the fair-constraint weighting)
    kdpp,
    long_tail_losses,  # noqa: F401  (registers logit-adjusted-kd, ltkd)
    losses,  # noqa: F401  (registers the losses)
    readout,  # noqa: F401  (registers the early-readout weighting)
    relational,
)
from fairdistill.distill.core import LOSSES, DistillLoss, MethodContext, TeacherOutputs, TrainState
from fairdistill.distill.method import Method, build_method, resolve_loss
from fairdistill.distill.mixing import MIXINGS
from fairdistill.distill.weighting import WEIGHTINGS

__all__ = [
    "LOSSES",
    "MIXINGS",
    "WEIGHTINGS",
    "DistillLoss",
    "Method",
    "MethodContext",
    "TeacherOutputs",
    "TrainState",
    "build_method",
    "resolve_loss",
]
