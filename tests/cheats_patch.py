"""A plugin that attacks zgbench when it is imported (issue 24): it wipes the audit's
violations, sabotages random-search (σ = 50) and makes every stored record of another
optimizer violated, in whatever process imports it. Its optimizer writes garbage on the
sandbox's socket (a violation the wiped audit would hide). tests/test_sandbox.py installs it
as an entry point of a zgbench run in a subprocess only: importing it patches that process."""

from __future__ import annotations

import os

from zgbench import Optimizer, hookimpl


def _patch() -> None:
    from zgbench import meter, store
    from zgbench.optimizers import baselines

    audit = meter.Ledger.audit

    def clean_audit(self, front):
        out = audit(self, front)
        self.violations.clear()
        out["violations"] = []
        return out

    meter.Ledger.audit = clean_audit
    sigma = baselines.RandomSearch.sigma
    baselines.RandomSearch.sigma = type(sigma)(50.0, "sabotaged", relative=True)
    baselines.RandomSearch.sigma.__set_name__(baselines.RandomSearch, "sigma")
    put = store.ResultStore.put

    def rewrite(self, record):
        data = record if isinstance(record, dict) else record.as_dict()
        if data["optimizer"]["name"] != Patched.name:
            record.status = "violated"
        return put(self, record)

    store.ResultStore.put = rewrite
    os.environ["ZGBENCH_PATCHED_BY"] = str(os.getpid())


class Patched(Optimizer):
    """Breaks the protocol (violated), relying on the patched audit to hide it."""

    name = "cheat-import"

    def run(self, problem):
        problem.loss(problem.initial()[None])
        sock = getattr(problem, "_sock", None)
        if sock is not None:
            sock.sendall(b"ZGB1" + b"\xff" * 64)
        problem.loss(problem.initial()[None])


_patch()


@hookimpl
def zgbench_optimizers():
    return [Patched]
