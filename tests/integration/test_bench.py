"""``fairdistill bench`` end to end on a tiny setting: bench.json holds a case for every registered loss,
weighting and mixing rule (names taken from the registries here, not from bench.py's own list), its ratios are
its own seconds over the bare loop's, and user mistakes exit 2. No timing is asserted."""

from __future__ import annotations

import json
import statistics
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import fairdistill.bench_cases
import fairdistill.cli
from cli_runner import run_cli as cli
from fairdistill.distill import LOSSES, MIXINGS, WEIGHTINGS

TINY = ("--quick", "--max-examples", "100", "--rounds", "3", "--laplace-rows", "300")


def run_bench(mp: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    out = StringIO()
    mp.setattr(fairdistill.cli, "console", Console(file=out, width=80))
    return cli(mp, "bench", *args), out.getvalue()


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    folder = tmp_path_factory.mktemp("bench") / "out"
    with pytest.MonkeyPatch.context() as mp:
        code, shown = run_bench(mp, *TINY, "--datasets", "adult,text", "--output", str(folder))
    assert code == 0, shown
    return json.loads((folder / "bench.json").read_text()), shown, folder


def test_every_registered_component_has_a_case_on_each_dataset(tiny_bench) -> None:
    document, _, _ = tiny_bench
    assert set(document["datasets"]) == {"adult", "text"}
    for name, dataset in document["datasets"].items():
        assert dataset["status"] == "measured", name
        cases = dataset["cases"]
        by_part: dict[str, set[str]] = {}
        for case in cases.values():
            by_part.setdefault(case["part"], set()).add(case["component"])
        assert by_part["loss"] == set(LOSSES.names()), name
        assert by_part["weighting"] == set(WEIGHTINGS.names()), name
        assert by_part["mixing"] == set(MIXINGS.names()), name
        assert by_part["adversary"] == {"adversary"}
        assert by_part["reference"] == {"bare", "bare-kd"}
        assert by_part["teacher"] == {"kd"}  # kd with the teacher run every step
        assert {c["teacher"] for c in cases.values() if c["part"] == "teacher"} == {"every step"}
        for case_name, case in cases.items():  # measured, or skipped with a reason; never failed
            if "skipped" in case:
                assert case["skipped"] and not case["skipped"].startswith("failed"), (name, case_name, case)
            else:
                assert case["seconds_per_epoch"] > 0, (name, case_name)
    # adult has groups, attributes and embeddings: every combination runs there
    assert not [n for n, c in document["datasets"]["adult"]["cases"].items() if "skipped" in c]


def test_ratios_are_the_json_own_seconds_over_bare_and_erm(tiny_bench) -> None:
    document, _, _ = tiny_bench
    assert document["settings"]["rounds"] == 3
    for dataset in document["datasets"].values():
        cases = dataset["cases"]
        bare, erm = cases["bare"]["seconds_per_epoch"], cases["erm"]["seconds_per_epoch"]
        for case_name, case in cases.items():
            if "skipped" in case:
                continue
            rounds = case["rounds_seconds_per_epoch"]
            assert len(rounds) == 3, case_name
            assert case["seconds_per_epoch"] == pytest.approx(statistics.median(rounds), rel=1e-12)
            assert case["ratio_to_bare"] == pytest.approx(case["seconds_per_epoch"] / bare, rel=1e-12), case_name
            assert case["ratio_to_erm"] == pytest.approx(case["seconds_per_epoch"] / erm, rel=1e-12), case_name
        assert cases["bare"]["ratio_to_bare"] == pytest.approx(1.0)
        cache = dataset["teacher_cache"]
        assert cache["build_seconds"] == pytest.approx(statistics.median(cache["rounds_build_seconds"]))
        assert cache["ratio_to_bare_forward"] == pytest.approx(cache["build_seconds"] / cache["bare_forward_seconds"])
        assert dataset["train_examples"] < 100  # --max-examples subsampled it
    laplace = document["laplace"]
    assert (laplace["rows"], laplace["features"], laplace["classes"]) == (300, 768, 3)
    assert laplace["fit_plus_probit_seconds"] == pytest.approx(
        statistics.median(laplace["rounds_fit_plus_probit_seconds"])
    )


def test_quick_run_records_machine_threads_memory_and_what_quick_changed(tiny_bench) -> None:
    document, shown, folder = tiny_bench
    assert document["quick"] is True
    assert document["quick_changes"]["rounds"] == {"full": 5, "quick": 3}
    assert document["quick_changes"]["laplace_rows"]["full"] == 100_000
    assert isinstance(document["machine"]["torch_num_threads"], int) and document["machine"]["torch_num_threads"] >= 1
    assert document["peak_memory"]["ru_maxrss_mib"] > 0
    assert document["datasets"]["adult"]["teacher_cache"]["build_tracemalloc_peak_mib"] >= 0
    for case in ("kd+groupdro", "kd-teacher-every-step", "rkd", "kd+per-group-alpha"):
        assert case in shown
    assert max(len(line) for line in shown.splitlines()) <= 80
    assert str(folder / "bench.json") in shown.replace("\n", "")
    assert not list(folder.glob(".bench.json.*"))  # the atomic write left no temporary file


def test_text_is_skipped_with_a_note_without_transformers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fairdistill.bench_cases, "transformers_available", lambda: False)
    code, shown = run_bench(monkeypatch, *TINY, "--datasets", "text", "--output", str(tmp_path))
    assert code == 0, shown
    text = json.loads((tmp_path / "bench.json").read_text())["datasets"]["text"]
    assert text["status"] == "skipped" and "transformers is not installed" in text["reason"]
    assert "text: skipped (transformers is not installed" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rounds", "2"), "--rounds: medians need at least 3 rounds"),
        (("--datasets", "adult,mnist"), "--datasets: expected names among adult, colored-mnist, text"),
        (("--max-examples", "3"), "--max-examples: expected at least 50"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    args: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    code, _ = run_bench(monkeypatch, "--quick", *args, "--output", str(tmp_path / "out"))
    assert code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()


def test_an_output_that_is_a_file_exits_2_before_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    code, _ = run_bench(monkeypatch, *TINY, "--output", str(blocker))
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert f"--output: {blocker} is a file, not a folder" in err
    assert "warm-up" not in err and "round" not in err  # refused before anything was measured
    assert blocker.read_text() == "not a folder"
    code, _ = run_bench(monkeypatch, *TINY, "--output", str(blocker / "sub"))
    assert code == 2
    assert "--output: cannot create" in " ".join(capsys.readouterr().err.split())
