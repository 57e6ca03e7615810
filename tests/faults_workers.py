"""Plugins that end or hang their process where the driver must not care (issue 23.3-6):
exit with ``os._exit(0)``, abort, kill themselves with a signal, or hang while being built,
asked to ``skip``, or drawing their pictures. Registered through the plugin manager as
tests/cheats.py is; workers import this module by name (tests/ is put on ``sys.path``).

``driver(argv)`` is ``zgbench`` with these plugins loaded too, for tests that start real
driver processes; with ``ZGBENCH_TEST_LOG`` set, every stored record appends a line
``RUN_ID PID`` to that file (the ``zgbench_run_finished`` hook), so a test can count how
often each run was executed across drivers.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from zgbench import Optimizer, hookimpl
from zgbench.tasks.synthetic import Sphere

#: How long a hang lasts: far past any timeout a test gives.
HANG = 3600.0


def _hang() -> None:
    """Sleep in short steps (Python code between them, as a busy plugin would run)."""
    end = time.monotonic() + HANG
    while time.monotonic() < end:
        time.sleep(0.02)


class OsExit(Optimizer):
    """Ends its process with ``os._exit(0)``: no exception, no cleanup, status 0."""

    name = "os-exit"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        os._exit(0)


class SelfAbort(Optimizer):
    """``os.abort()``: SIGABRT, as a failed C assertion would."""

    name = "self-abort"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        os.abort()


class SelfKill(Optimizer):
    """Sends its own process SIGKILL (the out-of-memory killer's signal)."""

    name = "self-kill"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        os.kill(os.getpid(), signal.SIGKILL)


class ForkExit(Optimizer):
    """Forks a child that lives on (holding the worker's pipe), then ``os._exit(0)``."""

    name = "fork-exit"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        os._exit(0)


class HangInit(Optimizer):
    """Hangs in ``__init__``, before the task is built."""

    name = "hang-init"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _hang()

    def run(self, problem):  # never reached
        problem.loss(problem.initial()[None])


class HangSkip(Optimizer):
    """Hangs in ``skip``, asked whether it can run on the task."""

    name = "hang-skip"

    def skip(self, task):
        _hang()
        return super().skip(task)

    def run(self, problem):  # never reached
        problem.loss(problem.initial()[None])


class HangBuild(Sphere):
    """A sphere whose construction hangs (a task loading data from a dead server)."""

    name = "hang-build"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _hang()


class HangArtifacts(Sphere):
    """A sphere whose pictures never finish (a renderer stuck after the run)."""

    name = "hang-artifacts"

    def artifacts(self, theta, directory):
        _hang()
        return []


OPTIMIZERS = [OsExit, SelfAbort, SelfKill, ForkExit, HangInit, HangSkip]
TASKS = [HangBuild, HangArtifacts]


@hookimpl
def zgbench_optimizers():
    return OPTIMIZERS


@hookimpl
def zgbench_tasks():
    return TASKS


@hookimpl
def zgbench_run_finished(record):
    log = os.environ.get("ZGBENCH_TEST_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{record['run_id']} {os.getpid()}\n")


def driver(argv: list[str]) -> int:
    """``zgbench ARGV`` with this module's plugins loaded as well (workers import it by
    name, as for any plugin module on ``sys.path``)."""
    from zgbench import cli, plugins

    load = plugins.load

    def with_faults(blocked=(), extra_plugins=()):
        return load(blocked=blocked, extra_plugins=[sys.modules[__name__], *extra_plugins])

    plugins.load = with_faults
    return cli.main(argv)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import faults_workers  # the module by its name, not __main__, so workers can import it

    sys.exit(faults_workers.driver(sys.argv[1:]))
