"""Every loss kind composed with every weighting / mixing / adversary part that is registered, trained by the engine.

The parts are discovered, not listed: every ``Registry`` found in ``fairdistill.distill`` and its submodules
(other than ``LOSSES``) whose kind names a field of ``MethodConfig`` (``weighting``, ``mixing``, ...) contributes
one combination per registered name, with its default options; the adversary, configured by options rather
than by kind, contributes one combination with its defaults. The combinations that are invalid by design (a mixing
rule on a loss without
a teacher term, such as ``erm``) are derived from the loss classes and must be refused with a ConfigError that
says why; every other combination must build and train.

Each combination trains a small MLP student with ``fairdistill.train.engine.fit`` on a synthetic tabular split
(3 classes, 2 attribute values, teacher outputs with embeddings) and checks that the training losses are finite
and that the distillation loss on a fixed batch, at a fixed training state, is lower after training than before.
Everything is seeded and runs on the CPU, so the outcome is deterministic.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch

from fairdistill.config import MethodConfig, TrainConfig
from fairdistill.data.core import DatasetInfo, SplitDataset, collate, label_attr_group_index, label_attr_groups
from fairdistill.distill import LOSSES, MethodContext, TeacherOutputs, TrainState, build_method
from fairdistill.errors import ConfigError
from fairdistill.models import build_model
from fairdistill.registry import Registry
from fairdistill.train.cache import compute_teacher_outputs
from fairdistill.train.engine import fit, make_accelerator

EPOCHS = 3
FEATURES = 8
CLASSES = 3
INFO = DatasetInfo(
    "synthetic",
    CLASSES,
    ("a", "b", "c"),
    ("f", "m"),
    label_attr_groups(("a", "b", "c"), ("f", "m")),
    "tabular",
    (FEATURES,),
    attr_label="attr",
)
STUDENT_SPEC = {"name": "mlp", "hidden": [12]}
TEACHER_SPEC = {"name": "mlp", "hidden": [32]}


def _registries() -> list[Registry]:
    """Registries exposed by fairdistill.distill and its (imported) submodules, except LOSSES."""
    found: dict[int, Registry] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "fairdistill.distill" or name.startswith("fairdistill.distill.")):
            continue
        for value in vars(module).values():
            if isinstance(value, Registry) and value is not LOSSES:
                found[id(value)] = value
    return sorted(found.values(), key=lambda r: r.kind)


def _parts() -> list[tuple[str, dict]]:
    """(MethodConfig field, its value) for every registered part kind."""
    fields = set(MethodConfig.model_fields) - {"name", "loss", "train"}
    parts: list[tuple[str, dict]] = []
    covered = set()
    for registry in _registries():
        if registry.kind in fields:
            covered.add(registry.kind)
            parts += [(registry.kind, {"kind": name}) for name in registry.names()]
    if "adversary" in fields and "adversary" not in covered:
        parts.append(("adversary", {}))  # options-only part: its defaults
    return parts


ALL_COMBINATIONS = [(kind, None) for kind in LOSSES.names()] + [
    (kind, part) for kind in LOSSES.names() for part in _parts()
]


def _invalid_by_design(combo: tuple[str, tuple[str, dict] | None]) -> bool:
    """Mixing rebalances a label term against a teacher term, so it needs a loss that has both."""
    kind, part = combo
    loss_cls = LOSSES.get(kind).target
    return part is not None and part[0] == "mixing" and not (loss_cls.requires_teacher and loss_cls.supports_terms())


COMBINATIONS = [c for c in ALL_COMBINATIONS if not _invalid_by_design(c)]
REFUSED = [c for c in ALL_COMBINATIONS if _invalid_by_design(c)]


def _id(combo: tuple[str, tuple[str, dict] | None]) -> str:
    kind, part = combo
    if part is None:
        return kind
    field, value = part
    return f"{kind}+{field}:{value.get('kind', 'default')}"


def _split(n: int, seed: int, name: str) -> SplitDataset:
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(99).normal(size=(FEATURES, CLASSES))
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = (x @ w + 0.3 * rng.normal(size=(n, CLASSES))).argmax(axis=1)
    attr = np.where(rng.random(n) < 0.8, y % 2, 1 - y % 2)  # attribute correlated with the label
    y_t, attr_t = torch.from_numpy(y).long(), torch.from_numpy(attr).long()
    return SplitDataset({"x": torch.from_numpy(x)}, y_t, attr_t, label_attr_group_index(y_t, attr_t, 2), name=name)


@pytest.fixture(scope="module")
def world():
    """Train/val splits, a trained teacher's outputs on both, and the accelerator."""
    train, val = _split(120, 0, "train"), _split(60, 1, "val")
    accelerator = make_accelerator("cpu")
    torch.manual_seed(0)
    teacher = build_model(TEACHER_SPEC, INFO, where="teacher.model")
    erm = build_method(MethodConfig(name="teacher", loss={"kind": "erm"}), MethodContext(INFO, train), "teacher")
    fit(teacher, erm, train, TrainConfig(epochs=5, lr=1e-2, batch_size=32), accelerator=accelerator, seed=0)
    cache = TeacherOutputs(*compute_teacher_outputs(teacher, train, 256, "cpu"))
    cache_val = TeacherOutputs(*compute_teacher_outputs(teacher, val, 256, "cpu"))
    assert cache.embedding is not None and cache.embedding.shape == (120, 32)
    return train, val, cache, cache_val, accelerator


def _context(student, train, val, cache, cache_val) -> MethodContext:
    """A MethodContext like the experiment's, filling the optional fields this version of it has."""
    with torch.no_grad():
        student.eval()
        probe = student(collate([train[0]]).inputs)
        student.train()
    values = dict(
        info=INFO,
        train=train,
        val=val,
        teacher_train=cache,
        teacher_val=cache_val,
        num_epochs=EPOCHS,
        seed=0,
        student_embedding_dim=int(probe.embedding.shape[1]),
        teacher_embedding_dim=int(cache.embedding.shape[1]),
        student_taps=tuple(student.tap_names),
        student_model=STUDENT_SPEC["name"],
        student_tap_dims={name: int(t.flatten(1).shape[1]) for name, t in probe.taps.items()},
    )
    names = {f.name for f in dataclasses.fields(MethodContext)}
    return MethodContext(**{k: v for k, v in values.items() if k in names})


def test_every_loss_and_part_is_discovered() -> None:
    assert {"erm", "kd", "dkd", "rkd", "ctkd", "kdpp"} <= set(LOSSES.names())
    assert all(isinstance(r, Registry) for r in _registries())
    assert len(ALL_COMBINATIONS) == len(LOSSES.names()) * (1 + len(_parts()))
    assert REFUSED, "erm has no teacher term, so at least erm+mixing is refused"
    assert len(COMBINATIONS) > len(REFUSED)


@pytest.mark.parametrize("combo", REFUSED, ids=[_id(c) for c in REFUSED])
def test_invalid_combination_is_refused_with_reason(world, combo) -> None:
    train, val, cache, cache_val, _ = world
    kind, (field, value) = combo
    student = build_model(STUDENT_SPEC, INFO, where="student.model")
    config = MethodConfig(name="m", loss={"kind": kind}, **{field: value})
    with pytest.raises(ConfigError, match=rf"methods\.0\(m\)\.mixing: .*loss {kind!r} has no teacher term"):
        build_method(config, _context(student, train, val, cache, cache_val), where="methods.0(m)")


@pytest.mark.parametrize("combo", COMBINATIONS, ids=[_id(c) for c in COMBINATIONS])
def test_loss_composition_trains(world, combo) -> None:
    train, val, cache, cache_val, accelerator = world
    kind, part = combo
    torch.manual_seed(1)
    student = build_model(STUDENT_SPEC, INFO, where="student.model")
    config = MethodConfig(name="m", loss={"kind": kind}, **({part[0]: part[1]} if part else {}))
    method = build_method(config, _context(student, train, val, cache, cache_val), where="methods.0(m)")

    fixed = collate([train[i] for i in range(48)])
    teacher_fixed = cache.lookup(fixed.index, "cpu")
    state = TrainState(epoch=EPOCHS - 1, num_epochs=EPOCHS, step=EPOCHS * 4, steps_per_epoch=4)

    def fixed_loss() -> float:
        student.eval()
        with torch.no_grad():
            value = method.distill_loss(fixed, student(fixed.inputs), teacher_fixed, state)
        student.train()
        assert value.shape == (48,)
        return float(value.mean())

    before = fixed_loss()
    result = fit(
        student,
        method,
        train,
        TrainConfig(epochs=EPOCHS, lr=1e-2, batch_size=32),
        accelerator=accelerator,
        seed=0,
        teacher_cache=cache if method.requires_teacher else None,
        desc=_id(combo),
    )
    after = fixed_loss()
    assert len(result.history) == EPOCHS
    assert all(np.isfinite(r["train_loss"]) for r in result.history)
    assert np.isfinite(before) and np.isfinite(after)
    assert after < before, f"{_id(combo)}: loss on a fixed batch went from {before:.4f} to {after:.4f}"
