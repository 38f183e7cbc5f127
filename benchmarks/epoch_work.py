"""Per-epoch work beyond the training steps, as ratios taken interleaved in one process (issue 12, "cheap
per-epoch work" and "rkd").

On Adult (the modality's default teacher, left untrained, its outputs cached once; student mlp [16]; batch 256;
Adam lr 3e-3; ``--epochs`` epochs per fit, default 3; rkd ``--rkd-epochs``, default 1, as its "before" epoch took
minutes), one round fits, one after the other:

* ``kd``: kd with the cached teacher (the reference of the distillation rows);
* ``dedier``: kd + ``early-readout`` with ``refit: epoch`` (the head refit on the whole train split's tap
  features after every epoch); ``dedier_online``: the same with ``refit: online``;
* ``rkd``: rkd (distance + angle terms) with the cached teacher's embeddings;
* ``erm``: erm without validation; ``erm_validated``: erm validated after every epoch the way a run does
  (``fairdistill.experiment._execute_seed``'s ``validate``: predictions on val, then the selection metrics,
  ``select: val_worst_group_acc``, so the best-epoch weights are tracked too).

``--repeats`` rounds (default 5), medians; ratios: dedier / kd, dedier_online / kd, rkd / kd,
erm_validated / erm. ``torch.set_num_threads(1)``. The validation uses ``fairdistill.evaluate.selection`` when it
exists (after issue 12) and the full ``compute_metrics`` suite otherwise (before), i.e. what the run's closure
calls at the checked-out revision.

    .venv/bin/python benchmarks/epoch_work.py [--repeats 5] [--epochs 3] [--rkd-epochs 1] [--label after]

Writes ``benchmarks/results/epoch_work.json`` (or ``--output``), the run stored under ``--label`` so "before"
and "after" sit side by side. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fairdistill.config import MethodConfig, TrainConfig  # noqa: E402
from fairdistill.data import load_dataset  # noqa: E402
from fairdistill.distill import MethodContext, TeacherOutputs, build_method  # noqa: E402
from fairdistill.distill.features import pool_tap  # noqa: E402
from fairdistill.evaluate.metrics import compute_metrics  # noqa: E402
from fairdistill.evaluate.predict import predict  # noqa: E402
from fairdistill.models import build_model, default_model_spec  # noqa: E402
from fairdistill.train.cache import compute_teacher_outputs  # noqa: E402
from fairdistill.train.engine import fit, make_accelerator  # noqa: E402
from records import header, store  # noqa: E402

try:  # after issue 12: validation computes only what selection needs
    from fairdistill.evaluate.selection import selection_metrics
except ImportError:  # before
    selection_metrics = None  # type: ignore[assignment]

STUDENT: dict[str, Any] = {"name": "mlp", "hidden": [16]}
LR, BATCH_SIZE = 3.0e-3, 256
KD: dict[str, Any] = {"kind": "kd", "tau": 4.0, "alpha": 0.9}
#: name → (method config entry, validated)
RUNS: dict[str, tuple[dict[str, Any], bool]] = {
    "kd": ({"loss": KD}, False),
    "dedier": ({"loss": KD, "weighting": {"kind": "early-readout", "refit": "epoch"}}, False),
    "dedier_online": ({"loss": KD, "weighting": {"kind": "early-readout", "refit": "online"}}, False),
    "rkd": ({"loss": {"kind": "rkd"}}, False),
    "erm": ({"loss": {"kind": "erm"}}, False),
    "erm_validated": ({"loss": {"kind": "erm"}}, True),
}
RATIOS: dict[str, tuple[str, str, float]] = {
    "dedier_vs_kd": ("dedier", "kd", 1.4),
    "dedier_online_vs_kd": ("dedier_online", "kd", 1.05),
    "rkd_vs_kd": ("rkd", "kd", 3.0),
    "erm_validated_vs_erm": ("erm_validated", "erm", 1.3),
}


def bench(epochs: int, repeats: int, seed: int, rkd_epochs: int = 1) -> dict[str, Any]:
    splits = load_dataset("adult", {})
    info, train = splits.info, splits.train
    accelerator = make_accelerator("cpu")
    torch.manual_seed(seed)
    teacher = build_model(default_model_spec(info.modality, "teacher"), info, where="teacher.model")
    cache = TeacherOutputs(*compute_teacher_outputs(teacher, train, 512, "cpu"))

    def validate(model) -> dict[str, float]:
        p = predict(model, splits.val, 1024, accelerator.device)
        if selection_metrics is not None:
            return selection_metrics(p.y, p.probs, p.group, info)
        m = compute_metrics(p.y, p.probs, p.attr, p.group, info)
        return {"val_acc": m["accuracy"], "val_worst_group_acc": m["worst_group_accuracy"]}

    def run(name: str) -> float:
        entry, validated = RUNS[name]
        epochs_here = rkd_epochs if name == "rkd" else epochs
        torch.manual_seed(seed)
        model = build_model(STUDENT, info, where="student.model")
        with torch.no_grad():
            out = model.eval()(train.take(torch.arange(2)).inputs)
        model.train()
        context = MethodContext(
            info=info,
            train=train,
            val=splits.val,
            teacher_train=cache,
            num_epochs=epochs_here,
            seed=seed,
            student_embedding_dim=None if out.embedding is None else int(out.embedding.shape[1]),
            teacher_embedding_dim=None if cache.embedding is None else int(np.asarray(cache.embedding).shape[1]),
            student_taps=tuple(model.tap_names),
            student_model="mlp",
            student_tap_dims={k: int(pool_tap(t).shape[1]) for k, t in out.taps.items()},
        )
        method = build_method(MethodConfig.model_validate({"name": name, **entry}), context, where=name)
        result = fit(
            model,
            method,
            train,
            TrainConfig(epochs=epochs_here, lr=LR, batch_size=BATCH_SIZE),
            accelerator=accelerator,
            seed=seed,
            teacher_cache=cache if method.requires_teacher else None,
            validate=validate if validated else None,
            select="val_worst_group_acc" if validated else "last",
            desc=name,
        )
        return result.seconds / epochs_here

    for name in RUNS:  # warm-up, not timed (rkd's first epoch pays no one-off setup worth its cost)
        if name != "rkd":
            run(name)
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    for repeat in range(repeats):
        for name in RUNS:
            times[name].append(run(name))
        print(
            f"repeat {repeat + 1}/{repeats}: "
            + ", ".join(f"{k} {times[a][-1] / times[b][-1]:.2f}x" for k, (a, b, _) in RATIOS.items()),
            file=sys.stderr,
            flush=True,
        )
    medians = {name: statistics.median(v) for name, v in times.items()}
    return {
        "train_examples": len(train),
        "val_examples": len(splits.val),
        "batch_size": BATCH_SIZE,
        "epochs_per_fit": epochs,
        "rkd_epochs_per_fit": rkd_epochs,
        "student": STUDENT,
        "validation": "selection_metrics" if selection_metrics is not None else "compute_metrics (full suite)",
        "seconds_per_epoch_median": {k: round(v, 4) for k, v in medians.items()},
        "seconds_per_epoch": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "ratios": {
            key: {
                "ratio": round(medians[a] / medians[b], 3),
                "target": target,
                "met": medians[a] / medians[b] <= target,
            }
            for key, (a, b, target) in RATIOS.items()
        },
    }


def main(argv: list[str] | None = None, bench_fn: Callable[[int, int, int, int], dict[str, Any]] = bench) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rkd-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="latest", help="key under which this run is stored in the output file")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "epoch_work.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = {
        **header("seconds per epoch, Adult b256, interleaved, medians; ratios to kd / to erm"),
        "repeats": args.repeats,
        "adult": bench_fn(args.epochs, args.repeats, args.seed, args.rkd_epochs),
    }
    store(args.output, result, args.label)
    print(json.dumps({k: v["ratio"] for k, v in result["adult"]["ratios"].items()}, indent=2))
    print(f"written: {args.output} [{args.label}]", file=sys.stderr)


if __name__ == "__main__":
    main()
