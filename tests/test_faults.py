"""A task that breaks its contract is the task's fault (issue 23.2): the run fails with cause
"task error", its traceback and the real difference named, and the honest optimizer facing
it is never ``violated``. The tasks are tests/faults.py, run through the real harness."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import faults  # noqa: E402

from zgbench import Optimizer, hookimpl, plugins, specs  # noqa: E402
from zgbench.budget import Budget  # noqa: E402
from zgbench.errors import ContractError  # noqa: E402
from zgbench.harness import RunSpec, execute  # noqa: E402


class Forgiving(Optimizer):
    """Honest random search that catches every error of the problem and goes on."""

    name = "forgiving"

    def run(self, problem):
        base = problem.initial()
        for _ in range(20):
            try:
                problem.loss(base + 0.1 * problem.initial().new_empty(8, problem.dim).normal_())
            except ContractError:
                continue


class _Plugin:
    @hookimpl
    def zgbench_optimizers(self):
        return [Forgiving]


@pytest.fixture(scope="module")
def reg():
    return plugins.load(extra_plugins=[faults, _Plugin()])


def _run(reg, task: str, optimizer: str) -> dict:
    # A gradient budget too: an evaluations-only budget allots no gradients (adam would not call
    # the broken grad at all).
    spec = RunSpec(specs.resolve_task(reg, f"{task}[dim=17]"),
                   specs.resolve_optimizer(reg, optimizer), 0, Budget(evals=300, grads=30))
    return execute(spec, reg).as_dict()


#: What each faulty task's error must name: the real difference, not a shape it has right.
MESSAGES = {
    "fault-raises": "loss raised RuntimeError: the simulator crashed",
    "fault-shape": "returned shape (",
    "fault-numpy": "returned numpy.ndarray, expected a torch.Tensor",
    "fault-dtype": "returned dtype torch.int64, expected a floating-point dtype",
    "fault-device": "returned a tensor on device meta, expected the task's device cpu",
    "fault-short": "returned shape (0,), expected (1,)",
}


@pytest.mark.parametrize("optimizer", ["random-search", "cma-es", "forgiving"])
@pytest.mark.parametrize("task", sorted(MESSAGES))
def test_a_broken_task_fails_as_the_tasks_fault(reg, task, optimizer):
    record = _run(reg, task, optimizer)
    assert record["status"] == "failed", record["error"]
    assert record["error"].startswith("task error: "), record["error"]
    assert MESSAGES[task] in record["error"].splitlines()[0]
    assert "Traceback" in record["error"] or task != "fault-raises"
    audit = record["audit"]
    assert audit["violations"] == []
    # the broken call was performed, never charged: the optimizer's counters were honest
    assert audit["evals_charged"] == audit["evals_performed"] - audit["failed_evals"]


def test_the_message_of_a_raising_task_keeps_its_traceback(reg):
    error = _run(reg, "fault-raises", "random-search")["error"]
    assert "RuntimeError: the simulator crashed" in error
    assert "in fault" in error  # the task's own frame


def test_a_broken_grad_is_the_tasks_fault(reg):
    record = _run(reg, "fault-grad", "adam")
    assert record["status"] == "failed" and record["audit"]["violations"] == []
    assert record["error"].startswith("task error: task 'fault-grad'.grad returned gradients "
                                      "as numpy.ndarray, expected a torch.Tensor of shape ("), \
        record["error"]
    audit = record["audit"]
    assert audit["failed_grads"] == 1  # adam's first call, one vector: performed, not charged
    assert audit["grads_charged"] == audit["grads_performed"] - audit["failed_grads"]
