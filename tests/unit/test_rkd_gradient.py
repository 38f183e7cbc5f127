"""rkd's hand-written student gradient (relational._StudentRelations) against autograd of the definition,
written here on difference vectors (not the Gram matrix), with a duplicate embedding, and by finite differences."""

from __future__ import annotations

import torch

from fairdistill.distill.relational import sample_triplets, student_relations


def _definition(s: torch.Tensor, t: torch.Tensor, i, j, k, pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example distance and sampled-angle terms from the difference vectors; a zero distance contributes a
    constant 0 (no gradient), and so does a cosine with a zero side."""

    def distances(e: torch.Tensor) -> torch.Tensor:
        sq = ((e.unsqueeze(1) - e.unsqueeze(0)) ** 2).sum(-1)
        positive = sq > 1e-18
        return torch.where(positive, torch.where(positive, sq, 1.0).sqrt(), 0.0)

    def psi(e: torch.Tensor) -> torch.Tensor:
        d = distances(e)
        return d / d[d > 0].mean()

    def cosines(e: torch.Tensor) -> torch.Tensor:
        u, v = e[i] - e[j], e[k] - e[j]
        nu, nv = u.norm(dim=1), v.norm(dim=1)
        both = (nu > 1e-9) & (nv > 1e-9)
        return torch.where(both, (u * v).sum(1) / torch.where(both, nu * nv, 1.0), 0.0)

    def huber(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.abs() < 1, 0.5 * x * x, x.abs() - 0.5)

    b = s.shape[0]
    distance = huber(psi(s) - psi(t)).sum(1) / (b - 1)
    angle = huber(cosines(s) - cosines(t)).view(b, pairs).mean(1)
    return distance, angle


def test_the_written_gradient_is_autograds_of_the_definition_with_a_duplicate() -> None:
    g = torch.Generator().manual_seed(21)
    b, pairs = 10, 7
    s = (torch.randn(b, 3, generator=g, dtype=torch.float64) * 2.0 + 5.0).detach()
    s[4] = s[1]  # a duplicate: its pair has distance 0, and angles at it have a zero side
    t = torch.randn(b, 5, generator=g, dtype=torch.float64) * 3.0
    w_distance = torch.rand(b, generator=g, dtype=torch.float64)
    w_angle = torch.rand(b, generator=g, dtype=torch.float64)

    ours_s = s.clone().requires_grad_(True)
    torch.manual_seed(5)
    distance, angle = student_relations(ours_s, t, pairs)
    assert angle is not None
    ((w_distance * distance).sum() * 25.0 + (w_angle * angle).sum() * 50.0).backward()

    torch.manual_seed(5)
    i, j, k = sample_triplets(b, pairs, "cpu")
    assert bool(((i == 1) & (j == 4)).any() | ((i == 4) & (j == 1)).any() | ((j == 1) & (k == 4)).any())
    reference_s = s.clone().requires_grad_(True)
    ref_distance, ref_angle = _definition(reference_s, t, i, j, k, pairs)
    ((w_distance * ref_distance).sum() * 25.0 + (w_angle * ref_angle).sum() * 50.0).backward()

    torch.testing.assert_close(distance.detach(), ref_distance.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(angle.detach(), ref_angle.detach(), rtol=0, atol=1e-12)
    assert ours_s.grad is not None and reference_s.grad is not None
    torch.testing.assert_close(ours_s.grad, reference_s.grad, rtol=0, atol=1e-10)
    assert float(ours_s.grad.abs().max()) > 1e-3  # a real gradient, not two zeros agreeing


def test_the_written_gradient_passes_gradcheck() -> None:
    g = torch.Generator().manual_seed(22)
    s = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(9, 6, generator=g, dtype=torch.float64)
    w = torch.rand(9, generator=g, dtype=torch.float64)

    def loss(embedding: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)  # the same triplets on every evaluation
        distance, angle = student_relations(embedding, t, 5)
        assert angle is not None
        return (w * distance).sum() + (w.flip(0) * angle).sum()

    assert torch.autograd.gradcheck(loss, (s,))


def test_rkd_in_bf16_and_under_autocast_keeps_float32_geometry() -> None:
    from fairdistill.data.core import Batch, DatasetInfo
    from fairdistill.distill.core import LOSSES, MethodContext, TrainState
    from fairdistill.distill.relational import RKDOptions
    from fairdistill.models.core import ModelOutput

    g = torch.Generator().manual_seed(0)
    b = 64
    s, t = torch.randn(b, 16, generator=g) + 3.0, torch.randn(b, 32, generator=g)
    logits, y = torch.randn(b, 2, generator=g), torch.randint(0, 2, (b,), generator=g)
    zeros = torch.zeros(b, dtype=torch.long)
    batch = Batch(inputs={}, y=y, attr=zeros, group=zeros, index=torch.arange(b))
    info = DatasetInfo("t", 2, ("a", "b"), ("u",), ("a|u", "b|u"), "table")
    rkd = LOSSES.get("rkd").target(RKDOptions(angle_pairs=16), MethodContext(info=info, train=None))  # type: ignore[arg-type]

    def loss(student: torch.Tensor, teacher: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        return rkd(batch, ModelOutput(z, embedding=student), ModelOutput(z, embedding=teacher), TrainState())

    reference = loss(s, t, logits)
    scale = float(reference.abs().max())
    # bf16 embeddings: only their own rounding (~0.4%) remains; a bf16 Gram matrix was off by ~30% of the loss
    low = loss(s.bfloat16(), t.bfloat16(), logits.bfloat16())
    assert low.dtype == torch.float32
    assert float((low - reference).abs().max()) < 0.01 * scale
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 inputs under autocast: the same numbers
        autocast = loss(s, t, logits)
    assert float((autocast.float() - reference).abs().max()) < 1e-4 * scale
