"""The distillation-loss zoo (dkd, rkd, ctkd, kdpp) against hand computations written with plain Python loops.

Every expected value below is computed from Python lists with the ``math`` module and explicit loops over
examples, classes, pairs and triplets — never with the vectorised code under test.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from fairdistill.data.core import Batch, DatasetInfo, SplitDataset
from fairdistill.distill import LOSSES, MethodContext, TeacherOutputs, TrainState
from fairdistill.distill.ctkd import CTKDOptions, ctkd_per_example, grl_strength, theta_for
from fairdistill.distill.dkd import DKDOptions, dkd_warmup
from fairdistill.distill.kdpp import KDPPOptions, class_means, kdpp_warmup
from fairdistill.distill.losses import KDOptions
from fairdistill.distill.relational import RKDOptions
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput

# ---------------------------------------------------------------------------------------------------------------
# Fixed small random inputs (drawn once from a seeded generator, then used as plain Python lists).

B, C, D_S, D_T = 5, 4, 3, 4
_GEN = torch.Generator().manual_seed(20240611)
STUDENT = (torch.randn(B, C, generator=_GEN, dtype=torch.float64) * 1.5).tolist()
TEACHER = (torch.randn(B, C, generator=_GEN, dtype=torch.float64) * 2.0).tolist()
S_EMB = torch.randn(B, D_S, generator=_GEN, dtype=torch.float64).tolist()
T_EMB = (torch.randn(B, D_T, generator=_GEN, dtype=torch.float64) * 3.0).tolist()
LABELS = [0, 2, 1, 3, 2]
# A small "train split" for the kdpp class means: embeddings of the teacher and labels (class 3 twice).
TRAIN_Y = [0, 1, 1, 2, 3, 3, 0, 2]
TRAIN_T_EMB = (torch.randn(len(TRAIN_Y), D_T, generator=_GEN, dtype=torch.float64) * 2.0).tolist()


def _info(num_classes: int) -> DatasetInfo:
    names = tuple(str(k) for k in range(num_classes))
    return DatasetInfo("toy", num_classes, names, ("0", "1"), ("g",), "tabular", (2,))


def _context(
    num_classes: int = C,
    *,
    teacher: bool = True,
    s_dim: int | None = D_S,
    t_dim: int | None = D_T,
    teacher_embedding: bool = True,
) -> MethodContext:
    n = len(TRAIN_Y)
    y = torch.tensor(TRAIN_Y) % num_classes
    zeros = torch.zeros(n, dtype=torch.long)
    train = SplitDataset({"x": torch.zeros(n, 2)}, y, zeros, zeros)
    cache = None
    if teacher:
        emb = np.asarray(TRAIN_T_EMB, dtype=np.float32) if teacher_embedding else None
        cache = TeacherOutputs(logits=np.zeros((n, num_classes), dtype=np.float32), embedding=emb)
    return MethodContext(
        _info(num_classes),
        train,
        teacher_train=cache,
        num_epochs=10,
        student_embedding_dim=s_dim,
        teacher_embedding_dim=t_dim,
    )


def _batch(y: list[int]) -> Batch:
    z = torch.zeros(len(y), dtype=torch.long)
    return Batch(inputs={}, y=torch.tensor(y), attr=z, group=z, index=torch.arange(len(y)))


def _out(logits: list[list[float]], emb: list[list[float]] | None = None) -> ModelOutput:
    return ModelOutput(
        torch.tensor(logits, dtype=torch.float64),
        embedding=None if emb is None else torch.tensor(emb, dtype=torch.float64),
    )


def _build(kind: str, options=None, context: MethodContext | None = None):
    entry = LOSSES.get(kind)
    return entry.target(options if options is not None else entry.options(), context or _context())


# ---------------------------------------------------------------------------------------------------------------
# Hand computations.


def _softmax(row: list[float], tau: float = 1.0) -> list[float]:
    top = max(row)
    exps = [math.exp((v - top) / tau) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def _ce(row: list[float], y: int) -> float:
    return -math.log(_softmax(row)[y])


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(a * a for a in v))


def _sub(u: list[float], v: list[float]) -> list[float]:
    return [a - b for a, b in zip(u, v, strict=True)]


def _dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def _hand_dkd(s_rows, t_rows, labels, tau, alpha, beta, warm) -> list[float]:
    out = []
    for s, t, y in zip(s_rows, t_rows, labels, strict=True):
        p_s, p_t = _softmax(s, tau), _softmax(t, tau)
        tckd = tau * tau * _kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]])
        others = [k for k in range(len(s)) if k != y]
        if len(others) >= 2:
            q_s = _softmax([s[k] for k in others], tau)
            q_t = _softmax([t[k] for k in others], tau)
            nckd = tau * tau * _kl(q_t, q_s)
        else:
            nckd = 0.0
        out.append(_ce(s, y) + warm * (alpha * tckd + beta * nckd))
    return out


def _hand_psi_d(emb: list[list[float]]) -> list[list[float]]:
    n = len(emb)
    dist = [[_norm(_sub(emb[i], emb[j])) for j in range(n)] for i in range(n)]
    nonzero = [dist[i][j] for i in range(n) for j in range(n) if i != j and dist[i][j] > 0]
    mu = sum(nonzero) / len(nonzero)
    return [[dist[i][j] / mu for j in range(n)] for i in range(n)]


def _hand_psi_a(emb: list[list[float]], i: int, j: int, k: int) -> float:
    u, v = _sub(emb[i], emb[j]), _sub(emb[k], emb[j])
    if _norm(u) == 0 or _norm(v) == 0:  # a duplicate embedding: no direction, cosine taken as 0
        return 0.0
    return _dot(u, v) / (_norm(u) * _norm(v))


def _hand_rkd_parts(s_emb, t_emb) -> tuple[list[float], list[float]]:
    n = len(s_emb)
    psi_s, psi_t = _hand_psi_d(s_emb), _hand_psi_d(t_emb)
    dist, angle = [], []
    for i in range(n):
        pairs = [_huber(psi_s[i][j] - psi_t[i][j]) for j in range(n) if j != i]
        dist.append(sum(pairs) / len(pairs))
        triplets = [
            _huber(_hand_psi_a(s_emb, i, j, k) - _hand_psi_a(t_emb, i, j, k))
            for j in range(n)
            for k in range(n)
            if len({i, j, k}) == 3
        ]
        angle.append(sum(triplets) / len(triplets))
    return dist, angle


def _hand_kd_term(s, t, tau) -> float:
    return tau * tau * _kl(_softmax(t, tau), _softmax(s, tau))


def _hand_tau(theta: float) -> float:
    return 1.0 + 20.0 / (1.0 + math.exp(-theta))


def _hand_ctkd(s_rows, t_rows, labels, taus, alpha) -> list[float]:
    return [
        (1 - alpha) * _ce(s, y) + alpha * _hand_kd_term(s, t, tau)
        for s, t, y, tau in zip(s_rows, t_rows, labels, taus, strict=True)
    ]


def _hand_class_means(embs, ys, num_classes) -> list[list[float]]:
    means = []
    for c in range(num_classes):
        rows = [e for e, y in zip(embs, ys, strict=True) if y == c]
        means.append([sum(r[d] for r in rows) / len(rows) if rows else 0.0 for d in range(len(embs[0]))])
    return means


def _hand_kdpp(s_rows, t_rows, labels, s_emb_proj, t_emb, centers, tau, w_kd, w_nd, warm) -> list[float]:
    out = []
    for s, t, y, se, te in zip(s_rows, t_rows, labels, s_emb_proj, t_emb, strict=True):
        c = centers[y]
        unit = [v / _norm(c) for v in c]
        nd = 1.0 - _dot(se, unit) / max(_norm(se), _norm(te))
        out.append(_ce(s, y) + w_kd * warm * _hand_kd_term(s, t, tau) + w_nd * nd)
    return out


def _linear(rows, weight, bias) -> list[list[float]]:
    return [[sum(w * x for w, x in zip(weight[o], r, strict=True)) + bias[o] for o in range(len(weight))] for r in rows]


# ---------------------------------------------------------------------------------------------------------------
# Defaults (docs/methods.md) and registration.


def test_zoo_is_registered_with_documented_defaults() -> None:
    for kind in ("dkd", "rkd", "ctkd", "kdpp"):
        assert kind in LOSSES and LOSSES.get(kind).target.requires_teacher
        assert LOSSES.get(kind).summary
    assert DKDOptions() == DKDOptions(alpha=1.0, beta=8.0, tau=4.0, warmup_fraction=0.2)
    assert RKDOptions() == RKDOptions(lambda_distance=25.0, lambda_angle=50.0, kd_weight=0.0)
    o = CTKDOptions()
    assert (o.alpha, o.scope, o.ramp_epochs) == (0.9, "global", 10)
    assert KDPPOptions() == KDPPOptions(kd_weight=1.0, nd_weight=2.0, tau=4.0)
    with pytest.raises(ValueError):
        CTKDOptions(init_tau=21.0)
    with pytest.raises(ValueError):
        CTKDOptions(scope="batch")


# ---------------------------------------------------------------------------------------------------------------
# dkd


@pytest.mark.parametrize(
    "epoch,num_epochs,fraction,warm",
    [(0, 10, 0.2, 0.5), (1, 10, 0.2, 1.0), (5, 10, 0.2, 1.0), (0, 20, 0.2, 0.25), (2, 20, 0.2, 0.75), (0, 3, 0.0, 1.0)],
)
def test_dkd_warmup_counts_epochs_from_one(epoch, num_epochs, fraction, warm) -> None:
    assert dkd_warmup(TrainState(epoch=epoch, num_epochs=num_epochs), fraction) == pytest.approx(warm)


@pytest.mark.parametrize("tau,alpha,beta,epoch", [(4.0, 1.0, 8.0, 0), (2.0, 0.5, 2.0, 4), (1.0, 1.0, 8.0, 1)])
def test_dkd_matches_hand_computation(tau, alpha, beta, epoch) -> None:
    loss = _build("dkd", DKDOptions(alpha=alpha, beta=beta, tau=tau))
    state = TrainState(epoch=epoch, num_epochs=10)
    out = loss(_batch(LABELS), _out(STUDENT), _out(TEACHER), state)
    warm = min(1.0, (epoch + 1) / (0.2 * 10))
    assert out.shape == (B,)
    assert out.tolist() == pytest.approx(_hand_dkd(STUDENT, TEACHER, LABELS, tau, alpha, beta, warm), abs=1e-6)


def test_dkd_binary_warns_once_and_uses_zero_nckd() -> None:
    s2 = [row[:2] for row in STUDENT]
    t2 = [row[:2] for row in TEACHER]
    y2 = [y % 2 for y in LABELS]
    loss = _build("dkd", DKDOptions(beta=8.0), _context(2))
    state = TrainState(epoch=9, num_epochs=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = loss(_batch(y2), _out(s2), _out(t2), state)
        second = loss(_batch(y2), _out(s2), _out(t2), state)
    messages = [str(w.message) for w in caught if "NCKD" in str(w.message)]
    assert len(messages) == 1
    # NCKD = 0: only CE + α·TCKD remain, whatever β is.
    expected = []
    for s, t, y in zip(s2, t2, y2, strict=True):
        p_s, p_t = _softmax(s, 4.0), _softmax(t, 4.0)
        expected.append(_ce(s, y) + 16.0 * _kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]]))
    assert first.tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(first, second)


def test_dkd_gradcheck() -> None:
    loss = _build("dkd")
    teacher = _out(TEACHER)
    state = TrainState(epoch=0, num_epochs=10)
    z = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda zs: loss(_batch(LABELS), ModelOutput(zs), teacher, state), (z,))


# ---------------------------------------------------------------------------------------------------------------
# rkd


@pytest.mark.parametrize("lam_d,lam_a,kd_weight", [(25.0, 50.0, 0.0), (1.0, 2.0, 0.5)])
def test_rkd_matches_hand_computation(lam_d, lam_a, kd_weight) -> None:
    loss = _build("rkd", RKDOptions(lambda_distance=lam_d, lambda_angle=lam_a, kd_weight=kd_weight, tau=3.0))
    out = loss(_batch(LABELS), _out(STUDENT, S_EMB), _out(TEACHER, T_EMB), TrainState())
    dist, angle = _hand_rkd_parts(S_EMB, T_EMB)
    expected = [
        _ce(s, y) + lam_d * d + lam_a * a + kd_weight * _hand_kd_term(s, t, 3.0)
        for s, t, y, d, a in zip(STUDENT, TEACHER, LABELS, dist, angle, strict=True)
    ]
    assert out.shape == (B,)
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_rkd_tolerates_duplicate_embeddings_and_tiny_batches() -> None:
    loss = _build("rkd")
    emb = [S_EMB[0], S_EMB[0], S_EMB[1], S_EMB[2]]  # two identical student embeddings
    e = torch.tensor(emb, dtype=torch.float64, requires_grad=True)
    out = loss(
        _batch(LABELS[:4]),
        ModelOutput(torch.tensor(STUDENT[:4], dtype=torch.float64), embedding=e),
        _out(TEACHER[:4], T_EMB[:4]),
        TrainState(),
    )
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(e.grad).all()
    dist_h, angle_h = _hand_rkd_parts(emb, T_EMB[:4])
    expected = [
        _ce(s, y) + 25.0 * d + 50.0 * a for s, y, d, a in zip(STUDENT[:4], LABELS[:4], dist_h, angle_h, strict=True)
    ]
    assert out.tolist() == pytest.approx(expected, abs=1e-6)
    # pairs with a zero distance are left out of μ
    dist = [[_norm(_sub(emb[i], emb[j])) for j in range(4)] for i in range(4)]
    nonzero = [dist[i][j] for i in range(4) for j in range(4) if i != j and dist[i][j] > 0]
    assert len(nonzero) == 10
    one = loss(_batch(LABELS[:1]), _out(STUDENT[:1], S_EMB[:1]), _out(TEACHER[:1], T_EMB[:1]), TrainState())
    assert one.tolist() == pytest.approx([_ce(STUDENT[0], LABELS[0])], abs=1e-9)


def test_rkd_gradcheck() -> None:
    loss = _build("rkd", RKDOptions(kd_weight=0.3))
    teacher = _out(TEACHER, T_EMB)
    z = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    e = torch.tensor(S_EMB, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda zs, es: loss(_batch(LABELS), ModelOutput(zs, embedding=es), teacher, TrainState()), (z, e)
    )


# ---------------------------------------------------------------------------------------------------------------
# ctkd


@pytest.mark.parametrize(
    "epoch,ramp,num_epochs",
    [(0, 10, 20), (1, 10, 20), (5, 10, 20), (10, 10, 20), (13, 10, 20), (1, 10, 4), (2, 10, 4), (4, 10, 4), (3, 0, 5)],
)
def test_ctkd_cosine_ramp(epoch, ramp, num_epochs) -> None:
    n_total = min(ramp, num_epochs)
    expected = 1.0 if n_total == 0 else (1 - math.cos(math.pi * min(epoch, n_total) / n_total)) / 2
    assert grl_strength(epoch, ramp, num_epochs) == pytest.approx(expected, abs=1e-12)


def test_ctkd_ramp_landmarks() -> None:
    assert grl_strength(0, 10, 10) == 0.0
    assert grl_strength(5, 10, 10) == pytest.approx(0.5)
    assert grl_strength(10, 10, 10) == pytest.approx(1.0)
    assert grl_strength(2, 10, 4) == pytest.approx(0.5)  # capped at the run's 4 epochs
    loss = _build("ctkd", CTKDOptions(ramp_epochs=4))
    assert [loss.strength(TrainState(epoch=e, num_epochs=8)) for e in range(5)] == pytest.approx(
        [(1 - math.cos(math.pi * n / 4)) / 2 for n in (1, 2, 3, 4, 4)]
    )


@pytest.mark.parametrize("init_tau,alpha", [(4.0, 0.9), (7.5, 0.5)])
def test_ctkd_global_matches_hand_computation(init_tau, alpha) -> None:
    loss = _build("ctkd", CTKDOptions(init_tau=init_tau, alpha=alpha))
    theta = float(loss.theta.detach())
    assert _hand_tau(theta) == pytest.approx(init_tau, abs=1e-6)
    out = loss(_batch(LABELS), _out(STUDENT), _out(TEACHER), TrainState(epoch=3, num_epochs=10))
    expected = _hand_ctkd(STUDENT, TEACHER, LABELS, [_hand_tau(theta)] * B, alpha)
    assert out.shape == (B,)
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_ctkd_instance_matches_hand_computation() -> None:
    loss = _build("ctkd", CTKDOptions(scope="instance", hidden=6, init_tau=5.0)).double()
    with torch.no_grad():  # give the output layer non-zero weights so that θ_i differ between examples
        loss.temperature_net[2].weight.copy_(torch.linspace(-0.4, 0.5, 6, dtype=torch.float64).view(1, 6))
    first, second = loss.temperature_net[0], loss.temperature_net[2]
    w1, b1, w2, b2 = first.weight.tolist(), first.bias.tolist(), second.weight.tolist()[0], float(second.bias.detach())
    taus = []
    for s, t in zip(STUDENT, TEACHER, strict=True):
        x = t + s  # [z_t, z_s]
        hidden = [max(0.0, sum(w * v for w, v in zip(row, x, strict=True)) + b) for row, b in zip(w1, b1, strict=True)]
        taus.append(_hand_tau(sum(w * h for w, h in zip(w2, hidden, strict=True)) + b2))
    assert len(set(round(t, 6) for t in taus)) == B
    out = loss(_batch(LABELS), _out(STUDENT), _out(TEACHER), TrainState(epoch=0, num_epochs=10))
    assert out.tolist() == pytest.approx(_hand_ctkd(STUDENT, TEACHER, LABELS, taus, 0.9), abs=1e-6)
    stats = loss.epoch_stats(TrainState(epoch=0, num_epochs=10))
    assert stats["ctkd_tau"] == pytest.approx(sum(taus) / B, abs=1e-5)
    assert stats["ctkd_tau_min"] == pytest.approx(min(taus), abs=1e-5)
    assert stats["ctkd_tau_max"] == pytest.approx(max(taus), abs=1e-5)


def test_ctkd_gradcheck_student_logits_and_theta() -> None:
    t = torch.tensor(TEACHER, dtype=torch.float64)
    y = torch.tensor(LABELS)
    z = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda zs, th: ctkd_per_example(zs, t, y, th, 0.9), (z, theta))
    thetas = torch.linspace(-1.0, 1.5, B, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda zs, th: ctkd_per_example(zs, t, y, th, 0.7), (z, thetas))


@pytest.mark.parametrize("epoch,strength", [(1, 1.0), (0, 0.5)])
def test_ctkd_theta_gradient_is_reversed(epoch, strength) -> None:
    loss = _build("ctkd", CTKDOptions(ramp_epochs=2)).double()
    state = TrainState(epoch=epoch, num_epochs=4)
    assert loss.strength(state) == pytest.approx(strength)
    z = torch.tensor(STUDENT, dtype=torch.float64)
    loss(_batch(LABELS), ModelOutput(z), _out(TEACHER), state).mean().backward()
    theta = loss.theta.detach().clone().requires_grad_()
    ctkd_per_example(z, torch.tensor(TEACHER, dtype=torch.float64), torch.tensor(LABELS), theta, 0.9).mean().backward()
    assert theta.grad is not None and abs(float(theta.grad)) > 1e-6
    assert float(loss.theta.grad) == pytest.approx(-strength * float(theta.grad), rel=1e-9)


def test_ctkd_theta_moves_to_increase_the_kd_loss() -> None:
    loss = _build("ctkd", CTKDOptions(ramp_epochs=1, init_tau=3.0)).double()
    state = TrainState(epoch=0, num_epochs=3)  # λ = 1 from the first epoch
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.5)
    z, teacher = torch.tensor(STUDENT, dtype=torch.float64), _out(TEACHER)
    values = []
    for _ in range(5):
        value = loss(_batch(LABELS), ModelOutput(z), teacher, state).mean()
        values.append(float(value.detach()))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()  # a descent step on θ, whose gradient was reversed: an ascent on the loss
    assert all(b > a for a, b in itertools.pairwise(values))


def test_ctkd_one_step_moves_theta_up_the_hand_gradient() -> None:
    """One SGD step on θ through the reversal (λ = 1) is θ + lr·∂L/∂θ, with ∂L/∂θ of the hand formula (central
    differences of the mean hand loss in θ)."""
    loss = _build("ctkd", CTKDOptions(ramp_epochs=1, init_tau=3.0)).double()
    state = TrainState(epoch=0, num_epochs=3)
    theta0 = float(loss.theta.detach())
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.5)
    loss(_batch(LABELS), _out(STUDENT), _out(TEACHER), state).mean().backward()
    optimizer.step()

    def mean_hand(theta: float) -> float:
        return sum(_hand_ctkd(STUDENT, TEACHER, LABELS, [_hand_tau(theta)] * B, 0.9)) / B

    h = 1e-5
    grad = (mean_hand(theta0 + h) - mean_hand(theta0 - h)) / (2 * h)
    assert abs(grad) > 1e-4
    assert float(loss.theta.detach()) == pytest.approx(theta0 + 0.5 * grad, rel=1e-6)
    assert loss.epoch_stats(state)["ctkd_tau"] == pytest.approx(_hand_tau(theta0 + 0.5 * grad), rel=1e-6)


def test_ctkd_instance_net_does_not_push_on_the_student() -> None:
    """The gradient on the student logits is that of the loss at the per-example τ_i held fixed: the temperature
    network reads the student logits detached."""
    loss = _build("ctkd", CTKDOptions(scope="instance", hidden=6, init_tau=5.0, ramp_epochs=0)).double()
    with torch.no_grad():
        loss.temperature_net[2].weight.copy_(torch.linspace(-0.4, 0.5, 6, dtype=torch.float64).view(1, 6))
    z = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    loss(_batch(LABELS), ModelOutput(z), _out(TEACHER), TrainState(epoch=0, num_epochs=10)).sum().backward()
    with torch.no_grad():
        taus = 1.0 + 20.0 * torch.sigmoid(loss.raw_theta(z, torch.tensor(TEACHER, dtype=torch.float64)))
    fixed = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(TEACHER, dtype=torch.float64)
    col = taus[:, None]
    log_t, log_s = torch.log_softmax(t / col, 1), torch.log_softmax(fixed / col, 1)
    kd = taus**2 * (log_t.exp() * (log_t - log_s)).sum(1)
    ce = -torch.log_softmax(fixed, 1)[torch.arange(B), torch.tensor(LABELS)]
    (0.1 * ce + 0.9 * kd).sum().backward()
    assert torch.allclose(z.grad, fixed.grad, atol=1e-10)


def test_ctkd_temperature_lies_in_range_and_theta_for_inverts() -> None:
    for tau in (1.5, 4.0, 20.5):
        assert _hand_tau(theta_for(tau)) == pytest.approx(tau)


# ---------------------------------------------------------------------------------------------------------------
# kdpp


def test_kdpp_class_means_equal_hand_means() -> None:
    loss = _build("kdpp")
    expected = _hand_class_means(TRAIN_T_EMB, TRAIN_Y, C)
    assert loss.centers.shape == (C, D_T)
    assert loss.centers.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]
    # an absent class gets a zero mean
    means = class_means(np.asarray(TRAIN_T_EMB), np.asarray(TRAIN_Y), C + 1)
    assert means[C].abs().sum() == 0 and torch.allclose(means[:C], loss.centers)


def test_kdpp_projection_exists_only_when_widths_differ() -> None:
    loss = _build("kdpp", context=_context(s_dim=D_S, t_dim=D_T))
    assert isinstance(loss.projection, torch.nn.Linear)
    assert (loss.projection.in_features, loss.projection.out_features) == (D_S, D_T)
    assert {n for n, _ in loss.named_parameters()} == {"projection.weight", "projection.bias"}
    same = _build("kdpp", context=_context(s_dim=D_T, t_dim=D_T))
    assert same.projection is None and not list(same.parameters())
    unknown = _build("kdpp", context=_context(s_dim=None, t_dim=None))
    assert unknown.projection is None


@pytest.mark.parametrize("epoch,warm", [(0, 0.0), (1, 0.5), (2, 1.0), (7, 1.0)])
def test_kdpp_warmup_counts_epochs_from_zero(epoch, warm) -> None:
    assert kdpp_warmup(TrainState(epoch=epoch, num_epochs=10), 2.0) == pytest.approx(warm)
    assert kdpp_warmup(TrainState(epoch=epoch, num_epochs=10), 0.0) == 1.0


@pytest.mark.parametrize("project,epoch", [(True, 1), (False, 0), (False, 3)])
def test_kdpp_matches_hand_computation(project: bool, epoch: int) -> None:
    options = KDPPOptions(kd_weight=1.0, nd_weight=2.0, tau=4.0, warmup_epochs=2.0)
    if project:
        loss = _build("kdpp", options, _context(s_dim=D_S, t_dim=D_T)).double()
        s_emb = S_EMB
        proj = _linear(s_emb, loss.projection.weight.tolist(), loss.projection.bias.tolist())
    else:
        loss = _build("kdpp", options, _context(s_dim=D_T, t_dim=D_T)).double()
        s_emb = proj = [row[::-1] for row in T_EMB]  # a student embedding of the teacher's width
    centers = _hand_class_means(TRAIN_T_EMB, TRAIN_Y, C)
    out = loss(_batch(LABELS), _out(STUDENT, s_emb), _out(TEACHER, T_EMB), TrainState(epoch=epoch, num_epochs=10))
    warm = min(1.0, epoch / 2.0)
    expected = _hand_kdpp(STUDENT, TEACHER, LABELS, proj, T_EMB, centers, 4.0, 1.0, 2.0, warm)
    assert out.shape == (B,)
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


def test_kdpp_gradcheck() -> None:
    loss = _build("kdpp").double()
    teacher = _out(TEACHER, T_EMB)
    state = TrainState(epoch=1, num_epochs=10)
    z = torch.tensor(STUDENT, dtype=torch.float64, requires_grad=True)
    e = torch.tensor(S_EMB, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda zs, es: loss(_batch(LABELS), ModelOutput(zs, embedding=es), teacher, state), (z, e)
    )


# ---------------------------------------------------------------------------------------------------------------
# Missing teacher outputs and embeddings: construction is fine, use is a clear error.


def test_construction_without_teacher_outputs_then_clear_errors_on_use() -> None:
    context = _context(teacher=False)
    for kind in ("dkd", "rkd", "ctkd", "kdpp"):
        _build(kind, context=context)  # a dry run builds methods without teacher outputs
    kdpp = _build("kdpp", context=context)
    with pytest.raises(RuntimeError, match="kdpp.*teacher_train is None"):
        kdpp(_batch(LABELS), _out(STUDENT, S_EMB), _out(TEACHER, T_EMB), TrainState())
    for kind in ("dkd", "rkd", "ctkd", "kdpp"):
        with pytest.raises(RuntimeError, match=f"loss {kind} needs the teacher"):
            _build(kind)(_batch(LABELS), _out(STUDENT, S_EMB), None, TrainState())


@pytest.mark.parametrize("kind", ["rkd", "kdpp"])
def test_missing_embeddings_name_the_loss(kind: str) -> None:
    loss = _build(kind)
    with pytest.raises(ConfigError, match=f"loss {kind} .*student model gives none"):
        loss(_batch(LABELS), _out(STUDENT), _out(TEACHER, T_EMB), TrainState())
    with pytest.raises(ConfigError, match=f"loss {kind} .*teacher model gives none"):
        loss(_batch(LABELS), _out(STUDENT, S_EMB), _out(TEACHER), TrainState())


def test_kdpp_teacher_cache_without_embeddings_is_a_config_error() -> None:
    loss = _build("kdpp", context=_context(teacher_embedding=False))
    with pytest.raises(ConfigError, match="kdpp needs the teacher's embeddings"):
        loss(_batch(LABELS), _out(STUDENT, S_EMB), _out(TEACHER, T_EMB), TrainState())


def _hand_terms(kind: str, loss) -> tuple[list[float], float, float]:
    """The teacher term and the two weights of each loss's default options at epoch 1 of 10, by hand."""
    if kind == "kd":  # τ = 2, α = 0.9
        return [_hand_kd_term(s, t, 2.0) for s, t in zip(STUDENT, TEACHER, strict=True)], 0.1, 0.9
    if kind == "ctkd":  # τ = init_tau = 4, α = 0.9
        return [_hand_kd_term(s, t, 4.0) for s, t in zip(STUDENT, TEACHER, strict=True)], 0.1, 0.9
    if kind == "dkd":  # α_d = 1, β_d = 8, τ = 4; warm-up min(1, 2 / (0.2·10)) = 1 at epoch index 1
        teacher = [
            (ce_plus - _ce(s, y))
            for ce_plus, s, y in zip(
                _hand_dkd(STUDENT, TEACHER, LABELS, 4.0, 1.0, 8.0, 1.0), STUDENT, LABELS, strict=True
            )
        ]
        return teacher, 1.0, 1.0
    if kind == "rkd":  # λ_D = 25, λ_A = 50
        dist, angle = _hand_rkd_parts(S_EMB, T_EMB)
        return [25.0 * d + 50.0 * a for d, a in zip(dist, angle, strict=True)], 1.0, 1.0
    assert kind == "kdpp"  # w_kd = 1 with warm-up min(1, 1/2), w_nd = 2, τ = 4
    proj = _linear(S_EMB, loss.projection.weight.tolist(), loss.projection.bias.tolist())
    centers = _hand_class_means(TRAIN_T_EMB, TRAIN_Y, C)
    full = _hand_kdpp(STUDENT, TEACHER, LABELS, proj, T_EMB, centers, 4.0, 1.0, 2.0, 0.5)
    return [f - _ce(s, y) for f, s, y in zip(full, STUDENT, LABELS, strict=True)], 1.0, 1.0


@pytest.mark.parametrize("kind", ["kd", "dkd", "rkd", "ctkd", "kdpp"])
def test_terms_are_the_documented_label_and_teacher_terms(kind: str) -> None:
    """Each term and weight against the hand computation (what a mixing rule recombines), not the code itself."""
    loss = _build(kind).double()
    args = (_batch(LABELS), _out(STUDENT, S_EMB), _out(TEACHER, T_EMB), TrainState(epoch=1, num_epochs=10))
    terms = loss.terms(*args)
    teacher, label_weight, teacher_weight = _hand_terms(kind, loss)
    ce = [_ce(s, y) for s, y in zip(STUDENT, LABELS, strict=True)]
    assert terms.label.tolist() == pytest.approx(ce, abs=1e-9)
    assert terms.teacher.tolist() == pytest.approx(teacher, abs=1e-6)
    assert float(terms.label_weight) == pytest.approx(label_weight)
    assert float(terms.teacher_weight) == pytest.approx(teacher_weight)
    expected = [label_weight * c + teacher_weight * t for c, t in zip(ce, teacher, strict=True)]
    assert loss(*args).tolist() == pytest.approx(expected, abs=1e-6)


def test_dkd_terms_carry_the_warm_up_as_the_teacher_weight() -> None:
    loss = _build("dkd").double()
    terms = loss.terms(_batch(LABELS), _out(STUDENT), _out(TEACHER), TrainState(epoch=0, num_epochs=10))
    assert (float(terms.label_weight), float(terms.teacher_weight)) == pytest.approx((1.0, 0.5))


# ---------------------------------------------------------------------------------------------------------------
# Hard inputs: huge logits, extreme τ, ten classes, batches of two and three (hand computations in log space).


def _log_softmax(row: list[float], tau: float = 1.0) -> list[float]:
    z = [v / tau for v in row]
    top = max(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - lse for v in z]


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _kl_log(lp: list[float], lq: list[float]) -> float:
    return sum(math.exp(a) * (a - b) for a, b in zip(lp, lq, strict=True))


def _stable_kd(s, t, tau) -> float:
    return tau * tau * _kl_log(_log_softmax(t, tau), _log_softmax(s, tau))


def _stable_ce(s, y) -> float:
    return -_log_softmax(s)[y]


def _stable_dkd(s, t, y, tau, alpha, beta) -> float:
    def binary(row):
        z = [v / tau for v in row]
        lse = _logsumexp(z)
        return [z[y] - lse, _logsumexp([z[k] for k in range(len(z)) if k != y]) - lse]

    tckd = tau * tau * _kl_log(binary(t), binary(s))
    others = [k for k in range(len(s)) if k != y]
    nckd = tau * tau * _kl_log(_log_softmax([t[k] for k in others], tau), _log_softmax([s[k] for k in others], tau))
    return _stable_ce(s, y) + alpha * tckd + beta * nckd


HUGE_S = [[v * 2000.0 for v in row] for row in STUDENT]
HUGE_T = [[v * 2000.0 for v in row] for row in TEACHER]


@pytest.mark.parametrize("scale,tau", [("huge", 4.0), ("plain", 0.01), ("plain", 1000.0), ("huge", 1000.0)])
def test_kd_and_dkd_at_huge_logits_and_extreme_temperatures(scale: str, tau: float) -> None:
    s_rows, t_rows = (HUGE_S, HUGE_T) if scale == "huge" else (STUDENT, TEACHER)
    kd = _build("kd", KDOptions(tau=tau, alpha=0.5))
    out = kd(_batch(LABELS), _out(s_rows), _out(t_rows), TrainState())
    expected = [
        0.5 * _stable_ce(s, y) + 0.5 * _stable_kd(s, t, tau) for s, t, y in zip(s_rows, t_rows, LABELS, strict=True)
    ]
    assert torch.isfinite(out).all()
    assert out.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-6)
    dkd = _build("dkd", DKDOptions(tau=tau, alpha=1.0, beta=8.0, warmup_fraction=0.0))
    out = dkd(_batch(LABELS), _out(s_rows), _out(t_rows), TrainState())
    expected = [_stable_dkd(s, t, y, tau, 1.0, 8.0) for s, t, y in zip(s_rows, t_rows, LABELS, strict=True)]
    assert torch.isfinite(out).all()
    assert out.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_ctkd_at_huge_logits_is_finite_and_exact() -> None:
    loss = _build("ctkd", CTKDOptions(init_tau=2.0, alpha=0.5))
    out = loss(_batch(LABELS), _out(HUGE_S), _out(HUGE_T), TrainState(epoch=0, num_epochs=10))
    tau = _hand_tau(float(loss.theta.detach()))
    expected = [
        0.5 * _stable_ce(s, y) + 0.5 * _stable_kd(s, t, tau) for s, t, y in zip(HUGE_S, HUGE_T, LABELS, strict=True)
    ]
    assert out.tolist() == pytest.approx(expected, rel=1e-6)


def test_kd_and_dkd_with_ten_classes() -> None:
    gen = torch.Generator().manual_seed(7)
    s_rows = (torch.randn(6, 10, generator=gen, dtype=torch.float64) * 2).tolist()
    t_rows = (torch.randn(6, 10, generator=gen, dtype=torch.float64) * 3).tolist()
    labels = [0, 9, 4, 4, 7, 2]
    context = _context(10)
    kd = _build("kd", KDOptions(tau=3.0, alpha=0.8), context)
    out = kd(_batch(labels), _out(s_rows), _out(t_rows), TrainState())
    assert out.tolist() == pytest.approx(
        [0.2 * _ce(s, y) + 0.8 * _hand_kd_term(s, t, 3.0) for s, t, y in zip(s_rows, t_rows, labels, strict=True)],
        abs=1e-9,
    )
    dkd = _build("dkd", DKDOptions(alpha=2.0, beta=5.0, tau=3.0), context)
    out = dkd(_batch(labels), _out(s_rows), _out(t_rows), TrainState(epoch=0, num_epochs=10))
    assert out.tolist() == pytest.approx(_hand_dkd(s_rows, t_rows, labels, 3.0, 2.0, 5.0, 0.5), abs=1e-9)


@pytest.mark.parametrize("b", [2, 3])
def test_rkd_with_batches_of_two_and_three(b: int) -> None:
    loss = _build("rkd", RKDOptions(lambda_distance=2.0, lambda_angle=3.0))
    out = loss(_batch(LABELS[:b]), _out(STUDENT[:b], S_EMB[:b]), _out(TEACHER[:b], T_EMB[:b]), TrainState())
    psi_s, psi_t = _hand_psi_d(S_EMB[:b]), _hand_psi_d(T_EMB[:b])
    expected = []
    for i in range(b):
        dist = sum(_huber(psi_s[i][j] - psi_t[i][j]) for j in range(b) if j != i) / (b - 1)
        triplets = [
            _huber(_hand_psi_a(S_EMB, i, j, k) - _hand_psi_a(T_EMB, i, j, k))
            for j in range(b)
            for k in range(b)
            if len({i, j, k}) == 3
        ]
        angle = sum(triplets) / len(triplets) if triplets else 0.0  # B = 2: no triplet, no angle term
        expected.append(_ce(STUDENT[i], LABELS[i]) + 2.0 * dist + 3.0 * angle)
    assert torch.isfinite(out).all()
    assert out.tolist() == pytest.approx(expected, abs=1e-9)
    if b == 2:  # two examples: ψ_D is 1 for both models (a single distance over its own mean), so no distance loss
        assert out.tolist() == pytest.approx([_ce(STUDENT[i], LABELS[i]) for i in range(2)], abs=1e-9)
