"""Relational knowledge distillation, ``rkd`` (Park et al., CVPR 2019; docs/methods.md).

Instead of matching each example's output, Park et al. transfer the *structure* of the teacher's embedding
space: the student is asked to reproduce the teacher's pairwise distances (normalised by their mean, so the two
spaces may have different scales and widths) and the angles formed by triplets of examples. Both are compared
with a Huber (smooth-L1) loss. Here the batch-level losses are split into per-example values so that any
instance weighting applies: example i receives the mean over the pairs (i, j) and the triplets (i, j, k) in
which it is the first index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from fairdistill.data.core import Batch
from fairdistill.distill.checks import require_embedding, require_teacher, safe_unit
from fairdistill.distill.core import LOSSES, DistillLoss, LossTerms, Temperature, TrainState
from fairdistill.distill.losses import soft_kl
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options


class RKDOptions(Options):
    #: λ_D, the weight of the distance term.
    lambda_distance: float = Field(default=25.0, ge=0.0)
    #: λ_A, the weight of the angle term.
    lambda_angle: float = Field(default=50.0, ge=0.0)
    #: Weight of an optional Hinton KD term τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)) added to the loss (0: off).
    kd_weight: float = Field(default=0.0, ge=0.0)
    #: Temperature of the optional KD term.
    tau: Temperature = 4.0
    #: (j, k) pairs drawn per example i for the angle term when a batch has more ((B−1)(B−2) > angle_pairs):
    #: an unbiased estimate of the mean over all triplets at O(B·angle_pairs) cost instead of O(B³·d). None: all
    #: triplets, always (exact; ~0.5 s per step at B = 256 with a 256-wide teacher on one CPU core).
    angle_pairs: int | None = Field(default=64, ge=1)


def huber(x: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 with δ = 1: ½x² where |x| < 1, |x| − ½ elsewhere (element-wise)."""
    return F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none", beta=1.0)


class BatchGeometry:
    """The Gram matrix K = E Eᵀ of a batch's embeddings (centred on their mean: distances and angles do not
    change, rounding does) and the squared distances ‖e_i − e_j‖² = K_ii + K_jj − 2K_ij. One B × B × d matrix
    product replaces the B × B × d difference tensor; a squared distance within rounding of 0 (identical
    embeddings) is exactly 0."""

    def __init__(self, embedding: torch.Tensor) -> None:
        self.size = embedding.shape[0]
        centred = embedding - embedding.mean(dim=0, keepdim=True)
        self.gram = centred @ centred.T
        norms = self.gram.diagonal()
        total = norms.unsqueeze(0) + norms.unsqueeze(1)
        squared = total - 2.0 * self.gram
        tolerance = (64.0 * torch.finfo(embedding.dtype).eps) * total.detach()
        self.squared_distances = torch.where(squared > tolerance, squared, torch.zeros_like(squared))

    def distances(self) -> torch.Tensor:
        """‖e_i − e_j‖, exactly 0 (with a zero gradient) where the embeddings coincide."""
        sq = self.squared_distances
        return torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))

    def cosines(self, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """ψ_A(i, j, k), the cosine of the angle at e_j between e_i and e_k, for index triplets, by the law of
        cosines: (d_ij² + d_kj² − d_ik²) / (2·d_ij·d_kj); 0 where a side at e_j is zero (as for the unit vectors
        of the exact term)."""
        sq = self.squared_distances.reshape(-1)
        b = self.size
        side_i, side_k = sq.take(j * b + i), sq.take(j * b + k)
        opposite = sq.take(i * b + k)
        lengths = side_i * side_k
        scaled = (side_i + side_k - opposite) * (0.5 * lengths.clamp_min(torch.finfo(sq.dtype).tiny).rsqrt())
        return torch.where(lengths > 0, scaled, 0.0)


def _geometry(embedding: torch.Tensor | BatchGeometry) -> BatchGeometry:
    return embedding if isinstance(embedding, BatchGeometry) else BatchGeometry(embedding)


def normalized_distances(embedding: torch.Tensor | BatchGeometry) -> torch.Tensor:
    """ψ_D(i, j) = ‖e_i − e_j‖ / μ, shape (B, B); μ = mean of the non-zero distances between distinct examples.

    μ depends on the embeddings (no detach), as in the paper. When every distance is zero, μ = 1.
    """
    dist = _geometry(embedding).distances()
    nonzero = (dist > 0).detach()
    count = nonzero.sum()
    mu = (dist * nonzero).sum() / count if count > 0 else torch.ones((), dtype=dist.dtype, device=dist.device)
    return dist / mu


def rkd_distance(student_emb: torch.Tensor | BatchGeometry, teacher_emb: torch.Tensor | BatchGeometry) -> torch.Tensor:
    """Per example i: mean over j ≠ i of huber(ψ_D^s(i, j) − ψ_D^t(i, j)); 0 for a batch of one."""
    student, teacher = _geometry(student_emb), _geometry(teacher_emb)
    b = student.size
    if b < 2:
        return student.gram.sum(dim=1) * 0.0
    loss = huber(normalized_distances(student) - normalized_distances(teacher))
    # The diagonal (i = j) is 0 for both models and adds nothing to the sum.
    return loss.sum(dim=1) / (b - 1)


def sample_triplets(b: int, pairs: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pairs`` triplets (i, j, k) per example i of a batch of ``b`` ≥ 3, j ≠ i and k ∉ {i, j} drawn uniformly
    (torch's global generator: a resumed run draws the same); i repeats each index ``pairs`` times, in order."""
    i = torch.arange(b, device=device).repeat_interleave(pairs)
    j = torch.remainder(i + 1 + torch.randint(0, b - 1, i.shape, device=device), b)
    low, high = torch.minimum(i, j), torch.maximum(i, j)
    k = torch.randint(0, b - 2, i.shape, device=device)
    k = k + (k >= low)  # skip the smaller of i, j, then the larger: uniform over the b − 2 others
    k = k + (k >= high)
    return i, j, k


def sampled_rkd_angle(
    student_emb: torch.Tensor | BatchGeometry, teacher_emb: torch.Tensor | BatchGeometry, pairs: int
) -> torch.Tensor:
    """Per example i: mean over ``pairs`` random (j, k) of huber(ψ_A^s(i, j, k) − ψ_A^t(i, j, k)), an unbiased
    estimate of :func:`rkd_angle` (of its value and gradient) at O(B·pairs) cost once the Gram matrices exist."""
    student, teacher = _geometry(student_emb), _geometry(teacher_emb)
    b = student.size
    i, j, k = sample_triplets(b, pairs, student.gram.device)
    difference = student.cosines(i, j, k) - teacher.cosines(i, j, k).to(student.gram.dtype)
    return huber(difference).view(b, pairs).mean(dim=1)


def triplet_angles(embedding: torch.Tensor) -> torch.Tensor:
    """A[j, i, k] = ψ_A(i, j, k) = ⟨(e_i − e_j)/‖·‖, (e_k − e_j)/‖·‖⟩, the cosine of the angle at e_j."""
    units = safe_unit(embedding.unsqueeze(0) - embedding.unsqueeze(1), dim=-1)  # units[j, i] = unit(e_i − e_j)
    return torch.bmm(units, units.transpose(1, 2))


#: Elements of one (apexes, B, B) block of angles in :class:`_AngleLoss` (≈ 4 MiB in float32: the block and
#: the few temporaries made from it stay in cache, where the element-wise work is several times faster, and no
#: B³ buffer is ever allocated: fresh large buffers cost a page fault per 4 KiB).
ANGLE_BLOCK_ELEMENTS = 1 << 20


def _angle_blocks(b: int) -> list[slice]:
    """The blocks of apexes j that :class:`_AngleLoss` processes together."""
    rows = max(1, ANGLE_BLOCK_ELEMENTS // (b * b))
    return [slice(start, min(b, start + rows)) for start in range(0, b, rows)]


def _angle_difference(joint: torch.Tensor, signed: torch.Tensor, block: slice) -> torch.Tensor:
    """D[j, i, k] = A_s[j, i, k] − A_t[j, i, k] for the apexes j of ``block``: one ``bmm`` of the concatenated
    unit vectors [u, v] against [u, −v]."""
    return torch.bmm(joint[block], signed[block].transpose(1, 2))


class _AngleLoss(torch.autograd.Function):
    """Σ_{j, k ≠ i} huber(⟨u_ji, u_jk⟩ − ⟨v_ji, v_jk⟩) per example i, from the unit difference vectors
    u[j, i] = unit(e_i − e_j) of the student and v of the teacher, in blocks of apexes j.

    Autograd on the B³ formula keeps several B³ tensors and runs a dozen passes over them; here each block of
    apexes is built by one ``bmm`` and reduced in cache, forward and backward (which rebuilds the block: keeping
    the B³ slopes costs more than the ``bmm``). The backward pass needs only huber'(D) = clamp(D, −1, 1); D[j] is
    symmetric in (i, k), so with G[j, i, k] = huber'(D)[j, i, k]·[k ≠ i] and upstream gradient g:
    ∂/∂u[j] = g ⊙ (G[j] u[j]) + G[j] (g ⊙ u[j]), and ∂/∂v[j] the same with −v.
    """

    @staticmethod
    def forward(ctx, student_units: torch.Tensor, teacher_units: torch.Tensor) -> torch.Tensor:
        b = student_units.shape[0]
        joint = torch.cat([student_units, teacher_units], dim=2)
        signed = torch.cat([student_units, -teacher_units], dim=2)
        zero = joint.new_zeros(()).expand(min(b, max(1, ANGLE_BLOCK_ELEMENTS // (b * b))), b, b)
        total = joint.new_zeros(b)
        for block in _angle_blocks(b):
            diff = _angle_difference(joint, signed, block)
            loss = F.smooth_l1_loss(diff, zero[: diff.shape[0]], reduction="none", beta=1.0)
            # k = i is not a triplet: remove the diagonal's share
            total += loss.sum(dim=(0, 2)) - loss.diagonal(dim1=1, dim2=2).sum(dim=0)
        ctx.student_width = student_units.shape[2]
        ctx.save_for_backward(joint, signed)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        joint, signed = ctx.saved_tensors
        b = joint.shape[0]
        # the gradient is needed for the student's units (always, in training) and the teacher's (rarely)
        width = joint.shape[2] if ctx.needs_input_grad[1] else ctx.student_width
        units = joint[..., :width]
        scale = grad_total.view(1, b, 1)
        both = torch.cat([units, units * scale], dim=2)
        grad = torch.empty_like(units)
        for block in _angle_blocks(b):
            slope = _angle_difference(joint, signed, block).clamp_(-1.0, 1.0)
            slope.diagonal(dim1=1, dim2=2).zero_()
            product = torch.bmm(slope, both[block])  # [G u, G (g ⊙ u)]
            torch.addcmul(product[..., width:], product[..., :width], scale, out=grad[block])
        student_width = ctx.student_width
        grad_s = grad[..., :student_width] if ctx.needs_input_grad[0] else None
        grad_t = -grad[..., student_width:] if ctx.needs_input_grad[1] else None
        return grad_s, grad_t


def rkd_angle(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Per example i: mean over distinct j, k (j ≠ i, k ∉ {i, j}) of huber(ψ_A^s(i, j, k) − ψ_A^t(i, j, k)).

    0 for batches of fewer than three examples (there are no triplets). Computed in blocks of apexes j
    (:class:`_AngleLoss`): the values are those of the B³ formula (``triplet_angles``), at a fraction of its
    memory and time. Entries with j = i or j = k vanish for both models (zero unit vector); only k = i is masked.
    """
    b = student_emb.shape[0]
    if b < 3:
        return student_emb.sum(dim=1) * 0.0
    student_units = safe_unit(student_emb.unsqueeze(0) - student_emb.unsqueeze(1), dim=-1)  # [j, i] = unit(e_i − e_j)
    teacher_units = safe_unit(teacher_emb.unsqueeze(0) - teacher_emb.unsqueeze(1), dim=-1)
    total: torch.Tensor = _AngleLoss.apply(student_units, teacher_units)
    return total / ((b - 1) * (b - 2))


@LOSSES.register("rkd", options=RKDOptions)
class RKDLoss(DistillLoss):
    """Park et al. (2019), relational KD: CE + λ_D·distance + λ_A·angle (+ kd_weight·τ²·KL), per example.

    Distances and angles are computed on the embeddings (penultimate features) of the student and of the
    teacher within the batch; the embeddings may have different widths. The optional KD term (``kd_weight``,
    off by default) is the classical logit term, as in the paper's RKD + KD combination. Distances come from
    each model's Gram matrix (:class:`BatchGeometry`). The angle term averages over every triplet when a batch
    has at most ``angle_pairs`` (j, k) pairs per example (B ≤ 9 at the default 64), and over ``angle_pairs``
    uniformly drawn ones otherwise: the same expectation, value and gradient, at a cost linear in B instead of
    cubic (at B = 256 all triplets are 65,000 per example).
    """

    options: RKDOptions

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        teacher = require_teacher("rkd", teacher)
        s_emb = require_embedding("rkd", student, "student")
        t_emb = require_embedding("rkd", teacher, "teacher").to(s_emb.dtype)
        o = self.options
        ce = F.cross_entropy(student.logits, batch.y, reduction="none")
        b = s_emb.shape[0]
        student_geometry, teacher_geometry = BatchGeometry(s_emb), BatchGeometry(t_emb)
        if b >= 3 and o.angle_pairs is not None and (b - 1) * (b - 2) > o.angle_pairs:
            angle = sampled_rkd_angle(student_geometry, teacher_geometry, o.angle_pairs)
        else:
            angle = rkd_angle(s_emb, t_emb)
        relational = o.lambda_distance * rkd_distance(student_geometry, teacher_geometry) + o.lambda_angle * angle
        if o.kd_weight > 0:
            kl = soft_kl(teacher.logits.to(student.logits.dtype), student.logits, o.tau)
            relational = relational + o.kd_weight * o.tau**2 * kl
        return LossTerms(label=ce, teacher=relational)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()
