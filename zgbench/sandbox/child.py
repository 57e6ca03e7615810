"""The optimizer's process of an isolated run: ``python -m zgbench.sandbox.child FD``.

It imports the optimizer's module and nothing of the task, builds the optimizer, answers
whether it can run on the task, and runs it against a :class:`~zgbench.sandbox.proxy.ProxyProblem`
on the socket ``FD``. The trusted worker drives it (see :mod:`zgbench.sandbox.runner`):

1. ``{"build": pickled settings}`` (trusted to untrusted: pickle is safe in this direction)
   -> ``["built", []]`` or ``["failed", [traceback]]``;
2. ``{"skip": [name, provides, params]}`` -> ``["skipped", [reason or null]]``;
3. ``{"run": problem description}`` -> the metered calls ``[op, args]``, each answered, then
   ``["done", []]``, ``["failed", [traceback]]`` or ``["exit", [kind, code]]``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import socket
import sys
import traceback
from typing import Any


def main(argv: list[str]) -> None:
    sock = socket.socket(fileno=int(argv[0]))
    from zgbench.sandbox import wire

    settings = pickle.loads(_message(sock, wire)["build"].tobytes())
    sys.path[:] = settings["path"]
    try:
        import torch

        torch.set_num_threads(settings["threads"])
        import torch._dynamo  # noqa: F401 (what harness.warm_up_torch imports: before the clock)

        optimizer = _build(settings)
    except BaseException as exc:
        _finish(sock, wire, ["failed", [traceback.format_exc() + _hint(exc)]])
    wire.send(sock, ["built", []])
    name, provides, params = _message(sock, wire)["skip"]
    from zgbench.optimizer import TaskInfo

    try:
        reason = optimizer.skip(TaskInfo(name, frozenset(provides), params))
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"{type(optimizer).__name__}.skip must return a reason (str) or "
                            f"None, got {reason!r}")
    except BaseException:
        _finish(sock, wire, ["failed", [traceback.format_exc()]])
    wire.send(sock, ["skipped", [reason or None]])
    if reason:
        _finish(sock, wire, None)
    _finish(sock, wire, _run(optimizer, _message(sock, wire)["run"], sock, settings))


def _run(optimizer: Any, info: dict[str, Any], sock: socket.socket,
         settings: dict[str, Any]) -> list[Any]:
    """Run the optimizer as :func:`zgbench.harness._guarded` does in-process; the message
    that ends the run."""
    import torch

    from zgbench.budget import BudgetExhausted
    from zgbench.sandbox.proxy import ProxyProblem

    problem = ProxyProblem(sock, info)
    torch.manual_seed(settings["torch_seed"] % 2**63)  # for optimizers using the global RNG
    try:
        optimizer.run(problem)
    except BudgetExhausted:
        pass
    except SystemExit as exc:
        return ["exit", ["SystemExit", exc.code if isinstance(exc.code, (int, str)) else None]]
    except KeyboardInterrupt:
        return ["exit", ["KeyboardInterrupt", None]]
    except BaseException:
        return ["failed", [traceback.format_exc()]]
    return ["done", []]


def _build(settings: dict[str, Any]) -> Any:
    """The optimizer: its class from its module (by name, or from the file the driver
    loaded it from), built with the run's seed and parameters."""
    module_name, path = settings["module"], settings["file"]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name or not path:
            raise
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    cls: Any = module
    for part in settings["qualname"].split("."):
        cls = getattr(cls, part)
    return cls(seed=settings["seed"], **settings["kwargs"])


def _hint(exc: BaseException) -> str:
    """Why an import failed where it works outside the sandbox: task code is hidden."""
    name = getattr(exc, "name", None) or ""
    if isinstance(exc, ImportError) and name.startswith("zgbench.tasks"):
        return (f"(under --isolate the optimizer's process cannot import {name}: the sandbox "
                "hides task code from optimizers; import what the optimizer needs from "
                "zgbench's public API, or import task modules inside functions that "
                "do not run under --isolate)\n")
    return ""


def _message(sock: socket.socket, wire: Any) -> Any:
    doc, blobs = wire.receive(sock)
    return wire.decode(doc, blobs)


def _finish(sock: socket.socket, wire: Any, message: list[Any] | None) -> None:
    """Send the last message and end the process now (no atexit, no waiting for threads:
    the trusted side kills what is left anyway)."""
    try:
        if message is not None:
            wire.send(sock, message)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
