"""The data path against the compute floor: fairdistill's training, prediction and teacher-cache build, each as a
ratio to a bare PyTorch loop over the same in-memory tensors.

For each dataset (adult: student mlp [16]; colored-mnist: student cnn width 4; teachers are the modality's
defaults, left untrained) and batch size (64, 256, 1024), one process measures, interleaved (one bare run, then
ours, then the next pair, for ``--repeats`` rounds; medians kept):

* ``erm``: one epoch of ``fairdistill.train.engine.fit`` with erm vs the bare loop (same model, Adam, same batch
  size, the split's tensors shuffled with ``torch.randperm`` and sliced by index, cross-entropy);
* ``kd_cached``: one epoch of ``fit`` with kd and an in-memory teacher cache vs the same bare loop (the issue's
  target) and vs a bare kd loop (teacher logits indexed from a tensor, the same kd loss);
* ``predict``: ``fairdistill.evaluate.predict.predict`` on the train split vs a bare no-grad forward + softmax;
* ``teacher_cache_build``: ``fairdistill.train.cache.compute_teacher_outputs`` vs a bare no-grad teacher forward
  collecting logits and embeddings as numpy.

``torch.set_num_threads(1)`` throughout.

    .venv/bin/python benchmarks/data_path.py [--repeats 3] [--batch-sizes 64 256 1024] [--label after]

Writes ``benchmarks/results/data_path.json`` (or ``--output``); with ``--label`` the run is stored under that key
of the file (so a "before" and an "after" run sit side by side). Nothing is asserted: the figures are reported.
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

from fairdistill.bench import KD_ALPHA, KD_TAU, LR, bare_epoch, bare_forward, interleave, timed  # noqa: E402
from fairdistill.config import MethodConfig, TrainConfig  # noqa: E402
from fairdistill.data import load_dataset  # noqa: E402
from fairdistill.distill import MethodContext, TeacherOutputs, build_method  # noqa: E402
from fairdistill.evaluate.predict import predict  # noqa: E402
from fairdistill.models import build_model, default_model_spec  # noqa: E402
from fairdistill.train.cache import compute_teacher_outputs  # noqa: E402
from fairdistill.train.engine import fit, make_accelerator  # noqa: E402
from records import header, store  # noqa: E402

STUDENTS: dict[str, dict[str, Any]] = {
    "adult": {"name": "mlp", "hidden": [16]},
    "colored-mnist": {"name": "cnn", "width": 4},
}


SIDES = ("bare", "ours")


def _at(run: Callable[[int], float], batch_size: int) -> Callable[[], float]:
    return lambda: run(batch_size)


def bench_dataset(name: str, batch_sizes: list[int], repeats: int, seed: int) -> dict[str, Any]:
    splits = load_dataset(name, {})
    info, train = splits.info, splits.train
    x, y = train.encodings["x"], train.y
    accelerator = make_accelerator("cpu")
    torch.manual_seed(seed)
    teacher = build_model(default_model_spec(info.modality, "teacher"), info, where="teacher.model")
    cache = TeacherOutputs(*compute_teacher_outputs(teacher, train, 512, "cpu"))
    teacher_logits = torch.from_numpy(np.asarray(cache.logits))

    def student() -> Any:
        torch.manual_seed(seed)
        return build_model(STUDENTS[name], info, where="student.model")

    def fit_epoch(method_name: str, loss: dict[str, Any], batch_size: int) -> float:
        model = student()
        context = MethodContext(info=info, train=train, val=splits.val, teacher_train=cache, num_epochs=1, seed=seed)
        method = build_method(
            MethodConfig.model_validate({"name": method_name, "loss": loss}), context, where=method_name
        )
        config = TrainConfig(epochs=1, lr=LR, batch_size=batch_size)
        result = fit(
            model,
            method,
            train,
            config,
            accelerator=accelerator,
            seed=seed,
            teacher_cache=cache if method.requires_teacher else None,
            desc=method_name,
        )
        return result.seconds

    predictor = student()
    pairs: dict[str, tuple[Callable[[int], float], Callable[[int], float]]] = {
        "erm": (
            lambda b: timed(lambda: bare_epoch(student(), {"x": x}, y, b)),
            lambda b: fit_epoch("erm", {"kind": "erm"}, b),
        ),
        "kd_cached": (
            lambda b: timed(lambda: bare_epoch(student(), {"x": x}, y, b)),
            lambda b: fit_epoch("kd", {"kind": "kd", "tau": KD_TAU, "alpha": KD_ALPHA}, b),
        ),
        "kd_cached_vs_bare_kd": (
            lambda b: timed(lambda: bare_epoch(student(), {"x": x}, y, b, teacher_logits)),
            lambda b: fit_epoch("kd", {"kind": "kd", "tau": KD_TAU, "alpha": KD_ALPHA}, b),
        ),
        "predict": (
            lambda b: timed(lambda: bare_forward(predictor, {"x": x}, len(x), b, softmax=True)),
            lambda b: timed(lambda: predict(predictor, train, b, "cpu")),
        ),
        "teacher_cache_build": (
            lambda b: timed(lambda: bare_forward(teacher, {"x": x}, len(x), b, softmax=False)),
            lambda b: timed(lambda: compute_teacher_outputs(teacher, train, b, "cpu")),
        ),
    }
    result: dict[str, Any] = {"train_examples": len(train), "student": STUDENTS[name], "batch_sizes": {}}
    for bare, ours in pairs.values():  # warm-up round, not timed (first calls pay one-off setup)
        bare(batch_sizes[0])
        ours(batch_sizes[0])
    this_round: dict[tuple[str, str], float] = {}  # the latest seconds of each call, for the round summaries
    for batch_size in batch_sizes:
        calls = {(key, side): _at(pair[k], batch_size) for key, pair in pairs.items() for k, side in enumerate(SIDES)}

        def shown(repeat: int, call: tuple[str, str], seconds: float, batch_size: int = batch_size) -> None:
            this_round[call] = seconds
            if call == (list(pairs)[-1], "ours"):  # a round's summary, once its last pair has run
                print(
                    f"{name} b{batch_size} repeat {repeat + 1}/{repeats}: "
                    + ", ".join(f"{k} {this_round[k, 'ours'] / this_round[k, 'bare']:.2f}x" for k in pairs),
                    file=sys.stderr,
                    flush=True,
                )

        measured = interleave(calls, repeats, shown)
        times = {key: {side: measured[key, side] for side in SIDES} for key in pairs}
        entry = {}
        for key, value in times.items():
            bare_median, ours_median = statistics.median(value["bare"]), statistics.median(value["ours"])
            entry[key] = {
                "bare_seconds_median": round(bare_median, 4),
                "ours_seconds_median": round(ours_median, 4),
                "ratio_to_bare": round(ours_median / bare_median, 3),
                "bare_seconds": [round(v, 4) for v in value["bare"]],
                "ours_seconds": [round(v, 4) for v in value["ours"]],
            }
        result["batch_sizes"][str(batch_size)] = entry
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["adult", "colored-mnist"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256, 1024])
    parser.add_argument("--label", default="latest", help="key under which this run is stored in the output file")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "data_path.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = {
        **header("seconds per epoch / per pass of fairdistill vs a bare PyTorch loop (interleaved, medians)"),
        "targets": {"erm": 1.15, "kd_cached": 1.15, "teacher_cache_build": 1.2},
        "repeats": args.repeats,
        "datasets": {name: bench_dataset(name, args.batch_sizes, args.repeats, args.seed) for name in args.datasets},
    }
    store(args.output, run, args.label)
    summary = {
        name: {b: {k: v["ratio_to_bare"] for k, v in entry.items()} for b, entry in d["batch_sizes"].items()}
        for name, d in run["datasets"].items()
    }
    print(json.dumps(summary, indent=2))
    print(f"written: {args.output} [{args.label}]", file=sys.stderr)


if __name__ == "__main__":
    main()
