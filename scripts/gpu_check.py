"""One command that checks every CUDA path of zgbench and measures the paper-size instances.

``scripts/gpu-check.sh --device cuda --out DIR`` (this file does the work) writes
``DIR/gpu-check.json``, ``DIR/gpu-check.md`` and ``DIR/machine.json``:

- ``env``: the machine, torch/CUDA, the optional packages and whether Mitsuba's variant starts;
- ``tasks-quick``: for every registered task (at its ``tasks/quick.toml`` sizes), ``loss`` on
  the device against the CPU on the same batch of θ and the same key, within a tolerance
  stated per task (:data:`TOLERANCES`, with the reason), then evaluations per second on the
  device and peak GPU memory;
- ``tasks-paper``: evaluations per second and peak memory at the ``tasks/paper.toml`` sizes;
- ``optimizers``: every registered optimizer one short run on the device (``run_once``);
- ``cross-product``: a small ``zgbench run --device DEV`` (worker processes, records, board);
- ``mesh-fit-step``, ``cge-step``, ``radiosity-step``: time per step of the paper-size
  instances (ZeroGrads at 10,242 vertices; a ResNet-20 CIFAR-10 CGE step with and without
  feature reuse; radiosity at 2^14 queries, semi- against full gradient).

Each section runs in its own child process under its own time limit (and each item of a
section under an item limit), so a section that hangs, crashes the interpreter or fails is
recorded (its traceback, its exit status) and the rest go on; the whole command keeps to
``--deadline`` seconds (default 450: inside the 8 minutes a lent H200 gives it). ``--small``
shrinks every size so that ``--device cpu --small`` finishes in minutes on a 2-core machine,
which is how this script is tested where no GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: (section, time limit on a device in seconds, time limit with --small). The limits on a
#: device add up to 450 s: with start-up, inside the 8 minutes of the issue on one H200.
SECTIONS: tuple[tuple[str, float, float], ...] = (
    ("env", 25, 60),
    ("tasks-quick", 85, 240),
    ("tasks-paper", 95, 180),
    ("optimizers", 70, 240),
    ("cross-product", 50, 150),
    ("mesh-fit-step", 35, 90),
    ("cge-step", 45, 120),
    ("radiosity-step", 45, 90),
)

#: A section whose process was killed or died goes on in a fresh one if this much is left.
RESTART_S = 10.0
#: How long past its own limit an item may run before its process is killed.
ITEM_GRACE_S = 10.0
#: The least time an item still to come is left by the items before it (seconds).
MIN_ITEM_S = 2.0

#: Loss agreement, device against CPU: (relative tolerance, why). The measure is
#: max_i |l_dev(θ_i) − l_cpu(θ_i)| / max_i |l_cpu(θ_i)| over a batch of θ on one key.
#: float32 has ε = 6e-8; a sum over n terms reassociated by a GPU reduction differs by
#: about n·ε in the worst case, √n·ε typically.
TOLERANCES: dict[str, tuple[float, str]] = {
    "sphere": (1e-5, "float32 sum over d coordinates, reduced in another order on the GPU"),
    "rosenbrock": (1e-5, "float32 sum over d − 1 terms, reduced in another order"),
    "rastrigin": (1e-5, "float32 sum with cos(2πx): the GPU's cos differs in the last ulp"),
    "step": (1e-5, "rounded coordinates: same plateaus unless a coordinate sits at a .5 tie, "
                   "which a random θ does not; then a float32 sum"),
    "cliff": (1e-5, "float32 sum plus a jump decided by one coordinate's sign"),
    "spline-toy": (1e-6, "float64 Akima spline: the same arithmetic on both"),
    "example-regression": (1e-5, "float32 matrix product over the features and the batch"),
    "mesh-fit": (3e-2, "hard rasterizer: numba kernel on the CPU, torch ops on CUDA; a pixel "
                       "centre within float32 rounding of an edge can flip, and one flipped "
                       "pixel moves the mean squared error by up to 3/(3·views·res²) = 2.4e-4 "
                       "at 32², 4 views: 2% of a loss of 0.012-0.014. Admits one flip"),
    "procedural": (7e-2, "hard 2-D coverage tests (torch on both devices): a pixel centre "
                         "within rounding of an edge can flip, by up to 1/res² = 3.9e-3 at "
                         "16², 6.5% of a loss of 0.06. Admits one flip"),
    "classify": (5e-3, "cuDNN convolutions run in TF32 by default "
                       "(torch.backends.cudnn.allow_tf32; 10-bit mantissa, ε ≈ 1e-3) and "
                       "batch norm reduces in another order; cross-entropy is an average, "
                       "so the relative error stays near TF32's ε"),
    "radiosity": (2e-2, "Mitsuba cuda_ad_rgb (OptiX) against llvm_ad_rgb (Embree): the same "
                        "samples, but intersections differ in the last bits and a ray that "
                        "grazes an edge can hit another surface; the hash-grid gathers and "
                        "the MLP are float32 (cuBLAS may use other kernels)"),
    "pde-sol": (5e-3, "PhiFlow on torch: TF32 convolutions in the corrector and an iterative "
                      "float32 pressure solve whose residual tolerance (1e-5) leaves "
                      "device-dependent rounding that the rollout carries forward"),
}
DEFAULT_TOLERANCE = (1e-4, "a third-party task: float32 reassociation, no special reason known")

#: Task specs of the optimizer runs, in order of preference: each optimizer runs on the
#: first one it accepts (``skip`` returns no reason). --small uses the same ones.
OPTIMIZER_TASKS = ("sphere[dim=8]", "classify[width=4,batch=16]",
                   "radiosity[batch=128,res=16,levels=4,log2_table=10,max_res=32,hidden=16]",
                   "pde-sol")
#: Execution options with CUDA paths of their own, run besides every optimizer's defaults.
EXTRA_OPTIMIZERS = ("cge[reuse=true]", "sparse-cge[reuse=true]")
#: The short runs' budgets per task (device, --small): a few steps each, and on classify
#: (d = 666) enough evaluations for two CGE steps (2 x 667) and for sparse-cge's ZO-GraSP
#: scoring (2 x 193) and its steps.
OPTIMIZER_BUDGETS: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    "sphere": ({"evals": 300, "grads": 8, "steps": 8}, {"evals": 120, "grads": 4, "steps": 4}),
    "classify": ({"evals": 1500, "grads": 8, "steps": 8}, {"evals": 1400, "grads": 4, "steps": 4}),
    "radiosity": ({"evals": 64, "grads": 8, "steps": 8}, {"evals": 16, "grads": 4, "steps": 4}),
    "pde-sol": ({"evals": 64, "grads": 8, "steps": 8}, {"evals": 16, "grads": 4, "steps": 4}),
}
#: Parameters replaced in the paper suite's specs under --small (CPU-sized instances of the
#: same tasks, through the same code path).
SMALL_PAPER: dict[str, dict[str, Any]] = {
    "sphere": {"dim": 1000},
    "mesh-fit": {"verts": 42, "res": 32, "views": 2, "heldout": 1, "spp": 1, "ref_spp": 4},
    "procedural": {"res": 32},
    "classify": {"batch": 8},
    "radiosity": {"batch": 256, "m": 4, "res": 16, "spp": 1, "levels": 4, "log2_table": 10,
                  "base_res": 4, "max_res": 32, "hidden": 32, "layers": 2},
    "pde-sol": {"resolution": 16, "factor": 2, "frames": 12, "sims": 2, "test_sims": 1,
                "steps": 2, "starts": 2, "eval_steps": 4, "hidden": 4, "layers": 2,
                "pair_batch": 16},
}
#: The radiosity references of the paper suite take 8192 spp (minutes on a GPU); they set
#: only the image ``evaluate`` compares with, never the loss or a step, so the timing
#: instances use this many.
TIMING_REF_SPP = 64


# ============================================================================ parent side
@dataclass
class Options:
    """What the command was asked to do (passed to each section's child as JSON)."""

    device: str = "cuda"
    small: bool = False
    out: str = "gpu-check"
    only: list[str] = field(default_factory=list)
    deadline: float = 450.0
    threads: int = 1

    @property
    def sections(self) -> list[tuple[str, float]]:
        names = self.only or [name for name, _, _ in SECTIONS]
        return [(name, small if self.small else dev) for name, dev, small in SECTIONS
                if name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--small", action="store_true",
                        help="small sizes everywhere (the CPU test of this script)")
    parser.add_argument("--out", default="gpu-check", help="folder of the JSON and Markdown")
    parser.add_argument("--only", default="", help="comma-separated sections: " +
                        ",".join(name for name, _, _ in SECTIONS))
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds for the whole command (default: 450, --small: 1200)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--skip", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    known = [name for name, _, _ in SECTIONS]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in known]
    if unknown:
        raise SystemExit(f"gpu-check: unknown section(s) {unknown}; known: {', '.join(known)}")
    deadline = args.deadline if args.deadline is not None else (1200.0 if args.small else 450.0)
    return Options(device=args.device, small=args.small, out=args.out, only=only,
                   deadline=deadline, threads=args.threads)


def run_section(name: str, limit: float, opts: Options, scratch: Path) -> dict[str, Any]:
    """Run one section in child processes under ``limit`` seconds in all; its items as far
    as they got. A child that hangs past the limit is killed, one that dies is noted; in
    both cases the item it was on is recorded with the cause and the log's tail, and a fresh
    child goes on with the items after it while at least :data:`RESTART_S` seconds are left
    (an item stuck in native code, where no Python-level time-out reaches it, then costs
    that item only)."""
    started = time.perf_counter()
    section: dict[str, Any] = {"name": name, "limit_s": limit, "status": "ok", "error": None,
                               "items": [], "log_tail": None, "children": 0}
    plan: list[str] = []
    while True:
        left = limit - (time.perf_counter() - started)
        skip = [i["item"] for i in section["items"]]
        status, error, log = _child(name, left, opts, scratch, skip, section["children"])
        section["children"] += 1
        plan = _read_items(scratch / f"{name}.{section['children']}.jsonl", section) or plan
        if status == "ok":
            break
        section["status"], section["error"] = status, error
        section["log_tail"] = log
        done = {i["item"] for i in section["items"]}
        stuck = next((item for item in plan if item not in done), None)
        if stuck is None:
            break
        section["items"].append({"item": stuck, "status": status,
                                 "error": f"{error}\n--- the section's output, last lines:\n{log}"})
        if limit - (time.perf_counter() - started) < RESTART_S:
            break
    section["seconds"] = round(time.perf_counter() - started, 2)
    done = {item["item"] for item in section["items"]}
    for item in plan:
        if item not in done:
            section["items"].append({"item": item, "status": "not reached",
                                     "error": section["error"] or "the section ended before it"})
    if section["status"] == "ok" and any(i["status"] != "ok" for i in section["items"]):
        section["status"] = "partial"
    return section


def _child(name: str, limit: float, opts: Options, scratch: Path, skip: list[str],
           index: int) -> tuple[str, str | None, str | None]:
    """One child process of a section: (status, error, tail of its output if not ok)."""
    results = scratch / f"{name}.{index + 1}.jsonl"
    (scratch / f"{name}.skip.json").write_text(json.dumps(skip))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--options",
           str(scratch / "options.json"), "--results", str(results), "--limit", str(limit),
           "--skip", str(scratch / f"{name}.skip.json")]
    log = scratch / f"{name}.{index + 1}.log"
    deadline = time.time() + limit
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)  # its own group: killed as one
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            overrun = _overrun(results)
            if overrun or time.time() > deadline:
                _kill_group(proc)
                why = overrun or (f"the section's time ran out ({limit:.0f} s for this "
                                  "process) and it was killed")
                return "timeout", why, _tail(log)
    if code != 0:
        return "failed", f"the section's process exited with status {code}", _tail(log)
    return "ok", None, None


def _overrun(results: Path) -> str | None:
    """Why to kill the child now, if the item it is on has run :data:`ITEM_GRACE_S` past its
    own limit (its Python-level time-out did not reach it: stuck in native code)."""
    if not results.exists():
        return None
    current = None
    for line in results.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "start" in entry:
            current = entry
        elif "item" in entry:
            current = None
    if current and time.time() > current["at"] + current["limit"] + ITEM_GRACE_S:
        return (f"item {current['start']!r} ran {ITEM_GRACE_S:.0f} s past its limit of "
                f"{current['limit']:.0f} s (not interruptible: native code) and was killed")
    return None


def _tail(log: Path) -> str:
    return log.read_bytes()[-4000:].decode("utf-8", "replace")


def _read_items(results: Path, section: dict[str, Any]) -> list[str]:
    plan: list[str] = []
    if not results.exists():
        return plan
    for line in results.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        if "plan" in entry:
            plan = entry["plan"]
        elif "item" in entry:
            section["items"].append(entry)
        elif "note" in entry:
            section.setdefault("notes", []).append(entry["note"])
    return plan


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the child's own process group (it and its workers only)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    opts = options_from(args)
    import importlib.util

    missing = [m for m in ("torch", "pluggy") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"gpu-check: {sys.executable} cannot import {', '.join(missing)}: run "
                         "scripts/setup.sh (the checkout's .venv) or set PYTHON to an "
                         "interpreter that has them (on a GPU image: python3).")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"options": opts.__dict__, "command": " ".join(sys.argv),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "sections": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        scratch = Path(tmp)
        (scratch / "options.json").write_text(json.dumps(opts.__dict__))
        for name, limit in opts.sections:
            left = opts.deadline - (time.perf_counter() - t0)
            if left < 5:
                report["sections"][name] = {"name": name, "status": "skipped", "items": [],
                                            "error": f"no time left (--deadline {opts.deadline:g} s)"}
                continue
            print(f"gpu-check: {name} (limit {min(limit, left):.0f} s)", flush=True)
            section = run_section(name, min(limit, left), opts, scratch)
            report["sections"][name] = section
            print(f"gpu-check: {name}: {section['status']} in {section['seconds']:.1f} s", flush=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_outputs(report, out)
    print(f"gpu-check: wrote {out / 'gpu-check.json'} and {out / 'gpu-check.md'} "
          f"({report['seconds']:.0f} s)")
    return 0


def write_outputs(report: dict[str, Any], out: Path) -> None:
    """The JSON, the Markdown and machine.json (the env section's machine, if it ran)."""
    import gpu_check_report  # beside this file

    (out / "gpu-check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu-check.md").write_text(gpu_check_report.render(report))
    env = report["sections"].get("env", {})
    machine = next((i.get("data", {}).get("machine") for i in env.get("items", [])
                    if i.get("item") == "machine" and i.get("status") == "ok"), None)
    if machine:
        (out / "machine.json").write_text(json.dumps([machine], indent=1))


# ============================================================================= child side
class Context:
    """A section's view of the run: the options, the device, an emitter of JSON lines."""

    def __init__(self, opts: Options, results: Path, limit: float) -> None:
        import torch

        self.opts = opts
        self.device = opts.device
        self.cuda = opts.device.startswith("cuda")
        self.small = opts.small
        self.limit = limit
        self.started = time.perf_counter()
        self._out = open(results, "a", buffering=1)
        self.skip: set[str] = set()  # items an earlier process of the section did
        torch.set_num_threads(opts.threads)
        from zgbench import plugins

        self.registry = plugins.load()

    def emit(self, entry: dict[str, Any]) -> None:
        self._out.write(json.dumps(entry, default=_jsonable) + "\n")
        self._out.flush()

    def plan(self, items: list[str]) -> None:
        self.emit({"plan": items})

    def left(self) -> float:
        return self.limit - (time.perf_counter() - self.started)

    def item(self, name: str, fn: Callable[[], dict[str, Any]], after: int = 0,
             factor: float = 3.0, guard: bool = True) -> None:
        """Run ``fn`` as one item under its own limit (``self.item_limit``): ``factor`` times
        an equal share of the time left among it and the ``after`` items still to come, but
        never so much that those get less than :data:`MIN_ITEM_S` each. Records its data or
        its traceback; the section goes on either way. ``guard=False``: ``fn`` keeps
        ``self.item_limit`` itself (a zgbench run has its own watchdog, and an inner watchdog
        would disarm an outer one)."""
        from zgbench import watchdog

        if name in self.skip:
            return
        left = self.left() - 2.0
        limit = self.item_limit = max(
            min(left - MIN_ITEM_S * after, factor * left / (after + 1)), 1.0)
        self.emit({"start": name, "limit": limit, "at": time.time()})
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"item": name}
        try:
            with watchdog.guard(limit if guard else None):
                entry["data"] = fn()
            entry["status"] = "ok"
        except watchdog.RunTimeout:
            entry["status"] = "timeout"
            entry["error"] = f"item passed its limit of {limit:.0f} s"
        except Exception:
            entry["status"] = "failed"
            entry["error"] = traceback.format_exc()
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        self.emit(entry)
        release(self.device)


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def child_main(args: argparse.Namespace) -> int:
    opts = Options(**json.loads(Path(args.options).read_text()))
    tempfile.tempdir = str(Path(args.results).parent)  # the parent's scratch: removed at the end
    sys.path.insert(0, str(ROOT))
    import gpu_check_sections  # beside this file

    ctx = Context(opts, Path(args.results), args.limit)
    if args.skip:
        ctx.skip = set(json.loads(Path(args.skip).read_text()))
    getattr(gpu_check_sections, "section_" + args.child.replace("-", "_"))(ctx)
    return 0


# ------------------------------------------------------------------ shared measurement tools
def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def release(device: str) -> None:
    """Free what the last item left (instances are dropped by then)."""
    import gc

    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


@contextmanager
def peak_memory(device: str) -> Iterator[dict[str, Any]]:
    """``{"peak_mib": ...}`` after the block: torch's peak allocation on the GPU (memory that
    Mitsuba / Dr.Jit allocate themselves is not in it); ``None`` on the CPU (n/a)."""
    import torch

    box: dict[str, Any] = {"peak_mib": None}
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield box
    finally:
        if cuda:
            torch.cuda.synchronize(device)
            box["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
