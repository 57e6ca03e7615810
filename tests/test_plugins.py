"""Plugin loading: built-ins through the same hooks, blocking, and broken plugins."""

import types

from zgbench import Optimizer, Task, hookimpl, plugins
from zgbench.budget import Budget


def _plugin(name, tasks=None, optimizers=None, raises=False):
    module = types.ModuleType(name)
    if tasks is not None:
        def zgbench_tasks():
            if raises:
                raise RuntimeError("boom")
            return tasks
        module.zgbench_tasks = hookimpl(zgbench_tasks)
    if optimizers is not None:
        module.zgbench_optimizers = hookimpl(lambda: optimizers)
    return module


class GoodTask(Task):
    """A valid task."""
    name = "good-task"
    metrics = {"m": "min"}
    primary_metric = "m"
    default_budget = Budget(evals=10)

    def setup(self):
        self.dim = 2

    def initial(self):
        import torch
        return torch.zeros(2)

    def loss(self, thetas, key):
        return thetas.sum(1)

    def evaluate(self, theta):
        return {"m": 0.0}


class NoLoss(Task):
    name = "no-loss"
    metrics = {"m": "min"}
    primary_metric = "m"


class BadMetric(GoodTask):
    name = "bad-metric"
    primary_metric = "other"


class NoRun(Optimizer):
    name = "no-run"


def test_builtins_register_through_hooks(registry):
    assert {"sphere", "step", "cliff", "rosenbrock", "rastrigin"} <= set(registry.tasks)
    assert {"random-search", "fd", "rge", "cge", "adam"} <= set(registry.optimizers)
    assert registry.tasks["sphere"].plugin == "synthetic"
    assert registry.optimizers["cge"].plugin == "estimators"


def test_block_plugin():
    registry = plugins.load(blocked=["synthetic"])
    assert "sphere" not in registry.tasks
    assert "cge" in registry.optimizers


def test_broken_plugins_are_named_and_others_load():
    good = _plugin("goodplug", tasks=[GoodTask])
    registry = plugins.load(extra_plugins=[
        good,
        _plugin("notaclass", tasks=[42]),
        _plugin("noloss", tasks=[NoLoss]),
        _plugin("badmetric", tasks=[BadMetric]),
        _plugin("raiser", tasks=[GoodTask], raises=True),
        _plugin("norun", optimizers=[NoRun]),
        _plugin("dupe", tasks=[type("Dupe", (GoodTask,), {"name": "sphere"})]),
    ])
    messages = {e.plugin: e.message for e in registry.errors}
    assert "not a class" in messages["notaclass"]
    assert "does not implement initial()" in messages["noloss"]
    assert "primary_metric 'other'" in messages["badmetric"]
    assert "raised RuntimeError: boom" in messages["raiser"]
    assert "does not implement run()" in messages["norun"]
    assert "already taken by plugin 'synthetic'" in messages["dupe"]
    assert registry.tasks["good-task"].plugin == "goodplug"
    assert registry.tasks["sphere"].plugin == "synthetic"


def test_import_failure_is_reported(monkeypatch):
    import importlib.metadata as md

    class FakeEP:
        name = "broken"
        dist = None
        def load(self):
            raise ImportError("No module named 'nonexistent_dependency'")

    real = md.entry_points
    monkeypatch.setattr(md, "entry_points",
                        lambda group=None: list(real(group=group)) + [FakeEP()])
    registry = plugins.load()
    assert any(e.plugin == "broken" and "nonexistent_dependency" in e.message
               for e in registry.errors)
    assert "sphere" in registry.tasks


def test_misspelled_hook_is_reported_with_the_plugin_and_the_fix():
    module = types.ModuleType("typo")
    module.zgbench_task = hookimpl(lambda: [GoodTask])  # the spec is zgbench_tasks
    registry = plugins.load(extra_plugins=[module])
    messages = [e.message for e in registry.errors if e.plugin == "typo"]
    assert len(messages) == 1
    assert "'zgbench_task' matches no hook specification" in messages[0]
    assert "did you mean 'zgbench_tasks'?" in messages[0]
    assert "good-task" not in registry.tasks


def test_hook_without_decorator_is_reported():
    module = types.ModuleType("undecorated")
    module.zgbench_tasks = lambda: [GoodTask]
    registry = plugins.load(extra_plugins=[module])
    messages = [e.message for e in registry.errors if e.plugin == "undecorated"]
    assert messages and "not decorated with @zgbench.hookimpl" in messages[0]


def test_builtin_plugins_have_no_hook_errors(registry):
    assert not [e for e in registry.errors if "hook" in e.message], registry.errors
