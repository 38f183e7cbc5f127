"""Distillation methods: per-example losses composed with weightings (METHODS.md)."""

from fairdistill.distill import losses  # noqa: F401  (registers the losses)
from fairdistill.distill.core import LOSSES, DistillLoss, MethodContext, TeacherOutputs, TrainState
from fairdistill.distill.method import Method, build_method, resolve_loss

__all__ = ["LOSSES", "DistillLoss", "Method", "MethodContext", "TeacherOutputs", "TrainState", "build_method", "resolve_loss"]
