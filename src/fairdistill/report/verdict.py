"""The report's answer to "did distillation amplify bias, and which method fixes it at what cost".

Everything is read from the ``amplification`` section (teacher → student Δ with paired-bootstrap intervals) and
the models' test accuracy. The verdict is about the recall-disparity MAD and worst-group accuracy of the
reference student — the one of method ``kd`` (plain distillation) when the run has one, else the first. A
change counts only when its interval excludes 0; otherwise the sentence says it is not distinguishable from
noise. Post-processed models (``kd+threshold``) count as fixes like other students; peers (non-distilled
references) never do: the verdict names them in a sentence of their own. Also here: the amplification grid, one
row per student (post-processed model, peer) and one column per bias metric.
"""

from __future__ import annotations

from typing import Any

from fairdistill.evaluate.amplification import AMPLIFIED_METRICS, METRIC_TITLES
from fairdistill.report.tables import ComparisonTable, display_name, undefined_notes

#: The verdict of a run without a teacher → student comparison.
NO_VERDICT = "No teacher → student comparison in this run (no teacher or no student): no verdict on amplification."

#: The bias metrics the verdict is about, in order: the seeds/002 MAD, then worst-group error (1 − WGA).
VERDICT_METRICS: tuple[str, ...] = ("recall_disparity_mad", "worst_group_error")

#: How the verdict names each metric, and whether it shows the metric as is or as 1 − value (accuracy).
_NAMES: dict[str, tuple[str, bool]] = {
    "recall_disparity_mad": ("recall-disparity MAD", False),
    "worst_group_error": ("worst-group accuracy", True),
}


def reference_student(metrics: dict[str, Any], students: list[str]) -> str | None:
    """The plain-KD student (method or name ``kd``), else the first student; None without students."""
    for name in students:
        model = metrics["models"].get(name, {})
        if model.get("method") == "kd" or name == "kd":
            return name
    return students[0] if students else None


def _direction(entry: dict[str, Any] | None) -> str | None:
    """``up`` / ``down`` when the interval lies above / below 0, ``noise`` when it holds 0, None if undefined."""
    if not entry:
        return None
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if entry.get("delta") is None or low is None or high is None:
        return None
    return "up" if low > 0 else "down" if high < 0 else "noise"


def _interval(entry: dict[str, Any], level: int) -> str:
    return f"Δ {entry['delta']:+.3f}, {level}% interval [{entry['ci_low']:+.3f}, {entry['ci_high']:+.3f}]"


def _shown(key: str, value: float) -> float:
    """The value as the verdict states it: worst-group error as worst-group accuracy."""
    return 1.0 - value if _NAMES[key][1] else value


def _accuracy(metrics: dict[str, Any], name: str, split: str) -> float | None:
    value = metrics["models"].get(name, {}).get("splits", {}).get(split, {}).get("accuracy")
    return None if value is None else float(value)


def _cost(metrics: dict[str, Any], name: str, reference: str, split: str) -> str:
    """``at an accuracy cost of 1.2 points against kd (0.981 → 0.969; teacher 0.990)``, or no cost."""
    a_ref, a_new = _accuracy(metrics, reference, split), _accuracy(metrics, name, split)
    if a_ref is None or a_new is None:
        return "(accuracy unknown)"
    points = 100.0 * (a_ref - a_new)
    teacher = next((n for n, m in metrics["models"].items() if m.get("role") == "teacher"), None)
    a_teacher = None if teacher is None else _accuracy(metrics, teacher, split)
    change = f"{a_ref:.3f} → {a_new:.3f}" + ("" if a_teacher is None else f"; teacher {a_teacher:.3f}")
    if points > 0.05:
        return f"at an accuracy cost of {points:.1f} points against {reference} ({change})"
    if points < -0.05:
        return f"at no accuracy cost: it is {-points:.1f} points more accurate than {reference} ({change})"
    return f"at no accuracy cost against {reference} ({change})"


def _headline(reference: str, directions: dict[str, str], level: int) -> str:
    """Whether distillation amplified bias, by which metrics, in one sentence."""
    names = {key: _NAMES[key][0] for key in directions}
    up = [names[k] for k, d in directions.items() if d == "up"]
    down = [names[k] for k, d in directions.items() if d == "down"]
    if up:
        also = f" (its {' and '.join(down)} improves)" if down else ""
        return (
            f"Distillation amplified bias: {reference} is worse than the teacher on {' and '.join(up)}, with "
            f"{level}% intervals excluding 0{also}."
        )
    if down:
        return (
            f"Distillation did not amplify bias: {reference} is better than the teacher on "
            f"{' and '.join(down)} and no bias metric is worse beyond noise."
        )
    return (
        f"No amplification is shown: {reference}'s changes from the teacher are not distinguishable from "
        "noise (every interval includes 0)."
    )


def _detail(reference: str, key: str, entry: dict[str, Any], level: int) -> str:
    """One metric's teacher → student change with its interval and what the interval says."""
    name, inverted = _NAMES[key]
    direction = _direction(entry)
    t, s = _shown(key, entry["teacher"]), _shown(key, entry["student"])
    worse = {"up": "falls" if inverted else "rises", "down": "rises" if inverted else "falls"}
    tail = {
        "up": "excluding 0",
        "down": "excluding 0",
        "noise": "not distinguishable from noise: the interval includes 0",
    }[direction or "noise"]
    change = (
        f"stays at {t:.3f}"
        if f"{t:.3f}" == f"{s:.3f}"
        else (f"{worse.get(direction or '', 'changes')} from {t:.3f} (teacher) to {s:.3f}")
    )
    measured = f"1 − WGA {_interval(entry, level)}" if inverted else _interval(entry, level)
    return f"{reference}'s {name} {change} ({measured}; {tail})."


def _fix_sentence(metrics: dict[str, Any], section: dict[str, Any], reference: str, key: str, level: int) -> str:
    """Which other student brings an amplified metric back to the teacher's level, and at what accuracy cost."""
    split = section.get("split", "test")
    name = _NAMES[key][0]
    others = {
        n: by_metric[key]
        for n, by_metric in _fixes(metrics, section).items()
        if n != reference and _direction(by_metric.get(key)) is not None
    }
    if not others:
        return f"No other student in this run to compare with on {name}."
    by_accuracy = sorted(others, key=lambda n: -(_accuracy(metrics, n, split) or 0.0))
    recovered = [n for n in by_accuracy if _direction(others[n]) in ("down", "noise")]
    if not recovered:
        best = min(others, key=lambda n: others[n]["student"])
        return (
            f"No method brings {name} back to the teacher's level: the closest, {best} "
            f"({_shown(key, others[best]['student']):.3f}; {_interval(others[best], level)}), is still worse."
        )
    best = recovered[0]
    how = "to better than the teacher's" if _direction(others[best]) == "down" else "back to the teacher's level"
    also = (
        f" Of the {len(recovered)} methods that bring it back ({', '.join(recovered)}), {best} keeps the most accuracy."
        if recovered[1:]
        else ""
    )
    return (
        f"{best} brings {name} {how} ({_shown(key, others[best]['student']):.3f}; "
        f"{_interval(others[best], level)}) {_cost(metrics, best, reference, split)}.{also}"
    )


def _best_improvement(metrics: dict[str, Any], section: dict[str, Any], reference: str, level: int) -> str:
    """Without amplification: the most accurate other student whose MAD is below the teacher's beyond noise."""
    key, split = VERDICT_METRICS[0], section.get("split", "test")
    better = [
        n
        for n, by_metric in _fixes(metrics, section).items()
        if n != reference and _direction(by_metric.get(key)) == "down"
    ]
    if not better:
        return "No other student's MAD differs from the teacher's by more than noise either."
    best = max(better, key=lambda n: _accuracy(metrics, n, split) or 0.0)
    entry = section["students"][best][key]
    return (
        f"{best} lowers the MAD below the teacher's ({entry['student']:.3f}; {_interval(entry, level)}) "
        f"{_cost(metrics, best, reference, split)}."
    )


def verdict_sentences(metrics: dict[str, Any]) -> list[str]:
    """The verdict, a few sentences: the headline, the reference student's change of each verdict metric, then
    per amplified metric which method fixes it at what accuracy cost. One sentence without a comparison."""
    section = metrics.get("amplification")
    if not section or not section.get("students"):
        return [NO_VERDICT]
    level = round(100 * section.get("confidence", 0.95))
    reference = reference_student(metrics, [n for n in section["students"] if _role(metrics, n) == "student"])
    if reference is None:
        return [NO_VERDICT]
    entries = section["students"][reference]
    directions = {key: _direction(entries.get(key)) for key in VERDICT_METRICS if key in entries}
    defined = {key: d for key, d in directions.items() if d is not None}
    if not defined:
        return [f"The bias metrics of {reference} or of the teacher are undefined on this split: no verdict."]
    sentences = [_headline(reference, defined, level)]
    sentences += [_detail(reference, key, entries[key], level) for key in defined]
    amplified = [key for key, d in defined.items() if d == "up"]
    sentences += [_fix_sentence(metrics, section, reference, key, level) for key in amplified]
    if not amplified:
        sentences.append(_best_improvement(metrics, section, reference, level))
    peers = _peer_sentence(metrics, section, reference)
    return sentences + ([peers] if peers else [])


def _role(metrics: dict[str, Any], name: str) -> str:
    """A model's role (``student`` for an entry without one)."""
    return str(metrics["models"].get(name, {}).get("role", "student"))


def _fixes(metrics: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    """The compared models that count as a method fixing the reference student: students, post-processed
    students and the distilled student inside ExponentiatedGradient (``reduced``); not the post-processed
    teacher, nor peers (they are no distillation)."""
    models = metrics["models"]

    def counts(name: str) -> bool:
        if _role(metrics, name) == "postprocessed":
            source = models.get(name, {}).get("source")
            return source in models and _role(metrics, source) == "student"
        return _role(metrics, name) in ("student", "reduced")

    return {n: by for n, by in section["students"].items() if counts(n)}


def _peer_sentence(metrics: dict[str, Any], section: dict[str, Any], reference: str) -> str | None:
    """The peers' accuracy and MAD next to the reference student's, or None without peers."""
    split = section.get("split", "test")
    peers = [n for n in section["students"] if _role(metrics, n) == "peer"]
    if not peers:
        return None

    def facts(name: str) -> str:
        accuracy = _accuracy(metrics, name, split)
        mad = section["students"][name].get(VERDICT_METRICS[0], {}).get("student")
        return f"accuracy {'—' if accuracy is None else f'{accuracy:.3f}'}, MAD {'—' if mad is None else f'{mad:.3f}'}"

    shown = "; ".join(f"{display_name(n, metrics['models'].get(n))} {facts(n)}" for n in peers)
    return f"For reference, without a teacher (not distilled): {shown}; {reference}: {facts(reference)}."


def amplification_grid(metrics: dict[str, Any]) -> ComparisonTable | None:
    """Student × bias metric: the teacher's row, then per student its value and, on a second line, Δ with its
    interval. ``values`` holds Δ (the teacher row its values). None without an ``amplification`` section."""
    section = metrics.get("amplification")
    if not section or not section.get("students"):
        return None
    level = round(100 * section.get("confidence", 0.95))
    keys = [k for k in AMPLIFIED_METRICS if any(k in by for by in section["students"].values())]
    first = next(iter(section["students"].values()))
    reference = str(section.get("reference", "teacher"))
    teacher_row = [
        reference if reference == "teacher" else f"{reference} (teacher)",
        *(_value(first.get(k, {}).get("teacher")) for k in keys),
    ]
    rows, values = [teacher_row], [[None, *(first.get(k, {}).get("teacher") for k in keys)]]
    for student, by_metric in section["students"].items():
        cells, numbers = [display_name(student, metrics["models"].get(student))], [None]
        for key in keys:
            entry = by_metric.get(key, {})
            cells.append(_grid_cell(entry))
            numbers.append(entry.get("delta"))
        rows.append(cells)
        values.append(numbers)
    headers = ["model", *(METRIC_TITLES.get(k, k) for k in keys)]
    shown = tuple((METRIC_TITLES.get(k, k), k, False) for k in keys)
    legend = (
        f"Each student cell: its value, then Δ = student − teacher with the {level}% paired-bootstrap "
        "interval; lower is fairer for every column, so Δ > 0 is amplified bias."
    )
    notes = (legend, *undefined_notes(metrics, section.get("split", "test"), shown))
    return ComparisonTable(headers, rows, values, [None, *(False for _ in keys)], notes)


def grid_marks(metrics: dict[str, Any]) -> dict[tuple[int, int], str]:
    """(row, column) of the grid → ``up`` / ``down`` for the Δ whose interval excludes 0."""
    section = metrics.get("amplification") or {}
    keys = [k for k in AMPLIFIED_METRICS if any(k in by for by in section.get("students", {}).values())]
    marks = {}
    for i, by_metric in enumerate(section.get("students", {}).values(), start=1):
        for j, key in enumerate(keys, start=1):
            direction = _direction(by_metric.get(key, {}))
            if direction in ("up", "down"):
                marks[(i, j)] = direction
    return marks


def _grid_cell(entry: dict[str, Any]) -> str:
    if entry.get("delta") is None:
        return f"{_value(entry.get('student'))}\nΔ —"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    interval = "" if low is None or high is None else f" [{low:+.4f}, {high:+.4f}]"
    return f"{_value(entry.get('student'))}\nΔ {entry['delta']:+.4f}{interval}"


def _value(value: Any) -> str:
    return "—" if value is None else f"{float(value):.4f}"
