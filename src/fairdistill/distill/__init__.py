"""Distillation methods: per-example losses composed with weightings (docs/methods.md)."""

from fairdistill.distill import losses  # noqa: F401  (registers the losses)
from fairdistill.distill import ctkd, dkd, kdpp, relational  # noqa: F401  (register dkd, rkd, ctkd, kdpp)
from fairdistill.distill import readout  # noqa: F401  (registers the early-readout weighting)
from fairdistill.distill.mixing import MIXINGS
from fairdistill.distill.weighting import WEIGHTINGS
from fairdistill.distill.core import LOSSES, DistillLoss, MethodContext, TeacherOutputs, TrainState
from fairdistill.distill.method import Method, build_method, resolve_loss

__all__ = ["LOSSES", "MIXINGS", "WEIGHTINGS", "DistillLoss", "Method", "MethodContext", "TeacherOutputs", "TrainState", "build_method", "resolve_loss"]
