"""The collectives of a multi-process run (fairdistill.processes), on 2 gloo processes started by mp.spawn, against
values computed by hand or by one process over the whole batch: rows gathered back in split order with the padding
removed, gradients averaged (a missing gradient counting as zero), process 0's state everywhere, GroupDRO's q and
weights equal to one process's on the concatenated batch, weight statistics summed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from fairdistill.data.core import Batch, DatasetInfo, SplitDataset, label_attr_groups
from fairdistill.distill.core import MethodContext, TrainState
from fairdistill.distill.method import WeightStatistics
from fairdistill.distill.weighting import GroupDRO, GroupDROOptions
from fairdistill.processes import SINGLE, Processes, end_process_group

INFO = DatasetInfo(
    name="toy",
    modality="tabular",
    num_classes=2,
    class_names=("neg", "pos"),
    attr_label="a",
    attr_names=("a0", "a1"),
    group_names=label_attr_groups(("neg", "pos"), ("a0", "a1")),
)
#: one global batch of 7 examples: groups and per-example losses; process 0 takes the first 4, process 1 the rest
GROUPS = torch.tensor([0, 1, 1, 3, 2, 3, 3])
LOSSES = torch.tensor([0.5, 1.0, 2.0, 0.25, 3.0, 0.75, 1.5])
PIECES = (slice(0, 4), slice(4, 7))


def groupdro(eta: float = 0.5) -> GroupDRO:
    train = SplitDataset(
        name="train",
        encodings={"x": torch.zeros(4, 1)},
        y=torch.tensor([0, 0, 1, 1]),
        attr=torch.tensor([0, 1, 0, 1]),
        group=torch.arange(4),
    )
    return GroupDRO(GroupDROOptions(eta=eta), MethodContext(INFO, train), "weighting")


def dro_batch(rows: slice) -> Batch:
    groups = GROUPS[rows]
    n = len(groups)
    return Batch({"x": torch.zeros(n, 1)}, torch.zeros(n, dtype=torch.long), groups % 2, groups, torch.arange(n))


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        processes = Processes.current()
        results: dict[str, object] = {"rank": processes.rank, "world": processes.world}
        # rows of a 7-row split: process r computes positions r, r+2, ... (4 and 3 rows)
        positions = processes.shard(7)
        local = torch.stack([positions.float(), positions.float() * 10], dim=1)
        results["gathered"] = processes.gather_rows(local, 7)
        # gradients: process 1 has none for b
        a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
        a.grad = torch.tensor([1.0, 2.0]) if rank == 0 else torch.tensor([3.0, 6.0])
        if rank == 0:
            b.grad = torch.tensor([4.0])
        processes.average_gradients([a, b])
        results["grads"] = (a.grad.clone(), b.grad.clone())
        # state: process 0's parameters and buffers everywhere
        module = nn.BatchNorm1d(2)
        with torch.no_grad():
            module.weight.fill_(float(rank + 1))
            module.running_mean.fill_(float(10 * (rank + 1)))
        buffers_only = nn.BatchNorm1d(2)
        with torch.no_grad():
            buffers_only.weight.fill_(float(rank + 1))
            buffers_only.running_mean.fill_(float(10 * (rank + 1)))
        processes.broadcast_state(module)
        processes.broadcast_state(buffers_only, buffers_only=True)
        results["state"] = (module.weight.clone(), module.running_mean.clone())
        results["buffers_only"] = (buffers_only.weight.clone(), buffers_only.running_mean.clone())
        results["object"] = processes.broadcast_object({"from": rank})
        # GroupDRO on this process's piece of the global batch, two steps
        dro = groupdro()
        state = TrainState(processes=processes)
        piece = dro_batch(PIECES[rank])
        weights = [dro.weights(piece, None, LOSSES[PIECES[rank]], state) for _ in range(2)]  # type: ignore[arg-type]
        results["dro"] = (dro.q.clone(), weights[-1].clone())
        stats = WeightStatistics()
        stats.update(torch.tensor([1.0, 2.0]) if rank == 0 else torch.tensor([0.5, 4.0, 1.0]))
        stats.combine(processes)
        results["stats"] = stats.summary()
        # the end of a completed command: both meet, then close the group
        end_process_group(completed=True)
        results["closed"] = not dist.is_initialized()
        torch.save(results, f"{out}/{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def results() -> list[dict]:
    """What each of the two processes computed (one spawn for the module)."""
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_worker, args=(2, f"{folder}/init", folder), nprocs=2, join=True)
        return [torch.load(Path(folder) / f"{rank}.pt", weights_only=False) for rank in (0, 1)]


def test_collectives_on_two_processes(results: list[dict]) -> None:
    expected_rows = torch.tensor([[float(i), 10.0 * i] for i in range(7)])
    for rank, got in enumerate(results):
        assert (got["rank"], got["world"]) == (rank, 2)
        assert torch.equal(got["gathered"], expected_rows)  # split order, the 4th padding row of process 1 gone
        a, b = got["grads"]
        assert torch.equal(a, torch.tensor([2.0, 4.0]))  # (1 + 3) / 2, (2 + 6) / 2
        assert torch.equal(b, torch.tensor([2.0]))  # (4 + 0) / 2
        assert torch.equal(got["state"][0], torch.ones(2)) and torch.equal(got["state"][1], torch.full((2,), 10.0))
        # buffers_only: the running mean is process 0's, the weight stays the process's own
        assert torch.equal(got["buffers_only"][0], torch.full((2,), float(rank + 1)))
        assert torch.equal(got["buffers_only"][1], torch.full((2,), 10.0))
        assert got["object"] == {"from": 0}
        assert got["closed"]  # end_process_group destroyed the default group on both processes
        # weights 1, 2 and 0.5, 4, 1: mean 8.5 / 5, max 4, 2 of 5 above 1
        assert got["stats"] == {"weight_mean": 8.5 / 5, "weight_max": 4.0, "weight_share_upweighted": 2 / 5}


def test_groupdro_on_two_processes_is_groupdro_on_the_global_batch(results: list[dict]) -> None:
    alone = groupdro()
    state = TrainState(processes=SINGLE)
    whole = dro_batch(slice(0, 7))
    for _ in range(2):
        weights = alone.weights(whole, None, LOSSES, state)  # type: ignore[arg-type]
    # by hand for the first step: group means 0.5, 1.5, 3.0, 2.5/3 from uniform q, η = 0.5
    means = torch.tensor([0.5, 1.5, 3.0, 2.5 / 3], dtype=torch.float64)
    first = torch.softmax(torch.log(torch.full((4,), 0.25, dtype=torch.float64)) + 0.5 * means, 0)
    second = torch.softmax(torch.log(first) + 0.5 * means, 0)
    assert torch.allclose(alone.q, second)
    for rank, got in enumerate(results):
        q, w = got["dro"]
        assert torch.allclose(q, alone.q, atol=1e-12)
        # w_i = q_g / n_g · (piece size · 2 processes), against one process's q_g / n_g · 7
        size = len(LOSSES[PIECES[rank]])
        assert torch.allclose(w, weights[PIECES[rank]] * (size * 2 / 7), atol=1e-6)
    # each process's mean of w·ℓ, averaged over the processes as DDP averages gradients, is the global Σ_g q_g·L_g
    global_objective = float((weights * LOSSES).mean())
    averaged = sum(float((got["dro"][1] * LOSSES[PIECES[r]]).mean()) for r, got in enumerate(results)) / 2
    assert abs(global_objective - averaged) < 1e-6


def test_one_process_is_the_identity() -> None:
    assert not SINGLE.several and SINGLE.is_main
    rows = torch.arange(6.0).view(3, 2)
    assert SINGLE.gather_rows(rows, 3) is rows
    assert torch.equal(SINGLE.shard(3), torch.arange(3))
    assert SINGLE.broadcast_object([1]) == [1]
    assert Processes.current() == SINGLE  # no process group here
    end_process_group(completed=True)  # nothing to close: a no-op, not an error


def test_splits_smaller_than_the_number_of_processes_are_refused() -> None:
    from fairdistill.errors import ConfigError
    from fairdistill.experiment import check_split_sizes

    check_split_sizes({"train": 10, "val": 2, "test": 2}, 2)  # one example per process is enough
    with pytest.raises(ConfigError, match="with 3 processes, split val has 2; run fewer processes"):
        check_split_sizes({"train": 10, "val": 2, "test": 3}, 3)
