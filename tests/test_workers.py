"""Nothing a plugin does by accident stops the cross product (issue 23, items 3-7).

- 3: plugin code runs in a worker process by default: ``os._exit``, ``abort()`` or a signal
  fail that run only, with the cause, and the records equal in-process ones number for number;
- 4: the watchdog covers the whole run, from building the components to their pictures;
- 5: two drivers on one folder split the runs, each executed once;
- 6: SIGTERM, SIGHUP and Ctrl-C to the driver leave no worker, forkserver or resource tracker;
- 7: a board takes one canonical spec per optimizer label, and ``zgbench run`` warns about
  the others.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))  # tests/faults_workers.py, importable by workers too
import faults_workers  # noqa: E402

from zgbench import Optimizer, cli, hookimpl, leaderboard, plugins, specs  # noqa: E402
from zgbench.boards import OrphanedSpecWarning  # noqa: E402
from zgbench.budget import Budget  # noqa: E402
from zgbench.commands import run as run_command  # noqa: E402
from zgbench.executors import InProcessExecutor, PoolExecutor  # noqa: E402
from zgbench.harness import RunSpec, execute, plan, run_all  # noqa: E402
from zgbench.params import Param  # noqa: E402
from zgbench.store import ResultStore  # noqa: E402

ROOT = TESTS.parent


@pytest.fixture(scope="module")
def reg():
    return plugins.load(extra_plugins=[faults_workers])


@pytest.fixture
def with_faults(monkeypatch):
    """`zgbench` in this process loads the fault plugins too (as faults_workers.driver)."""
    load = plugins.load
    monkeypatch.setattr(plugins, "load", lambda blocked=(), extra_plugins=(): load(
        blocked=blocked, extra_plugins=[faults_workers, *extra_plugins]))


def _comparable(record):
    """A record without what legitimately differs between executions (times, dates)."""
    def numbers(point):
        return {k: v for k, v in point.items() if "seconds" not in k}

    keep = {k: record.get(k) for k in ("run_id", "identity", "seeds", "status", "task",
                                       "optimizer", "artifacts", "environment", "audit")}
    keep["audit"] = numbers(record["audit"]) if record.get("audit") else None
    keep["trajectory"] = [numbers(p) for p in record["trajectory"]]
    keep["final"] = numbers(record["final"]) if record["final"] else None
    return keep


# ------------------------------------------------------------------ 3: a worker by default
def test_a_dying_plugin_fails_its_run_and_the_others_go_on(with_faults, tmp_path, capsys):
    """os._exit(0), abort() and SIGKILL in an optimizer each fail their own run, with the
    cause (also where a child it forked still holds the worker's pipe); the runs after them
    run (in a fresh worker) and `zgbench run` exits normally."""
    code = cli.main(["run", "--tasks", "sphere[dim=3]", "--optimizers",
                     "os-exit,random-search,self-abort,self-kill,fork-exit,cge", "--seeds", "1",
                     "--evals", "60", "--out", str(tmp_path), "--no-leaderboard"])
    records = {r["optimizer"]["name"]: r for r in ResultStore(tmp_path)}
    assert code == 0 and len(records) == 6
    assert records["random-search"]["status"] == "ok" and records["cge"]["status"] == "ok"
    causes = {"os-exit": "exited with status 0", "self-abort": "SIGABRT",
              "self-kill": "SIGKILL", "fork-exit": "exited with status 0"}
    for name, cause in causes.items():
        assert records[name]["status"] == "failed", name
        assert cause in records[name]["error"] and "worker process died" in records[name]["error"]
    assert "6 runs: 2 done, 0 skipped (already finished), 4 failed" in capsys.readouterr().err


def test_worker_records_equal_in_process_ones(tmp_path):
    """The same plan by two workers (the default on a 2-core machine) and --in-process:
    identical records (numbers, audit, n/a) up to times and dates."""
    argv = ["run", "--tasks", "sphere[dim=4],step[dim=4]", "--optimizers",
            "random-search,cge,adam", "--seeds", "2", "--evals", "200", "--grads", "20",
            "--no-leaderboard"]
    assert cli.main([*argv, "--out", str(tmp_path / "worker"), "--workers", "2"]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "inprocess"), "--in-process"]) == 0
    worker = {r["run_id"]: _comparable(r) for r in ResultStore(tmp_path / "worker")}
    local = {r["run_id"]: _comparable(r) for r in ResultStore(tmp_path / "inprocess")}
    assert len(worker) == 12 and worker == local
    assert sum(r["status"] == "n/a" for r in worker.values()) == 2  # adam on step


def _args(*argv):
    parser = argparse.ArgumentParser()
    run_command.add_executor_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_default_executor_is_one_reused_worker():
    executor = run_command._executor(_args(), ["cpu"])
    assert isinstance(executor, PoolExecutor) and len(executor.slots) == 1
    assert executor.threads == 1 and not executor.isolate  # the --threads of in-process runs
    assert isinstance(run_command._executor(_args("--in-process"), ["cpu"]), InProcessExecutor)
    assert isinstance(run_command._executor(_args("--executor", "inprocess"), ["cpu"]),
                      InProcessExecutor)
    with pytest.raises(Exception, match="drop --executor ray"):
        run_command._executor(_args("--in-process", "--executor", "ray"), ["cpu"])


def test_run_uses_every_core_by_default_and_claims_one_worker(monkeypatch):
    """zgbench run: one worker per usable core (per GPU of a device list); claims keep one
    worker (their timings are measured without contention); --workers and --in-process win."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert run_command.default_workers(["cpu"]) == 3
    assert run_command.default_workers(["cuda:0", "cuda:1"]) == 2
    executor = run_command._executor(_args(), ["cpu"], per_core=True)
    assert len(executor.slots) == 3
    assert len(run_command._executor(_args(), ["cpu"]).slots) == 1  # claims
    assert len(run_command._executor(_args("--workers", "1"), ["cpu"], per_core=True).slots) == 1
    assert isinstance(run_command._executor(_args("--in-process"), ["cpu"], per_core=True),
                      InProcessExecutor)


def test_one_worker_serves_every_run_and_is_kept_between_calls(reg, tmp_path):
    """Reused: the runs of one call, and of the next call (claims, tune), share a process."""
    entries = [(specs.resolve_task(reg, "sphere[dim=3]"), Budget(evals=50),
                [specs.resolve_optimizer(reg, "random-search")])]
    runs = plan(entries, seeds=3)
    with PoolExecutor(workers=1, threads=1) as executor:
        first = list(executor.map(runs[:2], reg, tmp_path))
        pid = executor._workers[0].process.pid
        second = list(executor.map(runs[2:], reg, tmp_path))
        assert executor._workers[0].process.pid == pid
    assert [r.status for _, r in first + second] == ["ok"] * 3


# ------------------------------------------------------------- 4: the whole run is guarded
HANGS = [("sphere[dim=3]", "hang-init"), ("sphere[dim=3]", "hang-skip"),
         ("hang-build[dim=3]", "random-search"), ("hang-artifacts[dim=3]", "random-search")]


@pytest.mark.parametrize("task, optimizer", HANGS, ids=["init", "skip", "task", "artifacts"])
def test_a_hang_anywhere_in_the_run_ends_at_the_timeout(reg, tmp_path, task, optimizer):
    run = RunSpec(specs.resolve_task(reg, task), specs.resolve_optimizer(reg, optimizer), 0,
                  Budget(evals=50))
    start = time.perf_counter()
    record = execute(run, reg, tmp_path, timeout=0.5).as_dict()
    assert time.perf_counter() - start < 5
    assert record["status"] == "failed" and "hard wall-clock limit of 0.5 s" in record["error"]


def test_a_hang_in_the_pictures_fails_the_run_in_the_default_worker(with_faults, tmp_path):
    start = time.perf_counter()
    code = cli.main(["run", "--tasks", "hang-artifacts[dim=3]", "--optimizers", "random-search",
                     "--seeds", "1", "--evals", "50", "--timeout", "1", "--out", str(tmp_path),
                     "--no-leaderboard"])
    (record,) = list(ResultStore(tmp_path))
    assert code == 0 and time.perf_counter() - start < 15
    assert record["status"] == "failed" and "--timeout" in record["error"]


# ------------------------------------------------------------ 5: two drivers on one folder
def _default_signals() -> None:
    """In the child: the signals' default actions (a test run under nohup, or in the
    background of a script, would pass SIGHUP or SIGINT on ignored)."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def _driver(args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, str(TESTS / "faults_workers.py"), *args],
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            cwd=ROOT, preexec_fn=_default_signals, **kwargs)


def test_two_drivers_on_one_folder_run_each_run_once(tmp_path):
    log = tmp_path / "executions.log"
    argv = ["run", "--tasks", "sphere[dim=4]", "--optimizers", "random-search,cge", "--seeds",
            "5", "--evals", "2000", "--out", str(tmp_path / "results"), "--no-leaderboard"]
    drivers = [_driver(argv + extra, {"ZGBENCH_TEST_LOG": str(log)}, stderr=subprocess.PIPE,
                       text=True) for extra in ([], ["--in-process"])]  # both executors
    errors = [d.communicate(timeout=120)[1] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], errors
    executed = [line.split()[0] for line in log.read_text().splitlines()]
    records = list(ResultStore(tmp_path / "results"))
    assert len(records) == 10 and all(r["status"] == "ok" for r in records)
    assert sorted(executed) == sorted(r["run_id"] for r in records)  # each exactly once
    done = [int(e.split(" runs: ")[1].split(" done")[0]) for e in errors]
    assert sum(done) == 10, errors


def test_a_claim_held_elsewhere_is_left_and_a_dead_drivers_claim_taken_over(reg, tmp_path):
    entries = [(specs.resolve_task(reg, "sphere[dim=3]"), Budget(evals=50),
                [specs.resolve_optimizer(reg, "random-search")])]
    runs = plan(entries, seeds=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from zgbench.store import ResultStore; "
         "lock = ResultStore(sys.argv[1]).claim(sys.argv[2]); assert lock; "
         "print('held', flush=True); "
         "time.sleep(600)", str(tmp_path), runs[0].run_id],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert ResultStore(tmp_path).claim(runs[0].run_id) is None
        summary = run_all(runs, reg, tmp_path, InProcessExecutor())
        assert (summary.done, summary.elsewhere) == (1, 1)
        assert "1 left to another zgbench run" in summary.line()
    finally:
        holder.kill()
        holder.wait()
    summary = run_all(runs, reg, tmp_path, InProcessExecutor())  # the dead holder's claim
    assert (summary.done, summary.skipped, summary.elsewhere) == (1, 1, 0)


def test_a_run_another_driver_finished_meanwhile_is_skipped_after_its_claim(reg, tmp_path):
    """Planned as not done, finished by another driver before this one got to it: this
    driver takes the claim, sees the record and skips the run instead of repeating it."""
    entries = [(specs.resolve_task(reg, "sphere[dim=3]"), Budget(evals=50),
                [specs.resolve_optimizer(reg, "random-search")])]
    runs = plan(entries, seeds=2)
    store = ResultStore(tmp_path)

    class OtherDriver(InProcessExecutor):
        """Before this driver's first run starts, "another driver" finishes the second."""

        def map(self, runs, registry, results, reporter=None, admit=None):
            store.put(execute(runs[1], registry, results))
            return super().map(runs, registry, results, reporter, admit)

    summary = run_all(runs, reg, tmp_path, OtherDriver())
    assert (summary.done, summary.skipped, summary.elsewhere) == (1, 1, 0)
    assert all(r["status"] == "ok" for r in store) and len(list(store)) == 2


# ------------------------------------------------------------------ 6: signals to a driver
def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def _descendants(pid: int) -> set[int]:
    todo, seen = [pid], set()
    while todo:
        for child in _children(todo.pop()) - seen:
            seen.add(child)
            todo.append(child)
    return seen


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_to_the_driver_leaves_no_process_behind(tmp_path, signum):
    driver = _driver(["run", "--tasks", "sphere[dim=4]", "--optimizers", "random-search",
                      "--seeds", "2", "--seconds", "60", "--evals", "100000000",
                      "--out", str(tmp_path), "--no-leaderboard"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_descendants(driver.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)  # the resource tracker, the forkserver and the worker
        family = _descendants(driver.pid)
        assert len(family) >= 3, family
        time.sleep(0.5)  # into the run
        driver.send_signal(signum)
        _, err = driver.communicate(timeout=30)
    finally:
        driver.kill()
    assert driver.returncode == 128 + signum, err
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in family if _alive(pid)]


# -------------------------------------------------------- 7: one spec per optimizer label
def _evolving(params):
    """A registry with an optimizer plugin ``evolving`` declaring ``params``: the same name and
    label before and after it gained a parameter, two canonical specs."""
    def run(self, problem):
        theta = problem.initial()
        while True:
            problem.loss(theta[None])

    cls = type("Evolving", (Optimizer,), {
        "name": "evolving", "run": run,
        **{key: Param(value, f"parameter {key}") for key, value in params.items()}})
    module = type(sys)(f"plug_evolving_{len(params)}")
    module.zgbench_optimizers = hookimpl(lambda: [cls])
    return plugins.load(extra_plugins=[module])


def test_a_board_takes_one_spec_per_label_and_run_warns_about_the_other(tmp_path):
    old, new = _evolving({"a": 1}), _evolving({"a": 1, "b": 2})
    specs_by = {}
    for registry in (old, new):
        spec = specs.resolve_optimizer(registry, "evolving")
        entries = [(specs.resolve_task(registry, "sphere[dim=3]"), Budget(evals=40),
                    [spec, specs.resolve_optimizer(registry, "random-search")])]
        specs_by[spec.canonical] = (registry, plan(entries, seeds=3))
    (old_form, (_, old_runs)), (new_form, (_, new_runs)) = specs_by.items()
    assert old_form != new_form and old_runs[0].optimizer.label == new_runs[0].optimizer.label
    run_all(old_runs, old, tmp_path, InProcessExecutor())
    time.sleep(1.05)  # records say when they finished, to the second: the new ones are newer
    with pytest.warns(OrphanedSpecWarning, match=r"3 runs .*evolving\[a=1\]"):
        run_all(new_runs, new, tmp_path, InProcessExecutor())
    records = list(ResultStore(tmp_path))
    assert len(records) == 9  # random-search's runs are the same in both plans
    computed = leaderboard.compute(records)  # nothing planned: the newest spec
    (table,) = computed["tasks"].values()
    row = table[table["optimizer"] == "evolving"].iloc[0]
    assert row["runs_ok"] == 3 and len(table[table["optimizer"] == "evolving"]) == 1
    left = computed["left_out"]
    assert len(left) == 3 and set(left["canonical"]) == {old_form}
    assert set(left["kept"]) == {new_form}
    planned = {(r.task.canonical, r.optimizer.canonical) for r in old_runs}
    kept_old = leaderboard.compute(records, planned=planned)["left_out"]
    assert set(kept_old["canonical"]) == {new_form}  # the planned one counts
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leaderboard.write(tmp_path, tmp_path / "board")
    assert any(issubclass(w.category, OrphanedSpecWarning) for w in caught)
    assert len((tmp_path / "board" / "left_out.csv").read_text().splitlines()) == 4
