"""The training loop, on Hugging Face Accelerate: device placement, seeding, progress bars, epoch selection."""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fairdistill.config import Selection, TrainConfig
from fairdistill.data.core import SplitDataset, collate
from fairdistill.distill.core import TeacherOutputs, TrainState
from fairdistill.distill.method import Method
from fairdistill.models.core import TappedModel
from fairdistill.train.optim import build_optimizer

log = logging.getLogger(__name__)

#: Scores a model on the validation split: ``{"val_acc": ..., "val_worst_group_acc": ...}``.
Validator = Callable[[TappedModel], dict[str, float]]


@dataclass
class FitResult:
    """What training produced: the selected epoch (1-based), the per-epoch history and the wall time."""

    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def make_accelerator(device: str = "auto") -> Accelerator:
    """An Accelerator for the run (``device: cpu`` forces the CPU even when a GPU is present)."""
    return Accelerator(cpu=device == "cpu")


def train_loader(split: SplitDataset, batch_size: int, seed: int) -> DataLoader:
    """Shuffled loader whose order depends only on ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(split, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=generator)


def fit(
    model: TappedModel,
    method: Method,
    train: SplitDataset,
    config: TrainConfig,
    *,
    accelerator: Accelerator,
    seed: int,
    teacher_cache: TeacherOutputs | None = None,
    validate: Validator | None = None,
    select: Selection = "last",
    desc: str = "train",
) -> FitResult:
    """Train ``model`` with ``method`` and leave it holding the weights of the selected epoch."""
    if method.requires_teacher and teacher_cache is None:
        raise ValueError(f"method {method.name} needs teacher outputs but no teacher cache was given")
    set_seed(seed)
    optimizer = build_optimizer([*model.parameters(), *method.parameters()], config)
    loader = train_loader(train, config.batch_size, seed)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    method.to(accelerator.device)
    raw_model: TappedModel = accelerator.unwrap_model(model)
    state = TrainState(num_epochs=config.epochs, steps_per_epoch=len(loader), model=raw_model,
                       device=accelerator.device)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    started = time.perf_counter()

    for epoch in range(config.epochs):
        state.epoch = epoch
        method.on_epoch_start(state)
        model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True,
                   disable=None if accelerator.is_local_main_process else True)
        for batch in bar:
            student_out = model(batch.inputs)
            teacher_out = teacher_cache.lookup(batch.index, accelerator.device) if teacher_cache is not None else None
            loss, _logs = method.batch_loss(batch, student_out, teacher_out, state)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: the loss became {loss.item()} at epoch {epoch + 1}, step {state.step}")
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            state.step += 1
            total += loss.item() * len(batch)
            count += len(batch)
            bar.set_postfix(loss=f"{total / count:.4f}")
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        if validate is not None and accelerator.is_main_process:
            record.update(validate(raw_model))
        record.update(method.on_epoch_end(state))
        history.append(record)
        log.info("%s epoch %d: %s", desc, epoch + 1, _format_record(record))
        if epoch + 1 >= state.select_from_epoch:
            score = _selection_score(record, select)
            if best is None or score > best[0]:
                best = (score, epoch + 1, copy.deepcopy(raw_model.state_dict()))
        if state.reinitialize_student:
            reinitialize(raw_model, optimizer, seed + epoch + 1)
            state.reinitialize_student = False
            log.info("%s: student re-initialised after epoch %d", desc, epoch + 1)

    assert best is not None
    if select != "last":
        raw_model.load_state_dict(best[2])
    best_epoch = best[1] if select != "last" else config.epochs
    log.info("%s: selected epoch %d by %s", desc, best_epoch, select)
    model.eval()
    return FitResult(best_epoch=best_epoch, history=history, seconds=time.perf_counter() - started)


def reinitialize(model: torch.nn.Module, optimizer: torch.optim.Optimizer, seed: int) -> None:
    """Fresh weights for every submodule that can reset itself, and an empty optimiser state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    optimizer.state.clear()


def _selection_score(record: dict[str, Any], select: Selection) -> float:
    if select == "last":
        return float(record["epoch"])
    value = record.get(select)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -math.inf
    return float(value)


def _format_record(record: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items() if k != "epoch")
