"""Mutation check: do the unit tests catch a wrong formula?

Each mutant below is one hand-written textual replacement in a file of ``src/fairdistill`` (a plausible wrong
formula: a bin edge on the wrong side, a 90 % interval, a τ instead of τ², ...). For each mutant, the tree is
copied to a temporary folder (``/tmp/mut-<k>/``: ``src/``, ``tests/`` and ``pyproject.toml``), the replacement is
applied to the COPY (the real files are never modified), and the relevant unit-test files run there with the
venv's python (``PYTHONPATH`` pointing at the copy's ``src``, ``pytest -x -q``). A mutant is *caught* when the
tests fail. The unmutated copy is run first: if its tests fail, the check stops.

    .venv/bin/python benchmarks/mutation_check.py [--ref HEAD] [--only NAME ...] [--jobs N] [--output PATH]

``--ref REV`` takes ``src/``, ``tests/`` and ``pyproject.toml`` from a git revision (``git archive``) instead of
the working tree, to measure the tests as they were. A mutant whose text is not in the tree is reported as
``not-applicable``; one whose defect the unmutated code already has (``present_if``) as ``defect-in-code`` (not
caught: the tests passed with it); an ``equivalent`` mutant (same values as the code) is listed but not run
and not counted. Writes ``benchmarks/results/mutation_check.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "src/fairdistill/"
T = "tests/unit/"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]
    note: str
    #: Text whose presence in the unmutated file means the code already has this defect.
    present_if: str | None = None
    #: Why the mutant computes the same values as the code (an equivalent mutant: left out of the total).
    equivalent: str | None = None


METRICS, AMPL, DEBIAS, LOSSES, ZOO = (
    T + f
    for f in ("test_metrics.py", "test_amplification.py", "test_debiasing.py", "test_losses.py", "test_loss_zoo.py")
)

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "ece-side-right",
        PKG + "evaluate/metrics.py",
        'side="left")',
        'side="right")',
        (METRICS,),
        "ECE bins [lo, hi) instead of (lo, hi]: a confidence on an edge falls in the upper bin",
    ),
    Mutant(
        "ece-divide-by-bins",
        PKG + "evaluate/metrics.py",
        "/ sizes.sum())",
        "/ n_bins)",
        (METRICS,),
        "ECE divided by the number of bins instead of N",
    ),
    Mutant(
        "mad-drops-zero-classes",
        PKG + "evaluate/metrics.py",
        "for d in disparity.values() if d is not None])",
        "for d in disparity.values() if d])",
        (METRICS,),
        "recall-disparity MAD over the classes with a non-zero disparity only (zeros left out)",
    ),
    Mutant(
        "eo-fairlearn-zero-convention",
        PKG + "evaluate/metrics.py",
        "for rows in (pos, ~pos)",
        "for rows in (np.ones_like(pos), np.ones_like(pos))",
        (METRICS,),
        "EO on the full arrays: fairlearn scores a TPR as 0 for an attribute value without positives",
    ),
    Mutant(
        "dp-wrong-positive-class",
        PKG + "evaluate/metrics.py",
        "positives = [1] if info.num_classes == 2 else labels",
        "positives = [0] if info.num_classes == 2 else labels",
        (METRICS,),
        "binary DP/EO with class 0 as the positive class",
        equivalent="with two classes the DP and EO gaps of class 0 equal those of class 1 (rates 1 − r)",
    ),
    Mutant(
        "interval-level-90",
        PKG + "evaluate/amplification.py",
        "    tail = 100.0 * (1.0 - confidence) / 2.0\n    result: dict[str, dict[str, Any]] = {}",
        "    tail = 100.0 * (1.0 - confidence)\n    result: dict[str, dict[str, Any]] = {}",
        (AMPL,),
        "paired-bootstrap interval at level 2·confidence − 1 (a 90 % interval when 95 % is asked)",
    ),
    Mutant(
        "model-interval-level-90",
        PKG + "evaluate/amplification.py",
        "    tail = 100.0 * (1.0 - confidence) / 2.0\n    result: dict[str, dict[str, float | None]] = {}",
        "    tail = 100.0 * (1.0 - confidence)\n    result: dict[str, dict[str, float | None]] = {}",
        (AMPL,),
        "per-model bootstrap interval at level 2·confidence − 1",
    ),
    Mutant(
        "amplification-mad-wrong-classes",
        PKG + "evaluate/amplification.py",
        "return _mean_defined(np.abs(disparity))",
        "return _mean_defined(np.abs(disparity[..., 1:]))",
        (AMPL,),
        "vectorised MAD leaves class 0 out",
    ),
    Mutant(
        "amplification-eo-fairlearn-zero",
        PKG + "evaluate/amplification.py",
        "tpr_gap = _gap(_ratio(true_pos, positives), positives > 0)",
        "tpr_gap = _gap(np.nan_to_num(_ratio(true_pos, positives)), n_attr[:, None, :] > 0)",
        (AMPL,),
        "vectorised EO scores the TPR of an attribute value without positives as 0",
    ),
    Mutant(
        "group-balanced-ignores-missing-groups",
        PKG + "distill/weighting.py",
        "present = int((counts > 0).sum())",
        "present = context.info.num_groups",
        (DEBIAS,),
        "group-balanced weights divide by all G groups, not the groups present",
    ),
    Mutant(
        "groupdro-exp-sign",
        PKG + "distill/weighting.py",
        "+ self.options.eta * group_loss * present",
        "- self.options.eta * group_loss * present",
        (DEBIAS,),
        "GroupDRO q ← q·exp(−η·L): the sign flipped",
    ),
    Mutant(
        "jtt-upweight-ignored",
        PKG + "distill/weighting.py",
        "torch.where(wrong, self.options.upweight, 1.0)",
        "torch.where(wrong, 1.0, 1.0)",
        (DEBIAS,),
        "JTT never up-weights its error set",
    ),
    Mutant(
        "normalize-ignored",
        PKG + "distill/method.py",
        "if self.weighting.normalize else weighted.mean()",
        "if False else weighted.mean()",
        (DEBIAS,),
        "weighting.normalize: true has no effect (always mean)",
    ),
    Mutant(
        "per-group-alpha-drops-loss-weights",
        PKG + "distill/mixing.py",
        "return (1.0 - alpha) * label_weight * terms.label + alpha * teacher_weight * terms.teacher",
        "return (1.0 - alpha) * terms.label + alpha * terms.teacher",
        (DEBIAS,),
        "per-group-alpha mixing replaces the loss's own weights (drops dkd's warm-up)",
        present_if="return (1.0 - alpha) * terms.label + alpha * terms.teacher",
    ),
    Mutant(
        "early-readout-product-for-power",
        PKG + "distill/readout.py",
        'torch.exp(beta * margin**alpha) if form == "power"',
        'torch.exp(beta * margin * alpha) if form == "power"',
        (DEBIAS,),
        "early-readout weight exp(β·m·α) where exp(β·m^α) is asked",
    ),
    Mutant(
        "early-readout-margin-top1",
        PKG + "distill/readout.py",
        "return top[:, 0] - top[:, 1]",
        "return top[:, 0]",
        (DEBIAS,),
        "readout margin p(1) instead of p(1) − p(2)",
    ),
    Mutant(
        "early-readout-skips-refit",
        PKG + "distill/readout.py",
        "            self._fit(features, y, seed=self.context.seed + state.epoch, warm_start=state.epoch > 0)\n",
        "            pass\n",
        (DEBIAS,),
        "the readout head is never fit between epochs (weights from a random head)",
    ),
    Mutant(
        "kd-tau-factor",
        PKG + "distill/losses.py",
        "teacher=tau**2 * kl",
        "teacher=tau * kl",
        (LOSSES, ZOO),
        "KD term τ·KL instead of τ²·KL",
    ),
    Mutant(
        "kd-alpha-inside-terms",
        PKG + "distill/losses.py",
        "LossTerms(label=ce, teacher=tau**2 * kl, label_weight=1.0 - alpha, teacher_weight=alpha)",
        "LossTerms(label=(1.0 - alpha) * ce, teacher=alpha * tau**2 * kl)",
        (LOSSES, ZOO, DEBIAS),
        "kd's α folded into its terms: the same loss, but a mixing rule then applies α twice",
    ),
    Mutant(
        "kd-naive-log-softmax",
        PKG + "distill/losses.py",
        "log_p_s = F.log_softmax(student_logits / tau, dim=-1)",
        "log_p_s = torch.log(F.softmax(student_logits / tau, dim=-1))",
        (LOSSES, ZOO),
        "KL through log(softmax): −inf/NaN at huge logits or small τ",
    ),
    Mutant(
        "ctkd-temperature-range",
        PKG + "distill/ctkd.py",
        "TAU_RANGE = 20.0",
        "TAU_RANGE = 10.0",
        (ZOO,),
        "CTKD τ = 1 + 10·sigmoid(θ) (consistent in temperature() and theta_for())",
    ),
    Mutant(
        "ctkd-tau-factor",
        PKG + "distill/ctkd.py",
        "return ce, tau**2 * kl, tau",
        "return ce, tau * kl, tau",
        (ZOO,),
        "CTKD term τ·KL instead of τ²·KL",
    ),
    Mutant(
        "ctkd-instance-reads-student-undetached",
        PKG + "distill/ctkd.py",
        "features = torch.cat([teacher_logits, student_logits.detach()], dim=1)",
        "features = torch.cat([teacher_logits, student_logits], dim=1)",
        (ZOO,),
        "the instance temperature network pushes on the student through its input",
    ),
    Mutant(
        "dkd-tckd-nckd-swap",
        PKG + "distill/dkd.py",
        "teacher=o.alpha * tckd + o.beta * nckd",
        "teacher=o.alpha * nckd + o.beta * tckd",
        (ZOO,),
        "DKD weights α_d and β_d swapped between TCKD and NCKD",
    ),
    Mutant(
        "dkd-naive-target-prob",
        PKG + "distill/dkd.py",
        "log_target = z.gather(1, y[:, None]).squeeze(1) - log_all",
        "log_target = torch.log(torch.softmax(z, dim=1).gather(1, y[:, None]).squeeze(1))",
        (ZOO,),
        "TCKD's log p_y through log(softmax): NaN at huge logits or small τ",
    ),
    Mutant(
        "rkd-angle-normalisation",
        PKG + "distill/relational.py",
        "/ ((b - 1) * (b - 2))",
        "/ (b * (b - 1))",
        (ZOO,),
        "RKD angle term averaged over B(B−1) instead of (B−1)(B−2) triplets",
    ),
    Mutant(
        "rkd-angle-batch-of-two",
        PKG + "distill/relational.py",
        "    if b < 3:\n",
        "    if b < 2:\n",
        (ZOO,),
        "RKD angle term computed for B = 2 (no triplets: 0/0)",
    ),
    Mutant(
        "rkd-distance-mean-over-diagonal",
        PKG + "distill/relational.py",
        "mu = (dist * nonzero).sum() / count if count > 0",
        "mu = dist.mean() if count > 0",
        (ZOO,),
        "RKD μ averaged over all B² entries, the zero diagonal included",
    ),
)


def _copy_tree(dest: Path, ref: str | None) -> None:
    """src/, tests/ and pyproject.toml of the working tree (or of git revision ``ref``) into ``dest``."""
    dest.mkdir(parents=True)
    if ref is not None:
        archive = subprocess.run(
            ["git", "archive", ref, "src", "tests", "pyproject.toml"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        rc, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        rc, output = -1, "timed out"
    failed = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    summary = failed[0] if failed else (output.strip().splitlines() or [""])[-1]
    return rc, time.monotonic() - start, summary[:300]


def _check_import_path(tree: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    where = subprocess.run(
        [sys.executable, "-c", "import fairdistill; print(fairdistill.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(tree)):
        raise SystemExit(f"fairdistill imports from {where}, not from the copy {tree}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=None, help="git revision to take src/ and tests/ from (default: working tree)")
    parser.add_argument("--only", nargs="*", default=None, help="mutant names to run (default: all)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/mutation_check.json")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test run")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if args.only is None or m.name in args.only]

    scratch = Path(tempfile.mkdtemp(prefix="mut-", dir="/tmp"))
    base = scratch / "base"
    _copy_tree(base, args.ref)
    _check_import_path(base)
    all_tests = tuple(sorted({t for m in mutants for t in m.tests if (base / t).exists()}))
    rc, seconds, summary = _run_tests(base, all_tests, args.timeout)
    print(f"unmutated: rc={rc} ({seconds:.0f} s) {summary}", flush=True)
    if rc != 0:
        raise SystemExit(f"the unmutated tests fail ({summary}); fix them before checking mutants")

    def check(k: int, mutant: Mutant) -> dict:
        text = (base / mutant.file).read_text()
        tests = tuple(t for t in mutant.tests if (base / t).exists())
        row = {"mutant": mutant.name, "file": mutant.file, "note": mutant.note, "tests": list(tests)}
        count = text.count(mutant.old)
        if mutant.equivalent is not None:
            row.update(status="equivalent", caught=None, detail=mutant.equivalent)
        elif mutant.present_if is not None and mutant.present_if in text and count == 0:
            row.update(
                status="defect-in-code",
                caught=False,
                detail="the unmutated code already has this defect and its tests pass",
            )
        elif count != 1:
            row.update(status="not-applicable", caught=None, detail=f"the text to replace occurs {count} times")
        else:
            tree = scratch / f"mut-{k}"
            shutil.copytree(base, tree)
            (tree / mutant.file).write_text(text.replace(mutant.old, mutant.new))
            rc, seconds, summary = _run_tests(tree, tests, args.timeout)
            shutil.rmtree(tree, ignore_errors=True)
            row.update(
                status="caught" if rc != 0 else "survived",
                caught=rc != 0,
                rc=rc,
                seconds=round(seconds, 1),
                detail=summary,
            )
        print(f"{row['status']:>15}  {mutant.name}  {row.get('detail', '')}", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(check, range(len(mutants)), mutants))
    shutil.rmtree(scratch, ignore_errors=True)

    applicable = [r for r in rows if r["caught"] is not None]
    caught = sum(1 for r in applicable if r["caught"])
    result = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tree": args.ref or "working tree",
        "caught": caught,
        "total": len(applicable),
        "mutants": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"caught {caught} of {len(applicable)} mutants; wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
