"""The training loop, on Hugging Face Accelerate: device placement, seeding, progress bars, epoch selection."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from fairdistill.config import Selection, TrainConfig
from fairdistill.data.core import SplitDataset, collate
from fairdistill.distill.core import TeacherOutputs, TrainState
from fairdistill.distill.method import Method
from fairdistill.errors import ConfigError, TrainingDivergedError
from fairdistill.models.core import TappedModel
from fairdistill.progress import ON_SCREEN, SILENT, Progress
from fairdistill.train.checkpoint import (
    capture_rng,
    load_training_checkpoint,
    restore_rng,
    save_training_checkpoint,
)
from fairdistill.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

#: Scores a model on the validation split: ``{"val_acc": ..., "val_worst_group_acc": ...}``.
Validator = Callable[[TappedModel], dict[str, float]]


@dataclass
class FitResult:
    """What training produced: the selected epoch (1-based), the per-epoch history and the wall time."""

    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def make_accelerator(device: str = "auto", mixed_precision: str = "no") -> Accelerator:
    """An Accelerator for the run (``device: cpu`` forces the CPU even when a GPU is present).

    Accelerate keeps one process-wide state; a run asking for another precision or device than the previous
    run in the same process (a sweep, a test session) starts it afresh.
    """
    if AcceleratorState._shared_state:
        current = AcceleratorState()
        if str(current.mixed_precision) != mixed_precision or (device == "cpu" and current.device.type != "cpu"):
            AcceleratorState._reset_state(True)
    try:
        return Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
    except ValueError as exc:  # a precision the hardware cannot do
        raise ConfigError(f"mixed_precision: {mixed_precision!r} is not available here ({exc})") from None


class EpochShuffleSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a resumed run sees the same order; with several
    processes each takes every ``num_replicas``-th index of the same permutation."""

    def __init__(self, size: int, seed: int, rank: int = 0, num_replicas: int = 1) -> None:
        self.size, self.seed, self.rank, self.num_replicas = size, seed, rank, num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        return iter(order[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


def train_loader(split: SplitDataset, batch_size: int, seed: int, accelerator: Accelerator | None = None) -> DataLoader:
    """Shuffled loader whose order depends only on ``seed`` and the epoch (``loader.sampler.set_epoch``)."""
    rank = accelerator.process_index if accelerator is not None else 0
    replicas = accelerator.num_processes if accelerator is not None else 1
    sampler = EpochShuffleSampler(len(split), seed, rank, replicas)
    return DataLoader(split, batch_size=batch_size, sampler=sampler, collate_fn=collate)


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
    checkpoint: Path | None = None,
    progress: Progress = SILENT,
) -> FitResult:
    """Train ``model`` with ``method`` and leave it holding the weights of the selected epoch.

    With ``checkpoint``, the complete training state is written there (atomically) after every epoch, and a
    fit that finds the file continues from it, ending exactly as an uninterrupted fit would on the CPU.
    ``progress`` is told of every finished epoch.
    """
    if method.requires_teacher and teacher_cache is None:
        raise ValueError(f"method {method.name} needs teacher outputs but no teacher cache was given")
    set_seed(seed)
    no_decay = model.no_weight_decay_names() if hasattr(model, "no_weight_decay_names") else ()
    named = [*model.named_parameters(), *(("method." + n, p) for n, p in method.named_parameters())]
    optimizer = build_optimizer(named, config, no_decay)
    loader = train_loader(train, config.batch_size, seed, accelerator)
    model, optimizer = accelerator.prepare(model, optimizer)
    accumulate = config.gradient_accumulation_steps
    # stepped once per optimiser step (not prepared: Accelerate would step it once per process)
    scheduler = build_scheduler(optimizer, config, math.ceil(len(loader) / accumulate))
    trainable = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    method.to(accelerator.device)
    raw_model: TappedModel = accelerator.unwrap_model(model)
    state = TrainState(num_epochs=config.epochs, steps_per_epoch=len(loader), model=raw_model,
                       device=accelerator.device)
    history: list[dict[str, Any]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    seconds_before = 0.0
    first_epoch = 0
    if checkpoint is not None and checkpoint.is_file():
        saved = load_training_checkpoint(checkpoint)
        raw_model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        method.load_state_dict(saved["method"])
        state.step, state.select_from_epoch = saved["step"], saved["select_from_epoch"]
        history, seconds_before, first_epoch = saved["history"], saved["seconds"], saved["epoch"]
        if saved["best"] is not None:
            best = (saved["best"]["score"], saved["best"]["epoch"], saved["best"]["state"])
        restore_rng(saved["rng"])
        log.info("%s: resumed after epoch %d from %s", desc, first_epoch, checkpoint)
        progress.restored(first_epoch)
    started = time.perf_counter()

    for epoch in range(first_epoch, config.epochs):
        state.epoch = epoch
        loader.sampler.set_epoch(epoch)
        method.on_epoch_start(state)
        model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True,
                   disable=None if progress.bars and accelerator.is_local_main_process else True)
        optimizer.zero_grad(set_to_none=True)
        for k, batch in enumerate(bar):
            batch = batch.to(accelerator.device)
            # the last batches of an epoch form a (possibly shorter) accumulation window of their own
            window_end = min(len(loader), (k // accumulate + 1) * accumulate)
            window = window_end - (k // accumulate) * accumulate
            steps_now = k + 1 == window_end
            with contextlib.nullcontext() if steps_now else accelerator.no_sync(model):
                student_out = model(batch.inputs)
                teacher_out = teacher_cache.lookup(batch.index, accelerator.device) if teacher_cache is not None \
                    else None
                loss, _logs = method.batch_loss(batch, student_out, teacher_out, state)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(_divergence_message(desc, method, config, loss.item(), epoch, state))
                accelerator.backward(loss / window)
            if steps_now:
                if config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state.step += 1
            total += loss.item() * len(batch)
            count += len(batch)
            bar.set_postfix(loss=f"{total / count:.4f}")
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        if config.scheduler != "constant" or config.warmup_epochs > 0:
            record["lr"] = scheduler.get_last_lr()[0]  # the rate the next epoch starts with
        with progress.phase(f"{desc} epoch {epoch + 1}/{config.epochs}: validating", announce=False):
            if validate is not None and accelerator.is_main_process:
                record.update(validate(raw_model))
            record.update(method.on_epoch_end(state))
        history.append(record)
        log.info("%s epoch %d: %s", desc, epoch + 1, _format_record(record), extra=ON_SCREEN)
        progress.epoch(desc, epoch + 1, config.epochs, record)
        if epoch + 1 >= state.select_from_epoch:
            score = _selection_score(record, select)
            if best is None or score > best[0]:
                best = (score, epoch + 1, copy.deepcopy(raw_model.state_dict()))
        if state.reinitialize_student:
            reinitialize(raw_model, optimizer, seed + epoch + 1)
            state.reinitialize_student = False
            log.info("%s: student re-initialised after epoch %d", desc, epoch + 1)
        if checkpoint is not None and accelerator.is_main_process:
            save_training_checkpoint(checkpoint, {
                "epoch": epoch + 1, "step": state.step, "select_from_epoch": state.select_from_epoch,
                "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "method": method.state_dict(),
                "history": history, "seconds": seconds_before + time.perf_counter() - started, "rng": capture_rng(),
                "best": None if best is None else {"score": best[0], "epoch": best[1], "state": best[2]},
            })

    assert best is not None
    if select != "last":
        raw_model.load_state_dict(best[2])
    best_epoch = best[1] if select != "last" else config.epochs
    log.info("%s: selected epoch %d by %s", desc, best_epoch, select)
    model.eval()
    return FitResult(best_epoch=best_epoch, history=history, seconds=seconds_before + time.perf_counter() - started)


def _divergence_message(
    desc: str, method: Method, config: TrainConfig, value: float, epoch: int, state: TrainState
) -> str:
    """Which model diverged, where, and the options most likely responsible."""
    options = ", ".join(f"{k}={v:g}" for k, v in method.numeric_options().items() if k.split(".")[1] in
                        ("tau", "beta", "alpha", "eta", "weight", "upweight", "gamma", "kappa", "lambda_distance",
                         "lambda_angle", "kd_weight", "nd_weight"))
    return (f"{desc}: the training loss became {value} at epoch {epoch + 1} of {config.epochs} (step {state.step}). "
            f"Likely cause: a learning rate too high for this model (lr={config.lr:g}"
            + (f", max_grad_norm={config.max_grad_norm:g}" if config.max_grad_norm is not None else
               "; try max_grad_norm: 1.0") + ")"
            + (f" or an extreme method option ({options})" if options else "") + "; lower it and run again")


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
