"""CMA-ES through pycma's ask/tell: ``cma-es``, full or diagonal covariance, IPOP restarts.

Papers: Hansen & Ostermeier (2001), "Completely Derandomized Self-Adaptation in Evolution
Strategies", Evolutionary Computation 9(2); sep-CMA (diagonal covariance): Ros & Hansen
(2008), "A Simple Modification in CMA-ES Achieving Linear Time and Space Complexity", PPSN X;
IPOP restarts: Auger & Hansen (2005), "A Restart CMA Evolution Strategy With Increasing
Population Size", CEC 2005. The algorithm is pycma's (``cma``); this module only adapts it.

One generation is one batched ``loss`` call of ``popsize`` vectors under one key, so the
ranking inside a generation uses common random numbers on noisy tasks. A generation the
budget cuts short is lost (pycma cannot be told fewer than μ solutions): the metered problem
evaluates what the budget pays for and raises ``BudgetExhausted``, which ends the run.

Default covariance (``diagonal=auto``): full below d = 1000, sep-CMA from d = 1000 on. Full
CMA keeps d×d matrices (C and its eigenvectors: 2 × 8 d² bytes, 1.6 GB at d = 10⁴, 6.4 GB at
2·10⁴) and does an O(d² μ) rank-μ update every generation plus an O(d³) eigendecomposition
every few; it also needs ~d²/μ_eff generations to learn C, far beyond the budgets of tasks
with tens of thousands of parameters. sep-CMA is O(d) in memory and time per candidate, and
its learning rates are (d + 2)/3 times larger (Ros & Hansen), so it adapts within such budgets. ``tests/benchmarks/test_bench_dfo.py`` measures the
overhead per candidate of both.

σ₀ is a multiple of the task's scale (``Param(relative=True)``): on a uniform scale pycma
gets σ₀ x scale; where the scale varies per coordinate it gets σ₀ and the scale as
``CMA_stds`` (pycma's per-coordinate standard deviations, σ₀ x stds_i being the initial
step of coordinate i). On scale-1 tasks σ₀ is today's 0.3.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from zgbench import Optimizer, Param, Problem, UsageError, WorstForNaN, hookimpl

#: From this dimension on, ``diagonal=auto`` uses sep-CMA.
AUTO_DIAGONAL_DIM = 1000


def evals_spent(problem: Problem) -> bool:
    """Whether the evaluation budget is used up exactly (a cut batch raises by itself). Checked
    before asking a library for candidates: asking costs (a full-covariance generation's
    sampling and eigendecomposition are seconds at d = 10⁴) and their loss call would only
    raise ``BudgetExhausted``."""
    return problem.remaining("evals") == 0


def to_numpy(values: torch.Tensor) -> np.ndarray:
    """A tensor as float64 numpy, what pycma and Nevergrad take for points."""
    return values.detach().to("cpu", torch.float64).numpy()


class CMAES(Optimizer):
    """CMA-ES (pycma ask/tell): one generation per batched loss call; sep-CMA for large d; IPOP."""

    name = "cma-es"
    needs = ("cma",)
    extra = "dfo"
    sigma0 = Param(0.3, "initial step size σ₀ (random-search's σ, so both start on one scale)",
                   tune=(1e-3, 1.0), log=True, relative=True)
    popsize = Param(0, "candidates per generation; 0 = pycma's default 4 + ⌊3 ln d⌋")
    diagonal = Param("auto", f"sep-CMA (diagonal covariance): true, false, or auto (true for "
                     f"d >= {AUTO_DIAGONAL_DIM})", choices=("auto", "true", "false"))
    restarts = Param(9, "IPOP restarts, each doubling the population; 0 = off")

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        if not params["sigma0"].value > 0:
            raise UsageError(f"cma-es needs sigma0 > 0, got {params['sigma0']}.")
        if params["popsize"] == 1 or params["popsize"] < 0:
            raise UsageError(f"cma-es needs popsize >= 2 (or 0 for pycma's default), "
                             f"got {params['popsize']}.")
        if params["restarts"] < 0:
            raise UsageError(f"cma-es needs restarts >= 0 (0 = off), got {params['restarts']}.")

    def use_diagonal(self, dim: int) -> bool:
        if self.diagonal == "auto":
            return dim >= AUTO_DIAGONAL_DIM
        return self.diagonal == "true"

    def options(self, dim: int, popsize: int | None, rng: np.random.RandomState,
                stds: np.ndarray | None = None) -> dict[str, Any]:
        """pycma options: silent, no log files, our generator (pycma's ``seed`` would reseed
        numpy's global generator, which other code shares); ``stds``: a per-coordinate scale
        (pycma's ``CMA_stds``)."""
        opts: dict[str, Any] = {"verbose": -9, "verb_log": 0, "verb_disp": 0, "seed": np.nan,
                                "randn": rng.randn, "CMA_diagonal": self.use_diagonal(dim)}
        if popsize:
            opts["popsize"] = popsize
        if stds is not None:
            opts["CMA_stds"] = stds
        return opts

    @torch.no_grad()  # no autograd anywhere in a derivative-free search
    def run(self, problem: Problem) -> None:
        import cma

        x0 = to_numpy(problem.initial())
        sigma0, shape = problem.step_parts(self.sigma0)
        stds = None if shape is None else to_numpy(shape)
        rng = np.random.RandomState(self.seed % 2**32)
        nan = WorstForNaN()
        popsize = self.popsize or None
        best_before = math.inf  # best loss of the finished restarts
        recommendation = x0
        # The IPOP loop is written here rather than taken from cma.fmin so that one generation
        # stays one batched, metered loss call and the recommendation is reported each time.
        for _ in range(self.restarts + 1):
            if evals_spent(problem):
                return
            es = cma.CMAEvolutionStrategy(x0, sigma0,
                                          self.options(problem.dim, popsize, rng, stds))
            while not es.stop() and not evals_spent(problem):
                # numpy in, one list out: every torch call between ask and tell costs µs (more
                # than in a tight loop, as pycma's Python evicts torch's from the caches)
                candidates = es.ask()
                values = problem.loss(np.asarray(candidates), problem.new_key())
                es.tell(candidates, nan(values.tolist()))
                if es.best.f <= best_before:  # this restart holds the best point: its mean
                    # es.mean is es.result.xfavorite here (no bounds or scaling), without
                    # building the whole result tuple every generation
                    recommendation = es.mean
                problem.report(recommendation)  # copied by the problem
            best_before = min(best_before, es.best.f)
            popsize = 2 * es.popsize


@hookimpl
def zgbench_optimizers():
    return [CMAES]
