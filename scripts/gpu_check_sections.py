"""The sections of ``scripts/gpu_check.py``: each ``section_NAME(ctx)`` runs in its own child
process, announces its items (``ctx.plan``) and runs each through ``ctx.item``, which records
its data or its traceback. Kept apart from the orchestration so that the parent process never
imports torch or zgbench (a broken CUDA stack then fails sections, not the command)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gpu_check as gc_
from gpu_check import Context, peak_memory, sync

PACKAGES = ("torch", "numpy", "numba", "scipy", "scikit-learn", "mitsuba", "drjit", "phiflow",
            "phiml", "cma", "nevergrad", "bayesian-optimization", "cbx", "ray", "pluggy",
            "pandas", "matplotlib")


# ================================================================================ env
def section_env(ctx: Context) -> None:
    ctx.plan(["machine", "packages", "mitsuba"])
    ctx.item("machine", lambda: {"machine": machine(ctx.device)})
    ctx.item("packages", packages)
    ctx.item("mitsuba", lambda: mitsuba_variant(ctx.device))


def machine(device: str) -> dict[str, Any]:
    """The machine as zgbench's records describe it, plus the GPU's details."""
    from zgbench.record import environment

    info = environment(torch.device(device))
    info.update(cpu_count=os.cpu_count(), cuda_available=torch.cuda.is_available(),
                torch_cuda=torch.version.cuda, machine=platform.machine())
    if str(device).startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}",
                    cudnn=torch.backends.cudnn.version(),
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info


def packages() -> dict[str, Any]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return {"versions": found}


def mitsuba_variant(device: str) -> dict[str, Any]:
    """Whether Mitsuba starts its variant for ``device`` (and, on a GPU, the CPU's too: the
    loss agreement of radiosity builds a CPU instance as well)."""
    from zgbench.tasks import _mitsuba

    out: dict[str, Any] = {"libllvm": _mitsuba.find_libllvm()}
    for dev in dict.fromkeys([device, "cpu"]):
        try:
            mi = _mitsuba.load(dev, needed_by="gpu-check")
            out[_mitsuba.variant_for(dev)] = f"ok (mitsuba {mi.__version__})"
        except Exception as exc:  # recorded, not raised: the other variant may still work
            out[_mitsuba.variant_for(dev)] = f"{type(exc).__name__}: {exc}"
    return out


# ================================================================== tasks: agreement, speed
def suite_specs(ctx: Context, suite: str) -> list[Any]:
    """The task specs of a suite, once each, in file order."""
    from zgbench import suite as suites

    seen: dict[str, Any] = {}
    for entry in suites.load(suite, ctx.registry).tasks:
        seen.setdefault(entry.spec.canonical, entry.spec)
    return list(seen.values())


def quick_specs(ctx: Context) -> list[Any]:
    """Every registered task at its quick-suite sizes (default parameters for a task the
    quick suite does not name, e.g. a plugin's); with --small, one spec per task."""
    from zgbench import specs

    chosen = suite_specs(ctx, "quick")
    if ctx.small:
        chosen = list({s.name: s for s in reversed(chosen)}.values())[::-1]
    named = {s.name for s in chosen}
    chosen += [specs.resolve_task(ctx.registry, name) for name in sorted(ctx.registry.tasks)
               if name not in named]
    return chosen


def section_tasks_quick(ctx: Context) -> None:
    chosen = quick_specs(ctx)
    ctx.plan([s.label for s in chosen])
    for index, spec in enumerate(chosen):
        ctx.item(spec.label, lambda spec=spec: agreement_and_speed(ctx, spec),
                 after=len(chosen) - index - 1)


def label(spec) -> str:
    """The spec as people read it, without the CIFAR folder (a temporary path)."""
    return spec.label.replace(f"data={spec.kwargs.get('data')},", "").replace(
        f",data={spec.kwargs.get('data')}", "") if spec.kwargs.get("data") else spec.label


def build(ctx: Context, spec, device: str, seed: int = 0):
    return ctx.registry.task(spec.name).cls(device=device, seed=seed, **spec.kwargs)


def theta_batch(task, rows: int, seed: int = 0) -> torch.Tensor:
    """``rows`` vectors around θ₀ (0.3 x the task's scale, the optimizers' default step), on
    the CPU, from a fixed seed: the same batch for every device."""
    theta0 = task.initial().detach().to("cpu", torch.float32)
    scale = torch.as_tensor(task.scale, dtype=torch.float32).to("cpu")
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(rows, theta0.numel(), generator=gen)
    return theta0 + 0.3 * scale * noise


def agreement_and_speed(ctx: Context, spec) -> dict[str, Any]:
    """CPU losses first (the instance dropped before the device's is built: Mitsuba has one
    variant per process at a time), then the device's on the same θ and key; then speed.
    Where the CPU instance cannot be built (Mitsuba's llvm_ad_rgb needs a libLLVM that a GPU
    image may lack) the agreement is n/a, said why, and the device is still measured."""
    key, rows = 12345, 4
    cpu, cpu_error = None, None
    try:
        cpu_task = build(ctx, spec, "cpu")
        thetas = theta_batch(cpu_task, rows).to(cpu_task.dtype)
        with torch.no_grad():
            cpu = cpu_task.loss(thetas, key).double().cpu().numpy()
        del cpu_task
    except Exception as exc:  # recorded; the device side is still checked
        cpu_error = f"{type(exc).__name__}: {exc}"
    gc_.release("cpu")
    with peak_memory(ctx.device) as mem:
        task = build(ctx, spec, ctx.device)
        if cpu is None:
            thetas = theta_batch(task, rows)
        with torch.no_grad():
            dev = task.loss(thetas.to(ctx.device, task.dtype), key).double().cpu().numpy()
        speed = throughput(ctx, task)
    tol, why = gc_.TOLERANCES.get(spec.name, gc_.DEFAULT_TOLERANCE)
    out = {"spec": spec.canonical, "dim": int(task.dim), "rows": rows, "key": key,
           "loss_device": dev.tolist(), "tolerance": tol, "why": why, **speed, **mem}
    if cpu is None:
        return {**out, "agree": None, "rel_diff": None, "cpu_error": cpu_error}
    diff = float(np.max(np.abs(dev - cpu)) / max(float(np.max(np.abs(cpu))), 1e-30))
    agree = bool(np.isfinite(dev).all() and np.isfinite(cpu).all() and diff <= tol)
    return {**out, "loss_cpu": cpu.tolist(), "rel_diff": diff, "agree": agree}


def throughput(ctx: Context, task, target: float | None = None) -> dict[str, Any]:
    """Loss evaluations per second on the task's device: one vector first (the warm-up and
    a first timing), then a batch sized to take about ``target`` seconds a call (at most
    64 vectors), timed over repeated calls for at least 2 x ``target``."""
    target = target or (0.05 if ctx.small else 0.25)
    device = str(task.device)
    one = theta_batch(task, 1, seed=1).to(device, task.dtype)
    with torch.no_grad():
        first = _timed(lambda: task.loss(one, 1), device)
        single = _timed(lambda: task.loss(one, 1), device)
        rows = int(min(64, max(1, target / max(single, 1e-6))))
        batch = theta_batch(task, rows, seed=2).to(device, task.dtype)
        _timed(lambda: task.loss(batch, 2), device)  # a new shape: traces, cuDNN plans
        calls, spent = 0, 0.0
        while spent < 2 * target and calls < 200:
            spent += _timed(lambda: task.loss(batch, 3 + calls), device)
            calls += 1
    return {"first_call_s": round(first, 4), "batch": rows, "calls": calls,
            "seconds_per_call": spent / calls, "evals_per_s": rows * calls / spent}


def _timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------- paper sizes
def paper_specs(ctx: Context, cifar: str) -> list[Any]:
    """The paper suite's task specs, CIFAR-10 pointed at ``cifar``, the radiosity references
    at :data:`TIMING_REF_SPP` samples; under --small, shrunk by :data:`SMALL_PAPER`."""
    from zgbench import specs

    out = []
    for spec in suite_specs(ctx, "paper"):
        params = dict(spec.kwargs)
        if spec.name == "classify" and params.get("dataset") == "cifar10":
            params["data"] = cifar
        if spec.name == "radiosity":
            params["ref_spp"] = min(params["ref_spp"], gc_.TIMING_REF_SPP)
        if ctx.small:
            params.update({k: v for k, v in gc_.SMALL_PAPER.get(spec.name, {}).items()
                           if k in params})
        out.append(specs.resolve_task(ctx.registry, spec.name, params))
    return list({s.canonical: s for s in out}.values())


def section_tasks_paper(ctx: Context) -> None:
    cifar, source = cifar_folder(ctx)
    ctx.emit({"note": f"CIFAR-10: {source}"})
    chosen = paper_specs(ctx, cifar)
    ctx.plan([label(s) for s in chosen])
    for index, spec in enumerate(chosen):
        ctx.item(label(spec), lambda spec=spec: paper_speed(ctx, spec),
                 after=len(chosen) - index - 1)


def paper_speed(ctx: Context, spec) -> dict[str, Any]:
    with peak_memory(ctx.device) as mem:
        t0 = time.perf_counter()
        task = build(ctx, spec, ctx.device)
        sync(ctx.device)
        setup = time.perf_counter() - t0
        speed = throughput(ctx, task, target=0.05 if ctx.small else 0.5)
    return {"spec": label(spec), "dim": int(task.dim), "setup_s": round(setup, 3),
            **speed, **mem}


def cifar_folder(ctx: Context) -> tuple[str, str]:
    """The real CIFAR-10 if the zgbench cache has it, else a folder of random images in the
    official file format (timing only: a step costs the same on any pixels)."""
    from zgbench.tasks import classify

    try:
        return str(classify.find_cifar10("")), "the real data set (zgbench cache)"
    except Exception:  # a UsageError: not there; write the stand-in
        pass
    per_batch = 64 if ctx.small else 2048
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-cifar-")) / classify.CIFAR_FOLDER
    write_cifar10(folder, per_batch)
    return str(folder), (f"stand-in: random pixels and labels in the official format, "
                         f"{per_batch} images per batch file (timing only)")


def write_cifar10(folder: Path, per_batch: int, seed: int = 0) -> None:
    """A ``cifar-10-batches-py`` folder (Python-2-style pickles of dicts with bytes keys, as
    the official files), random uint8 images: what ``classify`` reads, without a download."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data},
                        handle, protocol=2)


# ========================================================================= optimizers
def section_optimizers(ctx: Context) -> None:
    names = sorted(ctx.registry.optimizers) + list(gc_.EXTRA_OPTIMIZERS)
    ctx.plan(names)
    for index, name in enumerate(names):
        ctx.item(name, lambda name=name: one_run(ctx, name), after=len(names) - index - 1,
                 guard=False)


def task_for(ctx: Context, name: str) -> str | None:
    """The first of :data:`OPTIMIZER_TASKS` the optimizer accepts."""
    from zgbench import specs
    from zgbench.optimizer import skip_reason

    spec = specs.resolve_optimizer(ctx.registry, name)
    optimizer = ctx.registry.optimizer(spec.name).cls(seed=0, **spec.kwargs)
    for text in gc_.OPTIMIZER_TASKS:
        spec = specs.resolve_task(ctx.registry, text)
        if skip_reason(optimizer, ctx.registry.task(spec.name).cls, spec.kwargs) is None:
            return text
    return None


def one_run(ctx: Context, name: str) -> dict[str, Any]:
    """One short run of ``name`` on the device through the harness (``run_once``): the
    record's status, counters, time and final primary metric."""
    from zgbench.testing import run_once

    task = task_for(ctx, name)
    if task is None:
        raise RuntimeError(f"{name}: none of {gc_.OPTIMIZER_TASKS} is compatible")
    budget = dict(gc_.OPTIMIZER_BUDGETS[task.split("[")[0]][1 if ctx.small else 0])
    with peak_memory(ctx.device) as mem:
        record = run_once(task, name, device=ctx.device, timeout=ctx.item_limit, **budget)
    final = record.get("final") or {}
    if record["status"] != "ok":
        raise RuntimeError(f"{name} on {task}: status {record['status']}\n{record.get('error')}")
    return {"task": task, "status": record["status"], "budget": budget,
            "evals": final.get("evals"), "grads": final.get("grads"), "steps": final.get("steps"),
            "seconds": record.get("duration"), "metrics": final.get("metrics"), **mem}


# ====================================================================== cross product
def section_cross_product(ctx: Context) -> None:
    ctx.plan(["zgbench run"])
    ctx.item("zgbench run", lambda: cross_product(ctx))


def cross_product(ctx: Context) -> dict[str, Any]:
    """``zgbench run --device DEV`` on two tasks x four optimizers, one seed, worker
    processes (the CLI's default executor): every record must be ok and the board written."""
    out = Path(tempfile.mkdtemp(prefix="gpu-check-run-"))
    cmd = [sys.executable, "-m", "zgbench", "run", "--tasks",
           "sphere[dim=8],classify[width=4,batch=16]",
           "--optimizers", "random-search,rge,cge,adam", "--seeds", "1", "--evals", "300",
           "--grads", "20", "--device", ctx.device, "--workers", "1", "--threads",
           str(ctx.opts.threads), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(gc_.ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=gc_.ROOT,
                          timeout=max(ctx.left() - 5, 5))
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    runs = [{"task": r["task"]["label"], "optimizer": r["optimizer"]["label"],
             "status": r["status"], "device": r["identity"].get("device"),
             "device_name": (r.get("environment") or {}).get("device_name"),
             "seconds": r.get("duration"), "error": (r.get("error") or "")[-2000:] or None}
            for r in records]
    board = (out / "leaderboard" / "overall.csv").exists()
    data = {"command": " ".join(cmd[1:]), "exit": proc.returncode, "runs": runs,
            "board_written": board, "seconds": round(time.perf_counter() - t0, 2),
            "output_tail": (proc.stdout + proc.stderr)[-3000:]}
    bad = [r for r in runs if r["status"] != "ok"]
    if proc.returncode != 0 or bad or len(runs) != 8 or not board:
        raise RuntimeError(f"zgbench run: exit {proc.returncode}, {len(runs)} records, "
                           f"{len(bad)} not ok, board {'written' if board else 'missing'}\n"
                           + json.dumps(data, indent=1))
    return data


# ======================================================================= paper steps
def timed_problem(task, budget):
    """A metered :class:`~zgbench.problem.Problem` without checkpoints (no evaluation
    between steps) that stamps the clock, device synchronised, at every reported step."""
    from zgbench.problem import Problem

    class Timed(Problem):
        stamps: list[float]

        def report(self, theta):
            sync(str(task.device))
            self.stamps.append(time.perf_counter())
            super().report(theta)

    problem = Timed(task, budget, seed=0, checkpoints=())
    problem.stamps = []
    return problem


def steps_of(ctx: Context, task, optimizer: str, steps: int) -> dict[str, Any]:
    """Run ``optimizer`` for ``steps`` + 1 steps: the first (warm-up, set-up of the
    optimizer's state) apart, the median of the others as the time per step."""
    from zgbench import Budget, BudgetExhausted, specs

    spec = specs.resolve_optimizer(ctx.registry, optimizer)
    opt = ctx.registry.optimizer(spec.name).cls(seed=0, **spec.kwargs)
    problem = timed_problem(task, Budget(evals=10**12, grads=10**9, steps=steps + 1))
    with peak_memory(ctx.device) as mem:
        problem.start()
        sync(ctx.device)
        t0 = time.perf_counter()
        try:
            opt.run(problem)
        except BudgetExhausted:
            pass
    stamps = [t0] + problem.stamps
    gaps = np.diff(stamps)
    if len(gaps) < 2:
        raise RuntimeError(f"{optimizer}: only {len(gaps)} steps reported")
    return {"optimizer": spec.label, "steps": len(gaps), "first_step_s": float(gaps[0]),
            "seconds_per_step": float(statistics.median(gaps[1:])),
            "spread_s": [float(min(gaps[1:])), float(max(gaps[1:]))],
            "evals_per_step": problem.evals / len(gaps), **mem}


def section_mesh_fit_step(ctx: Context) -> None:
    """ZeroGrads on mesh-fit at 10,242 vertices (d = 30,726), the paper suite's setting."""
    from zgbench import specs

    text = ("mesh-fit[verts=162,res=32,views=2,heldout=1]" if ctx.small
            else "mesh-fit[verts=10242,res=256,views=8,heldout=8]")
    opt = "zerograds[lr=abs:0.0005,sigma=abs:0.025]"
    spec = specs.resolve_task(ctx.registry, text)
    ctx.plan(["setup", opt])
    state: dict[str, Any] = {}
    ctx.item("setup", lambda: instance(ctx, spec, state), after=1)
    ctx.item(opt, lambda: {**instance(ctx, spec, state),
                           **steps_of(ctx, state["task"], opt, 2 if ctx.small else 6)})


def section_cge_step(ctx: Context) -> None:
    """One CGE gradient estimate of ResNet-20 on CIFAR-10 (batch 256), without and with
    DeepZero's feature reuse, over a layer-stratified random share of the coordinates (3%
    on a device: about 8k evaluations, so that both modes fit the section); a sparse-CGE
    step (10% of the coordinates, DeepZero's 90% sparsity), its epoch (196 steps) and the
    dense step are extrapolated linearly in the coordinates."""
    from zgbench import specs

    cifar, source = cifar_folder(ctx)
    ctx.emit({"note": f"CIFAR-10: {source}"})
    batch = 4 if ctx.small else 256
    share = 0.0004 if ctx.small else 0.03
    text = f"classify[dataset=cifar10,model=resnet20,batch={batch}]"
    ctx.plan(["setup", "cge", "cge[reuse=true]"])
    spec = specs.resolve_task(ctx.registry, text, {"data": cifar})
    state: dict[str, Any] = {}
    ctx.item("setup", lambda: instance(ctx, spec, state), after=2)
    for optimizer in ("cge", "cge[reuse=true]"):
        ctx.item(optimizer, lambda o=optimizer: cge_step(ctx, spec, o, share, state),
                 after=1 if optimizer == "cge" else 0, factor=1.0)


def instance(ctx: Context, spec, state: dict[str, Any]) -> dict[str, Any]:
    """Build a section's task instance once (an item of its own, so that the timed items
    after it share the time that is left equally); the items build it themselves if this
    one failed or ran in an earlier process of the section."""
    if "task" not in state:
        t0 = time.perf_counter()
        state["task"] = build(ctx, spec, ctx.device)
        sync(ctx.device)
        state["setup_s"] = time.perf_counter() - t0
    return {"spec": label(spec), "dim": int(state["task"].dim), "setup_s": state["setup_s"]}


def cge_step(ctx: Context, spec, optimizer: str, share: float,
             state: dict[str, Any]) -> dict[str, Any]:
    from zgbench import Budget, specs
    from zgbench.problem import Problem

    instance(ctx, spec, state)
    task = state["task"]
    opt_spec = specs.resolve_optimizer(ctx.registry, optimizer)
    opt = ctx.registry.optimizer(opt_spec.name).cls(seed=0, **opt_spec.kwargs)
    problem = Problem(task, Budget(evals=10**12), seed=0, checkpoints=())
    problem.start()
    opt.prepare(problem)
    theta, key = problem.initial(), 777
    layers = task.layers()
    gen = torch.Generator().manual_seed(0)
    warm = stratified(layers, 2 / max(s.stop - s.start for s in layers), gen)
    coords = stratified(layers, share, gen).to(theta.device)
    with peak_memory(ctx.device) as mem:
        opt.coordinate_gradient(problem, theta, key, warm.to(theta.device))  # kernels, plans
        sync(ctx.device)
        t0 = time.perf_counter()
        grad = opt.coordinate_gradient(problem, theta, key, coords)
        sync(ctx.device)
        seconds = time.perf_counter() - t0
    out = {"spec": label(spec), "dim": int(task.dim), "coordinates": int(coords.numel()),
           "share": share, "seconds": seconds, "evals_per_s": coords.numel() / seconds,
           "dense_step_s": seconds * task.dim / coords.numel(),
           "sparse_step_s": seconds * 0.1 / share,
           "deepzero_epoch_s": seconds * 0.1 / share * 196 if task.batch == 256 else None,
           **mem}
    values = grad[coords].double().cpu()
    if "grad" in state:  # the second mode: the same estimate up to float rounding over μ
        ref = state["grad"]
        out["rel_diff_to_plain"] = float((values - ref).abs().max() / ref.abs().max().clamp_min(1e-30))
        out["speedup_vs_plain"] = state["seconds"] / seconds
    state["grad"], state["seconds"] = values, seconds
    return out


def stratified(layers, share: float, gen: torch.Generator) -> torch.Tensor:
    """A random ``share`` of each layer's coordinates (at least one), sorted: what a sparse
    CGE mask with equal layer-wise ratios draws."""
    parts = []
    for s in layers:
        size = s.stop - s.start
        k = max(1, min(size, int(round(share * size))))
        parts.append(s.start + torch.randperm(size, generator=gen)[:k])
    return torch.cat(parts).sort().values


def section_radiosity_step(ctx: Context) -> None:
    """Semi- against full gradient on the paper suite's radiosity (2^14 points, M = 32,
    14-level hash grid, 4 x 256 MLP), time per step."""
    from zgbench import specs

    params = dict(gc_.SMALL_PAPER["radiosity"]) if ctx.small else {
        "batch": 16384, "m": 32, "res": 256, "spp": 16, "levels": 14, "features": 4,
        "log2_table": 18, "base_res": 16, "max_res": 1024, "hidden": 256, "layers": 4}
    params["ref_spp"] = 4 if ctx.small else gc_.TIMING_REF_SPP
    spec = specs.resolve_task(ctx.registry, "radiosity[scene=cornell-box]", params)
    ctx.plan(["setup", "full-gradient", "semi-gradient"])
    state: dict[str, Any] = {}
    ctx.item("setup", lambda: instance(ctx, spec, state), after=2)

    def measure(optimizer: str) -> dict[str, Any]:
        out = {**instance(ctx, spec, state),
               **steps_of(ctx, state["task"], optimizer, 3 if ctx.small else 10)}
        if "full" in state:
            out["full_over_semi"] = state["full"] / out["seconds_per_step"]
            out["semi_saves"] = 1 - out["seconds_per_step"] / state["full"]
        state["full"] = out["seconds_per_step"]
        return out

    for optimizer in ("full-gradient", "semi-gradient"):
        ctx.item(optimizer, lambda o=optimizer: measure(o), after=1 if "full" in optimizer else 0,
                 factor=1.0)


