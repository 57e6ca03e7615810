"""The harness: resume, failure isolation, capability filtering, determinism, seeding."""

import types

import pytest
import torch

from zgbench import Optimizer, Param, hookimpl, plugins, specs
from zgbench.budget import Budget
from zgbench.executors import InProcessExecutor
from zgbench.harness import plan, run_all
from zgbench.store import ResultStore
from zgbench.tasks.synthetic import Sphere


class Raiser(Optimizer):
    """Raises after a few evaluations."""
    name = "raiser"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        raise RuntimeError("optimizer exploded")


class NaNSphere(Sphere):
    """Sphere that returns NaN for every other candidate."""
    name = "nan-sphere"

    def loss(self, thetas, key):
        values = super().loss(thetas, key)
        values[::2] = float("nan")
        return values


events = []


class Picky(Optimizer):
    """Random search that, in its ``wide`` setting, declines tasks of the synthetic step."""
    name = "picky"
    wide = Param(False, "decline step")
    started = []

    def skip(self, task):
        if self.wide and task.name == "step":
            return f"picky[wide=true] cannot use {task.name} at dim={task.params.get('dim')}"
        return super().skip(task)

    def run(self, problem):
        Picky.started.append(problem.dim)
        while True:
            problem.report(problem.initial())
            problem.loss(problem.initial()[None])


class BadSkip(Picky):
    name = "bad-skip"

    def skip(self, task):
        return True  # not a reason: the contract asks for a str or None


def _test_plugin():
    module = types.ModuleType("testplug")
    module.zgbench_tasks = hookimpl(lambda: [NaNSphere])
    module.zgbench_optimizers = hookimpl(lambda: [Raiser, Picky, BadSkip])
    module.zgbench_run_finished = hookimpl(lambda record: events.append(record["run_id"]))
    return module


@pytest.fixture(scope="module")
def reg():
    return plugins.load(extra_plugins=[_test_plugin()])


def _plan(reg, tasks, optimizers, seeds=2, evals=300):
    entries = [(specs.resolve_task(reg, t), Budget(evals=evals, grads=50),
                [specs.resolve_optimizer(reg, o) for o in optimizers]) for t in tasks]
    return plan(entries, seeds)


def test_cross_product_isolation_and_resume(reg, tmp_path):
    runs = _plan(reg, ["sphere[dim=3]", "nan-sphere[dim=3]", "step[dim=3]"],
                 ["random-search", "raiser", "adam", "rge"])
    events.clear()
    summary = run_all(runs, reg, tmp_path, InProcessExecutor())
    # 3 tasks x 4 optimizers x 2 seeds; adam is n/a on nan-sphere? no: nan-sphere provides grad
    assert summary.total == 24
    assert summary.failed == 6  # raiser on every task and seed
    assert summary.na == 2  # adam on step
    assert summary.done == 16
    assert len(events) == 24
    records = {r["run_id"]: r for r in ResultStore(tmp_path)}
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert all("optimizer exploded" in r["error"] and "Traceback" in r["error"] for r in failed)
    assert all(r["trajectory"] for r in failed)  # salvaged up to the failure
    nan_runs = [r for r in records.values()
                if r["task"]["name"] == "nan-sphere" and r["optimizer"]["name"] == "rge"]
    assert all(r["status"] == "ok" for r in nan_runs)
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave nothing behind

    again = run_all(runs, reg, tmp_path, InProcessExecutor())
    assert again.skipped == 18 and again.failed == 6 and again.done == 0
    assert "24 runs: 0 done, 18 skipped (already finished), 6 failed" in again.line()


def test_skip_turns_an_incompatible_setting_into_n_a(reg, tmp_path):
    """skip(task) -> reason: recorded n/a with the reason, the task never built, not retried;
    the other setting and the other task run; a skip that returns no reason fails the run."""
    runs = _plan(reg, ["sphere[dim=3]", "step[dim=3]"], ["picky[wide=true]", "picky", "bad-skip"],
                 seeds=1, evals=20)
    Picky.started.clear()
    summary = run_all(runs, reg, tmp_path, InProcessExecutor())
    assert (summary.done, summary.na, summary.failed) == (3, 1, 2)
    records = list(ResultStore(tmp_path))
    na = [r for r in records if r["status"] == "n/a"]
    assert len(na) == 1 and na[0]["task"]["name"] == "step"
    assert na[0]["error"] == "picky[wide=true] cannot use step at dim=3"
    bad = [r for r in records if r["status"] == "failed"]
    assert all("must return a reason (str) or None" in r["error"] for r in bad)
    assert len(Picky.started) == 3
    again = run_all(runs, reg, tmp_path, InProcessExecutor())
    assert again.skipped == 4 and again.failed == 2 and len(Picky.started) == 3


def _numbers(record):
    return [{k: v for k, v in p.items() if "seconds" not in k} for p in record["trajectory"]]


def test_same_seed_same_numbers(reg, tmp_path):
    runs = _plan(reg, ["rastrigin[dim=4]"], ["random-search", "rge", "cge"], seeds=2)
    run_all(runs, reg, tmp_path / "a", InProcessExecutor())
    run_all(runs, reg, tmp_path / "b", InProcessExecutor())
    a = {r["run_id"]: _numbers(r) for r in ResultStore(tmp_path / "a")}
    b = {r["run_id"]: _numbers(r) for r in ResultStore(tmp_path / "b")}
    assert a == b
    seeds = {}
    for r in ResultStore(tmp_path / "a"):
        seeds.setdefault(r["identity"]["repetition"], set()).add(r["seeds"]["task"])
    assert all(len(v) == 1 for v in seeds.values())  # every optimizer faces the same instance
    assert seeds[0] != seeds[1]


def test_adding_an_optimizer_changes_no_other_run(reg, tmp_path):
    small = _plan(reg, ["sphere[dim=3]"], ["rge"], seeds=1)
    large = _plan(reg, ["sphere[dim=3]", "step[dim=2]"], ["random-search", "rge"], seeds=1)
    run_all(small, reg, tmp_path / "small", InProcessExecutor())
    run_all(large, reg, tmp_path / "large", InProcessExecutor())
    small_rec = {r["run_id"]: _numbers(r) for r in ResultStore(tmp_path / "small")}
    large_rec = {r["run_id"]: _numbers(r) for r in ResultStore(tmp_path / "large")}
    for rid, numbers in small_rec.items():
        assert large_rec[rid] == numbers


def test_record_identity_and_metadata(reg, tmp_path):
    runs = _plan(reg, ["sphere[dim=3]"], ["cge[lr=0.05]"], seeds=1)
    run_all(runs, reg, tmp_path, InProcessExecutor())
    (record,) = list(ResultStore(tmp_path))
    assert record["schema"] == 2 and record["identity"]["repetition"] == 0
    assert record["identity"]["task"] == "sphere[dim=3]"
    assert record["optimizer"]["label"] == "cge[lr=0.05]"
    assert record["optimizer"]["plugin"] == "estimators"
    assert record["environment"]["torch"] == torch.__version__
    assert record["final"]["evals"] == 300
    assert record["final"]["metrics"]["gap"] < record["trajectory"][0]["metrics"]["gap"]


def test_torch_optim_import_is_not_charged_to_the_first_run():
    """The first torch.optim optimizer of a process imports torch._dynamo (seconds): a fresh
    interpreter shows it imported before the first run's optimizer starts."""
    import subprocess
    import sys

    script = """
import sys
from zgbench import Optimizer, hookimpl, plugins
from zgbench.testing import run_once

class Probe(Optimizer):
    name = "probe"
    def run(self, problem):
        print("imported before run:", "torch._dynamo" in sys.modules)
        problem.loss(problem.initial()[None])

class Plugin:
    @hookimpl
    def zgbench_optimizers(self):
        return [Probe]

registry = plugins.load(extra_plugins=[Plugin()])
record = run_once("sphere[dim=2]", "probe", evals=1, registry=registry)
assert record["status"] == "ok", record["error"]
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "imported before run: True" in out.stdout
