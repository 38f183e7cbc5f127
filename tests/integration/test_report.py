"""The report side end to end: a tiny run with two seeds (mean ± std tables, per-seed values), its figures,
report.html / report.md, ``fairdistill report`` (rebuild), ``fairdistill sweep`` (trade-off plot) and
``fairdistill compare``; report.html rendered in headless Chromium.

Every expected number is recomputed here from the saved per-example predictions (or, for ``compare``, from the
two metrics.json files) with numpy / pandas, never read back from the code's own tables.

One module-scoped run (seeds [0, 1]; a teacher, a ``kd`` and a ``dedier`` student) and one two-point sweep that
reuses that run's teacher checkpoint keep the whole module to a few tens of seconds on two CPU cores.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from cli_runner import run_cli as cli

SEEDS = [0, 1]
RUN = {
    "name": "rep",
    "seeds": SEEDS,
    "data": {"name": "colored-mnist", "max_examples": 500},
    "teacher": {
        "model": {"name": "cnn", "width": 6, "blocks": 2},
        "train": {"epochs": 1, "batch_size": 50, "lr": 0.01},
    },
    "student": {
        "model": {"name": "cnn", "width": 4, "blocks": 2},
        "train": {"epochs": 2, "batch_size": 50, "lr": 0.01},
    },
    "methods": [
        {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
        {
            "name": "dedier",
            "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
            "weighting": {"kind": "early-readout", "score": "margin", "beta": 3.0, "alpha": 0.2},
        },
    ],
}
MODELS = ["teacher", "kd", "dedier"]
#: The figure files the report writes for a run with a trained teacher and two students (report/plots.py).
FIGURES = {
    "pareto",
    "recall_disparity",
    "group_accuracy",
    "confidence_margins",
    "student_error_margins",
    "reliability",
    "training_curves",
}
#: The comparison table's score columns: (header, metrics key, higher is better) — as documented in the issue.
COLUMNS = [
    ("accuracy", "accuracy", True),
    ("worst-group acc", "worst_group_accuracy", True),
    ("balanced acc", "balanced_accuracy", True),
    ("macro F1", "macro_f1", True),
    ("recall disparity MAD", "recall_disparity_mad", False),
    ("EO diff", "eo_difference", False),
    ("DP diff", "dp_difference", False),
    ("ECE", "ece", False),
]
HALF_UNIT = 5e-5 + 1e-9  # a value printed with 4 decimals is within this of the exact one


# ----------------------------------------------------------------------------------------------- helpers


def cli_out(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """Run the CLI with its stdout console captured at a width that keeps every table row on one line."""
    from rich.console import Console

    import fairdistill.cli

    out = io.StringIO()
    monkeypatch.setattr(fairdistill.cli, "console", Console(file=out, width=250))
    return cli(monkeypatch, *args), out.getvalue()


def frame(run_dir: Path, model: str, seed: int | None, split: str = "test") -> pd.DataFrame:
    folder = run_dir / "predictions" / (f"seed{seed}" if seed is not None else "")
    return pd.read_parquet(folder / f"{model}-{split}.parquet")


def accuracy(f: pd.DataFrame) -> float:
    return float((f["pred"] == f["y"]).mean())


def worst_group_accuracy(f: pd.DataFrame) -> float:
    return float((f["pred"] == f["y"]).groupby(f["group"]).mean().min())


def recall_disparity_mad(f: pd.DataFrame) -> float:
    """docs/metrics.md for a binary attribute: mean over classes of |recall(a=1) − recall(a=0)|."""
    gaps = []
    for c in sorted(f["y"].unique()):
        rows = f[f["y"] == c]
        recall = (rows["pred"] == c).groupby(rows["attr"]).mean()
        if len(recall) == 2:
            gaps.append(abs(recall.loc[1] - recall.loc[0]))
    return float(np.mean(gaps))


def md_section(md: str, heading: str) -> str:
    start = md.index(f"## {heading}\n")
    end = md.find("\n## ", start + 1)
    return md[start : end if end >= 0 else len(md)]


def md_table(text: str) -> list[list[str]]:
    """The first Markdown table in ``text``: header row then data rows, cells stripped, ``\\|`` unescaped."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        block.append(line)
    rows = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in block]
    return [rows[0], *rows[2:]]


class PageParser(HTMLParser):
    """Collects every tag with its attributes (in order) and every table's cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[dict[str, Any]] = []
        self._cell: list[str] | None = None
        self._open: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            table = {
                "id": attributes.get("id"),
                "class": attributes.get("class") or "",
                "rows": [],
                "position": len(self.tags),
            }
            self.tables.append(table)
            self._open.append(table)
        elif tag == "tr" and self._open:
            self._open[-1]["rows"].append([])
        elif tag in ("td", "th") and self._open:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._open:
            self._open[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table" and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    return parser


def table_by_id(page: PageParser, table_id: str) -> list[list[str]]:
    (table,) = [t for t in page.tables if t["id"] == table_id]
    return table["rows"]


def mean_std(text: str) -> tuple[float, float]:
    mean, std = (float(part) for part in text.split("±"))
    return mean, std


def assert_png(data: bytes | Path, min_side: int = 50) -> tuple[int, int]:
    """The bytes (or file) are a PNG that PIL decodes completely; returns its size."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(raw)) as image:
        image.load()
        assert image.width >= min_side and image.height >= min_side
        return image.size


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def run_dir(root: Path) -> Path:
    config = root / "rep.yaml"
    config.write_text(yaml.safe_dump(RUN))
    with pytest.MonkeyPatch.context() as mp:
        code, out = cli_out(mp, "run", str(config), "--output", str(root / "runs"))
    assert code == 0, out
    (path,) = list((root / "runs").iterdir())
    return path


@pytest.fixture(scope="module")
def metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def sweep(root: Path, run_dir: Path) -> tuple[Path, str]:
    """A two-point sweep over the KD temperature, one seed, the teacher loaded from the run above."""
    raw = {
        "name": "swp",
        "seed": 0,
        "data": RUN["data"],
        "teacher": {"model": RUN["teacher"]["model"], "checkpoint": str(run_dir / "checkpoints/seed0/teacher.pt")},
        "student": RUN["student"],
        "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
    }
    config = root / "swp.yaml"
    config.write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as mp:
        code, out = cli_out(
            mp, "sweep", str(config), "--grid", "methods.kd.loss.tau=1,4", "--output", str(root / "sweeps")
        )
    assert code == 0, out
    (path,) = list((root / "sweeps").iterdir())
    return path, out


# ----------------------------------------------------------------------------------------------- seeds


def test_metrics_keep_per_seed_values(run_dir: Path, metrics: dict[str, Any]) -> None:
    assert metrics["run"]["seeds"] == SEEDS
    assert list(metrics["models"]) == MODELS
    for name in MODELS:
        model = metrics["models"][name]
        assert set(model["seeds"]) == {str(s) for s in SEEDS}
        for seed in SEEDS:
            entry = model["seeds"][str(seed)]
            assert {"splits", "history", "selected_epoch"} <= set(entry)
            f = frame(run_dir, name, seed)
            assert entry["splits"]["test"]["accuracy"] == pytest.approx(accuracy(f), abs=1e-12)
            assert entry["splits"]["test"]["worst_group_accuracy"] == pytest.approx(worst_group_accuracy(f), abs=1e-12)
            assert entry["splits"]["test"]["recall_disparity_mad"] == pytest.approx(recall_disparity_mad(f), abs=1e-12)
            assert len(entry["history"]) == (RUN["teacher"] if name == "teacher" else RUN["student"])["train"]["epochs"]
    # the two seeds really differ (otherwise the ± checks below would prove little)
    teacher = [frame(run_dir, "teacher", s)["prob_1"].to_numpy() for s in SEEDS]
    assert not np.allclose(*teacher)


def test_mean_and_sample_std_over_seeds(run_dir: Path, metrics: dict[str, Any]) -> None:
    """splits = mean over seeds, splits_std = sample std (ddof = 1), both of the per-seed values."""
    for name in MODELS:
        model = metrics["models"][name]
        for key, per_seed in (
            ("accuracy", [accuracy(frame(run_dir, name, s)) for s in SEEDS]),
            ("worst_group_accuracy", [worst_group_accuracy(frame(run_dir, name, s)) for s in SEEDS]),
            ("recall_disparity_mad", [recall_disparity_mad(frame(run_dir, name, s)) for s in SEEDS]),
        ):
            assert model["splits"]["test"][key] == pytest.approx(np.mean(per_seed), abs=1e-12)
            assert model["splits_std"]["test"][key] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
        # every metric of the table, against the per-seed values stored alongside
        for _, key, _ in COLUMNS:
            per_seed = [model["seeds"][str(s)]["splits"]["test"][key] for s in SEEDS]
            assert model["splits"]["test"][key] == pytest.approx(np.mean(per_seed), abs=1e-12)
            assert model["splits_std"]["test"][key] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)


def test_tables_show_mean_plus_minus_sample_std(run_dir: Path) -> None:
    md = (run_dir / "report.md").read_text()
    page = parse_page((run_dir / "report.html").read_text())
    md_rows = md_table(md_section(md, "Test split"))
    html_rows = table_by_id(page, "comparison-test")
    for rows in (md_rows, html_rows):
        header = rows[0]
        assert header[:4] == ["model", "role", "method", "params"]
        assert header[4:] == [title for title, _, _ in COLUMNS]
        assert [r[0] for r in rows[1:]] == MODELS
    assert "±" in md
    for name, md_row, html_row in zip(MODELS, md_rows[1:], html_rows[1:], strict=True):
        assert md_row == html_row  # report.md and report.html show the same comparison table
        for column, values in (
            ("accuracy", [accuracy(frame(run_dir, name, s)) for s in SEEDS]),
            ("worst-group acc", [worst_group_accuracy(frame(run_dir, name, s)) for s in SEEDS]),
            ("recall disparity MAD", [recall_disparity_mad(frame(run_dir, name, s)) for s in SEEDS]),
        ):
            mean, std = mean_std(md_row[md_rows[0].index(column)])
            assert abs(mean - np.mean(values)) <= HALF_UNIT
            assert abs(std - np.std(values, ddof=1)) <= HALF_UNIT


# ----------------------------------------------------------------------------------------------- report


def test_amplification_table_in_both_reports(run_dir: Path) -> None:
    """A student × metric grid: the teacher's row, then per student M(student) and Δ = mean over seeds of
    M(student_k) − M(teacher_k) with its interval, for MAD and 1 − WGA recomputed from the predictions."""
    md_rows = md_table(md_section((run_dir / "report.md").read_text(), "Teacher → student bias amplification"))
    html_rows = table_by_id(parse_page((run_dir / "report.html").read_text()), "amplification")
    assert md_rows == html_rows
    header = md_rows[0]
    assert header == ["model", "recall disparity MAD", "EO diff", "DP diff", "1 − WGA"]
    rows = {r[0]: r for r in md_rows[1:]}
    assert list(rows) == ["teacher", "kd", "dedier"]
    cell = re.compile(r"^(\S+) Δ (\S+) \[(\S+), (\S+)\]$")
    for student in ("kd", "dedier"):
        for title, measure in (
            ("recall disparity MAD", recall_disparity_mad),
            ("1 − WGA", lambda f: 1.0 - worst_group_accuracy(f)),
        ):
            t = np.array([measure(frame(run_dir, "teacher", s)) for s in SEEDS])
            s_ = np.array([measure(frame(run_dir, student, s)) for s in SEEDS])
            column = header.index(title)
            assert abs(float(rows["teacher"][column]) - t.mean()) <= HALF_UNIT
            found = cell.match(rows[student][column])
            assert found, rows[student][column]
            value, delta, low, high = (float(v) for v in found.groups())
            assert abs(value - s_.mean()) <= HALF_UNIT
            assert abs(delta - (s_ - t).mean()) <= HALF_UNIT
            assert -1.0 <= low <= high <= 1.0


def test_report_html_is_self_contained_and_ordered(run_dir: Path) -> None:
    text = (run_dir / "report.html").read_text()
    page = parse_page(text)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) >= len(FIGURES)
    for attrs in images:
        src = attrs.get("src") or ""
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert_png(base64.b64decode(src.split(",", 1)[1]), min_side=10)
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed"), tag
        for name in ("src", "href", "data", "poster", "srcset", "action"):
            value = attrs.get(name)
            if value is None:
                continue
            if name == "href":
                assert value.startswith("#"), f"<{tag} href={value!r}> points outside the page"
            else:
                assert value.startswith("data:"), f"<{tag} {name}={value[:60]!r}> is not embedded"
    assert re.search(r"url\((?!\s*['\"]?data:)", text) is None  # no CSS url() to a file
    # order: the verdict with the Pareto plot, the comparison table (sortable), the amplification grid, the figures
    tables = [t for t in page.tables]
    assert tables[0]["id"] == "comparison-test" and "sortable" in tables[0]["class"].split()
    assert tables[1]["id"] == "amplification"
    position = {attrs.get("id"): i for i, (_, attrs) in enumerate(page.tags, 1) if attrs.get("id")}
    first_figure = next(
        i for i, (tag, attrs) in enumerate(page.tags, 1) if tag == "figure" and attrs.get("id") != "fig-pareto"
    )
    assert position["verdict"] < position["fig-pareto"] < tables[0]["position"] < tables[1]["position"] < first_figure
    figure_ids = [attrs["id"] for tag, attrs in page.tags if tag == "figure"]
    assert {i.removeprefix("fig-") for i in figure_ids} == FIGURES


def test_figures_exist_and_decode(run_dir: Path) -> None:
    files = {p.stem: p for p in (run_dir / "figures").iterdir()}
    assert set(files) == FIGURES
    assert all(p.suffix == ".png" for p in files.values())
    for path in files.values():
        assert_png(path, min_side=150)
    md = (run_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"figures/{name}.png" for name in FIGURES)


def test_what_changed_counts_in_report(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Per group, the dedier-right/kd-wrong and kd-right/dedier-wrong counts of the first seed's predictions."""
    kd, dedier = frame(run_dir, "kd", SEEDS[0]), frame(run_dir, "dedier", SEEDS[0])
    assert (kd["index"].to_numpy() == dedier["index"].to_numpy()).all()
    kd_right, dedier_right = kd["pred"] == kd["y"], dedier["pred"] == dedier["y"]
    section = md_section((run_dir / "report.md").read_text(), "What changed (test split)")
    assert "**dedier vs kd**" in section
    rows = md_table(section)
    assert rows[0] == ["group", "examples", "dedier right, kd wrong", "kd right, dedier wrong"]
    group_names = metrics["dataset"]["group_names"]
    assert [r[0] for r in rows[1:]] == group_names
    for g, row in enumerate(rows[1:]):
        in_group = kd["group"] == g
        assert int(row[1]) == int(in_group.sum())
        assert int(row[2]) == int((in_group & ~kd_right & dedier_right).sum())
        assert int(row[3]) == int((in_group & kd_right & ~dedier_right).sum())


def test_report_command_rebuilds_the_same_tables(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    md_before = (copy / "report.md").read_text()
    tables_before = [t["rows"] for t in parse_page((copy / "report.html").read_text()).tables]
    (copy / "report.md").unlink()
    (copy / "report.html").unlink()
    shutil.rmtree(copy / "figures")
    code, out = cli_out(monkeypatch, "report", str(copy))
    assert code == 0, out
    assert str(copy / "report.html") in out
    assert (copy / "report.md").read_text() == md_before
    assert [t["rows"] for t in parse_page((copy / "report.html").read_text()).tables] == tables_before
    assert {p.stem for p in (copy / "figures").iterdir()} == FIGURES
    for path in (copy / "figures").iterdir():
        assert_png(path, min_side=150)


def _broken_dirs(tmp_path: Path) -> dict[str, Path]:
    missing = tmp_path / "does-not-exist"
    empty = tmp_path / "empty"
    empty.mkdir()
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "metrics.json").write_text("{not json")
    return {"missing": missing, "empty": empty, "garbled": garbled}


@pytest.mark.parametrize("command", ["report", "compare-a", "compare-b"])
@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "run directory not found"),
        ("empty", "no metrics.json"),
        ("garbled", "not valid JSON"),
    ],
)
def test_report_and_compare_refuse_non_run_dirs(
    tmp_path: Path, monkeypatch, capsys, run_dir: Path, command: str, case: str, message: str
) -> None:
    bad = _broken_dirs(tmp_path)[case]
    args = {
        "report": ["report", str(bad)],
        "compare-a": ["compare", str(bad), str(run_dir)],
        "compare-b": ["compare", str(run_dir), str(bad)],
    }[command]
    code = cli(monkeypatch, *args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and str(bad.name) in err
    assert "Traceback" not in err
    assert err.count("error:") == 1


# ----------------------------------------------------------------------------------------------- sweep, compare


def test_sweep_directory(sweep: tuple[Path, str]) -> None:
    sweep_dir, out = sweep
    assert sweep_dir.name.startswith("swp-sweep-")
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name.split("-")[1] for p in runs] == ["p0", "p1"]  # one run directory per point
    taus = []
    for path in runs:
        assert (path / "metrics.json").is_file() and (path / "report.html").is_file()
        config = yaml.safe_load((path / "config.yaml").read_text())
        (kd,) = [m for m in config["methods"] if m["name"] == "kd"]
        taus.append(kd["loss"]["tau"])
    assert taus == [1, 4]
    width, height = assert_png(sweep_dir / "tradeoff.png", min_side=300)
    assert width > height  # two panels side by side
    document = json.loads((sweep_dir / "sweep.json").read_text())
    assert document["grid"] == {"methods.kd.loss.tau": [1, 4]}
    assert [p["values"] for p in document["points"]] == [{"methods.kd.loss.tau": 1}, {"methods.kd.loss.tau": 4}]
    assert [p["label"] for p in document["points"]] == ["1", "4"]
    assert [p["run_dir"] for p in document["points"]] == [p.name for p in runs]
    assert document["figure"] == "tradeoff.png"
    # the printed sweep table: one row per (point, model), with the swept value and the test accuracy
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    by_key = {(r[0], r[1]): r for r in rows}
    assert set(by_key) == {(label, model) for label in ("1", "4") for model in ("teacher", "kd")}
    for label, path in zip(("1", "4"), runs, strict=True):
        for model in ("teacher", "kd"):
            f = frame(path, model, None)
            assert abs(float(by_key[(label, model)][2]) - accuracy(f)) <= HALF_UNIT
            assert abs(float(by_key[(label, model)][3]) - worst_group_accuracy(f)) <= HALF_UNIT
            assert abs(float(by_key[(label, model)][4]) - recall_disparity_mad(f)) <= HALF_UNIT
    assert str(sweep_dir / "tradeoff.png") in out


def _tested_verdict(va: float, vb: float, higher: bool, key: str, interval: str) -> str:
    """better / worse only where the printed paired-bootstrap interval of B − A excludes 0."""
    from fairdistill.report.compare import INTERVAL_METRICS

    if vb == va:
        return "same"
    if key not in INTERVAL_METRICS:
        return "no interval"
    low, high = (float(v) for v in interval.strip("[]").split(","))
    if low <= 0 <= high:
        return "no clear difference"
    return "better" if (vb > va) == higher else "worse"


def test_compare_shows_both_runs_and_the_difference(sweep: tuple[Path, str], monkeypatch) -> None:
    """The two sweep runs differ in one setting (the KD temperature); B − A recomputed from their metrics.json."""
    sweep_dir, _ = sweep
    run_a, run_b = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    code, out = cli_out(monkeypatch, "compare", str(run_a), str(run_b))
    assert code == 0, out
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    by_key = {(r[0], r[1]): r for r in rows}
    a = json.loads((run_a / "metrics.json").read_text())["models"]
    b = json.loads((run_b / "metrics.json").read_text())["models"]
    assert set(by_key) == {(model, title) for model in ("teacher", "kd") for title, _, _ in COLUMNS}
    differing = 0
    for model in ("teacher", "kd"):
        for title, key, higher in COLUMNS:
            va, vb = a[model]["splits"]["test"][key], b[model]["splits"]["test"][key]
            row = by_key[(model, title)]
            assert abs(float(row[2]) - va) <= HALF_UNIT and abs(float(row[3]) - vb) <= HALF_UNIT
            assert abs(float(row[4]) - (vb - va)) <= HALF_UNIT
            assert row[5] == _tested_verdict(va, vb, higher, key, row[6])
            differing += vb != va
    # the teacher is the same checkpoint in both runs; the students were distilled at different temperatures
    assert all(by_key[("teacher", title)][5] == "same" for title, _, _ in COLUMNS)
    assert differing > 0
    # accuracy also against the predictions themselves
    assert abs(float(by_key[("kd", "accuracy")][2]) - accuracy(frame(run_a, "kd", None))) <= HALF_UNIT
    assert abs(float(by_key[("kd", "accuracy")][3]) - accuracy(frame(run_b, "kd", None))) <= HALF_UNIT


# ----------------------------------------------------------------------------------------------- browser

_PROBE = """<pre id="fd-probe"></pre><script>
window.addEventListener("load", function () {
  function cells(row) { return Array.prototype.map.call(row.cells, function (c) { return c.textContent.trim(); }); }
  var images = Array.prototype.slice.call(document.images);
  var tables = Array.prototype.slice.call(document.querySelectorAll("table"));
  var first = tables[0];
  var result = {
    images: images.length,
    decoded: images.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length,
    tables: tables.map(function (t) { return {id: t.id, rows: t.tBodies.length ? t.tBodies[0].rows.length : 0}; }),
    headers: first ? cells(first.tHead.rows[0]) : []
  };
  if (first) {  // sort the comparison table by accuracy (ascending): a click on its header
    var column = result.headers.indexOf("accuracy");
    first.tHead.rows[0].cells[column].click();
    result.sorted = Array.prototype.map.call(first.tBodies[0].rows, function (r) {
      return parseFloat(r.cells[column].dataset.value); });
  }
  document.getElementById("fd-probe").textContent = JSON.stringify(result);
});
</script>"""


def find_browser() -> str | None:
    candidates = [os.environ.get("FAIRDISTILL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    for candidate in candidates:
        if candidate and (shutil.which(candidate) or (Path(candidate).is_file() and os.access(candidate, os.X_OK))):
            return shutil.which(candidate) or candidate
    return None


def artifacts_dir() -> Path:
    path = Path(os.environ.get("FAIRDISTILL_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    """Run by ``make test-browser`` (``-m browser``), not by ``make test``; without a browser it fails."""
    browser = find_browser()
    if browser is None:
        pytest.fail(
            "no Chromium found: install the chromium package (`make test-browser` tries to, as .ci/run "
            "does) or point FAIRDISTILL_CHROMIUM at a Chromium or Chrome binary"
        )
    source = (run_dir / "report.html").read_text()
    expected_images = source.count("<img ")
    probe = tmp_path / "report-probe.html"
    probe.write_text(source.replace("</body>", _PROBE + "</body>"))
    done = headless(browser, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="fd-probe">([^<]*)</pre>', done.stdout)
    assert found and found.group(1), "the probe script did not run:\n" + done.stdout[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["images"] == expected_images >= len(FIGURES)
    assert result["decoded"] == result["images"], "some <img> did not decode"
    ids = [t["id"] for t in result["tables"]]
    assert ids[:2] == ["comparison-test", "amplification"]
    assert {"comparison-val", "group-accuracy", "training"} <= set(ids)
    assert result["tables"][0]["rows"] == len(MODELS) and result["tables"][1]["rows"] == 1 + 2
    assert result["headers"] == ["model", "role", "method", "params", *(t for t, _, _ in COLUMNS)]
    assert result["sorted"] == sorted(result["sorted"]) and len(result["sorted"]) == len(MODELS)

    shot = artifacts_dir() / "report.png"
    shot.unlink(missing_ok=True)
    done = headless(
        browser,
        tmp_path / "profile",
        "--virtual-time-budget=5000",
        "--window-size=1280,2000",
        f"--screenshot={shot}",
        (run_dir / "report.html").as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert assert_png(shot, min_side=1000) == (1280, 2000)
