"""The training loop, on Hugging Face Accelerate: device placement, seeding, progress bars, epoch selection."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, set_seed
from torch.utils.data import Sampler
from tqdm.auto import tqdm

from fairdistill.config import Selection, TrainConfig
from fairdistill.data.core import Batch, BatchLoader, SplitDataset
from fairdistill.distill.core import TeacherOutputs, TrainState
from fairdistill.distill.method import Method
from fairdistill.errors import ConfigError, TrainingDivergedError
from fairdistill.models.core import ModelOutput, TappedModel
from fairdistill.processes import Processes, launched_processes
from fairdistill.progress import ON_SCREEN, SILENT, Progress
from fairdistill.train.checkpoint import (
    capture_rng,
    load_training_checkpoint,
    restore_rng,
    save_training_checkpoint,
)
from fairdistill.train.optim import build_optimizer, build_scheduler, merge_parameter_groups

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
    run in the same process (a sweep, a test session) starts it afresh. Under ``torchrun`` / ``accelerate launch``
    the processes form one job (gloo on the CPU, NCCL on GPUs), the model wrapped in DDP with its defaults (every
    parameter must take part in each step's loss; its gradient hooks fire as backward reaches them).
    """
    if AcceleratorState._shared_state:
        current = AcceleratorState()
        if str(current.mixed_precision) != mixed_precision or (device == "cpu" and current.device.type != "cpu"):
            AcceleratorState._reset_state(True)
    # under a launcher on a machine without a GPU, Accelerate runs each process alone unless told to use the CPU
    on_cpu = device == "cpu" or (launched_processes() > 1 and not torch.cuda.is_available())
    try:
        return Accelerator(cpu=on_cpu, mixed_precision=mixed_precision)
    except ValueError as exc:  # a precision the hardware cannot do
        raise ConfigError(f"mixed_precision: {mixed_precision!r} is not available here ({exc})") from None


class EpochShuffleSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a resumed run sees the same order.

    With several processes the permutation is cut into *global* batches of ``batch_size × num_replicas``
    examples and each global batch into ``num_replicas`` contiguous pieces (sizes differing by at most one);
    process ``rank`` takes its piece of each. So every process makes the same number of steps (uneven splits
    cannot hang the gradient all-reduce), the shards are disjoint and cover the split once per epoch, and one
    step sees the examples a one-process run at batch ``batch_size × num_replicas`` sees. A last global batch
    with fewer examples than processes joins the one before it.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, num_replicas: int = 1, batch_size: int = 1) -> None:
        if size < num_replicas:
            raise ConfigError(
                f"the train split has {size} example(s), fewer than the {num_replicas} training processes; "
                "run fewer processes"
            )
        self.size, self.seed, self.rank, self.num_replicas = size, seed, rank, num_replicas
        #: the per-process batch size that cuts the global batches (``indices`` and ``len`` follow it)
        self.batch_size = batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self) -> torch.Tensor:
        """This epoch's order of the whole split (the same on every process)."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.size, generator=generator)

    def _global_batches(self, batch_size: int) -> list[tuple[int, int]]:
        """The (start, end) of each global batch of ``batch_size × num_replicas`` examples in the permutation."""
        step = batch_size * self.num_replicas
        starts = list(range(0, self.size, step))
        if len(starts) > 1 and self.size - starts[-1] < self.num_replicas:
            starts.pop()  # too few for every process: the remainder joins the previous global batch
        return list(zip(starts, [*starts[1:], self.size], strict=True))

    def batches(self, batch_size: int) -> list[torch.Tensor]:
        """This process's batches of this epoch, in order (one process: the permutation cut every ``batch_size``)."""
        order = self.permutation()
        return [
            torch.tensor_split(order[a:b], self.num_replicas)[self.rank] for a, b in self._global_batches(batch_size)
        ]

    def num_batches(self, batch_size: int) -> int:
        """Steps per epoch (the same on every process)."""
        return len(self._global_batches(batch_size))

    def indices(self) -> torch.Tensor:
        """This epoch's positions for this process, as one tensor (what iterating the sampler yields)."""
        return torch.cat(self.batches(self.batch_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        # tensor_split gives the first (b − a) mod N pieces one example more
        w = self.num_replicas
        return sum((b - a) // w + (self.rank < (b - a) % w) for a, b in self._global_batches(self.batch_size))


def train_loader(
    split: SplitDataset, batch_size: int, seed: int, accelerator: Accelerator | None = None
) -> BatchLoader:
    """Shuffled loader whose order depends only on ``seed`` and the epoch (``loader.sampler.set_epoch``); each
    batch is gathered at once by index (the batches a DataLoader over the same sampler would give); with several
    processes, this process's pieces of the global batches (:class:`EpochShuffleSampler`)."""
    rank = accelerator.process_index if accelerator is not None else 0
    replicas = accelerator.num_processes if accelerator is not None else 1
    sampler = EpochShuffleSampler(len(split), seed, rank, replicas, batch_size)
    return BatchLoader(split, batch_size, sampler)


class _Stepper:
    """Backward, optimiser step and zero_grad, straight on the torch optimiser where Accelerate's wrappers add
    nothing (one process or DDP without a gradient scaler, DeepSpeed, Megatron or XLA: their per-step package
    lookups and signature inspection cost ~5% of a small model's step); through the wrappers otherwise."""

    def __init__(self, accelerator: Accelerator, optimizer: torch.optim.Optimizer) -> None:
        self.accelerator, self.wrapped = accelerator, optimizer
        inner = optimizer.optimizer if isinstance(optimizer, AcceleratedOptimizer) else None
        self.direct = (
            isinstance(inner, torch.optim.Optimizer)
            and getattr(optimizer, "scaler", None) is None
            and accelerator.scaler is None
            and accelerator.gradient_accumulation_steps == 1
            and accelerator.distributed_type
            not in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM, DistributedType.XLA)
        )
        #: the optimiser that is stepped (the scheduler is built on it, so it sees every step)
        self.optimizer: torch.optim.Optimizer = inner if self.direct and inner is not None else optimizer

    def backward(self, loss: torch.Tensor) -> None:
        if self.direct:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def step(self) -> None:
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)


def fit(
    model: TappedModel,
    method: Method,
    train: SplitDataset,
    config: TrainConfig,
    *,
    accelerator: Accelerator,
    seed: int,
    teacher_cache: TeacherOutputs | None = None,
    teacher: TappedModel | None = None,
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

    Teacher outputs of a batch come from ``teacher`` when it is given (the *online* teacher: a no-grad forward in
    eval mode on exactly the batch tensors the student reads, augmented views included; ``teacher.online`` of
    the run), else from ``teacher_cache`` (looked up by the examples' index).
    """
    if method.requires_teacher and teacher_cache is None and teacher is None:
        raise ValueError(f"method {method.name} needs teacher outputs but got neither a teacher cache nor a teacher")
    training = _Training(
        model,
        method,
        train,
        config,
        accelerator=accelerator,
        seed=seed,
        teacher_cache=teacher_cache,
        teacher=teacher,
        validate=validate,
        select=select,
        desc=desc,
        checkpoint=checkpoint,
        progress=progress,
    )
    first_epoch = training.restore()
    training.start_clock()
    for epoch in range(first_epoch, config.epochs):
        record = training.run_epoch(epoch)
        training.end_epoch(epoch, record)
    return training.finish()


@dataclass
class _BestEpoch:
    """Best-epoch tracking: the best selection score so far, its (1-based) epoch and that epoch's weights."""

    select: Selection
    score: float | None = None
    epoch: int = 0
    weights: dict[str, torch.Tensor] | None = None

    @property
    def seen(self) -> bool:
        return self.score is not None

    def offer(self, record: dict[str, Any], model: TappedModel) -> None:
        """Keep ``record``'s epoch (and a copy of ``model``'s weights) when it scores higher than the best so far.

        ``select: last`` keeps no weights (the model ends holding them); otherwise one ``detach().clone()`` per
        tensor, made only when the epoch improves."""
        score = _selection_score(record, self.select)
        if self.score is None or score > self.score:
            self.score, self.epoch = score, record["epoch"]
            if self.select != "last":
                self.weights = {name: t.detach().clone() for name, t in model.state_dict().items()}

    def to_saved(self) -> dict[str, Any] | None:
        """The ``best`` entry of a training checkpoint."""
        return None if self.score is None else {"score": self.score, "epoch": self.epoch, "state": self.weights}

    def restore(self, saved: dict[str, Any] | None) -> None:
        if saved is not None:
            self.score, self.epoch, self.weights = saved["score"], saved["epoch"], saved["state"]


class _Training:
    """The moving parts of one :func:`fit`: prepared model and optimiser, scheduler, loader, train state,
    history and best epoch, with one method per phase: restore, one epoch, end of epoch (best-epoch tracking,
    re-initialisation, checkpoint) and finish."""

    def __init__(
        self,
        model: TappedModel,
        method: Method,
        train: SplitDataset,
        config: TrainConfig,
        *,
        accelerator: Accelerator,
        seed: int,
        teacher_cache: TeacherOutputs | None,
        teacher: TappedModel | None,
        validate: Validator | None,
        select: Selection,
        desc: str,
        checkpoint: Path | None,
        progress: Progress,
    ) -> None:
        self.method, self.config, self.accelerator, self.seed = method, config, accelerator, seed
        self.processes = Processes.current(accelerator.device)
        self.teacher_cache, self.validate, self.select, self.desc = teacher_cache, validate, select, desc
        self.checkpoint, self.progress = checkpoint, progress
        #: The online teacher (run on every batch), kept in eval mode on the run's device; None: the cache.
        self.teacher = teacher.to(accelerator.device).eval() if teacher is not None else None
        set_seed(seed)
        no_decay_names = getattr(model, "no_weight_decay_names", None)  # an optional hook (Hugging Face models)
        no_decay = no_decay_names() if no_decay_names is not None else ()
        named = [*model.named_parameters(), *(("method." + n, p) for n, p in method.named_parameters())]
        optimizer = build_optimizer(named, config, no_decay, accelerator.device.type)
        self.loader = train_loader(train, config.batch_size, seed, accelerator)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.accumulate = config.gradient_accumulation_steps
        self.stepper = _Stepper(accelerator, self.optimizer)
        # stepped once per optimiser step (not prepared: Accelerate would step it once per process)
        self.scheduler = build_scheduler(self.stepper.optimizer, config, math.ceil(len(self.loader) / self.accumulate))
        self.trainable = [p for p in [*self.model.parameters(), *method.parameters()] if p.requires_grad]
        method.to(accelerator.device)
        #: the method's own parameters (adversary, temperature, projection, readout head): outside the DDP wrapper,
        #: so their gradients are averaged over the processes by hand
        self.method_parameters = [p for p in method.parameters() if p.requires_grad]
        self.raw_model: TappedModel = accelerator.unwrap_model(self.model)
        self.state = TrainState(
            num_epochs=config.epochs,
            steps_per_epoch=len(self.loader),
            model=self.raw_model,
            device=accelerator.device,
            processes=self.processes,
        )
        self.history: list[dict[str, Any]] = []
        self.best = _BestEpoch(select)
        self.seconds_before = 0.0
        self.started = time.perf_counter()

    def restore(self) -> int:
        """Continue from the training checkpoint when there is one; returns the number of epochs already done."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return 0
        saved = load_training_checkpoint(self.checkpoint)
        self.raw_model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(merge_parameter_groups(saved["optimizer"], self.optimizer))
        self.scheduler.load_state_dict(saved["scheduler"])
        self.method.load_state_dict(saved["method"])
        self.state.step, self.state.select_from_epoch = saved["step"], saved["select_from_epoch"]
        self.history, self.seconds_before, first_epoch = saved["history"], saved["seconds"], saved["epoch"]
        self.best.restore(saved["best"])
        by_rank = saved.get("rng_by_rank")
        restore_rng(by_rank[self.processes.rank] if by_rank and len(by_rank) == self.processes.world else saved["rng"])
        log.info("%s: resumed after epoch %d from %s", self.desc, first_epoch, self.checkpoint)
        self.progress.restored(first_epoch)
        return first_epoch

    def start_clock(self) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch (0-based ``epoch``) and validate; returns its history record."""
        config, method, state, accelerator = self.config, self.method, self.state, self.accelerator
        model, loader, accumulate = self.model, self.loader, self.accumulate
        state.epoch = epoch
        sampler = loader.sampler
        assert isinstance(sampler, EpochShuffleSampler)  # train_loader builds the loader on one
        stepper, steps_in_epoch = self.stepper, len(loader)
        sampler.set_epoch(epoch)
        method.on_epoch_start(state)
        model.train()
        total, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"{self.desc} epoch {epoch + 1}/{config.epochs}",
            leave=False,
            dynamic_ncols=True,
            disable=None if self.progress.bars and accelerator.is_local_main_process else True,
        )
        show_loss = not bar.disable
        stepper.zero_grad()
        for k, batch in enumerate(bar):
            batch = batch.to(accelerator.device)
            # the last batches of an epoch form a (possibly shorter) accumulation window of their own
            window_end = min(steps_in_epoch, (k // accumulate + 1) * accumulate)
            window = window_end - (k // accumulate) * accumulate
            steps_now = k + 1 == window_end
            with contextlib.nullcontext() if steps_now else accelerator.no_sync(model):
                student_out = model(batch.inputs)
                teacher_out = self.teacher_outputs(batch)
                loss = method.batch_loss(batch, student_out, teacher_out, state)
                loss_value = loss.item()  # one read of the loss serves the divergence check and the epoch mean
                if not math.isfinite(loss_value):
                    raise TrainingDivergedError(
                        _divergence_message(self.desc, method, config, loss_value, epoch, state)
                    )
                stepper.backward(loss / window if window != 1 else loss)  # x / 1 == x: skip the op
            if steps_now:
                self.processes.average_gradients(self.method_parameters)
                if config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(self.trainable, config.max_grad_norm)
                stepper.step()
                self.scheduler.step()
                stepper.zero_grad()
            state.step += 1
            total += loss_value * len(batch)
            count += len(batch)
            if show_loss:
                bar.set_postfix(loss=f"{total / count:.4f}")
        if self.processes.several:
            total, count = self.processes.sum(torch.tensor([total, float(count)], dtype=torch.float64)).tolist()
            # BatchNorm statistics: each process updated its own from its shard; keep process 0's everywhere
            self.processes.broadcast_state(self.raw_model, buffers_only=True)
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        if config.scheduler != "constant" or config.warmup_epochs > 0:
            record["lr"] = self.scheduler.get_last_lr()[0]  # the rate the next epoch starts with
        with self.progress.phase(f"{self.desc} epoch {epoch + 1}/{config.epochs}: validating", announce=False):
            if self.validate is not None:  # every process: the validator shards the split and gathers the rows
                record.update(self.validate(self.raw_model))
            record.update(method.on_epoch_end(state))
        # one history on every process (the method's statistics of the epoch are process 0's)
        return self.processes.broadcast_object(record)

    def teacher_outputs(self, batch: Batch) -> ModelOutput | None:
        """The teacher's outputs for ``batch``: the online teacher on the batch's own tensors (the views the student
        sees; float32 logits and embedding, like the cache), else the cache looked up by index, else None."""
        if self.teacher is not None:
            with torch.no_grad():
                out = self.teacher(batch.inputs)
            embedding = None if out.embedding is None else out.embedding.float()
            return ModelOutput(logits=out.logits.float(), embedding=embedding)
        if self.teacher_cache is not None:
            return self.teacher_cache.lookup(batch.index, self.accelerator.device, self.method.uses_teacher_embedding)
        return None

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """Record the epoch, track the best one, re-initialise the student when the method asked, checkpoint."""
        self.history.append(record)
        log.info("%s epoch %d: %s", self.desc, epoch + 1, _format_record(record), extra=ON_SCREEN)
        self.progress.epoch(self.desc, epoch + 1, self.config.epochs, record)
        if epoch + 1 >= self.state.select_from_epoch:
            self.best.offer(record, self.raw_model)
        if self.state.reinitialize_student:
            reinitialize(self.raw_model, self.optimizer, self.seed + epoch + 1)
            self.state.reinitialize_student = False
            log.info("%s: student re-initialised after epoch %d", self.desc, epoch + 1)
        if self.checkpoint is not None:
            self.save_checkpoint(epoch + 1)

    def save_checkpoint(self, epochs_done: int) -> None:
        """The complete training state after ``epochs_done`` epochs, written atomically by process 0 (with every
        process's random state; the others only hand theirs over)."""
        if self.checkpoint is None:
            raise ValueError(f"{self.desc}: no checkpoint path to save the training state to")
        rng_by_rank = self.processes.gather_objects(capture_rng()) if self.processes.several else None
        if not self.processes.is_main:
            return
        save_training_checkpoint(
            self.checkpoint,
            {
                "epoch": epochs_done,
                "step": self.state.step,
                "select_from_epoch": self.state.select_from_epoch,
                "model": self.raw_model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "method": self.method.state_dict(),
                "history": self.history,
                "seconds": self.seconds(),
                "rng": capture_rng(),
                **({"rng_by_rank": rng_by_rank} if rng_by_rank is not None else {}),
                "best": self.best.to_saved(),
            },
        )

    def finish(self) -> FitResult:
        """Load the selected epoch's weights (unless ``select: last``) and put the model in eval mode."""
        assert self.best.seen
        if self.select != "last":
            assert self.best.weights is not None  # set together with the score (best.seen) by offer / restore
            self.raw_model.load_state_dict(self.best.weights)
        best_epoch = self.best.epoch if self.select != "last" else self.config.epochs
        log.info("%s: selected epoch %d by %s", self.desc, best_epoch, self.select)
        self.model.eval()
        return FitResult(best_epoch=best_epoch, history=self.history, seconds=self.seconds())


def _divergence_message(
    desc: str, method: Method, config: TrainConfig, value: float, epoch: int, state: TrainState
) -> str:
    """Which model diverged, where, and the options most likely responsible."""
    options = ", ".join(
        f"{k}={v:g}"
        for k, v in method.numeric_options().items()
        if k.split(".")[1]
        in (
            "tau",
            "beta",
            "alpha",
            "eta",
            "weight",
            "upweight",
            "gamma",
            "kappa",
            "lambda_distance",
            "lambda_angle",
            "kd_weight",
            "nd_weight",
        )
    )
    return (
        f"{desc}: the training loss became {value} at epoch {epoch + 1} of {config.epochs} (step {state.step}). "
        f"Likely cause: a learning rate too high for this model (lr={config.lr:g}"
        + (
            f", max_grad_norm={config.max_grad_norm:g}"
            if config.max_grad_norm is not None
            else "; try max_grad_norm: 1.0"
        )
        + ")"
        + (f" or an extreme method option ({options})" if options else "")
        + "; lower it and run again"
    )


def reinitialize(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, seed: int) -> None:
    """Fresh weights for every submodule that can reset itself, and an empty optimiser state (if one is given)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in model.modules():
            reset_parameters = getattr(module, "reset_parameters", None)
            if reset_parameters is not None:
                reset_parameters()
            reset_running_stats = getattr(module, "reset_running_stats", None)
            if reset_running_stats is not None:
                reset_running_stats()
    if optimizer is not None:
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
