"""Relational knowledge distillation, ``rkd`` (Park et al., CVPR 2019; docs/methods.md).

Instead of matching each example's output, Park et al. transfer the *structure* of the teacher's embedding
space: the student is asked to reproduce the teacher's pairwise distances (normalised by their mean, so the two
spaces may have different scales and widths) and the angles formed by triplets of examples. Both are compared
with a Huber (smooth-L1) loss. Here the batch-level losses are split into per-example values so that any
instance weighting applies: example i receives the mean over the pairs (i, j) and the triplets (i, j, k) in
which it is the first index.
"""

from __future__ import annotations

from typing import Any

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
    """The pairwise geometry of a batch's embeddings, as values (no autograd: the student's gradient is written
    out by :class:`_StudentRelations`).

    From the Gram matrix K = C Cᵀ of the embeddings centred on their mean (distances and angles do not change,
    rounding does): the squared distances ‖e_i − e_j‖² = K_ii + K_jj − 2K_ij, exactly 0 where they are within
    rounding of 0 (identical embeddings; ``kept`` marks the others), the distances, and ψ_D = ‖e_i − e_j‖ / μ with
    μ the mean of the non-zero distances (1 when every distance is zero). One B × B × d matrix product replaces
    the B × B × d difference tensor, and each B × B quantity is made once, in place where it can be. Masks are
    0/1 in the embeddings' dtype: on the CPU, comparisons, bool masks and ``where`` on a B × B matrix cost several
    times an arithmetic pass.
    """

    def __init__(self, embedding: torch.Tensor) -> None:
        with torch.no_grad():
            e = embedding.detach()
            self.size = e.shape[0]
            self.centred = e - e.mean(dim=0, keepdim=True)
            norms = (self.centred * self.centred).sum(dim=1)
            total = norms.unsqueeze(0) + norms.unsqueeze(1)
            squared = torch.addmm(total, self.centred, self.centred.T, alpha=-2.0)  # K_ii + K_jj − 2K_ij
            #: 1 where the squared distance is above the rounding of its terms (64 ulps of K_ii + K_jj), else 0
            self.kept = torch.sub(squared, total, alpha=64.0 * torch.finfo(e.dtype).eps).sign_().clamp_(min=0.0)
            self.squared_distances = squared.mul_(self.kept)
            self.distance = self.squared_distances.sqrt()
            self.count = self.kept.sum()
            self.mu = torch.where(self.count > 0, self.distance.sum() / self.count.clamp(min=1.0), 1.0).to(e.dtype)

    def distances(self) -> torch.Tensor:
        """‖e_i − e_j‖, exactly 0 where the embeddings coincide."""
        return self.distance

    def normalized(self) -> torch.Tensor:
        """ψ_D(i, j) = ‖e_i − e_j‖ / μ, shape (B, B)."""
        return self.distance / self.mu

    def cosines(self, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """ψ_A(i, j, k), the cosine of the angle at e_j between e_i and e_k, for index triplets, by the law of
        cosines: (d_ij² + d_kj² − d_ik²) / (2·d_ij·d_kj); 0 where a side at e_j is zero (as for the unit vectors
        of the exact term)."""
        return _law_of_cosines(self.squared_distances, side_positions(self.size, i, j, k))[0]


def side_positions(b: int, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The positions, in a flattened B × B matrix, of the three sides of each triplet: (j, i), (j, k), (i, k),
    concatenated (one gather serves the three)."""
    return torch.cat([j * b + i, j * b + k, i * b + k])


def _law_of_cosines(
    squared: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cosines at e_j of triplets from the squared distances and :func:`side_positions`, and what their
    gradient needs: the sides A = d_ji², K = d_jk², r = 1/√(A·K) and whether both sides are non-zero."""
    side_i, side_k, opposite = squared.reshape(-1).index_select(0, positions).view(3, -1)
    lengths = side_i * side_k
    sides = lengths.sign()  # 1 where both sides are non-zero (squared distances are ≥ 0), else 0
    r = lengths.clamp_min(torch.finfo(lengths.dtype).tiny).rsqrt()
    cosines = (side_i + side_k - opposite).mul_(r).mul_(0.5).mul_(sides)
    return cosines, side_i, side_k, r, sides


def _as_geometry(embedding: torch.Tensor | BatchGeometry) -> BatchGeometry:
    return embedding if isinstance(embedding, BatchGeometry) else BatchGeometry(embedding)


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


class _StudentRelations(torch.autograd.Function):
    """The student's side of rkd per example — the distance term and, given triplets, the sampled angle term —
    with the gradient written out instead of recorded (autograd replayed some forty B × B operations backwards,
    most of rkd's step). Both terms reach the embeddings through one B × B matrix Q of ∂loss/∂‖e_i − e_j‖²:
    ∂loss/∂c_i = 2·(Σ_j S_ij·c_i − Σ_j S_ij·c_j), S = Q + Qᵀ, c the centred embeddings (then centred again).

    Distance term, per example i: (1/(B−1))·Σ_j huber(d_ij/μ − ψᵗ_ij), so with h_ij = g_i·huber'(·)/(B−1),
    ∂/∂d_ij = h_ij/μ − [d_ij > 0]·Σ h·d/(μ²·count), and ∂d/∂d² = 1/(2d). Angle term, per example i: the mean over
    its triplets of huber(cos − cosᵗ), cos = (A + K − O)/(2√(AK)) with A = d_ji², K = d_jk², O = d_ik², so
    ∂cos/∂A = ½r − cos/(2A), ∂cos/∂K = ½r − cos/(2K), ∂cos/∂O = −½r (r = 1/√(AK)); a cosine fixed at 0 (a zero
    side) passes nothing, nor do squared distances zeroed as rounding (coinciding embeddings).
    """

    @staticmethod
    def forward(
        ctx: Any,
        embedding: torch.Tensor,
        teacher_psi: torch.Tensor,
        teacher_cosines: torch.Tensor | None,
        positions: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        geometry = BatchGeometry(embedding)
        b = geometry.size
        psi_difference = geometry.normalized().sub_(teacher_psi)
        psi_slope = psi_difference.clamp(-1.0, 1.0)  # huber'(x); huber(x) = huber'(x)·(x − huber'(x)/2)
        distance = psi_difference.sub_(psi_slope, alpha=0.5).mul_(psi_slope).sum(dim=1) / (b - 1)
        ctx.b, ctx.pairs = b, 0
        saved = [geometry.centred, geometry.kept, geometry.distance, geometry.mu, geometry.count, psi_slope]
        angle = distance.new_zeros(b)
        if positions is not None:
            assert teacher_cosines is not None
            ctx.pairs = positions.numel() // (3 * b)
            cosines, side_i, side_k, r, sides = _law_of_cosines(geometry.squared_distances, positions)
            cos_difference = cosines - teacher_cosines
            angle = huber(cos_difference).view(b, ctx.pairs).mean(dim=1)
            saved += [positions, cosines, cos_difference, side_i, side_k, r, sides]
        ctx.save_for_backward(*saved)
        return distance, angle

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_distance: torch.Tensor, grad_angle: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        centred, kept, distance, mu, count, psi_slope, *angle_saved = ctx.saved_tensors
        b = ctx.b
        h = psi_slope * (grad_distance / (b - 1)).unsqueeze(1)
        through_mu = torch.dot(h.view(-1), distance.view(-1)) / (mu * mu * count.clamp(min=1.0))  # μ's share
        q = torch.addcmul(h.div_(mu), kept, through_mu, value=-1.0)
        q.mul_(kept).div_(distance.mul(2.0).add_(1.0 - kept))  # ∂d/∂d² = 1/(2d); 0 where d² was zeroed
        if ctx.pairs:
            positions, cosines, cos_difference, side_i, side_k, r, sides = angle_saved
            slope = cos_difference.clamp(-1.0, 1.0).mul_(sides)
            slope.mul_(grad_angle.repeat_interleave(ctx.pairs)).div_(ctx.pairs)
            half_r = 0.5 * r
            no_side = 1.0 - sides  # a zero side: its slope is 0; divide by 1 instead of 0
            on_side_i = slope * (half_r - cosines / (2.0 * (side_i + no_side)))
            on_side_k = slope * (half_r - cosines / (2.0 * (side_k + no_side)))
            # ∂/∂A, ∂/∂K, ∂/∂O in the order of ``positions``
            q.view(-1).index_add_(0, positions, torch.cat([on_side_i, on_side_k, -slope * half_r]))
            q.mul_(kept)
        # S = Q + Qᵀ without forming it: Σ_j S_ij = row + column sums, S·c = Q·c + Qᵀ·c
        rows = (q.sum(dim=1) + q.sum(dim=0)).unsqueeze(1)
        grad = torch.addmm(torch.mm(q, centred), q.T, centred).sub_(rows * centred).mul_(-2.0)
        return grad - grad.mean(dim=0, keepdim=True), None, None, None


def student_relations(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor | BatchGeometry, pairs: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """rkd's per-example distance term and, when ``pairs`` is given, its sampled angle term (``pairs`` triplets
    per example from :func:`sample_triplets`, an unbiased estimate of :func:`rkd_angle`'s value and gradient at
    O(B·pairs) cost once the Gram matrices exist); the angle is None without ``pairs``. Batches of two or more
    (three with ``pairs``). The gradient reaches the student's embeddings only (:class:`_StudentRelations`)."""
    b = student_emb.shape[0]
    teacher = _as_geometry(teacher_emb)
    with torch.no_grad():
        teacher_psi = teacher.normalized().to(student_emb.dtype)
        positions = None if pairs is None else side_positions(b, *sample_triplets(b, pairs, student_emb.device))
        teacher_cosines = None
        if positions is not None:
            teacher_cosines = _law_of_cosines(teacher.squared_distances, positions)[0].to(student_emb.dtype)
    distance, angle = _StudentRelations.apply(student_emb, teacher_psi, teacher_cosines, positions)
    return distance, angle if pairs is not None else None


def rkd_distance(student_emb: torch.Tensor, teacher_emb: torch.Tensor | BatchGeometry) -> torch.Tensor:
    """Per example i: mean over j ≠ i of huber(ψ_D^s(i, j) − ψ_D^t(i, j)); 0 for a batch of one."""
    if student_emb.shape[0] < 2:
        return student_emb.sum(dim=1) * 0.0
    return student_relations(student_emb, teacher_emb, None)[0]


def sampled_rkd_angle(student_emb: torch.Tensor, teacher_emb: torch.Tensor | BatchGeometry, pairs: int) -> torch.Tensor:
    """Per example i: mean over ``pairs`` random (j, k) of huber(ψ_A^s(i, j, k) − ψ_A^t(i, j, k)), an unbiased
    estimate of :func:`rkd_angle` (of its value and gradient); batches of three or more."""
    angle = student_relations(student_emb, teacher_emb, pairs)[1]
    assert angle is not None
    return angle


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
        o = self.options
        ce = F.cross_entropy(student.logits, batch.y, reduction="none")
        b = s_emb.shape[0]
        # Geometry in at least float32 and outside autocast: distances from a bf16 Gram matrix (8-bit mantissa,
        # and the 64-ulp rounding test) are off by tens of percent on the differences the terms compare.
        work = torch.promote_types(s_emb.dtype, torch.float32)
        with torch.autocast(device_type=s_emb.device.type, enabled=False):
            s_work = s_emb.to(work)
            t_work = require_embedding("rkd", teacher, "teacher").to(work)
            if b < 2:  # no pairs: the relational terms are 0
                relational = s_work.sum(dim=1) * 0.0
            else:
                sampled = b >= 3 and o.angle_pairs is not None and (b - 1) * (b - 2) > o.angle_pairs
                distance, angle = student_relations(s_work, t_work, o.angle_pairs if sampled else None)
                if angle is None:
                    angle = rkd_angle(s_work, t_work)
                relational = o.lambda_distance * distance + o.lambda_angle * angle
        if o.kd_weight > 0:
            kl = soft_kl(teacher.logits.to(student.logits.dtype), student.logits, o.tau)
            relational = relational + o.kd_weight * o.tau**2 * kl
        return LossTerms(label=ce, teacher=relational)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()
