"""Integrity: a plugin cannot fake its results or spend more than its budget unseen, and a
plugin that exits, aborts, hangs or blows up fails its own run only (issues 14 and 18.3-4).

Each cheat of tests/cheats.py runs through the real harness; it must end ``violated`` or be
counted honestly, and never outrank an honest optimizer on a leaderboard of the records."""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/cheats.py, importable by workers too
import cheats  # noqa: E402

from zgbench import leaderboard, plugins, specs  # noqa: E402
from zgbench.budget import Budget, BudgetExhausted  # noqa: E402
from zgbench.executors import InProcessExecutor, PoolExecutor  # noqa: E402
from zgbench.harness import RunSpec, execute, plan, run_all  # noqa: E402
from zgbench.store import ResultStore  # noqa: E402
from zgbench.testing import make_problem  # noqa: E402


@pytest.fixture(scope="module")
def reg():
    return plugins.load(extra_plugins=[cheats])


def _run(reg, optimizer, task="sphere[dim=3]", timeout=None, **budget):
    spec = RunSpec(specs.resolve_task(reg, task), specs.resolve_optimizer(reg, optimizer), 0,
                   Budget(**(budget or {"evals": 500})))
    return execute(spec, reg, timeout=timeout).as_dict()


# ----------------------------------------------------------------------------- the cheats
def test_evaluating_through_the_task_is_counted_and_cut(reg):
    record = _run(reg, "cheat-direct", evals=500)
    audit = record["audit"]
    assert record["status"] == "ok"  # honest accounting: not a violation, just metered
    assert audit["evals_performed"] == audit["evals_charged"] == 500
    assert record["final"]["evals"] == 500
    assert audit["direct_calls"] == 1 and not audit["budget_exceeded"]


def test_resetting_the_counter_is_refused_or_violated(reg):
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=10))
    with pytest.raises(AttributeError):
        problem.evals = 0
    with pytest.raises(AttributeError):
        problem.budget = Budget(evals=10**9)
    record = _run(reg, "cheat-set-evals", evals=500)
    audit = record["audit"]
    assert record["status"] == "violated"
    assert "beyond the budget" in record["error"]
    assert audit["evals_performed"] == 500 and not audit["budget_exceeded"]
    assert audit["refused_calls"] >= 1


def test_fabricated_checkpoints_change_nothing(reg):
    record = _run(reg, "cheat-fake-trajectory", evals=500)
    assert record["status"] == "ok"
    assert all(p["metrics"]["gap"] > 0 for p in record["trajectory"])
    assert record["final"]["metrics"]["gap"] > 0
    assert [p["evals"] for p in record["trajectory"]] == sorted(p["evals"] for p in
                                                                 record["trajectory"])


def test_resetting_the_clock_does_not_escape_the_time_budget(reg):
    start = time.perf_counter()
    record = _run(reg, "cheat-clock", seconds=0.3)
    took = time.perf_counter() - start
    assert record["status"] == "violated" and "clock" in record["error"]
    assert took < 0.3 * 1.01 + 0.25 + 2.0  # the ledger's own clock cut it (plus slack)
    assert record["audit"]["seconds_ledger"] >= 0.3


def test_finding_the_task_through_gc_is_violated(reg):
    record = _run(reg, "cheat-gc", evals=500)
    assert record["status"] == "violated"
    assert "gc.get_objects" in record["error"]
    assert record["final"]["metrics"]["gap"] < 1e-9  # it did find the optimum: hence violated


def test_direct_evaluate_and_capabilities_are_violations():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=10, grads=10))
    task = next(v.__self__._task for v in vars(problem).values() if hasattr(v, "__self__")
                and hasattr(v.__self__, "_task"))
    values = task.loss(torch.zeros(4, 2), 0)  # metered: counted on the problem
    assert values.shape == (4,) and problem.evals == 4
    task.grad(torch.zeros(2, 2), 0)
    assert problem.grads == 2
    with pytest.raises(BudgetExhausted):
        task.loss(torch.zeros(7, 2), 0)
    assert problem.evals == 10


def test_the_record_ignores_the_optimizer_and_the_trajectory_copy(reg):
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=100))
    problem.loss(torch.zeros(3, 2))
    copy = problem.trajectory
    assert isinstance(copy, tuple)
    copy[0]["evals"] = 10**6
    assert problem.trajectory[0]["evals"] == 0


def test_remaining_says_what_is_left():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=100, steps=5))
    problem.loss(torch.zeros(30, 2))
    problem.report(torch.zeros(2))
    left = problem.remaining()
    assert left["evals"] == 70 and left["steps"] == 4
    assert left["grads"] == 0  # an evaluations-only budget allots no gradients
    assert left["seconds"] is None
    assert make_problem("sphere[dim=2]", budget=Budget(steps=5)).remaining("grads") is None


def test_no_cheat_outranks_an_honest_optimizer(reg, tmp_path):
    names = [c.name for c in cheats.CHEATS] + ["random-search"]
    entries = [(specs.resolve_task(reg, "sphere[dim=3]"), Budget(evals=400, seconds=5.0),
                [specs.resolve_optimizer(reg, n) for n in names])]
    runs = plan(entries, seeds=2)
    run_all(runs, reg, tmp_path, InProcessExecutor(timeout=20))
    records = list(ResultStore(tmp_path))
    table = leaderboard.task_table(leaderboard.runs_frame(records))
    honest = table.loc[table["optimizer"] == "random-search", "rank"].item()
    statuses = {r["optimizer"]["name"]: r["status"] for r in records}
    assert statuses["cheat-gc"] == statuses["cheat-set-evals"] == "violated"
    for _, row in table.iterrows():
        if statuses[row["optimizer"]] == "violated":
            assert row["rank"] > honest, table
            assert row["runs_failed"] == 2 and math.isinf(row["median"])
    overall = leaderboard.overall_table({"sphere": table})
    first = overall.iloc[0]["optimizer"]
    assert statuses[first] == "ok"
    written = leaderboard.write(tmp_path, tmp_path / "leaderboard")  # the whole board, too
    assert len(written["tasks"]) == 1


# ------------------------------------------------------------------- exits and hangs
def test_a_loop_with_no_calls_ends_at_the_timeout(reg):
    start = time.perf_counter()
    record = _run(reg, "spinner", evals=50, timeout=1.0)
    assert time.perf_counter() - start < 10
    assert record["status"] == "failed" and "--timeout" in record["error"]
    assert record["final"]["evals"] == 50  # the last checkpoint was still taken


def test_the_timeout_works_off_the_main_thread_too(reg):
    import threading

    out = {}
    thread = threading.Thread(target=lambda: out.update(
        record=_run(reg, "spinner", evals=50, timeout=1.0)))
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert out["record"]["status"] == "failed" and "--timeout" in out["record"]["error"]


def test_seconds_budget_sets_a_default_timeout():
    from zgbench.watchdog import default_timeout

    assert default_timeout(2.0) == pytest.approx(2.0 * 1.5 + 60)
    assert default_timeout(None) == 3600


@pytest.mark.parametrize("name", ["exiter", "interrupter"])
def test_plugin_exit_fails_one_run_in_process(reg, tmp_path, name):
    entries = [(specs.resolve_task(reg, "sphere[dim=3]"), Budget(evals=100),
                [specs.resolve_optimizer(reg, n) for n in (name, "random-search")])]
    summary = run_all(plan(entries, seeds=1), reg, tmp_path, InProcessExecutor())
    assert (summary.done, summary.failed) == (1, 1)
    failed = [r for r in ResultStore(tmp_path) if r["status"] == "failed"]
    assert "sys.exit" in failed[0]["error"] or "KeyboardInterrupt" in failed[0]["error"]


def test_a_real_ctrl_c_still_stops_zgbench(reg):
    class CtrlC(cheats.Spinner):
        name = "ctrl-c"

        def run(self, problem):
            signal.raise_signal(signal.SIGINT)  # what the terminal sends

    local = plugins.load(extra_plugins=[cheats, _plugin(CtrlC)])
    # Python's own Ctrl-C handler, as in a fresh `zgbench run`, whatever handler an earlier
    # test left in this (pytest worker) process: in the clean-clone CI run it was not this one
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(local, "ctrl-c")
    finally:
        signal.signal(signal.SIGINT, previous)


def _plugin(cls):
    import types

    from zgbench import hookimpl

    module = types.ModuleType(f"plug_{cls.name}")
    module.zgbench_optimizers = hookimpl(lambda: [cls])
    return module


def test_isolated_exit_abort_and_memory_fail_one_run_each(reg, tmp_path):
    names = ["exiter", "aborter", "hog", "random-search"]
    entries = [(specs.resolve_task(reg, "sphere[dim=3]"), Budget(evals=100),
                [specs.resolve_optimizer(reg, n) for n in names])]
    executor = PoolExecutor(workers=2, isolate=True, memory=2 * 2**30, timeout=60)
    summary = run_all(plan(entries, seeds=1), reg, tmp_path, executor)
    records = {r["optimizer"]["name"]: r for r in ResultStore(tmp_path)}
    assert summary.done == 1 and records["random-search"]["status"] == "ok"
    assert "sys.exit(0)" in records["exiter"]["error"]
    assert "SIGABRT" in records["aborter"]["error"]
    assert records["hog"]["status"] == "failed"
    assert "memory" in records["hog"]["error"].lower()


def test_isolated_worker_stuck_past_its_limit_is_killed(reg, tmp_path):
    """A run deaf to the in-worker watchdog (SIGALRM ignored) is killed by the driver."""
    entries = [(specs.resolve_task(reg, "sphere[dim=3]"), Budget(evals=100),
                [specs.resolve_optimizer(reg, n) for n in ("deaf", "random-search")])]
    executor = PoolExecutor(workers=1, isolate=True, timeout=0.5, kill_grace=1.0)
    start = time.perf_counter()
    outcome = list(executor.map(plan(entries, seeds=1), reg, tmp_path))
    assert time.perf_counter() - start < 30
    by_name = {run.optimizer.name: record.as_dict() for run, record in outcome}
    error = by_name["deaf"]["error"]  # killed by the driver, or stopped by its trusted worker
    assert by_name["deaf"]["status"] == "failed" and ("killed" in error or "--timeout" in error)
    assert by_name["random-search"]["status"] == "ok"


# ------------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("flags, message", [
    (["--memory", "8G"], "add --isolate"),
    (["--isolate", "--memory", "lots"], "give a size"),
    (["--timeout", "0"], "positive number"),
    (["--isolate", "--executor", "inprocess"], "drop --executor"),
])
def test_run_flags_are_checked(tmp_path, capsys, flags, message):
    from zgbench import cli

    code = cli.main(["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search",
                     "--evals", "20", "--seeds", "1", "--out", str(tmp_path), *flags])
    assert code == 2 and message in capsys.readouterr().err


def test_run_isolated_from_the_command_line(tmp_path):
    from zgbench import cli

    code = cli.main(["run", "--tasks", "sphere[dim=2]", "--optimizers", "random-search",
                     "--evals", "50", "--seeds", "2", "--out", str(tmp_path), "--isolate",
                     "--memory", "4G", "--timeout", "120", "--no-leaderboard", "--strict"])
    records = list(ResultStore(tmp_path))
    assert code == 0 and len(records) == 2
    assert all(r["status"] == "ok" and r["audit"]["evals_performed"] == 50 for r in records)


# ------------------------------------------------- cheats through the inputs (issue 24)
import cheats_inputs  # noqa: E402


@pytest.fixture(scope="module")
def reg_inputs():
    return plugins.load(extra_plugins=[cheats, cheats_inputs])


def test_naming_no_charge_for_gradients_is_charged_the_task_bill(reg_inputs):
    """200 ``problem.call("grad", θ[None], 0)``: 200 gradients charged where the budget
    allots them, and none taken where it bounds evaluations only."""
    record = _run(reg_inputs, "cheat-call-grad", "sphere[dim=10]", evals=1000, grads=200)
    audit = record["audit"]
    assert record["status"] == "ok"
    assert audit["grads_charged"] == audit["grads_performed"] == 200
    assert record["final"]["grads"] == 200 and not audit["budget_exceeded"]
    zeroth = _run(reg_inputs, "cheat-call-grad", "sphere[dim=10]", evals=1000)
    assert zeroth["status"] == "ok"
    assert zeroth["audit"]["grads_performed"] == zeroth["audit"]["grads_charged"] == 0
    assert zeroth["final"]["metrics"]["gap"] == zeroth["start"]["gap"]  # it got nowhere


def test_a_tensor_subclass_or_a_torch_mode_captures_nothing(reg_inputs):
    cheats_inputs.CAPTURED.clear()
    record = _run(reg_inputs, "cheat-spy", "sphere[dim=10]", evals=1000, grads=10)
    from zgbench.harness import task_seed
    from zgbench.tasks.synthetic import Sphere

    task = specs.resolve_task(reg_inputs, "sphere[dim=10]")
    instance = Sphere(seed=task_seed(task, 0), **task.kwargs)
    start = instance.initial()  # what the spy handed over itself
    assert record["status"] == "ok", record["error"]
    assert all(torch.equal(c, start) for c in cheats_inputs.CAPTURED), "the spy saw task data"
    assert not any(torch.allclose(c, instance.x_star) for c in cheats_inputs.CAPTURED)
    assert record["final"]["metrics"]["gap"] > 1.0  # the start's gap: nothing was learnt
    assert record["audit"]["evals_charged"] == record["audit"]["evals_performed"] == 5


def test_a_changed_default_dtype_does_not_reach_later_runs(reg_inputs):
    before = _run(reg_inputs, "random-search", "sphere[dim=10]", evals=300)
    cheat = _run(reg_inputs, "cheat-dtype", "sphere[dim=10]", evals=300)
    assert torch.get_default_dtype() is torch.float32  # put back after the run
    torch.set_default_dtype(torch.float64)  # ... and before one: left by anything
    try:
        after = _run(reg_inputs, "random-search", "sphere[dim=10]", evals=300)
    finally:
        torch.set_default_dtype(torch.float32)
    assert cheat["status"] == "ok" and cheat["audit"]["evals_performed"] == 300
    assert after["trajectory"] == [{**p, **{k: after["trajectory"][i][k] for k in (
        "seconds", "task_seconds", "optimizer_seconds")}} for i, p in
        enumerate(before["trajectory"])]  # the same instance, the same numbers
    assert after["final"]["metrics"] == before["final"]["metrics"]
    assert after["reference"] == before["reference"] and after["sanity"] == before["sanity"]


def test_no_input_cheat_outranks_random_search(reg_inputs, tmp_path):
    """sphere[dim=10] at 1,000 evaluations: each input cheat is counted honestly (or
    refused) and ranks below random search."""
    names = [c.name for c in cheats_inputs.CHEATS] + ["random-search"]
    entries = [(specs.resolve_task(reg_inputs, "sphere[dim=10]"), Budget(evals=1000),
                [specs.resolve_optimizer(reg_inputs, n) for n in names])]
    run_all(plan(entries, seeds=2), reg_inputs, tmp_path, InProcessExecutor(timeout=60))
    records = list(ResultStore(tmp_path))
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    assert all(r["audit"]["evals_performed"] == r["audit"]["evals_charged"] and
               r["audit"]["grads_performed"] == r["audit"]["grads_charged"] for r in records)
    table = leaderboard.task_table(leaderboard.runs_frame(records))
    rank = dict(zip(table["optimizer"], table["rank"]))
    for name in ("cheat-call-grad", "cheat-spy", "cheat-dtype"):
        assert rank[name] > rank["random-search"], table
