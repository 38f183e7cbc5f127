"""Command line: ``fairdistill run | sweep | report | compare | list``. Thin: parses arguments, calls the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fairdistill.errors import FairdistillError, as_user_error

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Fair knowledge distillation: distil, then measure.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
if not console.is_terminal:  # piped or logged output: wide enough for the tables instead of rich's 80 columns
    console.width = 140
errors = Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        from fairdistill import __version__

        console.print(f"fairdistill {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """Fair knowledge distillation: distil, then measure."""


QUIET_HELP = "Show no progress on stderr: only warnings, errors and the results"
VERBOSE_HELP = "Also show on stderr the details written to log.txt (cache hits, every epoch statistic)"
METHODS_HELP = "Keep only these methods of the config (comma-separated names): --methods kd,dedier"


def _method_names(methods: str | None) -> list[str] | None:
    """``--methods a,b`` → ``["a", "b"]`` (None when the option is not given)."""
    return None if methods is None else [name.strip() for name in methods.split(",")]


def _progress(quiet: bool, verbose: bool):
    """The progress reporter the --quiet / --verbose flags ask for."""
    from fairdistill.errors import ConfigError
    from fairdistill.progress import Progress

    if quiet and verbose:
        raise ConfigError("--quiet and --verbose contradict each other; give one of them")
    return Progress("quiet" if quiet else "verbose" if verbose else "normal")


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="YAML config (default: the embedded default run)")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a field: key.path=value (YAML value)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Parent folder of the run directory")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the config and print the plan")] = False,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue a stopped run in its directory RUN_DIR, with the config saved there"),
    ] = None,
    methods: Annotated[str | None, typer.Option("--methods", help=METHODS_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Train (or load) the teacher, distil one student per method, evaluate all, write the run directory."""
    from fairdistill import experiment
    from fairdistill.config import load_config
    from fairdistill.errors import ConfigError

    progress = _progress(quiet, verbose)
    if resume is not None:
        if config is not None or set_ or output is not None or dry_run or methods is not None:
            raise ConfigError(
                "--resume continues a run with the config saved in its directory; "
                "drop CONFIG, --set, --output, --methods and --dry-run"
            )
        result = experiment.resume(resume, progress=progress)
        _print_run(result)
        return
    cfg = load_config(config, set_ or [], _method_names(methods))
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    if dry_run:
        console.print(experiment.dry_run(cfg), highlight=False)
        return
    _print_run(experiment.run(cfg, progress=progress))


def _print_run(result) -> None:
    """The comparison and teacher → student tables of a finished run (each as wide as the console allows, with
    its legend and notes), and where its files are (only by process 0 of a multi-process run)."""
    if not result.is_main:
        return
    from fairdistill.report.tables import terminal_table, to_rich
    from fairdistill.report.transfer import terminal_transfer_table, transfer_rich

    name = result.metrics["run"]["name"]
    table = terminal_table(result.metrics, "test", console.width)
    console.print(
        to_rich(table, title=f"{name}: test split", left=sum(h in ("model", "role", "method") for h in table.headers))
    )
    for line in (table.legend, *table.notes):
        console.print(line, highlight=False, markup=False)
    transfer = terminal_transfer_table(result.metrics, "test", console.width)
    if transfer.rows:
        console.print(transfer_rich(result.metrics, title=f"{name}: teacher → student (test, %)", width=console.width))
        console.print(transfer.legend, highlight=False, markup=False)
    console.print(f"report: {result.run_dir / 'report.md'}", highlight=False)
    console.print(f"html report: {result.run_dir / 'report.html'}", highlight=False)
    console.print(f"run directory: {result.run_dir}", highlight=False)


@app.command()
def sweep(
    config: Annotated[Path | None, typer.Argument(help="YAML config (default: the embedded default run)")] = None,
    grid: Annotated[
        list[str] | None, typer.Option("--grid", help="A swept field: key.path=v1,v2,... (YAML values)")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a field: key.path=value (YAML value)")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Parent folder of the sweep directory")] = None,
    methods: Annotated[str | None, typer.Option("--methods", help=METHODS_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    """Run the config at every point of a grid, training the teacher and each method once per distinct setting;
    write sweep.json, a trade-off plot and sweep.html / sweep.md in one sweep directory."""
    from fairdistill.report.tables import to_rich
    from fairdistill.sweep import run_sweep, sweep_table

    result = run_sweep(
        config, grid or [], set_ or [], output, _method_names(methods), progress=_progress(quiet, verbose)
    )
    if not result.is_main:
        return
    console.print(to_rich(sweep_table(result.document), title=f"{result.document['name']}: sweep (test split)"))
    console.print(f"trade-off plot: {result.sweep_dir / 'tradeoff.png'}", highlight=False)
    console.print(f"sweep report: {result.sweep_dir / 'sweep.html'}", highlight=False)
    console.print(f"sweep report: {result.sweep_dir / 'sweep.md'}", highlight=False)
    console.print(f"sweep directory: {result.sweep_dir}", highlight=False)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holding metrics.json)")],
) -> None:
    """Rebuild report.html, report.md and the figures of a run directory."""
    from fairdistill import experiment

    html = experiment.rebuild_report(run_dir)
    console.print(f"report: {html}", highlight=False)
    console.print(f"report: {html.with_name('report.md')}", highlight=False)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="First run directory (A)")],
    run_b: Annotated[Path, typer.Argument(help="Second run directory (B)")],
    split: Annotated[str, typer.Option("--split", help="Split to compare: test or val")] = "test",
    force: Annotated[
        bool, typer.Option("--force", help="Compare runs on different data anyway (with a warning)")
    ] = False,
) -> None:
    """Print how two runs' configs differ, then their metrics side by side, per model and metric, with B − A.

    B is called better or worse only where the 95% paired-bootstrap interval of B − A over the split's examples
    (both runs' saved predictions, matched by example) excludes 0; otherwise "no clear difference". Runs on
    different data (dataset name, options, split sizes, class / attribute / group names) are refused, since
    better / worse means nothing across them; --force prints the table under a warning.
    """
    from fairdistill.errors import ConfigError
    from fairdistill.report.compare import config_differences, paired_intervals
    from fairdistill.report.tables import compare_table, dataset_differences, to_rich
    from fairdistill.rundir import read_metrics

    if split not in ("test", "val"):
        raise ConfigError(f"--split: expected test or val, got {split!r}")
    metrics_a, metrics_b = read_metrics(run_a), read_metrics(run_b)
    differences = dataset_differences(metrics_a, metrics_b)
    shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
    if differences and not force:
        raise FairdistillError(
            f"A ({run_a}) and B ({run_b}) were run on different data, so their metrics are not "
            f"comparable: {shown} (--force compares them anyway)"
        )
    if differences:
        from rich.markup import escape

        errors.print(
            f"[bold red]WARNING: A and B were run on different data; the values below come from "
            f"different {split} sets:[/bold red] {escape(shown)}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"A: {run_a.resolve()}\nB: {run_b.resolve()}", highlight=False)
    changes = config_differences(run_a, run_b)
    console.print(
        "config (A → B): " + ("the same" if not changes else f"{len(changes)} difference(s)"),
        highlight=False,
        markup=False,
    )
    for change in changes:
        console.print(f"  {change}", highlight=False, markup=False)
    intervals = paired_intervals(run_a, metrics_a, run_b, metrics_b, split)
    table = compare_table(metrics_a, metrics_b, split, intervals=intervals.by_model, confidence=intervals.confidence)
    console.print(to_rich(table, title=f"{split} split: A vs B"))
    for note in (intervals.note, *table.notes):
        console.print(note, highlight=False, markup=False)


@app.command()
def bench(
    output: Annotated[
        Path | None, typer.Option("--output", help="Folder for bench.json (default: a new runs/bench-<timestamp>)")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="About 5 minutes on 2 cores: fewer rounds, examples and Laplace rows")
    ] = False,
    datasets: Annotated[
        str | None, typer.Option("--datasets", help="Only these datasets (comma-separated): adult,colored-mnist,text")
    ] = None,
    max_examples: Annotated[
        int | None, typer.Option("--max-examples", help="Subsample every dataset to about this many examples")
    ] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Interleaved rounds per case (at least 3)")] = None,
    laplace_rows: Annotated[
        int | None, typer.Option("--laplace-rows", help="Rows of the synthetic Laplace features")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch.set_num_threads (default: torch's, recorded)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
) -> None:
    """Time an epoch of the bare PyTorch loop, erm, kd (cached and live teacher) and every registered loss,
    weighting, mixing rule and the adversary, interleaved (medians of rounds); the teacher-cache build, the
    Laplace fit + probit predictive and peak memory. Writes DIR/bench.json and prints the table."""
    from fairdistill.bench import make_settings, prepare_output, print_tables, run_bench
    from fairdistill.progress import Progress

    settings = make_settings(quick, _method_names(datasets), max_examples, rounds, laplace_rows)
    folder = prepare_output(output)
    progress = Progress("quiet" if quiet else "normal", bars=False)
    document = run_bench(settings, folder, progress.say, threads)
    print_tables(document, console)
    console.print(f"bench: {folder / 'bench.json'}", highlight=False)


@app.command("list")
def list_components() -> None:
    """List the registered datasets, models, losses, weightings, mixing rules and adversary inputs of the
    methods, and the packaged configs."""
    from typing import get_args

    from fairdistill.config import PACKAGED_CONFIGS, packaged_configs
    from fairdistill.data import DATASETS
    from fairdistill.distill import LOSSES, MIXINGS, WEIGHTINGS
    from fairdistill.distill.adversary import AdversaryOptions
    from fairdistill.models import MODELS

    registries = (
        ("datasets", DATASETS),
        ("models", MODELS),
        ("losses (methods)", LOSSES),
        ("weightings (weighting.kind)", WEIGHTINGS),
        ("mixings (mixing.kind)", MIXINGS),
    )
    for title, registry in registries:
        console.print(f"[bold]{title}[/bold]")
        for name in registry.names():
            entry = registry.get(name)
            facts = ", ".join(f"{k}={v}" for k, v in entry.meta.items())
            console.print(
                f"  {name:<16} {entry.summary}" + (f" [{facts}]" if facts else ""), highlight=False, markup=False
            )
    adversary_inputs = {
        "probs": "the student's probabilities (demographic parity)",
        "probs+label": "the probabilities and the one-hot label (equalised odds)",
        "embedding": "the student's embedding (representation invariance)",
    }
    console.print("[bold]adversary inputs[/bold] (adversary.input)")
    for name in get_args(AdversaryOptions.model_fields["input"].annotation):
        console.print(f"  {name:<16} {adversary_inputs.get(name, '')}".rstrip(), highlight=False, markup=False)
    console.print("[bold]configs[/bold] (fairdistill run NAME)")
    for name in packaged_configs():
        console.print(f"  {name:<16} {PACKAGED_CONFIGS / (name + '.yaml')}", highlight=False, markup=False)


def main() -> None:
    """Entry point, and the one place that turns errors into exit statuses: a user error (a FairdistillError,
    or what :func:`fairdistill.errors.as_user_error` counts as one, e.g. a full disk) prints one message and
    exits with status 2, without a traceback; a command-line usage mistake exits 2 with the usage hint."""
    from rich.markup import escape

    try:
        from typer._click import exceptions as click_exceptions  # typer ≥ 0.2x ships its own copy of click
    except ImportError:  # older typer uses click itself
        from click import exceptions as click_exceptions  # type: ignore[no-redef]

    completed = False
    try:
        app(standalone_mode=False, prog_name="fairdistill")
        completed = True
    except typer.Exit as exc:
        completed = exc.exit_code == 0
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        errors.print("aborted")
        sys.exit(130)
    except click_exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)  # 2 for usage mistakes
    except Exception as exc:
        user_error = as_user_error(exc)
        if user_error is None:
            raise
        errors.print(f"[red]error:[/red] {escape(str(user_error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    finally:
        if "torch.distributed" in sys.modules:  # a command that never loaded torch has no process group to close
            from fairdistill.processes import end_process_group

            end_process_group(completed=completed)


if __name__ == "__main__":
    main()
