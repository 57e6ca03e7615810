"""The metered problem: budgets are enforced exactly, batches are cut, NaN is ignored."""

import math

import numpy as np
import pytest
import torch

from zgbench.budget import Budget, BudgetExhausted
from zgbench.errors import ContractError, UsageError
from zgbench.problem import Problem
from zgbench.tasks.synthetic import Sphere
from zgbench.testing import make_problem


def test_batch_crossing_the_budget_is_cut():
    problem = make_problem("sphere[dim=3]", budget=Budget(evals=10))
    problem.loss(torch.zeros(6, 3))
    with pytest.raises(BudgetExhausted):
        problem.loss(torch.zeros(6, 3))
    assert problem.evals == 10
    with pytest.raises(BudgetExhausted):
        problem.loss(torch.zeros(1, 3))
    assert problem.evals == 10


def test_cut_batch_still_counts_for_best():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=3))
    x_star = Sphere(dim=2, seed=0).x_star  # the instance make_problem built
    batch = torch.stack([x_star + 5, x_star + 4, x_star, x_star + 1])  # optimum is the 3rd row
    with pytest.raises(BudgetExhausted):
        problem.loss(batch)
    assert problem.best_loss == pytest.approx(0.0, abs=1e-10)


def test_grad_and_step_budgets():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=100, grads=3, steps=2))
    values, grads = problem.grad(torch.zeros(2, 2))
    assert values.shape == (2,) and grads.shape == (2, 2)
    with pytest.raises(BudgetExhausted):
        problem.grad(torch.zeros(2, 2))
    assert problem.grads == 3
    problem.report(torch.zeros(2))
    with pytest.raises(BudgetExhausted):
        problem.report(torch.zeros(2))
    assert problem.steps == 2


def test_seconds_budget():
    problem = make_problem("sphere[dim=2]", budget=Budget(seconds=0.05))
    with pytest.raises(BudgetExhausted):
        while True:
            problem.loss(torch.zeros(4, 2))
    assert problem.seconds >= 0.05


def test_grad_requires_capability():
    problem = make_problem("step[dim=2]")
    with pytest.raises(ContractError, match="does not provide 'grad'"):
        problem.grad(torch.zeros(1, 2))


def test_shape_errors():
    problem = make_problem("sphere[dim=3]")
    with pytest.raises(ContractError, match=r"shape \[B, 3\]"):
        problem.loss(torch.zeros(3))
    with pytest.raises(ContractError, match="empty batch"):
        problem.loss(torch.zeros(0, 3))


def test_nan_is_ignored_for_best_and_recommendation():
    problem = make_problem("sphere[dim=2]")
    x_star = Sphere(dim=2, seed=0).x_star  # the instance make_problem built
    problem.loss(torch.stack([x_star + 1, x_star + 2]))
    # a task returning NaN for a candidate: simulate by a NaN parameter vector
    problem.loss(torch.stack([torch.full((2,), math.nan), x_star + 3]))
    assert problem.best_loss == pytest.approx(2.0, rel=1e-5)
    assert torch.allclose(problem.recommendation(), x_star + 1)


def test_nan_first_in_a_batch_is_ignored_too():
    """The CPU path takes Python's min over the batch's floats, which NaN fools only when it
    comes first: that case is handled apart."""
    problem = make_problem("sphere[dim=2]")
    x_star = Sphere(dim=2, seed=0).x_star  # the instance make_problem built
    problem.loss(torch.stack([torch.full((2,), math.nan), x_star + 1, torch.full((2,), math.nan)]))
    assert problem.best_loss == pytest.approx(2.0, rel=1e-5)
    assert torch.allclose(problem.recommendation(), x_star + 1)
    problem.loss(torch.full((2, 2), math.nan))  # all NaN: nothing changes
    assert problem.best_loss == pytest.approx(2.0, rel=1e-5)


def test_numpy_batches_and_reports_are_taken_as_tensors_are():
    """Numpy libraries (pycma, Nevergrad) hand their float64 arrays over as they are: the
    problem converts once, and copies what it keeps."""
    problem = make_problem("sphere[dim=2]")
    points = np.array([[0.5, 0.25], [1.0, -1.0]])
    values = problem.loss(points, key=0)
    assert values.dtype == problem.dtype
    assert torch.equal(values, problem.loss(torch.from_numpy(points).float(), key=0))
    points[:] = 7.0  # the library reuses its buffer: the best θ kept must not change
    assert problem.recommendation().tolist() != [7.0, 7.0]
    theta = np.array([0.125, 0.5])
    problem.report(theta)
    theta[:] = 3.0
    assert problem.recommendation().tolist() == [0.125, 0.5]
    assert problem.recommendation().dtype == problem.dtype
    with pytest.raises(ContractError, match=r"shape \[B, 2\]"):
        problem.loss(np.zeros(2))
    with pytest.raises(ContractError, match="one parameter vector of 2 values"):
        problem.report(np.zeros(3))


def test_numpy_input_for_a_dtype_numpy_lacks():
    """A task in bfloat16 (numpy has no such dtype) still takes numpy batches and reports."""
    task = Sphere(dim=2, seed=0)
    task.dtype = torch.bfloat16
    problem = Problem(task, Budget(evals=100), checkpoints=())
    problem.start()
    assert problem.loss(np.array([[0.5, 0.25]]), key=0).shape == (1,)
    problem.report(np.array([0.125, 0.5]))
    assert problem.recommendation().dtype == torch.bfloat16
    assert problem.recommendation().tolist() == [0.125, 0.5]


def test_report_overrides_best_as_recommendation():
    problem = make_problem("sphere[dim=2]")
    problem.loss(torch.zeros(1, 2))
    problem.report(torch.ones(2))
    assert torch.equal(problem.recommendation(), torch.ones(2))


def test_checkpoints_are_log_spaced_and_time_is_split():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=1000))
    with pytest.raises(BudgetExhausted):
        while True:
            problem.loss(torch.zeros(1, 2))
    problem.finish()
    evals = [p["evals"] for p in problem.trajectory]
    assert evals[0] == 0 and evals[-1] == 1000
    assert evals == sorted(evals) and 15 <= len(evals) <= 40
    assert all(p["task_seconds"] <= p["seconds"] + 1e-9 for p in problem.trajectory)
    assert all(p["optimizer_seconds"] >= 0 for p in problem.trajectory)


def test_budget_validation():
    with pytest.raises(UsageError, match="must be positive"):
        Budget(evals=0)
    with pytest.raises(UsageError, match="unknown key"):
        Budget.from_dict({"evalz": 3})


def test_the_spent_budget_is_named_in_the_message():
    """Running out of gradients must not read as "evaluation budget spent"."""
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=100, grads=2))
    problem.grad(torch.zeros(2, 2))
    with pytest.raises(BudgetExhausted, match="gradient budget spent"):
        problem.grad(torch.zeros(1, 2))
    evals = make_problem("sphere[dim=2]", budget=Budget(evals=3))
    with pytest.raises(BudgetExhausted, match="cut"):
        evals.loss(torch.zeros(4, 2))
    with pytest.raises(BudgetExhausted, match="evaluation budget spent"):
        evals.loss(torch.zeros(1, 2))


def test_remaining_and_affordable_steps_do_the_budget_arithmetic_once():
    problem = make_problem("sphere[dim=2]", budget=Budget(evals=100, grads=10, steps=30))
    assert problem.remaining() == {"evals": 100, "grads": 10, "steps": 30, "seconds": None}
    problem.loss(torch.zeros(7, 2))
    problem.grad(torch.zeros(3, 2))
    problem.report(torch.zeros(2))
    assert problem.remaining("evals") == 93 and problem.remaining("grads") == 7
    assert problem.remaining("steps") == 29 and problem.remaining("seconds") is None
    assert problem.affordable_steps(evals_per_step=10) == 9   # 93 // 10 < 29 steps
    assert problem.affordable_steps(grads_per_step=2) == 3    # 7 // 2
    assert problem.affordable_steps() == 29                  # steps alone bound it
    unbounded = make_problem("sphere[dim=2]", budget=Budget(seconds=5.0))
    assert unbounded.affordable_steps(evals_per_step=3) is None
    with pytest.raises(ContractError, match="counters are"):
        problem.remaining("flops")


# ------------------------------------------------ issue 26.6: what a plugin author missed
def _run(optimizer_cls, budget, task="sphere[dim=3]"):
    """Run ``optimizer_cls`` (a real optimizer class, registered as a plugin) through the
    harness and return the record's dict."""
    import types

    from zgbench import hookimpl, plugins
    from zgbench.harness import RunSpec, execute
    from zgbench.specs import resolve_optimizer, resolve_task

    module = types.ModuleType(f"plugin_{optimizer_cls.name}")
    module.zgbench_optimizers = hookimpl(lambda: [optimizer_cls])
    registry = plugins.load(extra_plugins=[module])
    run = RunSpec(resolve_task(registry, task), resolve_optimizer(registry, optimizer_cls.name),
                  0, budget)
    return execute(run, registry).as_dict()


def _owns_its_loop(name, far=100.0):
    """An optimizer whose library owns the loop: it evaluates until BudgetExhausted, then
    reports the best point it saw (the optimum's neighbourhood), never before."""
    from zgbench import Optimizer

    class OwnsItsLoop(Optimizer):
        def run(self, problem):
            best, best_value = problem.initial(), math.inf
            try:
                while True:
                    theta = problem.initial() * 0 + far  # a bad point, reported on the way
                    problem.report(theta)
                    value = float(problem.loss(problem.initial()[None])[0])
                    if value < best_value:
                        best, best_value = problem.initial(), value
            except BudgetExhausted:
                problem.report(best)  # the library learns of the budget only now

    OwnsItsLoop.name = name
    return OwnsItsLoop


@pytest.mark.parametrize("budget", [Budget(steps=5), Budget(seconds=0.2)],
                         ids=["steps", "seconds"])
def test_a_report_after_budget_exhausted_is_the_result(budget):
    record = _run(_owns_its_loop("owns-its-loop"), budget)
    assert record["status"] == "ok", record["error"]
    assert record["audit"]["violations"] == [] and record["audit"]["late_reports"] >= 1
    far = 100.0 * math.sqrt(3)  # where the in-loop reports were, from the origin
    start = record["trajectory"][0]["metrics"]["distance"]
    assert record["final"]["metrics"]["distance"] == pytest.approx(start)
    assert record["final"]["metrics"]["distance"] < far / 2
    if budget.steps:
        assert record["final"]["steps"] == 5  # the late report counted no step
        assert record["audit"]["late_reports"] == 1


def test_a_late_report_after_evaluating_past_the_step_limit_is_flagged():
    from zgbench import Optimizer

    class KeepsGoing(Optimizer):
        name = "keeps-going"

        def run(self, problem):
            try:
                problem.report(problem.initial())
            except BudgetExhausted:
                problem.loss(torch.zeros(8, problem.dim))  # more search, then a free report
                problem.report(torch.zeros(problem.dim))

    record = _run(KeepsGoing, Budget(steps=1, evals=100))
    assert record["status"] == "violated"
    assert "past the step budget" in " ".join(record["audit"]["violations"])


def test_best_evaluated_recommendation_is_the_best_theta_the_ledger_saw():
    from zgbench import Optimizer

    class ReportsBadPoints(Optimizer):
        name = "reports-bad-points"
        recommend = "best-evaluated"

        def run(self, problem):
            g = self.generator("cpu")
            while True:
                batch = torch.randn(8, problem.dim, generator=g)
                problem.loss(batch)
                problem.report(batch[0] * 0 + 50.0)  # its own recommendation is poor

    record = _run(ReportsBadPoints, Budget(evals=64))
    plain = type("ReportsBadPointsPlain", (ReportsBadPoints,),
                 {"name": "reports-bad-points-plain", "recommend": "reported"})
    reported = _run(plain, Budget(evals=64))
    assert record["status"] == reported["status"] == "ok"
    best = record["final"]["best_loss"]
    assert record["final"]["current_loss"] == pytest.approx(best)  # the best evaluated θ
    assert reported["final"]["current_loss"] > 100 * best  # the reported one, far off


def test_an_unknown_recommend_value_is_a_contract_error():
    from zgbench import Optimizer
    from zgbench.optimizer import recommends_best

    class Odd(Optimizer):
        name = "odd"
        recommend = "best"

    with pytest.raises(ContractError, match="'reported', 'best-evaluated'"):
        recommends_best(Odd())


def test_a_whole_batch_that_does_not_fit_raises_before_anything_is_charged():
    problem = make_problem("sphere[dim=3]", budget=Budget(evals=10))
    problem.loss(torch.zeros(6, 3), whole=True)
    with pytest.raises(BudgetExhausted, match="nothing charged"):
        problem.loss(torch.zeros(6, 3), whole=True)
    assert problem.evals == 6 and problem.remaining("evals") == 4
    problem.loss(torch.zeros(4, 3), whole=True)  # what fits still runs
    assert problem.evals == 10
    problem = make_problem("sphere[dim=3]", budget=Budget(grads=3))
    with pytest.raises(BudgetExhausted, match="nothing charged"):
        problem.grad(torch.zeros(4, 3), whole=True)
    assert problem.grads == 0


def test_a_late_report_is_taken_then_raises_again():
    problem = make_problem("sphere[dim=2]", budget=Budget(steps=1))
    with pytest.raises(BudgetExhausted):
        problem.report(torch.zeros(2))
    with pytest.raises(BudgetExhausted, match="late report"):
        problem.report(torch.full((2,), 3.0))  # what a library learns it should report now
    assert problem.steps == 1 and problem.recommendation().tolist() == [3.0, 3.0]


# --------------------------------------------------- the task's bill (issue 24.1)
from zgbench.task import Cost, Task, capability_costs  # noqa: E402


class Billed(Task):
    """A task with a declared per-call capability, an undeclared one and a free one."""

    name = "billed"
    provides = frozenset({"grad", "probe", "trace", "meta"})
    costs = {"probe": Cost(evals=3, per="call"), "meta": Cost()}
    metrics = {"loss": "min"}
    primary_metric = "loss"
    dim = 4

    def setup(self):
        self.seen = []

    def initial(self):
        return torch.zeros(self.dim)

    def loss(self, thetas, key):
        self.seen.append((type(thetas), thetas))
        return (thetas**2).sum(1)

    def grad(self, thetas, key):
        return (thetas**2).sum(1), 2 * thetas

    def probe(self, theta, key=None):
        self.seen.append((type(theta), theta))
        return theta.sum() + torch.tensor(0.0)  # a factory: in the default dtype

    def trace(self, thetas=None, key=None, *, inputs=None):
        self.seen.append((type(thetas), thetas, inputs))
        return None if thetas is None else thetas.sum(-1)

    def meta(self):
        return "free"

    def evaluate(self, theta):
        return {"loss": float((theta**2).sum())}


def _billed(budget=None):
    task = Billed(seed=0)
    problem = Problem(task, budget or Budget(evals=100, grads=100), seed=0)
    problem.start()
    return task, problem


def test_a_capability_is_charged_what_the_task_declares():
    task, problem = _billed()
    assert problem.costs == {"grad": Cost(grads=1), "probe": Cost(evals=3, per="call"),
                             "trace": Cost(evals=1), "meta": Cost()}
    problem.call("grad", torch.zeros(5, 4), 0)  # names no charge: 1 gradient per row
    assert (problem.evals, problem.grads) == (0, 5)
    problem.call("probe", torch.zeros(6, 4))  # per call, whatever the rows
    assert problem.evals == 3
    problem.call("probe", torch.zeros(4), evals=1)  # naming less changes nothing
    assert problem.evals == 6
    problem.call("probe", torch.zeros(4), evals=10)  # naming more raises it
    assert problem.evals == 16
    problem.call("trace", torch.zeros(7, 4), 0)  # undeclared: one evaluation per row
    problem.call("trace", thetas=torch.zeros(2, 4))  # by name too
    problem.call("trace")  # no θ: metadata, free
    assert problem.evals == 25
    assert problem.call("meta") == "free" and problem.evals == 25
    with pytest.raises(BudgetExhausted):
        problem.call("trace", torch.zeros(80, 4))  # all or nothing
    assert problem.evals == 25


def test_the_ledger_charges_the_bill_even_if_the_front_is_changed():
    from zgbench.meter import Ledger

    task = Billed(seed=0)
    ledger = Ledger(task, Budget(evals=100, grads=100))
    problem = Problem(task, Budget(evals=100, grads=100), ledger=ledger)
    problem.start()
    problem._ledger_bill = lambda *args: (0, 0)  # a tampered front bills nothing
    problem.call("trace", torch.zeros(3, 4), 0)
    assert ledger.evals == 3 and problem.evals == 0
    audit = ledger.audit(problem)
    assert any("less than the task's bill" in v for v in audit["violations"])


def test_cost_declarations_are_checked():
    with pytest.raises(ContractError, match="whole number"):
        Cost(evals=-1)
    with pytest.raises(ContractError, match="'row' or 'call'"):
        Cost(per="batch")

    class Unit(Billed):
        costs = {"grad": Cost(grads=2)}

    with pytest.raises(ContractError, match="budget's unit"):
        capability_costs(Unit)

    class Elsewhere(Billed):
        costs = {"render": Cost(evals=1)}

    with pytest.raises(ContractError, match="does not provide"):
        capability_costs(Elsewhere)


def test_an_evaluations_only_budget_allots_no_gradients():
    _, problem = _billed(Budget(evals=50))
    with pytest.raises(BudgetExhausted, match="allots no gradients"):
        problem.grad(torch.zeros(1, 4))
    with pytest.raises(BudgetExhausted, match="allots no gradients"):
        problem.call("grad", torch.zeros(1, 4), 0)
    assert problem.grads == 0 and problem.remaining("grads") == 0
    _, steps_only = _billed(Budget(steps=5))
    steps_only.grad(torch.zeros(3, 4))  # steps bound the run: gradients are not refused
    assert steps_only.grads == 3


# ------------------------------------------------------ only plain data (issue 24.2)
class Spy(torch.Tensor):
    calls: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_the_task_gets_plain_copies_it_owns():
    task, problem = _billed()
    mine = torch.ones(2, 4)
    problem.loss(mine)
    kind, got = task.seen[-1]
    assert kind is torch.Tensor and got.data_ptr() != mine.data_ptr()
    Spy.calls.clear()
    problem.loss(torch.ones(3, 4).as_subclass(Spy))
    problem.report(torch.ones(4).as_subclass(Spy))
    problem.call("probe", torch.ones(4).as_subclass(Spy), key=torch.tensor(3).as_subclass(Spy))
    assert Spy.calls == []  # converted without running the subclass's code
    assert all(entry[0] is torch.Tensor for entry in task.seen)
    assert type(problem.recommendation()) is torch.Tensor

    class Array(np.ndarray):
        pass

    problem.loss(np.ones((2, 4)).view(Array))
    assert task.seen[-1][0] is torch.Tensor


def test_a_dispatch_subclass_or_a_foreign_object_is_refused():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from cheats_inputs import DispatchSpy

    task, problem = _billed()
    with pytest.raises(ContractError, match="__torch_dispatch__"):
        problem.loss(DispatchSpy(torch.ones(2, 4)))

    class Carrier:
        def __init__(self):
            self.hidden = torch.ones(4).as_subclass(Spy)

    with pytest.raises(ContractError, match="cannot cross"):
        problem.call("trace", torch.ones(1, 4), inputs=Carrier())
    with pytest.raises(ContractError, match="key is an integer"):
        problem.loss(torch.ones(1, 4), key=1.5)
    problem.loss(torch.ones(1, 4), key=np.int64(7))  # a numpy integer is an integer


def test_call_arguments_keep_the_callers_graph():
    task, problem = _billed()
    theta = torch.nn.Parameter(torch.ones(4))
    out = problem.call("probe", theta)
    out.backward()
    assert torch.equal(theta.grad, torch.ones(4))  # the gradient reached the caller's θ
    assert task.seen[-1][0] is torch.Tensor and task.seen[-1][1].data_ptr() != theta.data_ptr()


def test_the_optimizers_torch_mode_and_default_dtype_do_not_reach_the_task():
    from torch.overrides import TorchFunctionMode

    seen = []

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.extend(a for a in args if isinstance(a, torch.Tensor))
            return func(*args, **(kwargs or {}))

    problem = make_problem("sphere[dim=3]", budget=Budget(evals=1000))
    x_star = Sphere(dim=3, seed=0).x_star
    with Watch():
        values = problem.loss(torch.zeros(1, 3))
    assert seen and values.shape == (1,)  # the mode saw the front's own work ...
    assert not any(a.shape == x_star.shape and torch.equal(a, x_star) for a in seen)  # only
    _, billed = _billed()
    theta = torch.ones(4)
    torch.set_default_dtype(torch.float64)
    try:
        out = billed.call("probe", theta)
    finally:
        torch.set_default_dtype(torch.float32)
    assert out.dtype == torch.float32  # the task ran in torch's default dtype
