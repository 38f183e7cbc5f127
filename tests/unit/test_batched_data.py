"""The batched data path (``SplitDataset.take``, ``BatchLoader``) serves exactly the batches the per-example path
(``DataLoader`` + ``collate``) served: same indices, same tensors, same order, same global random stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fairdistill.data.core import Batch, BatchLoader, DatasetInfo, SplitDataset, collate, label_attr_groups
from fairdistill.distill.features import extract_features
from fairdistill.errors import ConfigError
from fairdistill.evaluate.predict import predict
from fairdistill.models import build_model
from fairdistill.models.core import TappedModel
from fairdistill.train.cache import compute_teacher_outputs
from fairdistill.train.engine import EpochShuffleSampler, train_loader

N = 103
INFO = DatasetInfo(
    "toy", 3, ("a", "b", "c"), ("u", "v"), label_attr_groups(("a", "b", "c"), ("u", "v")), "tabular", (5,)
)


def split() -> SplitDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 5, generator=g)
    tokens = {"input_ids": torch.randint(0, 50, (N, 7), generator=g), "attention_mask": torch.ones(N, 7).long()}
    y = torch.randint(0, 3, (N,), generator=g)
    attr = torch.randint(0, 2, (N,), generator=g)
    return SplitDataset({"x": x, "tok": tokens}, y, attr, y * 2 + attr)


def tensor(encoding: object) -> torch.Tensor:
    assert isinstance(encoding, torch.Tensor)
    return encoding


def assert_same_batch(got: Batch, expected: Batch) -> None:
    assert got.index.dtype == expected.index.dtype == torch.long
    assert torch.equal(got.index, expected.index)
    for name in ("y", "attr", "group"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert torch.equal(tensor(got.inputs["x"]), tensor(expected.inputs["x"]))
    got_tok, expected_tok = got.inputs["tok"], expected.inputs["tok"]
    assert isinstance(got_tok, dict) and isinstance(expected_tok, dict)
    assert got_tok.keys() == expected_tok.keys()
    for key in got_tok:
        assert got_tok[key].dtype == expected_tok[key].dtype and torch.equal(got_tok[key], expected_tok[key])


@pytest.mark.parametrize(("seed", "epoch", "batch_size"), [(0, 0, 16), (3, 2, 16), (7, 1, 50), (1, 0, 200)])
def test_train_loader_serves_the_per_example_batches_in_the_seeded_order(
    seed: int, epoch: int, batch_size: int
) -> None:
    data = split()
    # the order, computed independently: the epoch's permutation, cut into consecutive batches
    order = torch.randperm(N, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    expected_chunks = [order[s : s + batch_size] for s in range(0, N, batch_size)]
    loader = train_loader(data, batch_size, seed)
    loader.sampler.set_epoch(epoch)  # type: ignore[union-attr]
    batches = list(loader)
    assert len(batches) == len(loader) == len(expected_chunks)
    for batch, chunk in zip(batches, expected_chunks, strict=True):
        # per-example path (one __getitem__ per example, then collate) ...
        assert_same_batch(batch, collate([data[i] for i in chunk.tolist()]))
        # ... and direct tensor indexing give the same batch
        assert torch.equal(batch.index, chunk)
        assert torch.equal(tensor(batch.inputs["x"]), tensor(data.encodings["x"])[chunk])
        assert torch.equal(batch.y, data.y[chunk])


def test_the_global_random_stream_is_the_one_the_dataloader_left() -> None:
    data = split()
    sampler = EpochShuffleSampler(N, seed=4)
    torch.manual_seed(11)
    old = list(DataLoader(data, batch_size=16, sampler=sampler, collate_fn=collate))
    after_old = torch.rand(4)
    torch.manual_seed(11)
    new = list(BatchLoader(data, 16, sampler))
    after_new = torch.rand(4)
    assert torch.equal(after_old, after_new)
    assert len(old) == len(new) == 7
    for got, expected in zip(new, old, strict=True):
        assert_same_batch(got, expected)


def test_each_process_takes_its_piece_of_every_global_batch() -> None:
    # N = 103, 2 processes at batch 10: global batches of 20 (the last one 3 examples), each cut in two pieces
    data = split()
    order = torch.randperm(N, generator=torch.Generator().manual_seed(2 * 100_003 + 0))
    global_batches = [order[s : s + 20] for s in range(0, N, 20)]
    served = []
    for rank in (0, 1):
        sampler = EpochShuffleSampler(N, seed=2, rank=rank, num_replicas=2, batch_size=10)
        loader = BatchLoader(data, 10, sampler)
        batches = [b.index for b in loader]
        assert len(batches) == len(loader) == 6  # the same number of steps on both processes
        for got, whole in zip(batches, global_batches, strict=True):
            half = -(-len(whole) // 2)
            assert torch.equal(got, whole[:half] if rank == 0 else whole[half:])
        assert torch.equal(sampler.indices(), torch.cat(batches))
        served.append(torch.cat(batches))
    # disjoint shards covering the split once
    assert sorted(torch.cat(served).tolist()) == list(range(N))


def test_uneven_shards_make_the_same_number_of_steps() -> None:
    # 41 examples, 3 processes at batch 4: global batches of 12, 12, 12 and a remainder of 5 (>= 3, kept)
    # 37 examples: a remainder of 1 (< 3 processes) joins the previous global batch
    for size, steps in ((41, 4), (37, 3)):
        pieces = [EpochShuffleSampler(size, seed=1, rank=r, num_replicas=3, batch_size=4).batches(4) for r in range(3)]
        assert [len(p) for p in pieces] == [steps] * 3
        assert all(len(b) >= 1 for p in pieces for b in p)
        sizes = [[len(b) for b in p] for p in pieces]
        assert all(max(col) - min(col) <= 1 for col in zip(*sizes, strict=True))
        assert sorted(torch.cat([torch.cat(p) for p in pieces]).tolist()) == list(range(size))
        sampler = EpochShuffleSampler(size, seed=1, rank=2, num_replicas=3, batch_size=4)
        assert sampler.num_batches(4) == steps
    assert [len(b) for b in EpochShuffleSampler(37, 1, 0, 3, 4).batches(4)] == [4, 4, 5]


def test_fewer_train_examples_than_processes_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="fewer than the 3 training processes"):
        EpochShuffleSampler(2, seed=0, rank=0, num_replicas=3)


def test_in_order_loader_and_a_plain_iterable_sampler() -> None:
    data = split()
    batches = list(BatchLoader(data, 40))
    assert [b.index.tolist() for b in batches] == [list(range(0, 40)), list(range(40, 80)), list(range(80, N))]
    picked = [5, 0, 99, 5]
    (batch,) = list(BatchLoader(data, 10, picked))
    assert_same_batch(batch, collate([data[i] for i in picked]))


def test_a_lazy_source_is_collated_from_its_items() -> None:
    class Doubling(SplitDataset):
        def __getitem__(self, i: int) -> dict:
            item = super().__getitem__(i)
            item["inputs"]["x"] = item["inputs"]["x"] * 2
            return item

    base = split()
    lazy = Doubling(base.encodings, base.y, base.attr, base.group)
    batch = lazy.take(torch.tensor([3, 1, 2]))
    assert torch.equal(tensor(batch.inputs["x"]), tensor(base.encodings["x"])[[3, 1, 2]] * 2)
    assert batch.index.tolist() == [3, 1, 2]


def tiny_model() -> TappedModel:
    torch.manual_seed(0)
    return build_model({"name": "mlp", "hidden": [4]}, INFO, where="m")


def test_predict_equals_a_per_example_computation() -> None:
    data, model = split(), tiny_model()
    model.train()
    got = predict(model, data, batch_size=16, device="cpu")
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        # the old path: per-example items collated into the same batches — bitwise the same numbers
        same_batches = np.concatenate(
            [
                torch.softmax(model(collate([data[i] for i in range(s, min(s + 16, N))]).inputs).logits, -1).numpy()
                for s in range(0, N, 16)
            ]
        )
        one_at_a_time = np.concatenate(
            [torch.softmax(model(collate([data[i]]).inputs).logits, -1).numpy() for i in range(N)]
        )
    np.testing.assert_array_equal(got.probs, same_batches)
    np.testing.assert_allclose(got.probs, one_at_a_time, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.index, np.arange(N))
    np.testing.assert_array_equal(got.y, data.y.numpy())
    np.testing.assert_array_equal(got.group, data.group.numpy())


def test_teacher_outputs_and_features_equal_the_per_example_path() -> None:
    data, model = split(), tiny_model()
    logits, embedding = compute_teacher_outputs(model, data, 32, "cpu")
    features = extract_features(model, data, "hidden1", "cpu")
    model.eval()
    with torch.no_grad():
        outs = [model(collate([data[i] for i in range(s, min(s + 32, N))]).inputs) for s in range(0, N, 32)]
        all_at_once = model(collate([data[i] for i in range(N)]).inputs)  # FEATURE_BATCH_SIZE > N: one batch
    np.testing.assert_array_equal(logits, np.concatenate([o.logits.numpy() for o in outs]))
    assert embedding is not None
    np.testing.assert_array_equal(embedding, np.concatenate([tensor(o.embedding).numpy() for o in outs]))
    assert torch.equal(features, all_at_once.taps["hidden1"])


def test_feature_batches_are_large_for_in_memory_tables_only() -> None:
    from fairdistill.distill.features import FEATURE_BATCH_SIZE, TABLE_FEATURE_BATCH_SIZE, feature_batch_size

    rows = TABLE_FEATURE_BATCH_SIZE + 808  # two table batches, the second partial
    g = torch.Generator().manual_seed(1)
    y, attr = torch.randint(0, 3, (rows,), generator=g), torch.randint(0, 2, (rows,), generator=g)
    table = SplitDataset({"x": torch.randn(rows, 5, generator=g)}, y, attr, y * 2 + attr)
    images = SplitDataset({"x": torch.randn(8, 3, 4, 4)}, y[:8], attr[:8], (y * 2 + attr)[:8])
    assert feature_batch_size(table) == TABLE_FEATURE_BATCH_SIZE
    assert feature_batch_size(images) == FEATURE_BATCH_SIZE
    assert feature_batch_size(split()) == FEATURE_BATCH_SIZE  # token ids beside the table: not a table
    model = tiny_model()
    features = extract_features(model, table, "hidden1", "cpu")
    model.eval()
    with torch.no_grad():
        chunks = [table.encodings["x"][s : s + 1000] for s in range(0, rows, 1000)]
        expected = torch.cat([model({"x": chunk}).taps["hidden1"] for chunk in chunks])
    assert features.shape == (rows, 4)
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-6)
