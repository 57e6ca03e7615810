"""CBXpy itself as an optimizer: ``cbxpy`` (the reference implementation of CBO).

Why a wrapper next to ``cbo``: the claim "zgbench's CBO matches CBXpy's success rate" needs
CBXpy's own dynamics on the very same shifted, metered task, as an ordinary suite entry. Each
CBXpy step evaluates its N particles through ``problem.loss`` (one batched, metered call; the
budget ends the run by raising inside CBXpy's loop), and the consensus is reported as the
recommendation, as ``cbo`` does. Particles start at θ₀ + U(−r, r)^d, drawn from the
optimizer's seed (``cbo``'s start; CBXpy's default is U(−1, 1)^d around the origin); the noise
is CBXpy's, seeded by the optimizer's seed; α follows CBXpy's default schedule (×alpha_factor
per step, capped at 1e5). As in ``cbo``, r is a multiple of the task's scale and σ a pure
number (it multiplies the particles' distance to the consensus, already a length).
"""

from __future__ import annotations

import numpy as np
import torch

from zgbench import Optimizer, Param, Problem, hookimpl


class CBXpy(Optimizer):
    """CBXpy's CBO dynamics (``cbx.dynamics.CBO``) on the metered problem."""

    name = "cbxpy"
    needs = ("cbx",)
    extra = "dfo"
    particles = Param(20, "number of particles N (one batched loss call per step)", ge=2)
    dt = Param(0.01, "time step", gt=0)
    lam = Param(1.0, "drift rate λ towards the consensus (CBXpy's lamda)")
    sigma = Param(5.1, "noise scale σ")
    alpha = Param(1.0, "initial inverse temperature α", gt=0)
    alpha_factor = Param(1.05, "α is multiplied by this after every step (CBXpy's default)")
    noise = Param("anisotropic", "CBXpy's noise model", choices=("anisotropic", "isotropic"))
    radius = Param(1.0, "initial spread r: particles start at θ₀ + U(−r, r)^d", gt=0,
                   relative=True)

    def run(self, problem: Problem) -> None:
        from cbx.dynamics import CBO
        from cbx.scheduler import multiply

        theta0 = problem.initial()
        gen = self.generator(theta0.device)
        factor, shape = problem.step_parts(self.radius)
        radius = factor if shape is None else factor * shape
        x0 = theta0 + radius * (2 * torch.rand((self.particles, problem.dim), generator=gen,
                                                    device=theta0.device, dtype=theta0.dtype) - 1)

        def energy(x: np.ndarray) -> np.ndarray:  # CBXpy's 3-D form: [M runs, N, d] -> [M, N]
            flat = torch.as_tensor(x.reshape(-1, x.shape[-1]), dtype=theta0.dtype,
                                   device=theta0.device)
            return problem.loss(flat, problem.new_key()).double().cpu().numpy().reshape(x.shape[:2])

        dyn = CBO(energy, f_dim="3D", x=x0.double().cpu().numpy()[None], N=self.particles,
                  d=problem.dim, dt=self.dt, lamda=self.lam, sigma=self.sigma, alpha=self.alpha,
                  noise=self.noise, max_it=10**12, verbosity=0,
                  seed=int(torch.randint(2**31 - 1, (1,), generator=gen)))
        schedule = multiply(name="alpha", factor=self.alpha_factor, maximum=1e5)
        while True:  # the budget stops it, raising inside problem.loss
            dyn.step()
            schedule.update(dyn)
            problem.report(torch.as_tensor(dyn.consensus[0].reshape(-1), dtype=theta0.dtype,
                                           device=theta0.device))


@hookimpl
def zgbench_optimizers():
    return [CBXpy]
