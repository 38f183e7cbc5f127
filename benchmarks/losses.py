"""What each distillation loss costs per training epoch, relative to kd.

For each dataset (colored-mnist and adult by default, with their modality's default teacher and student and
the batch sizes of configs/default.yaml and configs/adult.yaml), the teacher's outputs on the train split are
computed once (the teacher is left untrained: its quality does not change the cost of a student epoch), then
every loss trains a fresh student with ``fairdistill.train.engine.fit`` for a few epochs. The wall-clock time
per epoch is the fit time divided by the epochs; each loss is repeated and the median is kept. Repeats are
interleaved (one round over all losses, then the next) so that slow drifts of the machine spread evenly.

    .venv/bin/python benchmarks/losses.py [--epochs 2] [--repeats 3] [--datasets colored-mnist adult]

Writes ``benchmarks/results/losses.json`` (or ``--output``). Nothing here is asserted: the numbers depend on the
machine, and are reported, not tested.
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

import torch  # noqa: E402

from fairdistill.config import MethodConfig, TrainConfig  # noqa: E402
from fairdistill.data import load_dataset  # noqa: E402
from fairdistill.data.core import collate  # noqa: E402
from fairdistill.distill import MethodContext, TeacherOutputs, build_method  # noqa: E402
from fairdistill.models import build_model, default_model_spec  # noqa: E402
from fairdistill.train.cache import compute_teacher_outputs  # noqa: E402
from fairdistill.train.engine import fit, make_accelerator  # noqa: E402
from records import header, store  # noqa: E402

#: name → loss entry of a method config; kd is the reference.
LOSSES: dict[str, dict[str, Any]] = {
    "erm": {"kind": "erm"},
    "kd": {"kind": "kd"},
    "dkd": {"kind": "dkd"},
    "rkd": {"kind": "rkd"},
    "rkd+kd": {"kind": "rkd", "kd_weight": 1.0},
    "ctkd": {"kind": "ctkd", "scope": "global"},
    "ctkd-instance": {"kind": "ctkd", "scope": "instance"},
    "kdpp": {"kind": "kdpp"},
}
#: Batch sizes of the shipped configs (default.yaml for colored-mnist, adult.yaml for adult).
BATCH_SIZE = {"colored-mnist": 64, "adult": 256}
#: Learning rates of the shipped student configs.
LR = {"colored-mnist": 3.0e-3, "adult": 3.0e-3}


@torch.no_grad()
def _embedding_dim(model, split) -> int | None:
    model.eval()
    out = model(collate([split[0]]).inputs)
    model.train()
    return None if out.embedding is None else int(out.embedding.shape[1])


def bench_dataset(name: str, epochs: int, repeats: int, seed: int) -> dict[str, Any]:
    splits = load_dataset(name, {})
    info = splits.info
    accelerator = make_accelerator("cpu")
    teacher_spec = default_model_spec(info.modality, "teacher")
    student_spec = default_model_spec(info.modality, "student")
    torch.manual_seed(seed)
    teacher = build_model(teacher_spec, info, where="teacher.model")
    cache = TeacherOutputs(*compute_teacher_outputs(teacher, splits.train, 512, accelerator.device))
    config = TrainConfig(epochs=epochs, lr=LR.get(name, 3.0e-3), batch_size=BATCH_SIZE.get(name, 64))
    times: dict[str, list[float]] = {loss: [] for loss in LOSSES}
    for repeat in range(repeats):
        for loss_name, loss_entry in LOSSES.items():
            torch.manual_seed(seed)
            student = build_model(student_spec, info, where="student.model")
            context = MethodContext(
                info=info,
                train=splits.train,
                val=splits.val,
                teacher_train=cache,
                num_epochs=epochs,
                seed=seed,
                student_embedding_dim=_embedding_dim(student, splits.train),
                teacher_embedding_dim=None if cache.embedding is None else int(cache.embedding.shape[1]),
            )
            method = build_method(MethodConfig(name=loss_name, loss=loss_entry), context, where=loss_name)
            result = fit(
                student,
                method,
                splits.train,
                config,
                accelerator=accelerator,
                seed=seed,
                teacher_cache=cache if method.requires_teacher else None,
                desc=loss_name,
            )
            times[loss_name].append(result.seconds / epochs)
            print(
                f"{name} repeat {repeat + 1}/{repeats} {loss_name}: {result.seconds / epochs:.3f} s/epoch",
                file=sys.stderr,
                flush=True,
            )
    medians = {loss: statistics.median(values) for loss, values in times.items()}
    return {
        "train_examples": len(splits.train),
        "batch_size": config.batch_size,
        "steps_per_epoch": -(-len(splits.train) // config.batch_size),
        "teacher": teacher_spec,
        "student": student_spec,
        "losses": {
            loss: {
                "options": LOSSES[loss],
                "seconds_per_epoch_median": round(medians[loss], 4),
                "seconds_per_epoch": [round(v, 4) for v in times[loss]],
                "relative_to_kd": round(medians[loss] / medians["kd"], 3),
            }
            for loss in LOSSES
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["colored-mnist", "adult"])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "losses.json")
    args = parser.parse_args(argv)
    result = {
        **header("per-epoch wall-clock cost of each distillation loss, relative to kd (median of repeats)"),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "datasets": {name: bench_dataset(name, args.epochs, args.repeats, args.seed) for name in args.datasets},
    }
    store(args.output, result)
    print(
        json.dumps(
            {
                name: {loss: v["relative_to_kd"] for loss, v in d["losses"].items()}
                for name, d in result["datasets"].items()
            },
            indent=2,
        )
    )
    print(f"written: {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
