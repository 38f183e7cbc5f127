"""The cases of ``fairdistill bench`` on one dataset: the bare loop, erm and kd through ``fit``, kd with the
teacher run every step, and one case per registered loss, weighting and mixing rule and the adversary (read
from the registries, so a new component is benchmarked without a change here), plus the teacher-cache build.

Datasets: ``adult`` (student mlp [16], batch 256), ``colored-mnist`` (student cnn width 4, batch 64), both with
their modality's default (untrained) teacher; ``text``, generated sentences read by tiny randomly initialised
BERTs (the ``hf`` model, a WordPiece tokenizer over the generated vocabulary; batch 32), skipped with a note
when transformers is not installed. Teachers are left untrained: their quality does not change the cost.
"""

from __future__ import annotations

import importlib.util
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairdistill.bench import (
    LR,
    BenchSettings,
    bare_epoch,
    bare_forward,
    interleave,
    median,
    rss_peak_mib,
    timed,
)
from fairdistill.data.core import DatasetInfo, SplitDataset, Splits, ensure_encoding
from fairdistill.distill.core import TeacherOutputs
from fairdistill.errors import FairdistillError
from fairdistill.models.core import TappedModel

#: Student, batch size and teacher of each dataset (None: the modality's default teacher).
SETUPS: dict[str, dict[str, Any]] = {
    "adult": {"student": {"name": "mlp", "hidden": [16]}, "batch_size": 256, "teacher": None},
    "colored-mnist": {"student": {"name": "cnn", "width": 4}, "batch_size": 64, "teacher": None},
    "text": {
        "student": {
            "name": "hf",
            "config": {
                "model_type": "bert",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            },
            "max_length": 32,
        },
        "teacher": {
            "name": "hf",
            "config": {
                "model_type": "bert",
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 128,
            },
            "max_length": 32,
        },
        "batch_size": 32,
    },
}
BARE = "bare"
#: The floor with kd's loss: the same bare loop on the cached teacher logits (what the kd loss itself costs).
BARE_KD = "bare-kd"
KD_LIVE = "kd-teacher-every-step"


def method_cases() -> dict[str, dict[str, Any]]:
    """Case name → ``{"part", "component", "method", "teacher"}``: erm, kd (cached teacher), kd with the teacher
    run every step, every other registered loss, kd with each registered weighting and mixing rule, and kd with
    the adversary."""
    from fairdistill.distill import LOSSES, MIXINGS, WEIGHTINGS

    def case(part: str, component: str, method: dict[str, Any], teacher: str = "cached") -> dict[str, Any]:
        return {"part": part, "component": component, "method": method, "teacher": teacher}

    kd = {"kind": "kd"}
    cases = {
        "erm": case("loss", "erm", {"name": "erm", "loss": {"kind": "erm"}}, teacher="none"),
        "kd": case("loss", "kd", {"name": "kd", "loss": kd}),
        KD_LIVE: case("teacher", "kd", {"name": "kd-live", "loss": kd}, teacher="every step"),
    }
    for name in LOSSES.names():
        if name not in cases:
            cases[name] = case("loss", name, {"name": name, "loss": {"kind": name}})
    for name in WEIGHTINGS.names():
        cases[f"kd+{name}"] = case("weighting", name, {"name": f"kd-{name}", "loss": kd, "weighting": {"kind": name}})
    for name in MIXINGS.names():
        cases[f"kd+{name}"] = case("mixing", name, {"name": f"kd-{name}", "loss": kd, "mixing": {"kind": name}})
    cases["kd+adversary"] = case("adversary", "adversary", {"name": "kd-adversary", "loss": kd, "adversary": {}})
    return cases


def text_splits(total: int, seed: int, folder: Path) -> tuple[Splits, str]:
    """Generated three-class sentences with a spurious binary attribute (a marker word, 90% aligned with the
    label in train); a WordPiece tokenizer over their vocabulary saved in ``folder``. Split 60/20/20."""
    import transformers

    rng = np.random.default_rng(seed)
    vocabulary = [f"w{k}" for k in range(300)]
    markers = ["left", "right"]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *markers, *vocabulary]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))  # type: ignore[attr-defined]
    y = rng.integers(0, 3, total)
    attr = rng.integers(0, 2, total)
    texts = []
    for label, a in zip(y, attr, strict=True):
        words = rng.choice(vocabulary[label * 100 : label * 100 + 100], rng.integers(8, 24)).tolist()
        words.insert(int(rng.integers(0, len(words))), markers[int(a)])
        texts.append(" ".join(words))
    info = DatasetInfo(
        "bench-text",
        3,
        ("a", "b", "c"),
        ("left", "right"),
        tuple(f"{c}|{a}" for c in "abc" for a in ("l", "r")),
        "text",
    )
    cut = [0, int(0.6 * total), int(0.8 * total), total]

    def split(name: str, part: int) -> SplitDataset:
        rows = slice(cut[part], cut[part + 1])
        yt, at = torch.as_tensor(y[rows]), torch.as_tensor(attr[rows])
        return SplitDataset({}, yt, at, yt * 2 + at, name=name, texts={"text": texts[rows]})

    return Splits(split("train", 0), split("val", 1), split("test", 2), info), str(folder)


def load_splits(name: str, settings: BenchSettings, folder: Path) -> tuple[Splits, dict[str, Any], dict[str, Any]]:
    """The splits and the student and teacher specs of one bench dataset."""
    from fairdistill.data import load_dataset
    from fairdistill.models import default_model_spec

    setup = SETUPS[name]
    limit = settings.max_examples.get(name)
    if name == "text":
        splits, tokenizer = text_splits(limit or 3000, settings.seed, folder)
        return splits, {**setup["student"], "tokenizer": tokenizer}, {**setup["teacher"], "tokenizer": tokenizer}
    splits = load_dataset(name, {} if limit is None else {"max_examples": limit})
    return splits, dict(setup["student"]), default_model_spec(splits.info.modality, "teacher")


def transformers_available() -> bool:
    return importlib.util.find_spec("transformers") is not None


def bench_dataset(name: str, settings: BenchSettings, say: Callable[[str], None]) -> dict[str, Any]:
    """Every case on one dataset, interleaved; the dataset's section of bench.json."""
    if name == "text" and not transformers_available():
        say("text: skipped (transformers is not installed; pip install 'fairdistill[text]')")
        return {"status": "skipped", "reason": "transformers is not installed (pip install 'fairdistill[text]')"}
    with tempfile.TemporaryDirectory(prefix="fairdistill-bench-") as folder:
        return _bench_dataset(name, settings, say, Path(folder))


def _bench_dataset(name: str, settings: BenchSettings, say: Callable[[str], None], folder: Path) -> dict[str, Any]:
    from fairdistill.api import make_method
    from fairdistill.config import TrainConfig
    from fairdistill.models import build_model
    from fairdistill.train.cache import compute_teacher_outputs
    from fairdistill.train.engine import fit, make_accelerator

    say(f"{name}: loading data and building the teacher")
    splits, student_spec, teacher_spec = load_splits(name, settings, folder)
    train, batch_size, epochs, seed = splits.train, SETUPS[name]["batch_size"], settings.epochs, settings.seed
    accelerator = make_accelerator("cpu")
    torch.manual_seed(seed)
    teacher = build_model(teacher_spec, splits.info, where="teacher.model")
    ensure_encoding(teacher, splits)
    cache_train = TeacherOutputs(*compute_teacher_outputs(teacher, train, 512, "cpu"))
    cache_val = TeacherOutputs(*compute_teacher_outputs(teacher, splits.val, 512, "cpu"))

    def student() -> TappedModel:
        torch.manual_seed(seed)
        model = build_model(student_spec, splits.info, where="student.model")
        ensure_encoding(model, splits)
        return model

    teacher_logits = torch.from_numpy(np.asarray(cache_train.logits, dtype=np.float32))

    def bare(with_kd: bool = False) -> float:
        model = student()

        def epochs_of_the_floor() -> None:
            for _ in range(epochs):
                bare_epoch(model, train.encodings, train.y, batch_size, teacher_logits if with_kd else None)

        return timed(epochs_of_the_floor) / epochs

    def fitted(case: dict[str, Any]) -> Callable[[], float]:
        def call() -> float:
            model = student()
            method = make_method(
                case["method"],
                splits,
                model,
                cache_train,
                teacher_val=cache_val,
                epochs=epochs,
                seed=seed,
                device="cpu",
            ).method
            live = case["teacher"] == "every step"  # the engine's online teacher (``teacher.online: always``)
            config = TrainConfig(epochs=epochs, lr=LR, batch_size=batch_size)
            result = fit(
                model,
                method,
                train,
                config,
                accelerator=accelerator,
                seed=seed,
                teacher_cache=cache_train if method.requires_teacher and not live else None,
                teacher=teacher if method.requires_teacher and live else None,
                desc=case["method"]["name"],
            )
            return result.seconds / epochs

        return call

    cases = method_cases()
    calls: dict[str, Callable[[], float]] = {BARE: bare, BARE_KD: lambda: bare(with_kd=True)}
    skipped: dict[str, str] = {}
    for case_name, case in cases.items():  # the warm-up round (first calls pay one-off setup); finds what cannot run
        call = fitted(case)
        try:
            call()
        except FairdistillError as exc:
            skipped[case_name] = str(exc)
        except Exception as exc:  # a component that breaks on this data: recorded, the other cases still run
            skipped[case_name] = f"failed: {type(exc).__name__}: {exc}"
        else:
            calls[case_name] = call
        say(f"{name} warm-up {case_name}: " + ("skipped" if case_name in skipped else "ok"))
    bare()
    bare(with_kd=True)

    def shown(k: int, case_name: str, seconds: float) -> None:
        say(f"{name} round {k + 1}/{settings.rounds} {case_name}: {seconds:.4f} s/epoch")

    times = interleave(calls, settings.rounds, shown)
    bare_seconds = median(times[BARE])
    erm_seconds = median(times["erm"]) if "erm" in times else None
    entries: dict[str, Any] = {}
    for case_name in [BARE, BARE_KD, *cases]:
        meta = {"part": "reference", "component": case_name} if case_name in (BARE, BARE_KD) else cases[case_name]
        if case_name in skipped:
            entries[case_name] = {**meta, "skipped": skipped[case_name]}
            continue
        seconds = median(times[case_name])
        entries[case_name] = {
            **meta,
            "seconds_per_epoch": seconds,
            "ratio_to_bare": seconds / bare_seconds,
            "ratio_to_erm": None if erm_seconds is None else seconds / erm_seconds,
            "rounds_seconds_per_epoch": times[case_name],
        }
    return {
        "status": "measured",
        "train_examples": len(train),
        "batch_size": batch_size,
        "steps_per_epoch": -(-len(train) // batch_size),
        "epochs_per_fit": epochs,
        "student": student_spec,
        "teacher": teacher_spec,
        "cases": entries,
        "teacher_cache": _teacher_cache(name, teacher, train, settings, say),
        "peak_memory": {"ru_maxrss_mib_after": rss_peak_mib()},
    }


def _teacher_cache(
    name: str, teacher: TappedModel, train: SplitDataset, settings: BenchSettings, say: Callable[[str], None]
) -> dict[str, Any]:
    """The teacher-cache build (``compute_teacher_outputs``) vs a bare no-grad teacher forward, interleaved; and
    the build's peak of traced allocations (numpy outputs and Python objects; torch's CPU tensors are not
    traced), from one extra untimed build."""
    from fairdistill.train.cache import compute_teacher_outputs

    batch_size = 512
    times = interleave(
        {
            "bare_forward": lambda: timed(
                lambda: bare_forward(teacher, train.encodings, len(train), batch_size, False)
            ),
            "build": lambda: timed(lambda: compute_teacher_outputs(teacher, train, batch_size, "cpu")),
        },
        settings.rounds,
        lambda k, what, s: say(f"{name} round {k + 1}/{settings.rounds} teacher cache {what}: {s:.4f} s"),
    )
    tracemalloc.start()
    compute_teacher_outputs(teacher, train, batch_size, "cpu")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    bare_seconds, build_seconds = median(times["bare_forward"]), median(times["build"])
    return {
        "batch_size": batch_size,
        "bare_forward_seconds": bare_seconds,
        "build_seconds": build_seconds,
        "ratio_to_bare_forward": build_seconds / bare_seconds,
        "rounds_bare_forward_seconds": times["bare_forward"],
        "rounds_build_seconds": times["build"],
        "build_tracemalloc_peak_mib": round(peak / 2**20, 2),
    }
