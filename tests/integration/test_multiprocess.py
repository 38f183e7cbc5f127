"""Two training processes (torchrun, gloo on the CPU) run one job: one run directory, every example of val/test
predicted once and in split order, identical weights and method state on both processes after every epoch, the
metrics of a one-process run at the same effective batch size, and a resume under two processes that ends where
the uninterrupted two-process run ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from cli_runner import run_cli as cli
from fairdistill.config import load_config
from fairdistill.evaluate.predict import predict
from fairdistill.plan import build_role_model, load_plan_data, make_plan
from fairdistill.rundir import is_complete
from fairdistill.train.checkpoint import load_model_checkpoint

HARNESS = Path(__file__).with_name("multiprocess_run.py")
#: per-process batch 64 on 2 processes; the one-process reference runs at batch 128
BATCH = 64
CONFIG: dict[str, Any] = {
    "name": "two-processes",
    "seed": 0,
    "data": {"name": "adult", "protected": "sex", "max_examples": 3001},
    "teacher": {"model": {"name": "mlp", "hidden": [32]}, "train": {"epochs": 2, "lr": 3e-3, "batch_size": BATCH}},
    "student": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 3, "lr": 3e-3, "batch_size": BATCH}},
    "methods": [
        {
            "name": "dedier",
            "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
            "weighting": {"kind": "early-readout", "tap": "hidden1", "score": "margin", "beta": 3.0, "alpha": 0.2},
        },
        {
            "name": "adversarial",
            "loss": {"kind": "kd", "tau": 2.0},
            "adversary": {"target": "attr", "input": "probs+label", "weight": 1.0},
        },
        {"name": "groupdro", "loss": {"kind": "kd", "tau": 2.0}, "weighting": {"kind": "groupdro", "eta": 0.01}},
    ],
    "select": "val_worst_group_acc",
}
MODELS = ("teacher", "dedier", "adversarial", "groupdro")
#: how far a two-process run at batch 64 may be from the one-process run at batch 128, on any metric: the
#: gradients are the same mean over the same global batches, but summed in another order, and a global batch of
#: odd size has pieces one example apart (so the per-process means weigh its examples slightly differently)
TOLERANCE = 0.01


def torchrun(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *arguments]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def harness_run(tmp: Path, digests: Path, kill_after: int, *fairdistill_arguments: str):
    return torchrun(str(HARNESS), str(digests), str(kill_after), "--", *fairdistill_arguments, cwd=tmp)


def run_dirs(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir())


def read_digests(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mp-config") / "two.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "cache_dir": str(path.parent / "cache")}))
    return path


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory, config_path: Path) -> tuple[Path, Path, Path]:
    """(output parent, run directory, digest folder) of an uninterrupted two-process run."""
    tmp = tmp_path_factory.mktemp("mp-run")
    parent, digests = tmp / "runs", tmp / "digests"
    done = harness_run(tmp, digests, 0, "run", str(config_path), "--output", str(parent), "-q")
    assert done.returncode == 0, done.stderr[-4000:]
    (run_dir,) = run_dirs(parent)
    return parent, run_dir, digests


def test_one_run_directory_written_by_process_zero(two_process_run: tuple[Path, Path, Path]) -> None:
    # with the default device (auto) on a machine without a GPU: the processes still form one job, on gloo
    parent, run_dir, _ = two_process_run
    assert run_dirs(parent) == [run_dir]  # not one per process
    assert is_complete(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == set(MODELS)
    log = (run_dir / "log.txt").read_text()
    assert "2 processes; this is process 0" in log
    assert "this is process 1" not in log  # only process 0 writes the log


def test_every_example_predicted_once_in_split_order(two_process_run: tuple[Path, Path, Path]) -> None:
    """The gathered predictions are the saved model's own on every row, in order (padding removed)."""
    _, run_dir, _ = two_process_run
    plan = make_plan(load_config(run_dir / "config.yaml"))
    splits = load_plan_data(plan)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in MODELS:
        model = build_role_model(plan, "teacher" if name == "teacher" else "student", splits)
        load_model_checkpoint(run_dir / "checkpoints" / f"{name}.pt", model, splits.info.num_classes)
        for split_name in ("val", "test"):
            frame = pd.read_parquet(run_dir / "predictions" / f"{name}-{split_name}.parquet")
            split = getattr(splits, split_name)
            assert len(frame) == len(split) == metrics["dataset"]["counts"][split_name]
            assert frame["index"].tolist() == list(range(len(split)))
            alone = predict(model, split, 512, "cpu")
            probs = frame[[f"prob_{c}" for c in range(splits.info.num_classes)]].to_numpy()
            np.testing.assert_allclose(probs, alone.probs, atol=1e-6)
            assert np.array_equal(frame["y"].to_numpy(), split.y.numpy())


def test_both_processes_hold_the_same_state_after_every_epoch(two_process_run: tuple[Path, Path, Path]) -> None:
    _, _, digests = two_process_run
    first, second = read_digests(digests / "rank0.jsonl"), read_digests(digests / "rank1.jsonl")
    expected = [("teacher", e) for e in (1, 2)] + [(m, e) for m in MODELS[1:] for e in (1, 2, 3)]
    assert [(d["model"], d["epoch"]) for d in first] == expected
    assert first == second  # weights, method state (readout head and table, q, adversary) and q itself
    # the digests see the training: every epoch changes the weights, and GroupDRO's q moved off uniform
    assert len({d["weights"] for d in first}) == len(first)
    q = [d["q"] for d in first if d["model"] == "groupdro"][-1]
    assert len(q) == 4 and max(q) - min(q) > 1e-3


def test_metrics_match_one_process_at_the_same_effective_batch_size(
    two_process_run: tuple[Path, Path, Path], config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run_dir, _ = two_process_run
    sets = [f"{role}.train.batch_size={2 * BATCH}" for role in ("teacher", "student")]
    arguments = ["run", str(config_path), "--output", str(tmp_path), "-q"]
    assert cli(monkeypatch, *arguments, *(a for s in sets for a in ("--set", s))) == 0
    (alone_dir,) = run_dirs(tmp_path)
    two = json.loads((run_dir / "metrics.json").read_text())["models"]
    one = json.loads((alone_dir / "metrics.json").read_text())["models"]
    for name in MODELS:
        for key in ("accuracy", "worst_group_accuracy", "recall_disparity_mad", "eo_difference"):
            a, b = two[name]["splits"]["test"][key], one[name]["splits"]["test"][key]
            assert abs(a - b) <= TOLERANCE, (name, key, a, b)
        assert two[name].get("selected_epoch") == one[name].get("selected_epoch")


def test_a_two_process_run_killed_mid_training_resumes_to_the_same_end(
    two_process_run: tuple[Path, Path, Path], config_path: Path, tmp_path: Path
) -> None:
    _, reference_dir, _ = two_process_run
    parent = tmp_path / "runs"
    # killed after 4 epochs of the run: the teacher's 2 and dedier's first 2 (its training checkpoint written)
    killed = harness_run(tmp_path, tmp_path / "digests", 4, "run", str(config_path), "--output", str(parent), "-q")
    assert killed.returncode != 0
    (run_dir,) = run_dirs(parent)
    assert not (run_dir / "metrics.json").exists()
    resumed = torchrun("-m", "fairdistill", "run", "--resume", str(run_dir), "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert run_dirs(parent) == [run_dir]
    got = json.loads((run_dir / "metrics.json").read_text())["models"]
    want = json.loads((reference_dir / "metrics.json").read_text())["models"]
    for name in MODELS:
        assert got[name]["splits"] == want[name]["splits"], name
        assert [h["train_loss"] for h in got[name].get("history", [])] == pytest.approx(
            [h["train_loss"] for h in want[name].get("history", [])], abs=1e-9
        )


def test_a_sweep_under_two_processes_is_one_sweep(config_path: Path, tmp_path: Path) -> None:
    """Process 0 keeps the books (which point trains what, which teacher is reused); every process runs each
    point's run with it."""
    small = {**yaml.safe_load(config_path.read_text()), "methods": [CONFIG["methods"][2]]}
    small["data"] = {**small["data"], "max_examples": 2001}
    small["teacher"]["train"]["epochs"] = 1
    small["student"]["train"]["epochs"] = 1
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(small))
    parent = tmp_path / "sweeps"
    grid = "methods.groupdro.weighting.eta=0.01,0.1"
    done = torchrun(
        "-m", "fairdistill", "sweep", str(path), "--grid", grid, "--output", str(parent), "-q", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (sweep_dir,) = run_dirs(parent)
    document = json.loads((sweep_dir / "sweep.json").read_text())
    assert [point["trained"] for point in document["points"]] == [["teacher", "groupdro"], ["groupdro"]]
    assert [point["run_dir"] for point in document["points"]] == [p.name for p in run_dirs(sweep_dir)]
    assert done.stdout.count("sweep directory:") == 1  # printed by process 0 only


#: every other kind of method state, on a CNN with BatchNorm: a learned temperature, KD++'s projection, JTT's
#: error set and re-initialisation, the online readout's merged probabilities and Laplace fits, the fair-constraint
#: cell weights, the Teacher's pet mixing table
ZOO: dict[str, Any] = {
    "name": "two-processes-zoo",
    "seed": 1,
    "data": {"name": "colored-mnist", "max_examples": 401},
    "teacher": {"model": {"name": "cnn", "width": 6, "blocks": 2}, "train": {"epochs": 1, "batch_size": 32}},
    "student": {"model": {"name": "cnn", "width": 4, "blocks": 2}, "train": {"epochs": 2, "batch_size": 32}},
    "methods": [
        {"name": "ctkd", "loss": {"kind": "ctkd", "scope": "global", "alpha": 0.9, "ramp_epochs": 2}},
        {"name": "kdpp", "loss": {"kind": "kdpp", "kd_weight": 1.0, "nd_weight": 2.0, "tau": 4.0}},
        {"name": "jtt", "loss": {"kind": "kd", "tau": 2.0}, "weighting": {"kind": "jtt", "identify_epochs": 1}},
        {
            "name": "online-laplace",
            "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
            "weighting": {"kind": "early-readout", "score": "laplace-margin", "refit": "online"},
        },
        {
            "name": "dedier-laplace",
            "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
            "weighting": {"kind": "early-readout", "score": "laplace-margin"},
        },
        {
            "name": "fair",
            "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
            "weighting": {"kind": "fair-constraint", "constraint": "equal-opportunity"},
        },
        {"name": "pet", "loss": {"kind": "kd", "tau": 2.0}, "mixing": {"kind": "per-group-alpha", "by": "group"}},
    ],
    "select": "val_worst_group_acc",
}


def test_every_kind_of_method_state_is_identical_on_both_processes(tmp_path: Path) -> None:
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump({**ZOO, "cache_dir": str(tmp_path / "cache")}))
    digests = tmp_path / "digests"
    done = harness_run(tmp_path, digests, 0, "run", str(path), "--output", str(tmp_path / "runs"), "-q")
    assert done.returncode == 0, done.stderr[-4000:]
    first, second = read_digests(digests / "rank0.jsonl"), read_digests(digests / "rank1.jsonl")
    names = [m["name"] for m in ZOO["methods"]]
    assert [(d["model"], d["epoch"]) for d in first] == [("teacher", 1)] + [(n, e) for n in names for e in (1, 2)]
    assert first == second


def test_lazy_image_files_with_augmentation_and_an_online_teacher(tmp_path: Path) -> None:
    """image-csv decoded per example by a DataLoader worker, crop-flip views, the teacher run on each process's
    own augmented batch: one job, identical state, every test row predicted once."""
    from test_image_csv_run import _image_table, image_csv_data

    frame = _image_table(tmp_path / "data", n=120)
    table = tmp_path / "data" / "images.csv"
    frame.to_csv(table, index=False)
    data = image_csv_data(table, workers=1)
    config = {
        "name": "two-processes-images",
        "seed": 0,
        "data": data,
        "teacher": {"model": {"name": "cnn", "width": 6, "blocks": 2}, "train": {"epochs": 1, "batch_size": 8}},
        "student": {"model": {"name": "cnn", "width": 4, "blocks": 2}, "train": {"epochs": 2, "batch_size": 8}},
        "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(config))
    digests = tmp_path / "digests"
    done = harness_run(tmp_path, digests, 0, "run", str(path), "--output", str(tmp_path / "runs"), "-q")
    assert done.returncode == 0, done.stderr[-4000:]
    first, second = read_digests(digests / "rank0.jsonl"), read_digests(digests / "rank1.jsonl")
    assert [(d["model"], d["epoch"]) for d in first] == [("teacher", 1), ("kd", 1), ("kd", 2)]
    assert first == second
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert "the teacher runs on each augmented batch" in (run_dir / "log.txt").read_text()
    predictions = pd.read_parquet(run_dir / "predictions" / "kd-test.parquet")
    assert len(predictions) == int((frame["part"] == "test").sum())
