"""The processes of one run (``torchrun`` / ``accelerate launch``): which one writes, and the few collectives a
run needs to keep them identical.

One :class:`Processes` describes the current process among the run's ``world`` processes. With one process
every operation is the identity and touches no ``torch.distributed`` state, so single-process code paths are
unchanged. With several, the operations are collectives on the default process group: every process must call
them in the same order (the engine and the run call them at the same points on every process).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


def launched_processes() -> int:
    """How many processes the launcher started (``WORLD_SIZE`` of torchrun / accelerate launch; 1 without)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def end_process_group(*, completed: bool) -> None:
    """Close the default process group of a launched run before the interpreter exits (no-op without one).

    Left to interpreter teardown, gloo's worker threads can be destroyed while still joinable, which aborts a
    process that finished its work ("terminate called without an active exception"). After a ``completed``
    command the processes first meet at a barrier, so none closes its connections while another still needs
    them; after an error they close at once, so a process waiting in a collective fails instead of hanging.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if completed and dist.get_world_size() > 1:
        dist.barrier()
    dist.destroy_process_group()


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: ``rank`` of ``world`` (process 0 is the main one, the only writer)."""

    rank: int = 0
    world: int = 1
    #: where collective tensors travel (the GPU for NCCL, the CPU for gloo)
    device: str = "cpu"

    @classmethod
    def current(cls, device: torch.device | str = "cpu") -> Processes:
        """The processes of the initialised default group (one process when there is none)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return cls()
        transport = str(device) if dist.get_backend() == "nccl" else "cpu"
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), device=transport)

    @property
    def several(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- control ------------------------------------------------------------------------------------------------
    def barrier(self) -> None:
        if self.several:
            dist.barrier()

    def broadcast_object(self, obj: T) -> T:
        """Process 0's ``obj`` (any picklable value), on every process."""
        if not self.several:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` run by process 0 alone (a directory created, a file written), its value on every process."""
        value: T | None = make() if self.is_main else None
        return self.broadcast_object(value)  # type: ignore[return-value]  # what make() returned on process 0

    def gather_objects(self, obj: T) -> list[T]:
        """Every process's ``obj``, in rank order, on every process."""
        if not self.several:
            return [obj]
        boxes: list[Any] = [None] * self.world
        dist.all_gather_object(boxes, obj)
        return boxes

    # -- tensors --------------------------------------------------------------------------------------------------
    def broadcast_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """Process 0's ``tensor`` (same shape and dtype on every process), on the tensor's own device."""
        if not self.several:
            return tensor
        moved = tensor.detach().to(self.device).contiguous()
        dist.broadcast(moved, src=0)
        return moved.to(tensor.device)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over the processes."""
        return self._reduce(tensor, dist.ReduceOp.SUM) if self.several else tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise maximum of ``tensor`` over the processes."""
        return self._reduce(tensor, dist.ReduceOp.MAX) if self.several else tensor

    def _reduce(self, tensor: torch.Tensor, op: Any) -> torch.Tensor:
        moved = tensor.detach().to(self.device).contiguous().clone()
        dist.all_reduce(moved, op=op)
        return moved.to(tensor.device)

    def broadcast_state(self, module: nn.Module, *, buffers_only: bool = False) -> None:
        """Overwrite ``module``'s parameters and buffers (only buffers with ``buffers_only``) with process 0's."""
        if not self.several:
            return
        tensors: Iterable[torch.Tensor] = (
            module.buffers() if buffers_only else [*module.parameters(), *module.buffers()]
        )
        with torch.no_grad():
            for tensor in tensors:
                if tensor.numel():
                    tensor.copy_(self.broadcast_tensor(tensor))

    def average_gradients(self, parameters: Sequence[nn.Parameter]) -> None:
        """Average the gradients of ``parameters`` over the processes (for parameters outside the DDP wrapper:
        the method's adversary, temperature, projection, readout head). A parameter without a gradient on a
        process counts as a zero gradient there, so every process makes the same calls."""
        if not self.several or not parameters:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.detach().reshape(-1).float() for g in grads])
        flat = self.sum(flat) / self.world
        offset = 0
        for p, g in zip(parameters, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n

    # -- sharded evaluation ---------------------------------------------------------------------------------------
    def shard(self, size: int) -> torch.Tensor:
        """This process's positions of a split of ``size`` examples: every ``world``-th from ``rank``."""
        return torch.arange(self.rank, size, self.world)

    def gather_rows(self, local: torch.Tensor, size: int) -> torch.Tensor:
        """The rows of a split computed shard by shard (:meth:`shard`), back in split order on every process;
        shards are padded to one length for the exchange and the padding removed."""
        if not self.several:
            return local
        longest = -(-size // self.world)
        padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype)
        padded[: len(local)] = local.detach().cpu()
        pieces = [torch.empty_like(padded).to(self.device) for _ in range(self.world)]
        dist.all_gather(pieces, padded.to(self.device))
        full = torch.empty((size, *local.shape[1:]), dtype=local.dtype)
        for rank, piece in enumerate(pieces):
            count = len(range(rank, size, self.world))
            full[rank :: self.world] = piece[:count].cpu()
        return full

    def gather_array_rows(self, local: np.ndarray, size: int) -> np.ndarray:
        """:meth:`gather_rows` for a numpy array."""
        if not self.several:
            return local
        return self.gather_rows(torch.from_numpy(np.ascontiguousarray(local)), size).numpy()


#: The one-process run.
SINGLE = Processes()
