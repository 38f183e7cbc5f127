"""Sweeps train nothing twice: the teacher once per teacher setting, each method once per setting of its own;
``--methods`` keeps some of a config's methods (``run`` and ``sweep``); the sweep report (sweep.html, sweep.md).

Training is counted by wrapping :func:`fairdistill.experiment.fit` (one call per trained model, ``desc`` = its
name), on tiny colored-mnist runs.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from cli_runner import expect_user_error, run_cli, tiny_config
from fairdistill import experiment

METHODS = [
    {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
    {"name": "erm"},
    {"name": "soft", "loss": {"kind": "kd", "tau": 4.0, "alpha": 0.5}},
]


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """How many times each model (by name) was trained in this test."""
    counter: collections.Counter = collections.Counter()
    real_fit = experiment.fit

    def counting_fit(*args: Any, **kwargs: Any):
        counter[kwargs.get("desc")] += 1
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(experiment, "fit", counting_fit)
    return counter


def _only_dir(parent: Path) -> Path:
    (path,) = [p for p in parent.iterdir() if p.is_dir()]
    return path


def test_sweep_trains_the_teacher_once_and_each_unchanged_method_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fits: collections.Counter
) -> None:
    config = tiny_config(tmp_path / "sweep.yaml", methods=METHODS)
    code = run_cli(
        monkeypatch, "sweep", str(config), "--grid", "methods.kd.loss.tau=1,2,4", "--output", str(tmp_path / "sweeps")
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert fits == {"teacher": 1, "kd": 3, "erm": 1, "soft": 1}
    sweep_dir = _only_dir(tmp_path / "sweeps")
    document = json.loads((sweep_dir / "sweep.json").read_text())
    points = document["points"]
    assert [p["label"] for p in points] == ["1", "2", "4"]
    # every method at every point, in the config's order; reused rows point to where they were trained
    for k, point in enumerate(points):
        assert list(point["models"]) == ["teacher", "kd", "erm", "soft"]
        assert point["trained"] == (["teacher", "kd", "erm", "soft"] if k == 0 else ["kd"])
        assert "reused_from" not in point["models"]["kd"]
        for name in ("erm", "soft"):
            assert point["models"][name].get("reused_from") == (None if k == 0 else "p0")
        assert point["models"]["teacher"].get("reused_from") == (None if k == 0 else "p0")
        assert point["teacher"] == "trained" if k == 0 else point["teacher"].startswith("loaded from p0")
    first = points[0]["models"]
    for point in points[1:]:
        for name in ("erm", "soft"):
            copied = point["models"][name]
            assert copied["run_dir"] == points[0]["run_dir"]
            assert {k: v for k, v in copied.items() if k not in ("reused_from", "run_dir")} == first[name]
        # the teacher was loaded from the first point's checkpoint: the same test numbers
        assert point["models"]["teacher"]["accuracy"] == first["teacher"]["accuracy"]
    # the later runs hold the teacher (loaded) and the swept method only
    for point in points[1:]:
        run_dir = sweep_dir / point["run_dir"]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert list(metrics["models"]) == ["teacher", "kd"]
        assert metrics["models"]["teacher"]["method"] == "checkpoint"
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["teacher"]["checkpoint"] == str(sweep_dir / points[0]["run_dir"] / "checkpoints" / "teacher.pt")
    # intervals around every model's numbers
    for point in points:
        for entry in point["models"].values():
            for key in ("accuracy", "worst_group_accuracy", "recall_disparity_mad"):
                low, high = entry["interval"][key]
                assert low <= entry[key] + 1e-9 and entry[key] <= high + 1e-9
    # the printed table: 12 rows, reused ones marked
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    by_key = {(r[0], r[1]): r for r in rows}
    assert len(by_key) == 12
    assert by_key[("2", "erm")][-1] == "reused (p0)" and by_key[("2", "kd")][-1] == "here"
    # the sweep report: sweep.html embeds the plot, sweep.md links it; both hold every row
    html = (sweep_dir / "sweep.html").read_text()
    (uri,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    with Image.open(io.BytesIO(base64.b64decode(uri))) as image:
        assert image.size == Image.open(sweep_dir / "tradeoff.png").size
    assert html.count("reused from p0") == 6  # erm, soft and the teacher at points 1 and 2
    markdown = (sweep_dir / "sweep.md").read_text()
    assert "![trade-off plot](tradeoff.png)" in markdown
    assert markdown.count("reused from p0") == 6
    assert document["report"] == {"html": "sweep.html", "markdown": "sweep.md"}
    assert str(sweep_dir / "sweep.html") in out


def test_a_point_that_changes_no_model_makes_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fits: collections.Counter
) -> None:
    config = tiny_config(tmp_path / "sweep.yaml")
    cache_a, cache_b = tmp_path / "cache-a", tmp_path / "cache-b"
    code = run_cli(
        monkeypatch,
        "sweep",
        str(config),
        "--grid",
        f"cache_dir={cache_a},{cache_b}",
        "--output",
        str(tmp_path / "sweeps"),
    )
    assert code == 0, capsys.readouterr().err
    assert fits == {"teacher": 1, "kd": 1}
    sweep_dir = _only_dir(tmp_path / "sweeps")
    document = json.loads((sweep_dir / "sweep.json").read_text())
    first, second = document["points"]
    assert second["run_dir"] is None and second["trained"] == []
    assert len([p for p in sweep_dir.iterdir() if p.is_dir()]) == 1
    for name in ("teacher", "kd"):
        assert second["models"][name]["reused_from"] == "p0"
        assert second["models"][name]["accuracy"] == first["models"][name]["accuracy"]


def test_methods_option_keeps_the_named_methods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fits: collections.Counter
) -> None:
    config = tiny_config(tmp_path / "run.yaml", methods=METHODS)
    code = run_cli(monkeypatch, "run", str(config), "--methods", "kd", "--output", str(tmp_path / "runs"))
    assert code == 0, capsys.readouterr().err
    assert fits == {"teacher": 1, "kd": 1}
    run_dir = _only_dir(tmp_path / "runs")
    assert list(json.loads((run_dir / "metrics.json").read_text())["models"]) == ["teacher", "kd"]
    assert [m["name"] for m in yaml.safe_load((run_dir / "config.yaml").read_text())["methods"]] == ["kd"]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_methods_option_refuses_an_unknown_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fits: collections.Counter,
    command: str,
) -> None:
    config = tiny_config(tmp_path / "run.yaml", methods=METHODS)
    grid = ["--grid", "seed=0,1"] if command == "sweep" else []
    expect_user_error(
        monkeypatch,
        capsys,
        [command, str(config), "--methods", "kd,dedeir", *grid, "--output", str(tmp_path / "out")],
        "--methods: no method named 'dedeir'",
        "its methods: kd, erm, soft",
    )
    expect_user_error(
        monkeypatch,
        capsys,
        [command, str(config), "--methods", ",", *grid, "--output", str(tmp_path / "out")],
        "--methods: give at least one method name",
    )
    assert not fits
    assert not (tmp_path / "out").exists()


def test_sweep_with_methods_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fits: collections.Counter
) -> None:
    """--methods on a sweep: the dropped methods are neither trained nor listed; a seed axis retrains everything."""
    config = tiny_config(tmp_path / "sweep.yaml", methods=METHODS)
    code = run_cli(
        monkeypatch,
        "sweep",
        str(config),
        "--methods",
        "erm",
        "--grid",
        "seed=0,1",
        "--output",
        str(tmp_path / "sweeps"),
    )
    assert code == 0, capsys.readouterr().err
    assert fits == {"teacher": 2, "erm": 2}
    document = json.loads((_only_dir(tmp_path / "sweeps") / "sweep.json").read_text())
    assert document["methods"] == ["erm"]
    assert all(list(p["models"]) == ["teacher", "erm"] for p in document["points"])
    assert not any(e.get("reused_from") for p in document["points"] for e in p["models"].values())


def test_sweep_refuses_a_grid_over_a_method_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fits: collections.Counter
) -> None:
    config = tiny_config(tmp_path / "sweep.yaml", methods=METHODS)
    expect_user_error(
        monkeypatch,
        capsys,
        [
            "sweep",
            str(config),
            "--methods",
            "erm",
            "--grid",
            "methods.kd.loss.tau=1,2",
            "--output",
            str(tmp_path / "out"),
        ],
        "--grid methods.kd.loss.tau: method 'kd' is left out by --methods",
    )
    assert not fits


def test_several_seeds_reuse_each_seeds_teacher_and_the_unchanged_methods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fits: collections.Counter
) -> None:
    """With several seeds each seed's teacher is reloaded through ``teacher.checkpoint: .../seed{seed}/teacher.pt``;
    the unswept method trains once per seed, the swept one once per seed and point."""
    config = tiny_config(tmp_path / "sweep.yaml", methods=METHODS[:2], seeds=[0, 1])
    code = run_cli(
        monkeypatch, "sweep", str(config), "--grid", "methods.kd.loss.tau=1,2", "--output", str(tmp_path / "sweeps")
    )
    assert code == 0, capsys.readouterr().err
    assert fits == {"teacher": 2, "kd": 4, "erm": 2}
    sweep_dir = _only_dir(tmp_path / "sweeps")
    first, second = json.loads((sweep_dir / "sweep.json").read_text())["points"]
    assert second["trained"] == ["kd"] and second["models"]["erm"]["reused_from"] == "p0"
    assert second["models"]["teacher"]["reused_from"] == "p0"
    assert second["teacher"] == f"loaded from p0 ({first['run_dir']}/checkpoints/seed{{seed}}/teacher.pt)"
    second_metrics = json.loads((sweep_dir / second["run_dir"] / "metrics.json").read_text())
    first_metrics = json.loads((sweep_dir / first["run_dir"] / "metrics.json").read_text())
    for seed in ("0", "1"):  # the reloaded teachers are the same models: same test predictions, same metrics
        assert (
            second_metrics["models"]["teacher"]["seeds"][seed]["splits"]["test"]
            == first_metrics["models"]["teacher"]["seeds"][seed]["splits"]["test"]
        )


def test_tradeoff_plot_keeps_labels_apart_and_shows_the_front_in_the_legend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models sitting at one place (reused rows, a loaded teacher) get one merged label, labels near each other do
    not overlap, every model keeps its own marker, and the legend names the Pareto front."""
    from matplotlib.text import Text

    from fairdistill.report import plots

    drawn = []
    real_png = plots._png
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or real_png(fig))
    points = []
    for k, label in enumerate(["0", "0.5", "1"]):
        points += [
            {
                "label": label,
                "model": "teacher",
                "role": "teacher",
                "accuracy": 0.85,
                "recall_disparity_mad": 0.2,
                "worst_group_accuracy": 0.6,
                "interval": {"accuracy": [0.83, 0.87], "recall_disparity_mad": [0.17, 0.23]},
            },
            {
                "label": label,
                "model": "kd",
                "role": "student",
                "accuracy": 0.85,
                "recall_disparity_mad": 0.2,
                "worst_group_accuracy": 0.6,
            },
            {
                "label": label,
                "model": "adv",
                "role": "student",
                "accuracy": 0.80 + 0.001 * k,
                "recall_disparity_mad": 0.15 + 0.0005 * k,
                "worst_group_accuracy": 0.55 + 0.001 * k,
            },
        ]
    plots.tradeoff_png(points, "toy")
    (fig,) = drawn
    renderer = fig.canvas.get_renderer()
    assert "Pareto front (students)" in [t.get_text() for t in fig.legends[0].get_texts()]
    for ax in fig.axes[:2]:
        texts = {t.get_text(): t for t in ax.texts}
        assert set(texts) == {"teacher, kd: every point", "0", "0.5", "1"}
        # the labels' text (an annotation's own extent also covers the line joining a moved label to its point)
        boxes = [Text.get_window_extent(t, renderer) for t in texts.values()]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
        markers = {
            c.get_label(): c.get_paths()[0].vertices.tobytes()
            for c in ax.collections
            if c.get_label() in ("teacher", "kd", "adv")
        }
        assert len(set(markers.values())) == 3
