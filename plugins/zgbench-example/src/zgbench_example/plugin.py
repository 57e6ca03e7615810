"""The plugin module named by the entry point: its hooks return the classes it contributes.

- ``example-regression``: least squares on a synthetic data set, with the minibatch chosen by
  the loss call's ``key`` (so an optimizer can compare candidates on the same minibatch);
- ``spsa``: Spall's simultaneous-perturbation stochastic approximation (Spall 1992,
  "Multivariate stochastic approximation using a simultaneous perturbation gradient
  approximation"): two evaluations per step whatever the dimension.
"""

from __future__ import annotations

import torch

from zgbench import Budget, Optimizer, Param, Problem, Task, hookimpl


class Regression(Task):
    """Least-squares regression on synthetic data; the key picks the minibatch."""

    name = "example-regression"
    provides = frozenset({"grad"})
    metrics = {"test_mse": "min"}
    primary_metric = "test_mse"
    default_budget = Budget(evals=2000, grads=200)

    features = Param(10, "number of features (the dimension of θ)")
    samples = Param(512, "training samples")
    batch = Param(32, "minibatch size of one loss call")
    noise = Param(0.1, "label noise standard deviation")

    def setup(self) -> None:
        gen = self.generator()  # everything in the instance comes from the task seed
        self.dim = self.features
        self.w_true = torch.randn(self.dim, generator=gen, device=self.device)
        x = torch.randn(2 * self.samples, self.dim, generator=gen, device=self.device)
        y = x @ self.w_true + self.noise * torch.randn(2 * self.samples, generator=gen,
                                                       device=self.device)
        self.x_train, self.x_test = x[: self.samples], x[self.samples:]
        self.y_train, self.y_test = y[: self.samples], y[self.samples:]

    def initial(self) -> torch.Tensor:
        return torch.zeros(self.dim, device=self.device)

    def _mse(self, thetas: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # all B parameter vectors at once: [n, d] @ [d, B] -> [n, B]
        return ((x @ thetas.T - y[:, None]) ** 2).mean(0)

    def _minibatch(self, key: int) -> torch.Tensor:
        return torch.randint(0, self.samples, (self.batch,), generator=self.generator(key),
                             device=self.device)

    def loss(self, thetas: torch.Tensor, key: int) -> torch.Tensor:
        rows = self._minibatch(key)
        return self._mse(thetas, self.x_train[rows], self.y_train[rows])

    def grad(self, thetas: torch.Tensor, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._minibatch(key)
        x, y = self.x_train[rows], self.y_train[rows]
        residual = x @ thetas.T - y[:, None]  # [n, B]
        return (residual**2).mean(0), 2 * (residual.T @ x) / len(rows)

    def evaluate(self, theta: torch.Tensor) -> dict[str, float]:
        return {"test_mse": float(self._mse(theta[None], self.x_test, self.y_test)[0])}


class SPSA(Optimizer):
    """SPSA: two-point simultaneous-perturbation gradient estimate with Spall's gain sequences."""

    name = "spsa"
    a = Param(0.1, "step gain a in a_k = a / (k + 1 + A)^alpha")
    c = Param(0.1, "perturbation gain c in c_k = c / (k + 1)^gamma")
    stability = Param(10.0, "A, the stability constant")
    alpha = Param(0.602, "step decay exponent (Spall's recommended value)")
    gamma = Param(0.101, "perturbation decay exponent (Spall's recommended value)")

    def run(self, problem: Problem) -> None:
        gen = self.generator(problem.device)
        theta = problem.initial()
        k = 0
        while True:
            ak = self.a / (k + 1 + self.stability) ** self.alpha
            ck = self.c / (k + 1) ** self.gamma
            delta = torch.randint(0, 2, (problem.dim,), generator=gen, device=problem.device)
            delta = delta.to(theta.dtype) * 2 - 1  # Rademacher ±1
            pair = torch.stack([theta + ck * delta, theta - ck * delta])
            plus, minus = problem.loss(pair, problem.new_key())  # one key: same minibatch
            theta = theta - ak * (plus - minus) / (2 * ck) * delta
            problem.report(theta)
            k += 1


@hookimpl
def zgbench_tasks():
    return [Regression]


@hookimpl
def zgbench_optimizers():
    return [SPSA]
