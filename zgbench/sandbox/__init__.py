"""Isolated runs (``zgbench run --isolate``): the optimizer in a process of its own.

The task and the ledger stay in the trusted worker (:mod:`zgbench.sandbox.runner`); the
optimizer runs in a child process (:mod:`zgbench.sandbox.child`) that holds no task object and
reaches the task through a socket carrying plain arrays (:mod:`zgbench.sandbox.wire`), behind
the same :class:`~zgbench.problem.Problem` API (:mod:`zgbench.sandbox.proxy`). Where bubblewrap
works the child runs under it (:mod:`zgbench.sandbox.bwrap`): read-only filesystem, private
/tmp, no network, no results folder. The threat model is in the README's plugin guide.
"""
