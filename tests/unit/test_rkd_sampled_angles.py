"""rkd's sampled angle term: the triplets drawn, the cosines from the Gram matrix, and the estimate's
expectation, checked against the explicit triplet formula (unit difference vectors, float64)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from fairdistill.data.core import Batch, DatasetInfo
from fairdistill.distill.core import LOSSES, MethodContext, TrainState
from fairdistill.distill.relational import (
    BatchGeometry,
    RKDOptions,
    rkd_angle,
    rkd_distance,
    sample_triplets,
    sampled_rkd_angle,
)
from fairdistill.models.core import ModelOutput


def _cosine(e: torch.Tensor, i: int, j: int, k: int) -> float:
    """The cosine of the angle at e_j, from the difference vectors themselves (0 for a zero vector)."""
    u, v = e[i] - e[j], e[k] - e[j]
    nu, nv = float(u.norm()), float(v.norm())
    return 0.0 if nu == 0 or nv == 0 else float(u @ v) / (nu * nv)


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def test_sampled_triplets_are_distinct_and_uniform_over_the_valid_pairs() -> None:
    b, pairs = 5, 12_000
    torch.manual_seed(0)
    i, j, k = sample_triplets(b, pairs, "cpu")
    assert i.tolist() == [a for a in range(b) for _ in range(pairs)]
    assert bool((j != i).all()) and bool((k != i).all()) and bool((k != j).all())
    assert int(j.min()) >= 0 and int(j.max()) < b and int(k.min()) >= 0 and int(k.max()) < b
    # each anchor has (b − 1)(b − 2) = 12 ordered (j, k) pairs, each with probability 1/12: ~1,000 draws apiece
    for anchor in range(b):
        rows = i == anchor
        counts = {pair: 0 for pair in itertools.permutations([x for x in range(b) if x != anchor], 2)}
        for pair in zip(j[rows].tolist(), k[rows].tolist(), strict=True):
            counts[pair] += 1
        assert len(counts) == 12
        assert all(880 <= c <= 1120 for c in counts.values()), counts  # ±12%: about 4 standard deviations


def test_gram_cosines_and_distances_match_the_difference_vectors_with_a_duplicate() -> None:
    g = torch.Generator().manual_seed(3)
    e = torch.randn(7, 4, generator=g, dtype=torch.float64) * 3.0 + 10.0  # far from the origin: rounding matters
    e[5] = e[2]  # a duplicate: zero distance, and no angle at it
    geometry = BatchGeometry(e)
    for a, c in itertools.product(range(7), repeat=2):
        assert abs(float(geometry.distances()[a, c]) - float((e[a] - e[c]).norm())) < 1e-9
    assert float(geometry.distances()[2, 5]) == 0.0
    triplets = [(i, j, k) for i, j, k in itertools.permutations(range(7), 3)]
    i, j, k = (torch.tensor(col) for col in zip(*triplets, strict=True))
    ours = geometry.cosines(i, j, k)
    assert [round(float(x), 9) for x in ours] == [round(_cosine(e, *t), 9) for t in triplets]


def test_sampled_angle_is_the_huber_mean_over_its_draws() -> None:
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(9, 3, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g, dtype=torch.float64)
    torch.manual_seed(11)
    ours = sampled_rkd_angle(s, t, pairs=5)
    torch.manual_seed(11)
    i, j, k = sample_triplets(9, 5, "cpu")
    by_hand = [0.0] * 9
    for a, b_, c in zip(i.tolist(), j.tolist(), k.tolist(), strict=True):
        by_hand[a] += _huber(_cosine(s, a, b_, c) - _cosine(t, a, b_, c)) / 5
    assert [round(float(x), 10) for x in ours] == [round(x, 10) for x in by_hand]


def test_sampled_angle_estimates_the_exact_value_and_gradient_without_bias() -> None:
    g = torch.Generator().manual_seed(5)
    s = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = 2.0 * torch.randn(8, 5, generator=g, dtype=torch.float64)
    w = torch.rand(8, generator=g, dtype=torch.float64)
    exact = rkd_angle(s, t)
    (exact_grad,) = torch.autograd.grad((w * exact).sum(), s)
    torch.manual_seed(0)
    draws, grads = [], []
    for _ in range(3000):
        value = sampled_rkd_angle(s, t, pairs=6)  # 6 of the 42 pairs per example
        draws.append(value.detach())
        grads.append(torch.autograd.grad((w * value).sum(), s)[0])
    values, gradients = torch.stack(draws), torch.stack(grads)
    error = (values.mean(0) - exact.detach()).abs()
    assert bool((error < 4 * values.std(0) / len(draws) ** 0.5 + 1e-12).all()), (error, values.std(0))
    grad_error = (gradients.mean(0) - exact_grad).abs()
    assert bool((grad_error < 4 * gradients.std(0) / len(grads) ** 0.5 + 1e-12).all())
    assert float(values.std(0).min()) > 0  # the draws really vary: the check above is not vacuous


def test_rkd_loss_samples_only_batches_with_more_pairs_than_the_option() -> None:
    g = torch.Generator().manual_seed(6)
    b = 12  # 11·10 = 110 (j, k) pairs per example
    s, t = torch.randn(b, 4, generator=g, dtype=torch.float64), torch.randn(b, 8, generator=g, dtype=torch.float64)
    logits = torch.randn(b, 2, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (b,), generator=g)
    zeros = torch.zeros(b, dtype=torch.long)
    batch = Batch(inputs={}, y=y, attr=zeros, group=zeros, index=torch.arange(b))
    context = MethodContext(info=DatasetInfo("t", 2, ("a", "b"), ("u",), ("a|u", "b|u"), "table"), train=None)  # type: ignore[arg-type]
    ce = F.cross_entropy(logits, y, reduction="none")

    def loss(pairs: int | None, seed: int) -> torch.Tensor:
        rkd = LOSSES.get("rkd").target(RKDOptions(angle_pairs=pairs), context)
        torch.manual_seed(seed)
        return rkd(batch, ModelOutput(logits, embedding=s), ModelOutput(logits, embedding=t), TrainState())

    distance = rkd_distance(s, t)
    assert torch.allclose(loss(None, 0), ce + 25.0 * distance + 50.0 * rkd_angle(s, t))
    assert torch.allclose(loss(110, 0), loss(None, 0))  # as many draws as pairs: every triplet, exactly
    torch.manual_seed(3)
    expected = ce + 25.0 * distance + 50.0 * sampled_rkd_angle(s, t, 64)
    assert torch.allclose(loss(64, 3), expected)
    assert not torch.allclose(loss(64, 3), loss(64, 4))  # other draws, another estimate
