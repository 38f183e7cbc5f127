"""``teacher.online``: the teacher's outputs in each training batch are of the very view the student sees.

With random train views (``train_augment: crop-flip``) the online teacher (``auto`` / ``always``) runs on the
student's augmented batch tensors; the cache (``never``, and every in-memory dataset under ``auto``) holds the
teacher's outputs of the centre views. Expected views are recomputed here from the seeding rule documented in
data/images.py, not taken from the code under test.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torch import nn

from fairdistill import experiment
from fairdistill.config import MethodConfig, TrainConfig, parse_config
from fairdistill.data.core import DatasetInfo, LongTailOptions, SplitDataset, label_attr_groups
from fairdistill.data.images import ImageOptions, ImageRecord, ImageSplit, image_splits, view_seed
from fairdistill.data.long_tail import make_long_tailed
from fairdistill.distill import MethodContext, TeacherOutputs, build_method
from fairdistill.errors import FairdistillError
from fairdistill.models.core import TappedModel
from fairdistill.plan import make_plan, teacher_online
from fairdistill.train.cache import compute_teacher_outputs
from fairdistill.train.engine import fit, make_accelerator

INFO = DatasetInfo("toy", 2, ("0", "1"), ("0", "1"), label_attr_groups(("0", "1"), ("0", "1")), "image")
SIDE, BASE = 8, 12  # image_size and resize (= base side): 5 × 5 possible crop offsets


def _images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        path = folder / f"img{k}.png"
        Image.fromarray(rng.integers(0, 256, (14, 16, 3)).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def _image_splits(folder: Path, n: int = 24, **options: Any):
    records = [ImageRecord(p.name, k % 2, (k // 2) % 2) for k, p in enumerate(_images(folder, n))]
    opts = ImageOptions(image_size=SIDE, resize=BASE, **options)
    return image_splits({"train": records, "val": records[:6], "test": records[6:12]}, folder, opts, INFO)


def _expected_view(split: ImageSplit, i: int, seed: int, epoch: int) -> torch.Tensor:
    """The documented rule: a generator seeded view_seed(seed, epoch, i) draws top, left, then the flip."""
    base = split.base(i)
    generator = torch.Generator().manual_seed(view_seed(seed, epoch, i))
    room = base.shape[-1] - SIDE
    top = int(torch.randint(room + 1, (), generator=generator))
    left = int(torch.randint(room + 1, (), generator=generator))
    crop = base[:, top : top + SIDE, left : left + SIDE]
    if bool(torch.randint(2, (), generator=generator)):
        crop = crop.flip(-1)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)
    return (crop.float() / 255 - mean) / std


class Recording(nn.Module):
    """A linear classifier on the flattened image that keeps every input it is given."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 2))
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.net(x)


def _fit_recording(train: SplitDataset, *, online: bool, epochs: int = 2, seed: int = 3):
    """Fit a kd student; per training batch: (index, student's input, teacher logits the loss received)."""
    teacher_module = Recording(100)
    teacher = TappedModel(teacher_module)
    cache = TeacherOutputs(*compute_teacher_outputs(teacher, train, 7, "cpu"))
    teacher_module.inputs.clear()
    student_module = Recording(7)
    student = TappedModel(student_module)
    context = MethodContext(INFO, train, teacher_train=cache, num_epochs=epochs)
    method = build_method(MethodConfig.model_validate({"name": "kd", "loss": {"kind": "kd"}}), context, "m")
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    inner = method.batch_loss

    def batch_loss(batch, student_out, teacher_out, state):  # type: ignore[no-untyped-def]
        seen.append((batch.index.clone(), batch.inputs["x"].clone(), teacher_out.logits.detach().clone()))
        return inner(batch, student_out, teacher_out, state)

    method.batch_loss = batch_loss  # type: ignore[method-assign]
    fit(
        student,
        method,
        train,
        TrainConfig(epochs=epochs, batch_size=5, lr=0.01),
        accelerator=make_accelerator("cpu"),
        seed=seed,
        teacher_cache=None if online else cache,
        teacher=teacher if online else None,
    )
    return seen, teacher_module, student_module, cache


def test_online_teacher_sees_exactly_the_students_augmented_views(tmp_path: Path) -> None:
    splits = _image_splits(tmp_path, train_augment="crop-flip")
    train = splits.train
    assert isinstance(train, ImageSplit) and train.random_views
    seen, teacher_module, student_module, _ = _fit_recording(train, online=True)
    batches_per_epoch = -(-len(train) // 5)
    assert len(seen) == 2 * batches_per_epoch
    # the teacher ran once per training batch, on the student's own batch tensors
    assert len(teacher_module.inputs) == len(seen)
    for k, (index, x, logits) in enumerate(seen):
        epoch = k // batches_per_epoch
        expected = torch.stack([_expected_view(train, int(i), 3, epoch) for i in index])
        assert torch.allclose(x, expected, atol=1e-6)  # the documented augmented views
        assert torch.equal(teacher_module.inputs[k], x)
        assert torch.equal(student_module.inputs[k], x)
        with torch.no_grad():
            assert torch.allclose(logits, teacher_module.net(expected), atol=1e-5)
    centre = torch.stack([train[i]["inputs"]["x"] for i in range(len(train))])
    assert any(not torch.allclose(x, centre[index]) for index, x, _ in seen)  # the views really are random


def test_cached_teacher_gives_centre_view_outputs(tmp_path: Path) -> None:
    train = _image_splits(tmp_path, train_augment="crop-flip").train
    seen, teacher_module, _, cache = _fit_recording(train, online=False)
    assert teacher_module.inputs == []  # no teacher forward while training
    centre = torch.stack([train[i]["inputs"]["x"] for i in range(len(train))])
    with torch.no_grad():
        centre_logits = teacher_module.net(centre)
    assert np.allclose(cache.logits, centre_logits.numpy(), atol=1e-5)
    differs = False
    for index, x, logits in seen:
        assert torch.allclose(logits, centre_logits[index], atol=1e-5)
        with torch.no_grad():
            differs |= not torch.allclose(logits, teacher_module.net(x), atol=1e-4)
    assert differs  # ... which are not the teacher's outputs of the augmented views the student saw


def test_in_memory_splits_have_no_random_views_and_image_splits_only_with_augmentation(tmp_path: Path) -> None:
    plain = SplitDataset({"x": torch.zeros(4, 2)}, torch.zeros(4), torch.zeros(4), torch.zeros(4))
    assert plain.random_views is False
    assert _image_splits(tmp_path / "a").train.random_views is False
    assert _image_splits(tmp_path / "b", train_augment="crop-flip").train.random_views is True
    assert teacher_online("auto", False)[0] is False
    assert teacher_online("auto", True, "crop-flip") == (
        True,
        "teacher online: random train views (crop-flip), the teacher runs on each augmented batch",
    )
    assert teacher_online("always", False)[0] is True
    online, reason = teacher_online("never", True, "crop-flip")
    assert not online and "centre view" in reason


# --------------------------------------------------------------------------------------------------- whole runs


def _image_table(root: Path, n: int = 60) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for k in range(n):
        y, attr = k % 2, (k // 2) % 2
        pixels = rng.integers(0, 80, (14, 15, 3)) + (100 if attr else 40)
        pixels[..., 0 if y else 2] += 100
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{k}.png")
        rows.append({"file": f"images/{k}.png", "label": y, "light": attr, "part": ["train", "val", "test"][k % 3]})
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    return root / "images.csv"


def _run_config(tmp_path: Path, data: dict[str, Any], teacher: dict[str, Any], model: str = "cnn") -> dict[str, Any]:
    spec = {"name": "cnn", "width": 4, "blocks": 1} if model == "cnn" else {"name": "mlp", "hidden": [8]}
    return {
        "name": "online",
        "data": data,
        "teacher": {"model": spec, "train": {"epochs": 1, "batch_size": 10}, **teacher},
        "student": {"model": spec, "train": {"epochs": 2, "batch_size": 10}},
        "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
        "output": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
        "device": "cpu",
    }


def _spy_fits(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record, per student fit, whether the teacher was online or cached and how often the teacher ran."""
    calls: list[dict[str, Any]] = []
    teachers: list[torch.nn.Module] = []
    real_fit = experiment.fit

    def spy(model, method, train, config, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("desc") == "teacher":
            teachers.append(model)
            return real_fit(model, method, train, config, **kwargs)
        forwards = [0]
        hook = teachers[-1].register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
        try:
            result = real_fit(model, method, train, config, **kwargs)
        finally:
            hook.remove()
        batches = -(-len(train) // config.batch_size) * config.epochs
        calls.append(
            {
                "online": kwargs.get("teacher") is not None,
                "cached": kwargs.get("teacher_cache") is not None,
                "forwards": forwards[0],
                "batches": batches,
            }
        )
        return result

    monkeypatch.setattr(experiment, "fit", spy)
    return calls


@pytest.mark.parametrize(
    ("online", "augment", "expect_online"),
    [("auto", "crop-flip", True), ("always", "none", True), ("never", "crop-flip", False), ("auto", "none", False)],
)
def test_image_run_resolves_teacher_online(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    online: str,
    augment: str,
    expect_online: bool,
) -> None:
    table = _image_table(tmp_path / "data")
    data = {
        "name": "image-csv",
        "path": str(table),
        "image": "file",
        "label": "label",
        "attr": "light",
        "split_column": "part",
        "image_size": SIDE,
        "resize": BASE,
        "train_augment": augment,
    }
    raw = _run_config(tmp_path, data, {"online": online})
    config = parse_config(raw)
    described = make_plan(config).describe()
    assert teacher_online(online, augment != "none", augment)[1] in described.splitlines()
    calls = _spy_fits(monkeypatch)
    with caplog.at_level(logging.INFO, logger="fairdistill"):
        experiment.run(config)
    (call,) = calls
    assert call["online"] is expect_online and call["cached"] is not expect_online
    assert call["forwards"] == (call["batches"] if expect_online else 0)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "centre view" in r.getMessage()]
    assert bool(warned) is (online == "never" and augment != "none")


def test_in_memory_default_stays_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _run_config(tmp_path, {"name": "colored-mnist", "max_examples": 200}, {})
    config = parse_config(raw)
    assert config.teacher.online == "auto"
    assert "teacher cached: no random train views" in make_plan(config).describe().splitlines()
    calls = _spy_fits(monkeypatch)
    experiment.run(config)
    assert calls == [{"online": False, "cached": True, "forwards": 0, "batches": calls[0]["batches"]}]


def test_adult_online_always_matches_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"name": "adult", "max_examples": 600}
    probs = {}
    for mode in ("auto", "always"):
        raw = _run_config(tmp_path / mode, data, {"online": mode}, model="mlp")
        calls = _spy_fits(monkeypatch)
        result = experiment.run(parse_config(raw))
        assert calls[0]["online"] is (mode == "always")
        (path,) = result.run_dir.glob("predictions/**/kd-test.parquet")
        frame = pd.read_parquet(path)
        probs[mode] = frame[[c for c in frame.columns if c.startswith("prob")]].to_numpy()
        teacher = result.metrics["models"]["teacher"]["splits"]["test"]
        probs[mode + "-teacher"] = np.array([teacher["accuracy"]])
    assert probs["auto"].size > 0
    assert np.allclose(probs["auto"], probs["always"], atol=1e-4)
    assert probs["auto-teacher"] == probs["always-teacher"]


def test_student_online_is_refused() -> None:
    raw = {"data": {"name": "adult"}, "student": {"online": "always"}, "methods": [{"name": "kd"}]}
    with pytest.raises((ValidationError, FairdistillError), match="online"):
        parse_config(raw)


# --------------------------------------------------------------------------------------------------- long tail


@pytest.mark.parametrize("cache", [False, True])
def test_long_tail_subsets_a_lazy_image_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: bool) -> None:
    monkeypatch.setenv("FAIRDISTILL_CACHE", str(tmp_path / "cache"))
    splits = _image_splits(tmp_path / "imgs", n=40, cache=cache)
    originals = {name: [split[i]["inputs"]["x"] for i in range(len(split))] for name, split in splits.items()}
    paths = {name: list(split.paths) for name, split in splits.items()}  # type: ignore[attr-defined]
    tailed = make_long_tailed(splits, LongTailOptions(imbalance=4.0), seed=0)
    # train: 40 examples, 20 per class → class 0 keeps 20, class 1 ⌊20 / 4⌋ = 5
    assert tailed.info.train_class_counts == (20, 5)
    loaded = dict(splits.items())
    for name, split in tailed.items():
        assert isinstance(split, ImageSplit)
        kept = [paths[name].index(p) for p in split.paths]
        assert kept == sorted(kept) and len(kept) == len(split)
        assert split.y.tolist() == [int(loaded[name].y[k]) for k in kept]
        for j, k in enumerate(kept):
            assert torch.equal(split[j]["inputs"]["x"], originals[name][k])
            assert split[j]["index"] == j
