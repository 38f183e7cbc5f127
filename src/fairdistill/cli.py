"""Command line: ``fairdistill run | list``. Thin: parses arguments and calls experiment.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fairdistill.errors import FairdistillError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fair knowledge distillation: distil, then measure.")
console = Console()
errors = Console(stderr=True)


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Argument(help="YAML config (default: the embedded default run)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override a field: key.path=value (YAML value)")] = [],
    output: Annotated[Optional[Path], typer.Option("--output", help="Parent folder of the run directory")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the config and print the plan")] = False,
) -> None:
    """Train (or load) the teacher, distil one student per method, evaluate all, write the run directory."""
    from fairdistill import experiment
    from fairdistill.config import load_config
    from fairdistill.report.tables import TERMINAL_COLUMNS, comparison_table, to_rich
    from fairdistill.report.transfer import transfer_rich

    cfg = load_config(config, set_)
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    if dry_run:
        console.print(experiment.dry_run(cfg), highlight=False)
        return
    result = experiment.run(cfg)
    console.print(to_rich(comparison_table(result.metrics, "test", TERMINAL_COLUMNS), title=f"{cfg.name}: test split"))
    console.print(transfer_rich(result.metrics, title=f"{cfg.name}: teacher → student (test, %)"))
    console.print(f"report: {result.run_dir / 'report.md'}", highlight=False)
    console.print(f"run directory: {result.run_dir}", highlight=False)


@app.command("list")
def list_components() -> None:
    """List the registered datasets, models, losses and methods."""
    from fairdistill.data import DATASETS
    from fairdistill.distill import LOSSES
    from fairdistill.models import MODELS

    for title, registry in (("datasets", DATASETS), ("models", MODELS), ("losses (methods)", LOSSES)):
        console.print(f"[bold]{title}[/bold]")
        for name in registry.names():
            entry = registry.get(name)
            facts = ", ".join(f"{k}={v}" for k, v in entry.meta.items())
            console.print(f"  {name:<16} {entry.summary}" + (f" [{facts}]" if facts else ""), highlight=False)


def main() -> None:
    """Entry point: user errors print one message and exit with status 2, without a traceback."""
    try:
        app(standalone_mode=False)
    except FairdistillError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        errors.print("aborted")
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
