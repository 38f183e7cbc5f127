"""Hostile and careless inputs, one class at a time (names as paths, oversized configs, non-finite and extreme
numbers, divergence, resume of a changed run, full disks, file permissions, strict YAML): each gives exit 2
and one message without a traceback, writes nothing outside the run directory, and leaves no half-written run.

The teacher cache is covered in tests/unit/test_teacher_cache*.py, damaged run directories in
tests/unit/test_rundir_validation.py, table and model/data mismatches in tests/unit/test_data_hostile.py.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cli_runner import TINY_RUN, expect_user_error, tiny_config
from cli_runner import run_cli as cli
from fairdistill.atomic_io import write_text
from fairdistill.config import MAX_CONFIG_VALUES, load_config
from fairdistill.errors import SHOWN_VALUE_CHARS, ConfigError

TINY = {**TINY_RUN, "name": "hostile"}


def config_file(path: Path, **changes) -> Path:
    return tiny_config(path, TINY, **changes)


def run_dirs(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []


# --- 1. names become file names ---------------------------------------------------------------------------

UNSAFE_NAMES = [
    "../../../../escaped",
    "/abs/escaped",
    "a/b",
    "..",
    ".hidden",
    "x\x00y",
    "tab\tname",
    "é" * 3,
    "a" * 65,
    "with space",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES, ids=lambda n: repr(n)[:20])
def test_unsafe_method_names_are_refused_before_anything_is_written(
    name: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    config = config_file(tmp_path / "c.yaml", methods=[{"name": name, "loss": {"kind": "kd"}}])
    for extra in (["--dry-run"], ["--output", str(tmp_path / "runs")]):
        expect_user_error(monkeypatch, capsys, ["run", str(config), *extra], "method name", "cannot be used")
    assert not (tmp_path / "runs").exists()
    assert not Path("/abs").exists() and not (tmp_path.parent.parent / "escaped.pt").exists()


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ([{"name": "kd-train", "loss": {"kind": "kd"}}], "ends with '-train'"),
        ([{"name": "teacher-TRAIN", "loss": {"kind": "kd"}}], "ends with '-train'"),
        ([{"name": "Teacher", "loss": {"kind": "kd"}}], "'teacher' is reserved"),
        (
            [{"name": "kd", "loss": {"kind": "kd"}}, {"name": "KD", "loss": {"kind": "kd"}}],
            "differs from 'kd' only in case",
        ),
    ],
)
def test_names_that_collide_with_the_runs_own_files(methods, message: str, tmp_path: Path, monkeypatch, capsys) -> None:
    config = config_file(tmp_path / "c.yaml", methods=methods)
    expect_user_error(monkeypatch, capsys, ["run", str(config), "--dry-run"], message)


@pytest.mark.parametrize("name", ["../x", "/x", "..", "a" * 65, "run name"])
def test_unsafe_run_names_are_refused(name: str, tmp_path: Path, monkeypatch, capsys) -> None:
    config = config_file(tmp_path / "c.yaml", name=name)
    expect_user_error(monkeypatch, capsys, ["run", str(config), "--output", str(tmp_path / "runs")], "run name")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


def test_a_long_name_is_echoed_shortened(tmp_path: Path, monkeypatch, capsys) -> None:
    config = config_file(tmp_path / "c.yaml", methods=[{"name": "n" * 5000, "loss": {"kind": "kd"}}])
    err = expect_user_error(monkeypatch, capsys, ["run", str(config), "--dry-run"], "method name")
    assert "n" * SHOWN_VALUE_CHARS not in err and len(err) < 1000


# --- 2. configs that expand to absurd sizes, duplicate keys -------------------------------------------------


def alias_bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels):
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]")
    lines += [f"name: *l{levels - 1}", "data: {name: adult}", "methods: [{name: erm}]"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [5, 6, 10])
def test_yaml_alias_bomb_is_refused_with_a_short_message(levels: int, tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(levels))
    assert len(path.read_bytes()) < 1000
    err = expect_user_error(
        monkeypatch, capsys, ["run", str(path), "--dry-run"], f"expands to more than {MAX_CONFIG_VALUES:,} values"
    )
    assert len(err) < 500


def test_a_shared_value_below_the_limit_is_echoed_abbreviated(tmp_path: Path, monkeypatch, capsys) -> None:
    """9⁴ = 6,561 values pass the size check; the wrong-type error then shows the value cut to a few lines."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(4))
    err = expect_user_error(
        monkeypatch, capsys, ["run", str(path), "--dry-run"], "name: Input should be a valid string (got [[[[...]"
    )
    assert len(err) < 500


def test_alias_bomb_in_a_set_value(tmp_path: Path, monkeypatch, capsys) -> None:
    bomb = "{" + alias_bomb(8).replace("\n", ", ").rstrip(", ") + "}"
    err = expect_user_error(
        monkeypatch, capsys, ["run", "--dry-run", "--set", f"data={bomb}"], "--set data expands to more than"
    )
    assert len(err) < 500


def test_huge_value_is_echoed_shortened(monkeypatch, capsys) -> None:
    for value in ("9" * 100_000, "x" * 100_000):
        err = expect_user_error(monkeypatch, capsys, ["run", "--dry-run", "--set", "seed=" + value], "seed")
        assert len(err) < 600


def test_deeply_nested_config_is_refused() -> None:
    from fairdistill.config import parse_config

    nested: dict = {}
    node = nested
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(ConfigError, match="nested more than"):
        parse_config({"name": "deep", "data": {"name": "adult", "extra": nested}, "methods": [{"name": "erm"}]})


def test_duplicate_yaml_key_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        "name: dup\ndata: {name: adult}\nmethods: [{name: erm}]\n"
        "teacher: {train: {epochs: 2}}\nseed: 1\nteacher: {train: {epochs: 3}}\n"
    )
    expect_user_error(
        monkeypatch,
        capsys,
        ["run", str(path), "--dry-run"],
        f"invalid YAML in {path} at line 6",
        "the key 'teacher' is given twice (first at line 4)",
    )


def test_duplicate_key_inside_a_method_entry(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: dup\ndata: {name: adult}\nmethods:\n  - name: kd\n    loss: {kind: kd, tau: 2, tau: 4}\n")
    expect_user_error(monkeypatch, capsys, ["run", str(path), "--dry-run"], "the key 'tau' is given twice")


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "name: anchors\ndata: {name: adult}\n"
        "student: {train: &t {epochs: 2, lr: 0.01}}\n"
        "teacher: {train: {<<: *t, epochs: 3}}\n"
        "methods: [{name: erm}]\n"
    )
    config = load_config(path)
    assert (config.teacher.train.epochs, config.teacher.train.lr) == (3, 0.01)
    assert (config.student.train.epochs, config.student.train.lr) == (2, 0.01)


# --- 3. non-finite, extreme and mistyped numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("student.train.lr=.inf", "student.train.lr"),
        ("student.train.lr=1e300", "student.train.lr: Input should be less than or equal to 10"),
        ("teacher.train.lr=.nan", "teacher.train.lr"),
        ("student.train.weight_decay=.inf", "student.train.weight_decay"),
        ("student.train.warmup_epochs=.inf", "student.train.warmup_epochs"),
        ("student.train.max_grad_norm=.nan", "student.train.max_grad_norm"),
        ("methods.kd.loss.tau=.inf", "methods.0(kd).loss.tau"),
        ("methods.kd.loss.tau=1e-9", "methods.0(kd).loss.tau: Input should be greater than or equal to 0.01"),
        ("methods.kd.loss.alpha=.nan", "methods.0(kd).loss.alpha"),
        ("seed=-1", "seed: Input should be greater than or equal to 0"),
        ("seed=4294967296", "seed: Input should be less than 4294967296"),
        ("seeds=[0, -3]", "seeds.1"),
        ("seeds=[0, true]", "seeds.1"),
        ("teacher.train.epochs=true", "teacher.train.epochs: expected an integer, got the boolean True"),
        ("student.train.lr=false", "student.train.lr: expected a number, got the boolean False"),
        ("student.train.batch_size=2.5", "student.train.batch_size"),
        ("student.train.lr='0.01'", "student.train.lr: expected a number, got the text '0.01'"),
    ],
)
def test_bad_numbers_in_the_run_config(override: str, field: str, tmp_path: Path, monkeypatch, capsys) -> None:
    config = config_file(tmp_path / "c.yaml")
    expect_user_error(monkeypatch, capsys, ["run", str(config), "--dry-run", "--set", override], field)


METHOD_OPTIONS = [
    (
        {"name": "dedier", "loss": {"kind": "kd"}, "weighting": {"kind": "early-readout", "beta": 1e6}},
        "weighting.beta: Input should be less than or equal to 50",
    ),
    (
        {
            "name": "dedier",
            "loss": {"kind": "kd"},
            "weighting": {"kind": "early-readout", "beta": 40, "alpha": 3, "form": "product"},
        },
        "beta × alpha = 120",
    ),
    ({"name": "adv", "loss": {"kind": "kd"}, "adversary": {"weight": float("inf")}}, "adversary.weight"),
    (
        {
            "name": "jtt",
            "loss": {"kind": "erm"},
            "weighting": {"kind": "jtt", "upweight": 1e308},
            "train": {"epochs": 2},
        },
        "weighting.upweight: Input should be less than or equal to 10000",
    ),
    ({"name": "dro", "loss": {"kind": "kd"}, "weighting": {"kind": "groupdro", "eta": float("nan")}}, "weighting.eta"),
    (
        {"name": "pet", "loss": {"kind": "kd"}, "mixing": {"kind": "per-group-alpha", "gamma": True}},
        "mixing.gamma: expected a number, got the boolean True",
    ),
    ({"name": "dkd", "loss": {"kind": "dkd", "tau": float("inf")}}, "loss.tau"),
]


@pytest.mark.parametrize(("method", "message"), METHOD_OPTIONS, ids=[m["name"] for m, _ in METHOD_OPTIONS])
def test_bad_numbers_in_method_options(method: dict, message: str, tmp_path: Path, monkeypatch, capsys) -> None:
    config = config_file(tmp_path / "c.yaml", methods=[method])
    expect_user_error(monkeypatch, capsys, ["run", str(config), "--dry-run"], message)


def test_groupdro_with_a_huge_step_size_stays_finite() -> None:
    """η = 10⁶ used to overflow exp(η·L) to inf and q to NaN; the log-space update gives the limit instead:
    all of q on the group with the largest loss (hand-computed: losses 1, 3 → q = (0, 1))."""
    from fairdistill.data.core import Batch, DatasetInfo
    from fairdistill.distill.core import MethodContext, TrainState
    from fairdistill.distill.weighting import WEIGHTINGS

    info = DatasetInfo(
        name="t",
        num_classes=2,
        class_names=("a", "b"),
        attr_names=("p", "q"),
        group_names=("g0", "g1"),
        modality="tabular",
        attr_label="attr",
    )
    entry = WEIGHTINGS.get("groupdro")
    weighting = entry.target(entry.options(eta=1e6), MethodContext(info, None), "w")
    batch = Batch(
        inputs=torch.zeros(4, 1),
        y=torch.tensor([0, 0, 1, 1]),
        group=torch.tensor([0, 0, 1, 1]),
        attr=torch.tensor([0, 0, 1, 1]),
        index=torch.arange(4),
    )
    weights = weighting.weights(batch, None, torch.tensor([1.0, 1.0, 3.0, 3.0]), TrainState())
    assert torch.isfinite(weights).all() and torch.isfinite(weighting.q).all()
    assert weighting.q.tolist() == [0.0, 1.0]
    assert weights.tolist() == [0.0, 0.0, 2.0, 2.0]  # w_i = B·q_g/n_g = 4·1/2 on group 1


def test_teacher_checkpoint_with_nan_weights_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    from fairdistill.data import load_dataset
    from fairdistill.models import build_model
    from fairdistill.train.checkpoint import save_model_checkpoint

    info = load_dataset("colored-mnist", {"max_examples": 300}).info
    spec = TINY["teacher"]["model"]
    model = build_model(spec, info, where="teacher.model")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "nan-teacher.pt"
    save_model_checkpoint(path, model, spec, info.num_classes)
    config = config_file(tmp_path / "c.yaml", teacher={**TINY["teacher"], "checkpoint": str(path)})
    for extra in (["--dry-run"], ["--output", str(tmp_path / "runs")]):
        expect_user_error(
            monkeypatch,
            capsys,
            ["run", str(config), *extra],
            f"teacher.checkpoint {path}: weights hold NaN or infinite values",
        )
    assert run_dirs(tmp_path / "runs") == []


def test_diverging_loss_is_a_user_error_that_keeps_the_finished_models(tmp_path: Path, monkeypatch, capsys) -> None:
    """A finite but absurd adversary weight makes the first loss infinite: exit 2 naming the method, the epoch
    and the option, with the teacher and the student finished before it kept for reuse."""
    methods = [
        {"name": "kd", "loss": {"kind": "kd"}},
        {"name": "adv", "loss": {"kind": "kd"}, "adversary": {"weight": 1e300}},
    ]
    config = config_file(tmp_path / "c.yaml", methods=methods)
    err = expect_user_error(
        monkeypatch,
        capsys,
        ["run", str(config), "--output", str(tmp_path / "runs")],
        "adv: the training loss became",
        "at epoch 1 of 1",
        "adversary.weight=1e+300",
        "The models finished before it (kd, teacher) are kept",
    )
    (run_dir,) = run_dirs(tmp_path / "runs")
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == ["kd.pt", "teacher.pt"], kept
    assert f"teacher.checkpoint: {run_dir / 'checkpoints' / 'teacher.pt'}" in err
    # the kept teacher is a valid teacher.checkpoint for the next run
    fixed = config_file(
        tmp_path / "fixed.yaml",
        methods=methods[:1],
        teacher={**TINY["teacher"], "checkpoint": str(run_dir / "checkpoints" / "teacher.pt")},
    )
    assert cli(monkeypatch, "run", str(fixed), "--dry-run") == 0


# --- 4. resume refuses what it did not start -----------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_csv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A complete tiny run on a CSV table; tests copy it and remove .complete to get an unfinished run."""
    root = tmp_path_factory.mktemp("resume-guard")
    rng = np.random.default_rng(0)
    n = 240
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "sex": rng.choice(["F", "M"], n)})
    frame["y"] = (frame.x1 + 0.3 * rng.normal(size=n) > 0).astype(int)
    table = root / "people.csv"
    frame.to_csv(table, index=False)
    config = root / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "guard",
                "seed": 0,
                "data": {"name": "csv", "path": str(table), "label": "y", "attr": "sex"},
                "teacher": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 64}},
                "student": {"model": {"name": "mlp", "hidden": [4]}, "train": {"epochs": 1, "batch_size": 64}},
                "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
            }
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        assert cli(mp, "run", str(config), "--output", str(root / "runs")) == 0
    (run_dir,) = run_dirs(root / "runs")
    return run_dir, table


def unfinished_copy(finished: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "stopped"
    shutil.copytree(finished, copy)
    (copy / ".complete").unlink()
    return copy


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("student.model.hidden", [16]), "student.model.hidden: [4] → [16]"),
        (("student.train.lr", 0.5), "student.train.lr: 0.001 → 0.5"),
        (("methods.0.loss.tau", 4.0), "methods.kd.loss.tau: (not set) → 4.0"),
        (("methods.0.loss", {"kind": "dkd"}), "methods.kd.loss.kind: 'kd' → 'dkd'"),
    ],
)
def test_resume_refuses_a_changed_config(
    finished_csv_run, edit, message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    run_dir = unfinished_copy(finished_csv_run[0], tmp_path)
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    path, value = edit
    node = raw
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    node[keys[-1]] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw))
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    expect_user_error(
        monkeypatch,
        capsys,
        ["run", "--resume", str(run_dir)],
        "differs from the config the run was started with",
        message,
    )
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before, "a refused resume writes nothing"


def test_resume_refuses_relabelled_data(finished_csv_run, tmp_path: Path, monkeypatch, capsys) -> None:
    run_dir = unfinished_copy(finished_csv_run[0], tmp_path)
    table = tmp_path / "people.csv"
    frame = pd.read_csv(finished_csv_run[1])
    frame["y"] = 1 - frame["y"]
    frame.to_csv(table, index=False)
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    record = json.loads((run_dir / "run.json").read_text())
    # the same config pointing at the relabelled copy: only the data differs
    raw["data"]["path"] = record["config"]["data"]["path"] = str(table)
    from fairdistill.run_record import config_digest

    record["config_sha256"] = config_digest(record["config"])
    (run_dir / "config.yaml").write_text(yaml.safe_dump(raw))
    (run_dir / "run.json").write_text(json.dumps(record))
    expect_user_error(
        monkeypatch,
        capsys,
        ["run", "--resume", str(run_dir)],
        "the data of splits test, train, val changed since the run started",
    )
    assert not (run_dir / ".complete").exists()


def test_resume_of_an_unchanged_run_still_works(finished_csv_run, tmp_path: Path, monkeypatch) -> None:
    run_dir = unfinished_copy(finished_csv_run[0], tmp_path)
    assert cli(monkeypatch, "run", "--resume", str(run_dir)) == 0
    assert (run_dir / ".complete").is_file()
    fresh = json.loads((finished_csv_run[0] / "metrics.json").read_text())["models"]["kd"]["splits"]
    resumed = json.loads((run_dir / "metrics.json").read_text())["models"]["kd"]["splits"]
    assert fresh == resumed


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "my-project"
    folder.mkdir()
    config_file(folder / "config.yaml")
    expect_user_error(
        monkeypatch, capsys, ["run", "--resume", str(folder)], f"{folder} has no run.json, so it is not a run directory"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"], "nothing is written into the folder"


def test_resume_refuses_a_damaged_run_record(finished_csv_run, tmp_path: Path, monkeypatch, capsys) -> None:
    run_dir = unfinished_copy(finished_csv_run[0], tmp_path)
    (run_dir / "run.json").write_text("[1, 2")
    expect_user_error(monkeypatch, capsys, ["run", "--resume", str(run_dir)], "run.json is damaged")


# --- 8. full disks, permissions ------------------------------------------------------------------------------


def _mount_tiny_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@pytest.fixture(params=["checkpoint", "report"])
def full_disk(request, tmp_path: Path, monkeypatch):
    """An output folder whose device fills up during the run: a real tmpfs of a few hundred KiB where this
    machine lets the test mount one (as root), else writes failing with ENOSPC at the same point (the first
    checkpoint, or the report's figures) — the same error the kernel gives."""
    folder = tmp_path / "disk"
    size = "96k" if request.param == "checkpoint" else "200k"
    if _mount_tiny_tmpfs(folder, size):
        yield folder
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=20)
        return

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if request.param == "checkpoint":
        monkeypatch.setattr("fairdistill.train.checkpoint.torch.save", no_space)
    else:
        monkeypatch.setattr("matplotlib.figure.Figure.savefig", no_space)
    yield folder


def test_full_disk_is_one_message_and_leaves_nothing_half_written(
    full_disk: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("FAIRDISTILL_CACHE", str(tmp_path / "cache"))
    config = config_file(tmp_path / "c.yaml")
    err = expect_user_error(monkeypatch, capsys, ["run", str(config), "--output", str(full_disk / "runs")])
    assert "No space left on device" in err or "no space left on the device" in err
    assert run_dirs(full_disk / "runs") == [], "the half-written run directory is removed"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_files_honour_the_umask(umask: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "a.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_run_files_are_readable_by_the_group_under_the_usual_umask(finished_csv_run) -> None:
    run_dir = finished_csv_run[0]
    for name in ("metrics.json", "config.yaml", "run.json", "report.md", "checkpoints/kd.pt"):
        mode = stat.S_IMODE((run_dir / name).stat().st_mode)
        assert mode & 0o044 == 0o044 & ~_umask(), (name, oct(mode))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_unwritable_teacher_cache_falls_back_with_a_warning(tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("FAIRDISTILL_CACHE", str(blocker))
    config = config_file(tmp_path / "c.yaml")
    assert cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 0
    err = capsys.readouterr().err
    assert f"the teacher cache folder {blocker / 'teacher'} is not usable" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder\n"


def test_tilde_in_the_cache_variable_is_expanded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FAIRDISTILL_CACHE", "~/fd-cache")
    config = config_file(tmp_path / "c.yaml")
    monkeypatch.chdir(tmp_path)
    assert cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 0
    assert (tmp_path / "fd-cache" / "teacher").is_dir() and not (tmp_path / "~").exists()


def test_per_seed_teacher_checkpoint_names_the_missing_seed(tmp_path: Path, monkeypatch, capsys) -> None:
    """``{seed}`` in teacher.checkpoint stands for each seed; every seed's file must exist before training."""
    from fairdistill.data import load_dataset
    from fairdistill.models import build_model
    from fairdistill.train.checkpoint import save_model_checkpoint

    info = load_dataset("colored-mnist", {"max_examples": 300}).info
    spec = TINY["teacher"]["model"]
    save_model_checkpoint(
        tmp_path / "seed0" / "teacher.pt", build_model(spec, info, where="teacher.model"), spec, info.num_classes
    )
    template = str(tmp_path / "seed{seed}" / "teacher.pt")
    config = config_file(tmp_path / "c.yaml", seeds=[0, 1], teacher={**TINY["teacher"], "checkpoint": template})
    expect_user_error(
        monkeypatch,
        capsys,
        ["run", str(config), "--dry-run"],
        f"teacher.checkpoint: file not found: {tmp_path / 'seed1' / 'teacher.pt'}",
    )
    one_seed = config_file(tmp_path / "one.yaml", seeds=[0], teacher={**TINY["teacher"], "checkpoint": template})
    assert cli(monkeypatch, "run", str(one_seed), "--dry-run") == 0
