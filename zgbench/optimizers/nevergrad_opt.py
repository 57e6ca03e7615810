"""Any optimizer of Nevergrad's registry through its ask/tell interface: ``nevergrad``.

Nevergrad: Rapin & Teytaud (2018), "Nevergrad - A gradient-free optimization platform",
https://github.com/facebookresearch/nevergrad; ``NGOpt``, the default, is its algorithm
selector (Meunier et al. (2021), "Black-Box Optimization Revisited: Improving Algorithm
Selection Wizards Through Massive Benchmarking", IEEE TEVC), which picks an optimizer from the
budget, the dimension and the number of workers.

``num_workers`` candidates are asked at once and evaluated in one batched ``loss`` call under
one key, then told: Nevergrad's contract for ``num_workers`` parallel evaluations. The last
batch is trimmed to the evaluations left, so every evaluation the budget pays for is told.
The default batch is 4 + ⌊3 ln d⌋, CMA-ES's population size, so Nevergrad's plain CMA gets
one generation per batch.

Two upstream bugs of the installed versions are worked around, only while a run is active
(:func:`upstream_workarounds`; remove it once Nevergrad fixes them):

- numpy >= 2.4 raises ``TypeError`` on ``float()`` of a one-element array, which Nevergrad's
  MetaModel (chosen by NGOpt for small d) does in every model fit
  (facebookresearch/nevergrad#1612). The error becomes ``MetaModelFailure``, on which Nevergrad
  itself falls back to the MetaModel's inner CMA.
- From d = 300 on pycma adapts the step size by TPA, and Nevergrad's CMA then fails whenever a
  batch of asks splits a generation ("Mean shift samples are expected but missing",
  facebookresearch/nevergrad#1690; NGOpt's diagonal CMA has 4 + ⌊8 ln d⌋ or num_workers + 1
  candidates per generation, which no batch size divides in general). pycma is kept on CSA,
  its rule below d = 300.

σ is a multiple of the task's scale (``Param(relative=True)``), Nevergrad's own model: its
parametrization takes a per-variable sigma (``Array.set_mutation(sigma=array)``), which is
σ x scale where the scale varies. On scale-1 tasks σ is today's 0.3.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.util
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from zgbench import Optimizer, Param, Problem, UsageError, hookimpl
from zgbench.optimizers.cmaes import WorstForNaN, evals_spent, to_numpy

LIST_COMMAND = 'python -c "import nevergrad as ng; print(sorted(ng.optimizers.registry))"'


def unknown_optimizer(name: str, known: list[str]) -> UsageError:
    """The error for a name not in Nevergrad's registry, with close names (any case).

    Not :func:`zgbench.errors.unknown`: that lists every known name, and the registry holds
    hundreds."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
    hint = (" Did you mean " + ", ".join(repr(by_lower[c]) for c in close) + "?") if close else ""
    return UsageError(
        f"unknown Nevergrad optimizer {name!r}.{hint} Write nevergrad[optimizer=NAME] with a "
        f"name from Nevergrad's registry ({len(known)} names; list them with: {LIST_COMMAND}).")


@contextlib.contextmanager
def upstream_workarounds() -> Iterator[None]:
    """Patch the two upstream bugs named in the module docstring; undo on exit."""
    import cma.evolution_strategy as cma_es
    from nevergrad.optimization import optimizerlib

    learn = optimizerlib.learn_on_k_best

    @functools.wraps(learn)
    def learn_or_fail(*args: Any, **kwargs: Any) -> Any:
        try:
            return learn(*args, **kwargs)
        except TypeError as exc:  # numpy >= 2.4: float() of a shape-(1,) prediction
            raise optimizerlib.MetaModelFailure(f"model fit failed: {exc}") from exc

    tpa_dimension = cma_es.TPA_dimension
    optimizerlib.learn_on_k_best = learn_or_fail
    cma_es.TPA_dimension = math.inf
    try:
        yield
    finally:
        optimizerlib.learn_on_k_best = learn
        cma_es.TPA_dimension = tpa_dimension


def default_workers(dim: int) -> int:
    """CMA-ES's default population size 4 + ⌊3 ln d⌋."""
    return 4 + int(3 * math.log(max(dim, 1)))


class Nevergrad(Optimizer):
    """Nevergrad (any registry optimizer, default NGOpt): a batch of asks per batched loss call."""

    name = "nevergrad"
    needs = ("nevergrad",)
    extra = "dfo"
    optimizer = Param("NGOpt", "name in nevergrad.optimizers.registry: NGOpt, TwoPointsDE, "
                      "CMA, PSO, OnePlusOne, ...")
    num_workers = Param(0, "candidates per batched loss call; 0 = 4 + ⌊3 ln d⌋ (CMA's population)")
    sigma = Param(0.3, "initial mutation scale of the parameter vector (random-search's σ)",
                  tune=(1e-3, 1.0), log=True, relative=True)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if params["num_workers"] < 0:
            raise UsageError(f"nevergrad needs num_workers >= 1 (or 0 for the default), "
                             f"got {params['num_workers']}.")
        if not params["sigma"].value > 0:
            raise UsageError(f"nevergrad needs sigma > 0, got {params['sigma']}.")
        if importlib.util.find_spec("nevergrad") is None:
            return  # the missing extra is reported with the install command elsewhere
        import nevergrad as ng

        if params["optimizer"] not in ng.optimizers.registry:
            raise unknown_optimizer(params["optimizer"], list(ng.optimizers.registry))

    def workers(self, dim: int) -> int:
        return self.num_workers or default_workers(dim)

    @staticmethod
    def planned_evals(problem: Problem, workers: int) -> int:
        """The budget Nevergrad is told (NGOpt chooses by it): evaluations, else steps × batch."""
        left = problem.remaining()
        if left["evals"] is not None:
            return left["evals"]
        if left["steps"] is not None:
            return left["steps"] * workers
        raise UsageError("nevergrad needs an evaluation or step budget (Nevergrad's optimizers, "
                         "NGOpt first, plan by it): give --evals or --steps, not only --seconds.")

    def run(self, problem: Problem) -> None:
        with upstream_workarounds(), torch.no_grad():  # no autograd in a derivative-free search
            self._run(problem)

    def _run(self, problem: Problem) -> None:
        import nevergrad as ng

        workers = self.workers(problem.dim)
        factor, shape = problem.step_parts(self.sigma)
        sigma = factor if shape is None else factor * to_numpy(shape)  # per-variable sigma
        parametrization = ng.p.Array(init=to_numpy(problem.initial())).set_mutation(sigma=sigma)
        parametrization.random_state = np.random.RandomState(self.seed % 2**32)
        opt = ng.optimizers.registry[self.optimizer](
            parametrization, budget=self.planned_evals(problem, workers), num_workers=workers)
        nan = WorstForNaN()
        while not evals_spent(problem):  # then every evaluation was asked, evaluated, told
            left = problem.remaining("evals")
            size = workers if left is None else min(workers, left)
            candidates = [opt.ask() for _ in range(size)]
            values = problem.loss(np.stack([c.value for c in candidates]), problem.new_key())
            for candidate, value in zip(candidates, nan(values.tolist())):
                opt.tell(candidate, value)
            problem.report(opt.provide_recommendation().value)  # numpy: copied, no torch call


@hookimpl
def zgbench_optimizers():
    return [Nevergrad]
