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


class Sphere2(GoodTask):
    name = "cge"  # the name of a built-in optimizer


class Cge2(Optimizer):
    name = "sphere"  # the name of a built-in task

    def run(self, problem):
        pass


def test_a_name_is_a_task_or_an_optimizer_not_both():
    registry = plugins.load(extra_plugins=[_plugin("shadow", tasks=[Sphere2], optimizers=[Cge2])])
    messages = [e.message for e in registry.errors if e.plugin == "shadow"]
    assert "task name 'cge' is already the name of optimizer 'cge' (plugin 'estimators')" in messages[0]
    assert "optimizer name 'sphere' is already the name of task 'sphere'" in messages[1]
    assert "cge" not in registry.tasks and registry.optimizers["cge"].plugin == "estimators"
    assert "sphere" not in registry.optimizers and registry.tasks["sphere"].plugin == "synthetic"


def test_names_must_be_lower_case_words():
    bad = [type(f"Bad{i}", (GoodTask,), {"name": name})
           for i, name in enumerate(["Upper", "-dash", "has space", "", "a/b"])]
    registry = plugins.load(extra_plugins=[_plugin("badnames", tasks=bad)])
    messages = [e.message for e in registry.errors if e.plugin == "badnames"]
    assert len(messages) == 5 and all("has no valid name" in m for m in messages)


def test_third_party_install_line(monkeypatch, capsys):
    from zgbench.cli import main
    from zgbench.optimizers.baselines import RandomSearch

    monkeypatch.setattr(RandomSearch, "needs", ("my_plugin_fast_kernels",))
    monkeypatch.setattr(RandomSearch, "install", "pip install 'my-plugin[fast]'")
    assert main(["run", "--tasks", "sphere", "--optimizers", "random-search"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("optimizer 'random-search' needs modules that are not installed (missing module: "
            "my_plugin_fast_kernels): pip install 'my-plugin[fast]'") in err
    assert main(["list", "random-search"]) == 0
    assert ": pip install 'my-plugin[fast]'" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setattr(RandomSearch, "needs", ("my_plugin.sub",))  # a missing parent package
    assert "my_plugin.sub" in RandomSearch.missing_dependency()


def test_params_must_not_replace_zgbench_attributes():
    from zgbench import Param

    bad = [type(f"P{i}", (GoodTask,), {"name": f"p{i}", attr: Param(1, "")})
           for i, attr in enumerate(["seed", "device", "loss", "dtype", "metrics"])]
    ok = type("WithDim", (GoodTask,), {"name": "with-dim", "dim": Param(3, "")})
    registry = plugins.load(extra_plugins=[_plugin("badparams", tasks=bad + [ok])])
    messages = [e.message for e in registry.errors if e.plugin == "badparams"]
    assert len(messages) == 5 and all("would replace zgbench's own Task." in m for m in messages)
    assert "with-dim" in registry.tasks


class Probe(Task):
    """Records what the harness hands it (the plugin guide's statements, checked)."""
    name = "probe"
    metrics = {"m": "min"}
    primary_metric = "m"
    default_budget = Budget(evals=400)
    seen: dict = {}

    def setup(self):
        import torch
        self.dtype = torch.float64
        self.dim = 3
        Probe.seen = {"setup_seed": torch.initial_seed(), "loss": set(), "evaluate": []}

    def initial(self):
        import torch
        return torch.ones(3, dtype=self.dtype)

    def loss(self, thetas, key):
        import torch
        self.seen["loss"].add((thetas.dtype, thetas.ndim, torch.is_grad_enabled()))
        return (thetas**2).sum(1)

    def evaluate(self, theta):
        import torch
        self.seen["evaluate"].append((theta.dtype, tuple(theta.shape), torch.is_grad_enabled()))
        return {"m": float((theta**2).sum())}


class EarlyStop(Optimizer):
    name = "early-stop"

    def run(self, problem):
        import torch
        Probe.seen["run_seed"] = torch.initial_seed()
        Probe.seen["own_seed"] = self.seed
        for _ in range(3):
            theta = problem.initial() * 0.5
            problem.loss(theta[None])
            problem.report(theta)  # then return early, budget left


def test_what_a_plugin_receives():
    import torch
    from zgbench.testing import run_once

    registry = plugins.load(extra_plugins=[_plugin("probes", tasks=[Probe], optimizers=[EarlyStop])])
    record = run_once("probe", "early-stop", registry=registry)
    assert record["status"] == "ok" and record["final"]["evals"] == 3
    seen = Probe.seen
    assert seen["loss"] == {(torch.float64, 2, False)}
    assert set(seen["evaluate"]) == {(torch.float64, (3,), False)}
    assert len(seen["evaluate"]) == len(record["trajectory"]) <= 33
    assert seen["run_seed"] == seen["own_seed"] % 2**63 != seen["setup_seed"]
    full = run_once("probe", "random-search[batch=1]", registry=registry, evals=2000)
    assert 30 <= len(full["trajectory"]) <= 33  # the guide's "up to 33"


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


class LogsEveryGeneration(Optimizer):
    """A plugin wrapping a library that configures its own INFO logger on import and logs
    each generation, as EvoTorch does."""
    name = "logs-every-generation"

    def run(self, problem):
        import logging

        log = logging.getLogger("evotorch.algorithms")
        while True:
            problem.loss(problem.initial()[None])
            log.info("generation done")
            problem.report(problem.initial())


def test_library_loggers_do_not_flood_the_progress_display():
    import io
    import logging

    from zgbench.testing import run_once

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    library = logging.getLogger("evotorch")
    library.addHandler(handler)
    library.setLevel(logging.INFO)  # what the library does when imported
    try:
        registry = plugins.load(extra_plugins=[_plugin("logs", optimizers=[LogsEveryGeneration])])
        record = run_once("sphere[dim=2]", "logs-every-generation", evals=20, registry=registry)
        assert record["status"] == "ok"
        assert "generation done" not in stream.getvalue()
        logging.getLogger("evotorch.algorithms").warning("a real problem")
        assert "a real problem" in stream.getvalue()  # warnings still come through
    finally:
        library.removeHandler(handler)
        library.setLevel(logging.NOTSET)


def test_testing_helpers_and_a_nan_safe_loss_helper_are_at_the_top_level():
    import math
    import subprocess
    import sys

    import torch

    import zgbench

    # a fresh interpreter: `import zgbench` alone gives zgbench.testing
    code = "import zgbench; print(zgbench.testing.run_once.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "run_once"
    assert "WorstForNaN" in zgbench.__all__ and "testing" in zgbench.__all__
    fix = zgbench.WorstForNaN()
    assert fix([1.0, math.nan, 3.0, math.inf]) == [1.0, 7.0, 3.0, 7.0]  # last, beyond 3
    fixed = fix(torch.tensor([math.nan, 2.0], dtype=torch.float64))
    assert fixed.dtype == torch.float64 and fixed.tolist() == [7.0, 2.0]


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_readme_lists_every_built_in_optimizer_and_task(registry):
    # issue 26.5: cbxpy was missing from the README's list
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    built = text[text.index("What is built in"):text.index("- **Specs**")]
    for kind in (registry.tasks, registry.optimizers):
        for name, entry in kind.items():
            if entry.cls.__module__.startswith("zgbench."):  # built in, not a plugin's
                assert f"`{name}`" in built, f"{name} is not in the README's list"


def test_plugin_guide_documents_every_record_field_and_param_option():
    # issue 26.6: the record schema in the guide itself, not a pointer to record.py
    import dataclasses

    from zgbench import Param
    from zgbench.testing import run_once

    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    schema = guide[guide.index("## What a run's record holds"):]
    record = run_once("sphere[dim=2]", "random-search", evals=20)
    for key in record:
        assert f"`{key}`" in schema, f"record field {key!r} is not in docs/plugins.md"
    for key in list(record["audit"]) + list(record["environment"]) + list(record["task"]):
        assert f"{key}" in schema, f"record field {key!r} is not in docs/plugins.md"
    for field in dataclasses.fields(Param):
        if field.init and field.name not in ("default", "help"):  # positional
            assert f"{field.name}=" in guide, f"Param({field.name}=) is not in docs/plugins.md"
    for name in ("Task.family", "problem.dim", "problem.device", "execution=True",
                 "whole=True", 'recommend = "best-evaluated"', "WorstForNaN", "zgbench.testing",
                 "BudgetExhausted"):
        assert name in guide
