"""Executors: a local process pool and Ray give the records the in-process executor gives;
interrupted runs resume; a worker that dies is a failed run, retried next time."""

import atexit
import multiprocessing
import os
import re
import signal
import types

import pytest

from zgbench import cli, executors, hookimpl, plugins, specs
from zgbench.budget import Budget
from zgbench.errors import UsageError
from zgbench.executors import InProcessExecutor, PoolExecutor, RayExecutor, check_portable
from zgbench.harness import plan, run_all
from zgbench.store import ResultStore
from zgbench.tasks.synthetic import Sphere

TASKS = ["sphere[dim=4]", "step[dim=4]"]
OPTIMIZERS = ["random-search", "rge", "cge", "adam"]  # adam is n/a on step
SEEDS, EVALS, GRADS = 2, 300, 30
CLI_ARGS = ["run", "--tasks", ",".join(TASKS), "--optimizers", ",".join(OPTIMIZERS),
            "--seeds", str(SEEDS), "--evals", str(EVALS), "--grads", str(GRADS),
            "--no-leaderboard"]


def _plan(registry):
    """The plan `zgbench run` builds from CLI_ARGS (task default budgets, limits replaced)."""
    optimizers = [specs.resolve_optimizer(registry, o) for o in OPTIMIZERS]
    entries = []
    for spec in (specs.resolve_task(registry, t) for t in TASKS):
        budget = registry.task(spec.name).cls.default_budget.override(evals=EVALS, grads=GRADS)
        entries.append((spec, budget, optimizers))
    return plan(entries, SEEDS)


def _comparable(record):
    """A record without what legitimately differs between executions (times, dates)."""
    def numbers(point):
        return {k: v for k, v in point.items() if "seconds" not in k}

    keep = {k: record[k] for k in ("run_id", "identity", "seeds", "status", "task", "optimizer",
                                   "artifacts", "environment")}
    keep["trajectory"] = [numbers(p) for p in record["trajectory"]]
    keep["final"] = numbers(record["final"]) if record["final"] else None
    return keep


def _records(folder):
    return {r["run_id"]: _comparable(r) for r in ResultStore(folder)}


@pytest.fixture(scope="module")
def reference(registry, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inprocess")
    summary = run_all(_plan(registry), registry, folder, InProcessExecutor())
    assert summary.done == 14 and summary.na == 2 and summary.failed == 0
    return _records(folder)


class Interrupt:
    """A reporter that presses Ctrl-C after ``after`` stored records."""

    def __init__(self, after, action=None):
        self.after, self.seen, self.action = after, 0, action

    def begin(self, total, skipped):
        pass

    def advance(self, run, record):
        self.seen += 1
        if self.action and self.seen == 1:
            self.action()
        if self.after is not None and self.seen == self.after:
            raise KeyboardInterrupt

    def end(self):
        pass


# ----------------------------------------------------------------------------- pool
def _kill_a_worker():
    workers = [p for p in multiprocessing.active_children()
               if type(p).__name__ in ("ForkServerProcess", "SpawnProcess")]
    assert workers, "no pool worker to kill"
    os.kill(workers[0].pid, signal.SIGKILL)


def test_pool_survives_a_killed_worker_and_equals_inprocess(registry, reference, tmp_path):
    runs = _plan(registry)
    pool = PoolExecutor(devices=["cpu", "cpu"])  # a device list: one worker per device
    first = run_all(runs, registry, tmp_path, pool, Interrupt(None, action=_kill_a_worker))
    # the killed worker's pool broke: runs in flight are failed records, a fresh pool went on
    assert first.total == 16 and first.failed >= 1
    assert first.done + first.na + first.failed == 16
    failed = [r for r in ResultStore(tmp_path) if r["status"] == "failed"]
    assert all("worker process died" in r["error"] for r in failed)
    second = run_all(runs, registry, tmp_path, pool)  # failed runs are retried
    assert second.skipped == 16 - first.failed and second.failed == 0
    assert _records(tmp_path) == reference
    assert {r["identity"]["device"] for r in ResultStore(tmp_path)} == {"cpu"}


def test_workers_need_installed_plugins(tmp_path):
    class Local(Sphere):
        name = "local-sphere"

    module = types.ModuleType("localplug")
    module.zgbench_tasks = hookimpl(lambda: [Local])
    registry = plugins.load(extra_plugins=[module])
    entries = [(specs.resolve_task(registry, "local-sphere"), Local.default_budget,
                [specs.resolve_optimizer(registry, "rge")])]
    with pytest.raises(UsageError, match="registered in this process only"):
        check_portable(plan(entries, 1), registry)
    with pytest.raises(UsageError, match="registered in this process only"):
        list(PoolExecutor(workers=2).map(plan(entries, 1), registry, tmp_path))


class PictureSphere(Sphere):
    """Sphere that saves an image of its result."""

    name = "picture-sphere"

    def artifacts(self, theta, directory):
        from matplotlib import image

        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "theta.png")
        image.imsave(path, theta.reshape(1, -1).cpu().numpy(), cmap="gray")
        return [path]


def test_worker_sends_pictures_back_to_the_driver(monkeypatch, tmp_path):
    module = types.ModuleType("pictures")
    module.zgbench_tasks = hookimpl(lambda: [PictureSphere])
    registry = plugins.load(extra_plugins=[module])
    # a worker process would load this registry from the installed plugins
    monkeypatch.setattr(executors, "_worker_registry", lambda blocked: registry)
    (run,) = plan([(specs.resolve_task(registry, "picture-sphere[dim=3]"), Budget(evals=50),
                    [specs.resolve_optimizer(registry, "random-search")])], 1)
    record, files = executors.work(run, blocked=(), threads=1)
    record = record.as_dict()
    assert record["status"] == "ok"
    assert record["artifacts"] == [f"artifacts/{run.run_id}/theta.png",
                                   f"artifacts/{run.run_id}/recommendation.npy"] == list(files)
    assert files[record["artifacts"][0]][:8] == b"\x89PNG\r\n\x1a\n"
    executors.save_artifacts(tmp_path, files)  # the driver writes them under its results
    assert (tmp_path / record["artifacts"][0]).read_bytes() == files[record["artifacts"][0]]
    with pytest.raises(ValueError, match="leaves the results folder"):
        executors.save_artifacts(tmp_path / "results", {"../escape.png": b"x"})


@pytest.mark.parametrize("extra, message", [
    (["--address", "127.0.0.1:1"], "add --executor ray"),
    (["--workers", "0"], "at least 1"),
    (["--device", "cpu,cpu", "--workers", "3"], "one worker per device"),
    (["--executor", "inprocess", "--workers", "2"], "one run at a time"),
])
def test_bad_executor_options_exit_2(extra, message, tmp_path, capsys):
    assert cli.main(CLI_ARGS + ["--out", str(tmp_path)] + extra) == 2
    assert message in " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray instance: head on the loopback interface, 2 CPUs. Starting one costs
    10-20 s here, so the test modules that need one share it (tests/benchmarks too)."""
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'zgbench[ray]'")
    if not ray.is_initialized():
        from zgbench.executors import ray_session

        session = ray_session(num_cpus=2)
        session.__enter__()
        atexit.register(session.__exit__, None, None, None)  # stopped when pytest exits
    return ray


def test_ray_interrupted_resumes_and_equals_inprocess(registry, reference, ray_cluster, tmp_path,
                                                      capsys):
    ray = ray_cluster
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert ray.cluster_resources()["CPU"] == 2
    runs = _plan(registry)
    with pytest.raises(KeyboardInterrupt):
        run_all(runs, registry, tmp_path, RayExecutor(), Interrupt(after=5))
    assert len(list(ResultStore(tmp_path))) == 5
    # resume through the command line (the driver's connection is reused)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    code = cli.main(CLI_ARGS + ["--executor", "ray", "--address", address, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    line = re.search(r"16 runs: (\d+) done, (\d+) skipped \(already finished\), (\d+) failed"
                     r"(?:, (\d+) n/a)?", err)
    assert line, err[-3000:]
    ran, skipped, failed, na = (int(g or 0) for g in line.groups())
    assert (skipped, failed) == (5, 0) and ran + na == 11
    assert _records(tmp_path) == reference


def test_a_worker_that_died_idle_is_replaced_when_its_pipe_is_broken(registry, tmp_path,
                                                                     monkeypatch):
    """A worker killed between runs may still look alive (not reaped yet): sending it the
    next run breaks the pipe, and a fresh worker takes the run instead of the driver
    crashing (the race a SIGKILL between two runs hit)."""
    runs = plan([(specs.resolve_task(registry, "sphere[dim=3]"), Budget(evals=30),
                  [specs.resolve_optimizer(registry, "random-search")])], seeds=2)
    with PoolExecutor(workers=1, threads=1) as pool:
        assert [r.status for _, r in pool.map(runs[:1], registry, tmp_path)] == ["ok"]
        worker = pool._workers[0]
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(5)
        monkeypatch.setattr(executors._Worker, "usable", property(lambda self: True))
        assert [r.status for _, r in pool.map(runs[1:], registry, tmp_path)] == ["ok"]
        assert pool._workers[0] is not worker
