"""Executors: where runs execute. The driver alone writes results.

An executor's ``map(runs, registry, results, reporter)`` yields ``(run, record)`` pairs as runs
finish, in any order. The in-process executor is the default; pools and clusters implement
the same method.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zgbench.harness import RunSpec, execute
from zgbench.plugins import Registry


class InProcessExecutor:
    """Runs one run after the other in this process (shows per-run budget progress)."""

    name = "inprocess"

    def map(self, runs: Sequence[RunSpec], registry: Registry, results: Path,
            reporter=None) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
        for run in runs:
            if reporter:
                reporter.start_run(run)
            on_progress = reporter.run_progress if reporter else None
            yield run, execute(run, registry, results, on_progress)
