"""The teacher cache: a corrupted or stale entry is rebuilt with a warning; a changed teacher gets a new entry;
an unusable cache folder costs a warning, never the outputs; non-finite outputs are refused."""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fairdistill.data.core import DatasetInfo, SplitDataset, label_attr_group_index, label_attr_groups
from fairdistill.errors import FairdistillError
from fairdistill.models import build_model
from fairdistill.train import cache
from fairdistill.train.cache import default_cache_dir, load_or_compute, usable_cache_dir

INFO = DatasetInfo(
    "toy",
    2,
    ("no", "yes"),
    ("a", "b"),
    label_attr_groups(("no", "yes"), ("a", "b")),
    "tabular",
    (5,),
    attr_label="attr",
)
DESCRIPTION = {"name": "toy", "seed": 0}


def _split(n: int = 37) -> SplitDataset:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(n, 5)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 2, n)).long()
    attr = torch.from_numpy(rng.integers(0, 2, n)).long()
    return SplitDataset({"x": x}, y, attr, label_attr_group_index(y, attr, 2), name="train")


def _teacher(seed: int = 0):
    torch.manual_seed(seed)
    return build_model({"name": "mlp", "hidden": [8]}, INFO, where="teacher.model").eval()


def _direct_logits(teacher, split: SplitDataset) -> np.ndarray:
    """The teacher's logits computed here, independently of the cache code."""
    with torch.no_grad():
        return teacher({"x": split.encodings["x"]}).logits.numpy()


def _load(teacher, split, cache_dir: Path):
    return load_or_compute(
        teacher, split, DESCRIPTION, cache_dir, batch_size=8, device="cpu", num_classes=INFO.num_classes
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_first_call_writes_second_call_reads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    teacher, split = _teacher(), _split()
    caplog.set_level(logging.INFO, logger="fairdistill")
    first = _load(teacher, split, tmp_path)
    np.testing.assert_allclose(np.asarray(first.logits), _direct_logits(teacher, split), rtol=1e-5, atol=1e-6)
    assert "teacher cache written" in caplog.text
    caplog.clear()
    second = _load(teacher, split, tmp_path)
    assert "teacher cache hit" in caplog.text and second.path == first.path
    assert not [p for p in (tmp_path / "teacher").iterdir() if p.name.startswith(".")], "no temporary folder left"


def _truncate_logits(entry: Path) -> None:
    data = (entry / "logits.npy").read_bytes()
    (entry / "logits.npy").write_bytes(data[: len(data) // 2])


def _garbage_meta(entry: Path) -> None:
    (entry / "meta.json").write_text("{not json")


def _stale_row_count(entry: Path) -> None:
    logits = np.load(entry / "logits.npy")
    np.save(entry / "logits.npy", logits[:-3])


def _nan_logits(entry: Path) -> None:
    logits = np.load(entry / "logits.npy")
    logits[4, 1] = np.nan
    np.save(entry / "logits.npy", logits)


def _missing_embedding(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["embedding"], "the MLP teacher has an embedding, so the cache stores one"
    (entry / "embedding.npy").unlink()


def _list_meta(entry: Path) -> None:
    (entry / "meta.json").write_text("[1, 2]")


def _string_meta(entry: Path) -> None:
    (entry / "meta.json").write_text('"x"')


def _extra_class_column(entry: Path) -> None:
    """logits.npy with one more column than meta.json says (the row count is right)."""
    logits = np.load(entry / "logits.npy")
    np.save(entry / "logits.npy", np.concatenate([logits, logits[:, :1]], axis=1))


def _other_class_count(entry: Path) -> None:
    """A consistent entry, but of three classes where the data has two: stale once num_classes is passed."""
    _extra_class_column(entry)
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "classes": 3}))


@pytest.mark.parametrize(
    "damage",
    [
        _truncate_logits,
        _garbage_meta,
        _stale_row_count,
        _nan_logits,
        _missing_embedding,
        _list_meta,
        _string_meta,
        _extra_class_column,
        _other_class_count,
    ],
)
def test_corrupted_or_stale_entry_is_rebuilt_with_a_warning(
    damage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    teacher, split = _teacher(), _split()
    entry = _load(teacher, split, tmp_path).path
    damage(entry)
    caplog.set_level(logging.INFO, logger="fairdistill")
    rebuilt = _load(teacher, split, tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0].getMessage()
    assert "unreadable or stale" in warnings[0].getMessage() and "teacher cache written" in caplog.text
    np.testing.assert_allclose(np.asarray(rebuilt.logits), _direct_logits(teacher, split), rtol=1e-5, atol=1e-6)
    assert rebuilt.embedding is not None and rebuilt.embedding.shape == (len(split), 8)
    caplog.clear()
    _load(teacher, split, tmp_path)
    assert "teacher cache hit" in caplog.text, "the rebuilt entry is valid"


def test_another_teacher_never_reads_the_first_ones_outputs(tmp_path: Path) -> None:
    split = _split()
    first, second = _teacher(0), _teacher(1)
    a = _load(first, split, tmp_path)
    b = _load(second, split, tmp_path)
    assert a.path != b.path
    np.testing.assert_allclose(np.asarray(b.logits), _direct_logits(second, split), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(a.logits), np.asarray(b.logits))


def test_changed_data_with_the_same_options_is_a_new_entry(tmp_path: Path) -> None:
    """An edited data file (same options, same row count) must not read the old file's teacher outputs."""
    teacher, split = _teacher(), _split()
    first = _load(teacher, split, tmp_path)
    edited = _split()
    edited.encodings["x"][3, 2] += 1.0
    second = _load(teacher, edited, tmp_path)
    assert second.path != first.path
    np.testing.assert_allclose(np.asarray(second.logits), _direct_logits(teacher, edited), rtol=1e-5, atol=1e-6)


def test_a_complete_entry_of_another_writer_is_kept(tmp_path: Path) -> None:
    """A writer that finds a valid entry already in place uses it and drops its own (never replaces it)."""
    entry = tmp_path / "teacher" / "k"
    first = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache._write_entry(entry, first, None)
    second = cache._write_entry(entry, first + 1, None)
    np.testing.assert_array_equal(np.asarray(second.logits), first)
    assert second.path == entry and sorted(p.name for p in entry.parent.iterdir()) == ["k"]


def test_tilde_and_variables_in_the_cache_variable_are_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SUB", "fd")
    monkeypatch.setenv("FAIRDISTILL_CACHE", "~/caches/$SUB")
    assert default_cache_dir() == tmp_path / "caches" / "fd"
    monkeypatch.setenv("FAIRDISTILL_CACHE", "")
    assert default_cache_dir() == tmp_path / ".cache" / "fairdistill"


def _file_as_cache_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FAIRDISTILL_CACHE names a file."""
    (tmp_path / "cache").write_text("")
    monkeypatch.setenv("FAIRDISTILL_CACHE", str(tmp_path / "cache"))
    return default_cache_dir()


def _file_in_the_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``<cache>/teacher`` is a file."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "teacher").write_text("")
    return tmp_path / "cache"


def _read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A read-only ``<cache>/teacher``: chmod 0o500, or, where that does not stop writing (as root, which the test
    machines are), creating a file there raises PermissionError like a read-only folder does."""
    teacher_dir = tmp_path / "cache" / "teacher"
    teacher_dir.mkdir(parents=True)
    teacher_dir.chmod(0o500)
    try:
        (teacher_dir / "probe").write_text("")
    except PermissionError:
        return tmp_path / "cache"
    (teacher_dir / "probe").unlink()
    teacher_dir.chmod(0o700)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(teacher_dir))

    monkeypatch.setattr(cache.tempfile, "mkstemp", denied)
    return tmp_path / "cache"


@pytest.mark.parametrize("unusable", [_file_as_cache_variable, _file_in_the_way, _read_only])
def test_an_unusable_cache_folder_falls_back_to_a_temporary_one(
    unusable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = unusable(tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="fairdistill")
    fallback = usable_cache_dir(cache_dir)
    monkeypatch.undo()  # the fallback is used with working file functions
    (warning,) = _warnings(caplog)
    assert str(cache_dir / "teacher") in warning and "not be reused across runs" in warning
    assert fallback != cache_dir and fallback.is_dir() and fallback.parent == Path(tempfile.gettempdir())
    teacher, split = _teacher(), _split()
    assert _load(teacher, split, fallback).path.parent == fallback / "teacher"
    assert _load(teacher, split, fallback).path is not None and "teacher cache hit" in caplog.text


def test_a_usable_cache_folder_is_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert usable_cache_dir(tmp_path / "new") == tmp_path / "new" and (tmp_path / "new" / "teacher").is_dir()
    assert not _warnings(caplog) and os.listdir(tmp_path / "new" / "teacher") == [], "the probe file is removed"


def test_a_failed_write_keeps_the_outputs_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(cache.np, "save", disk_full)
    teacher, split = _teacher(), _split()
    outputs = _load(teacher, split, tmp_path)
    (warning,) = _warnings(caplog)
    assert "could not write the teacher cache" in warning and os.strerror(errno.ENOSPC) in warning
    assert outputs.path is None
    np.testing.assert_allclose(np.asarray(outputs.logits), _direct_logits(teacher, split), rtol=1e-5, atol=1e-6)
    assert os.listdir(tmp_path / "teacher") == [], "the temporary folder is removed"


def test_a_cache_folder_that_is_a_file_keeps_the_outputs_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "teacher").write_text("")
    outputs = _load(_teacher(), _split(), tmp_path)
    assert outputs.path is None and len(outputs.logits) == 37 and "a file is in the way" in _warnings(caplog)[0]


def test_non_finite_teacher_outputs_are_refused(tmp_path: Path) -> None:
    teacher, split = _teacher(), _split()
    with torch.no_grad():
        next(teacher.parameters()).fill_(float("nan"))
    with pytest.raises(FairdistillError) as raised:
        _load(teacher, split, tmp_path)
    message = str(raised.value)
    assert "37 of 37 rows" in message and "'train' split" in message
    assert "the teacher's outputs are not finite — is its checkpoint damaged?" in message
    assert not (tmp_path / "teacher").exists() or os.listdir(tmp_path / "teacher") == [], "nothing is cached"


def test_a_teacher_with_another_class_count_is_refused(tmp_path: Path) -> None:
    teacher, split = _teacher(), _split()
    with pytest.raises(FairdistillError, match="2 class scores .* but the data has 3 classes"):
        load_or_compute(teacher, split, DESCRIPTION, tmp_path, batch_size=8, device="cpu", num_classes=3)
