"""Progress display for ``zgbench run``: runs done/total with ETA, and the current run's budget.

The harness talks to a reporter through five calls (``begin``, ``start_run``,
``run_progress``, ``advance``, ``end``); :class:`RichReporter` draws them with rich on a
terminal, :class:`PlainReporter` prints plain lines where the output is not a terminal (a
log file, CI, ``nohup``): rich's live display would print nothing there until the end.
:func:`reporter_for` picks one. :func:`quiet_library_loggers` keeps the INFO logs of
libraries that log every generation (EvoTorch, Ray) out of the display.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported by the reporter that draws with it: a worker never does
    from rich.console import Console

#: Loggers of libraries that log at INFO level every generation or task (EvoTorch's
#: searchers, Ray's workers): at WARNING they keep their warnings and errors.
LIBRARY_LOGGERS = ("evotorch", "ray", "ray.data", "ray.tune", "ray.train")


def quiet_library_loggers(names: tuple[str, ...] = LIBRARY_LOGGERS) -> None:
    """Raise the loggers ``names`` to WARNING where they are set lower (or not set): their
    INFO lines, one per generation, would scroll the progress display away. Called before
    each run (a library configures its logger when imported, which may happen in the run)."""
    for name in names:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def reporter_for(console: Console) -> "RichReporter | PlainReporter":
    """Rich bars on a terminal, plain lines elsewhere."""
    return RichReporter(console) if console.is_terminal else PlainReporter(console.file)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class PlainReporter:
    """One line per finished run (``[12/276] ok sphere[dim=8] × cge (seed 0) · 0:01:02
    elapsed · ETA 0:04:10``), at most one every ``interval`` seconds except failures and the
    last run, so that a log shows a long run going and a short one stays short."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._total = self._done = self._skipped = 0
        self._t0 = self._last = 0.0

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def begin(self, total: int, skipped: int) -> None:
        self._total, self._done, self._skipped = total, skipped, skipped
        self._t0 = time.perf_counter()
        self._last = -math.inf
        done = f", {skipped} already done" if skipped else ""
        self._print(f"runs: {total} planned{done}")

    def start_run(self, run: Any) -> None:
        """Nothing: a plain log gets one line per finished run."""

    def run_progress(self, fraction: float) -> None:
        """Nothing: the budget bar is for terminals."""

    def advance(self, run: Any, record: Any) -> None:
        """``record``: the run's :class:`~zgbench.record.Record`."""
        self._done += 1
        now = time.perf_counter()
        failed = record.status == "failed"
        if not (failed or self._done == self._total or now - self._last >= self.interval):
            return
        self._last = now
        elapsed = now - self._t0
        ran = self._done - self._skipped
        eta = elapsed / ran * (self._total - self._done) if ran else math.nan
        line = (f"[{self._done}/{self._total}] {record.status} {run.describe()} · "
                f"{_clock(elapsed)} elapsed · ETA {_clock(eta) if math.isfinite(eta) else '?'}")
        if failed:
            last = (record.error or "").strip().splitlines()[-1:] or ["?"]
            line += f": {last[0]}"
        self._print(line)

    def end(self) -> None:
        self._print(f"runs: {self._done}/{self._total} done in "
                    f"{_clock(time.perf_counter() - self._t0)}")


def budget_unit(budget: Any) -> tuple[str, int]:
    """What the budget bar counts: the run's one bounded counter in its own unit (2000 evals),
    or per mille of the most-used counter where several bound the run (the problem reports
    the largest used share, so no single unit would be right)."""
    bounded = [(name, getattr(budget, name)) for name in ("evals", "grads", "steps")
               if getattr(budget, name) is not None]
    if len(bounded) == 1 and budget.seconds is None:
        return bounded[0][0], int(bounded[0][1])
    if not bounded and budget.seconds is not None:
        return "seconds", max(int(math.ceil(budget.seconds)), 1)
    return "‰ of the most-used limit", 1000


class RichReporter:
    """Two bars: the cross product (runs) and the budget spent by the current run."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=False)
        self._runs = None
        self._budget = None

    def begin(self, total: int, skipped: int) -> None:
        self.progress.start()
        self._runs = self.progress.add_task("runs", total=total, completed=skipped)
        self._budget = self.progress.add_task("budget", total=1000, visible=False)

    def start_run(self, run: Any) -> None:
        from rich.markup import escape

        self.progress.update(self._runs, description=f"runs · {escape(run.describe())}")
        self._unit, self._total = budget_unit(run.budget)
        self.progress.reset(self._budget, total=self._total, visible=True,
                            description=f"  budget ({self._unit})")

    def run_progress(self, fraction: float) -> None:
        self.progress.update(self._budget, completed=int(round(self._total * fraction)))

    def advance(self, run: Any, record: Any) -> None:
        """``record``: the run's :class:`~zgbench.record.Record`."""
        from rich.markup import escape

        if record.status == "failed":
            last = (record.error or "").strip().splitlines()[-1:] or ["?"]
            self.progress.console.print(f"[red]failed[/red] {escape(run.describe())}: {escape(last[0])}",
                                        highlight=False)
        self.progress.advance(self._runs)

    def end(self) -> None:
        self.progress.update(self._budget, visible=False)
        self.progress.update(self._runs, description="runs")
        self.progress.stop()
