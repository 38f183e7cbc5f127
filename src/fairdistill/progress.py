"""What a run shows while it works, on stderr: the plan and run directory, a line per model and per model
epoch with the run's overall progress and ETA, and the slow phases between them (a spinner on a terminal, a
plain line when piped). stdout is left to the result tables."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

Verbosity = Literal["quiet", "normal", "verbose"]
VERBOSITIES: tuple[Verbosity, ...] = ("quiet", "normal", "verbose")

#: ``extra=`` for log records whose content the reporter already shows (kept out of the verbose echo).
ON_SCREEN = {"on_screen": True}

#: Record keys shown on a normal epoch line, with their short names; verbose shows every key.
_HEADLINE = {"train_loss": "loss", "val_acc": "val_acc", "val_worst_group_acc": "val_wga"}


class Progress:
    """Reports one run (or a sweep of runs) to the user.

    ``quiet`` shows nothing (warnings and errors still come through the logging handlers, and the result
    tables on stdout); ``normal`` shows the plan, the models, their epochs and the phases; ``verbose`` also
    echoes the informational log messages that otherwise go only to log.txt, and every field of an epoch's
    record. ``bars`` keeps tqdm's per-batch bars (on a terminal only); by default they follow the verbosity.
    """

    def __init__(
        self, verbosity: Verbosity = "normal", *, bars: bool | None = None, console: Console | None = None
    ) -> None:
        if verbosity not in VERBOSITIES:
            raise ValueError(f"verbosity: expected one of {', '.join(VERBOSITIES)}, got {verbosity!r}")
        self.verbosity = verbosity
        self.bars = verbosity != "quiet" if bars is None else bars
        self._console = console
        self._models = self._epochs = 0
        self._model = 0
        self._label = ""
        self._done = self._restored = 0
        self._started = time.monotonic()
        self._training: float | None = None  # when the first model began: the ETA's rate leaves data loading out

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._console

    @property
    def shown(self) -> bool:
        return self.verbosity != "quiet"

    def say(self, text: str) -> None:
        """One line (or block) of progress, unless quiet; plain text when stderr is not a terminal."""
        if self.shown:
            self.console.print(text, markup=False, emoji=False)

    def info(self, text: str) -> None:
        """A detail shown only when verbose."""
        if self.verbosity == "verbose":
            self.say(f"  {text}")

    def start(self, plan: str, run_dir: Path, *, models: int, epochs: int, resumed: bool = False) -> None:
        """A run begins: show its plan and directory; ``models`` and ``epochs`` (all models together) size
        the overall progress."""
        self._models, self._epochs = models, epochs
        self._model = self._done = self._restored = 0
        self._started, self._training = time.monotonic(), None
        self.say(plan)
        self.say(f"{'resuming in' if resumed else 'run directory:'} {run_dir}")

    def model_started(self, name: str, what: str) -> None:
        """The next model begins (``what``: e.g. "training, 10 epochs")."""
        self._model += 1
        self._label = name
        if self._training is None:
            self._training = time.monotonic()
        self.say(f"{self._prefix()} {name}: {what}")

    def restored(self, epochs: int) -> None:
        """The current model continues after ``epochs`` epochs read back from its checkpoint."""
        self._restored += epochs
        if epochs:
            self.say(f"{self._prefix()} {self._label}: continuing after epoch {epochs} (from its checkpoint)")

    def epoch(self, name: str, epoch: int, epochs: int, record: dict[str, Any]) -> None:
        """An epoch of the current model ended with ``record`` (train loss, validation scores, statistics)."""
        self._done += 1
        label = self._label or name
        shown = record if self.verbosity == "verbose" else {k: record[k] for k in _HEADLINE if k in record}
        values = "  ".join(f"{_HEADLINE.get(k, k)} {_number(v)}" for k, v in shown.items() if k != "epoch")
        self.say(f"{self._prefix()} {label} epoch {epoch}/{epochs}  {values}  | {self.overall()}")

    def overall(self) -> str:
        """Epochs done of all, time elapsed and the estimated time left."""
        now = time.monotonic()
        finished = min(self._done + self._restored, self._epochs)
        text = f"{finished}/{self._epochs} epochs, {duration(now - self._started)} elapsed"
        if finished >= self._epochs:
            return text + ", training done"
        if self._done:
            per_epoch = (now - (self._training or self._started)) / self._done
            text += f", ETA {duration(per_epoch * (self._epochs - finished))}"
        return text

    @contextmanager
    def phase(self, text: str, *, announce: bool = True, spinner: bool = True) -> Iterator[None]:
        """Slow work between epochs: a spinner on a terminal (then, with ``announce``, a line with the time
        it took), one line when piped (none without ``announce``). ``spinner=False`` for work that draws
        its own tqdm bar: a line then, on a terminal too."""
        if not self.shown:
            yield
            return
        started = time.monotonic()
        if not self.console.is_terminal or not spinner:
            if announce:
                self.say(f"{text} …")
            yield
            return
        with self.console.status(text, spinner="dots"):
            yield
        if announce:
            self.say(f"{text}: {duration(time.monotonic() - started)}")

    def finish(self) -> None:
        """The run ended."""
        self.say(f"finished in {duration(time.monotonic() - self._started)}")

    @contextmanager
    def showing_log(self, logger: str = "fairdistill") -> Iterator[None]:
        """While verbose, echo the informational messages of ``logger`` (warnings have their own handler)."""
        if self.verbosity != "verbose":
            yield
            return
        handler = _EchoHandler(self)
        target = logging.getLogger(logger)
        target.addHandler(handler)
        try:
            yield
        finally:
            target.removeHandler(handler)

    def _prefix(self) -> str:
        return f"[{self._model}/{self._models}]"


class _EchoHandler(logging.Handler):
    """INFO records (below WARNING, not already on screen) as indented progress lines."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or getattr(record, "on_screen", False):
            return
        try:
            self.progress.info(record.getMessage())
        except Exception:  # never let the echo break a run
            self.handleError(record)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 47 min``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


#: The reporter of library calls that pass none: shows nothing and leaves tqdm's bars as they were.
SILENT = Progress("quiet", bars=True)
