"""Progress display for ``zgbench run``: runs done/total with ETA, and the current run's budget.

The harness talks to a reporter through five calls (``begin``, ``start_run``,
``run_progress``, ``advance``, ``end``); :class:`RichReporter` draws them with rich.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


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
        self.progress.update(self._runs, description=f"runs · {escape(run.describe())}")
        self._unit, self._total = budget_unit(run.budget)
        self.progress.reset(self._budget, total=self._total, visible=True,
                            description=f"  budget ({self._unit})")

    def run_progress(self, fraction: float) -> None:
        self.progress.update(self._budget, completed=int(round(self._total * fraction)))

    def advance(self, run: Any, record: Any) -> None:
        """``record``: the run's :class:`~zgbench.record.Record`."""
        if record.status == "failed":
            last = (record.error or "").strip().splitlines()[-1:] or ["?"]
            self.progress.console.print(f"[red]failed[/red] {escape(run.describe())}: {escape(last[0])}",
                                        highlight=False)
        self.progress.advance(self._runs)

    def end(self) -> None:
        self.progress.update(self._budget, visible=False)
        self.progress.update(self._runs, description="runs")
        self.progress.stop()
