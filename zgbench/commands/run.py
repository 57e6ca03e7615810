"""Run the cross product tasks × optimizers × seeds and store one record per run.

With no --tasks/--optimizers/--suite it runs the quick suite (tasks/quick.toml: every task at
a small size, every optimizer, on the CPU, in minutes). --tasks and --optimizers replace the
suite's lists; with --suite S, a task of --tasks that S names (the same instance, or by bare
name S's only instance of it) keeps S's budget and optimizers; --evals/--grads/--steps/--seconds
replace every task's budget limits.
A suite's task or optimizer whose optional dependency is missing is skipped with its install
line and the rest runs; one named with --tasks/--optimizers stops the run (exit 2) instead.
Finished runs in --out are skipped (resume); a failed run is recorded with its traceback and
the others go on. A finished run whose task or optimizer source changed since it ran (the
record's code fingerprint) is kept with a warning; --rerun-stale reruns those, and those
recorded before the fingerprint existed. At the end a leaderboard is written to OUT/leaderboard unless
--no-leaderboard, and with --report DIR also the HTML report (leaderboard files + index.html).

Integrity: each run is metered at the task boundary and audited (its record says what the
task performed against what was charged; a run that broke its budget or tampered with the
meter is "violated"). --timeout SECONDS is each run's hard wall-clock limit, from building the
optimizer and the task to drawing the pictures (a default always applies); --isolate runs each
run in a fresh process of its own, so that no plugin state carries over to the next run, with
an optional memory limit (--memory 8G).

Where runs execute: in a worker process (default: one, reused across runs, so that a plugin's
os._exit, abort() or crash fails its run only, recorded with the cause, and the next runs go
on in a fresh worker); --workers N local processes; --device cuda:0,cuda:1 one worker per GPU,
one run per GPU at a time; --executor ray each run a Ray task, on the cluster at --address or
on a local Ray instance bound to 127.0.0.1; --in-process in this process, for debugging
(breakpoints, pdb). Records always come back to this process, which alone writes OUT.
SIGTERM, SIGHUP or Ctrl-C stop the workers with zgbench (exit 128 + the signal's number).

Two zgbench run on one OUT (or on one shared folder from several machines) split the work:
each run is claimed (a lock file per run, OUT/claims/RUN_ID.lock) before it starts; a run
claimed by the other driver is left to it, one it finished is skipped, and the claim of a
driver that died is taken over.

Examples:
  zgbench run
  zgbench run --tasks "sphere[dim=8]",step --optimizers random-search,cge,rge --seeds 3 --evals 2000
  zgbench run --suite paper --device cuda:0,cuda:1 --out results-paper/
  zgbench run --workers 2 --out results/quick --report leaderboards/quick
  zgbench run --executor ray --address 10.0.0.5:6379 --device cuda --suite paper
  zgbench run --isolate --memory 8G --timeout 600 --optimizers my-plugin-optimizer
"""

from __future__ import annotations

import argparse
import errno
import os
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from zgbench import declared, outputs, seeding, specs, watchdog
from zgbench import suite as suites
from zgbench.cli import add_baseline_argument, load_registry
from zgbench.errors import UsageError
from zgbench.lazy import lazy
from zgbench.progress import reporter_for
from zgbench.store import ResultStore

pd = lazy("pandas")
torch = lazy("torch")
harness = lazy("zgbench.harness")
leaderboard = lazy("zgbench.leaderboard")
executors = lazy("zgbench.executors")

HELP = "run tasks × optimizers × seeds (default: the quick suite) and store the records"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", help='task specs, comma separated: "sphere[dim=8]",step')
    parser.add_argument("--optimizers", help="optimizer specs, comma separated: cge,rge[q=20]")
    parser.add_argument("--suite", help="suite name (tasks/NAME.toml) or path; default: quick")
    parser.add_argument("--seeds", type=int, help="repetitions per pair (default: the suite's, 3)")
    parser.add_argument("--evals", type=int, help="loss-evaluation budget per run")
    parser.add_argument("--grads", type=int, help="gradient-evaluation budget per run")
    parser.add_argument("--steps", type=int, help="optimizer-step budget per run")
    parser.add_argument("--seconds", type=float, help="wall-clock budget per run (seconds)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the suite's, cpu); a "
                        "list cuda:0,cuda:1 runs one worker per device")
    add_executor_arguments(parser)
    parser.add_argument("--out", default="results", help="results folder (default: results)")
    parser.add_argument("--no-leaderboard", action="store_true",
                        help="do not write OUT/leaderboard at the end")
    parser.add_argument("--report", metavar="DIR",
                        help="also write the HTML report (leaderboard files + index.html) to DIR")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 if any run failed")
    add_baseline_argument(parser)
    parser.add_argument("--rerun-stale", action="store_true",
                        help="rerun finished runs whose task or optimizer source changed since "
                             "they ran, and those recorded without a code fingerprint")
    parser.add_argument("--instances", choices=("public", "secret"), default="public",
                        help="task instances: public (seeds anyone can derive; the published "
                             "boards) or secret (seeds salted with the organizer's key, from "
                             "$ZGBENCH_INSTANCE_KEY or --instance-key-file; a leaderboard "
                             "of untrusted optimizers)")
    parser.add_argument("--instance-key-file", metavar="PATH",
                        help="the organizer's key for --instances secret (outside --out)")


#: Width the end-of-run summary fits (a terminal's, or this where the output is a file).
SUMMARY_WIDTH = 100


def summary_console(console: Console) -> Console:
    """A console for the end-of-run tables on ``console``'s stream, at most
    :data:`SUMMARY_WIDTH` columns wide (a log file gets 100, not rich's default 80)."""
    width = min(console.width, SUMMARY_WIDTH) if console.is_terminal else SUMMARY_WIDTH
    return Console(file=console.file, width=width, force_terminal=console.is_terminal,
                   no_color=not console.is_terminal, highlight=False)


def caveat_footnotes(overall) -> dict[str, int]:
    """Footnote number of each distinct caveat, in board order (caveats are long sentences:
    as a column they wrapped every row to 10-12 lines)."""
    notes: dict[str, int] = {}
    for text in overall.get("caveat", []):
        if isinstance(text, str) and text and text not in notes:
            notes[text] = len(notes) + 1
    return notes


def caveat_mark(notes: dict[str, int], row) -> str:
    """A board row's footnote mark (``[n]``), or "" where its optimizer has no caveat."""
    mark = notes.get(row.get("caveat", ""), "")
    return f"[{mark}]" if mark else ""


def say_footnotes(console: Console, notes: dict[str, int]) -> None:
    """The caveats the marks point to, one line each."""
    for text, mark in notes.items():
        console.print(f"[{mark}] {text} (the suite's caveat; see its claim)", markup=False)


def _overall_table(overall) -> Table:
    """The overall main board (optimizers ranked on enough tasks), as overall.csv has it;
    caveats as footnote marks (:func:`_say_caveats` prints the notes)."""
    table = Table(title="Overall (mean rank over tasks, 95% interval)", title_justify="left")
    notes = caveat_footnotes(overall)
    for column in ("pos", "optimizer", "mean rank", "interval", "coverage") + (
            ("note",) if notes else ()):
        table.add_column(column, no_wrap=column != "optimizer")
    for _, row in overall[overall["board"] == "main"].iterrows():
        table.add_row(f"{int(row['position'])}", escape(str(row["optimizer"])),
                      f"{row['mean_rank']:.3g}", f"{row['rank_lo']:.3g}-{row['rank_hi']:.3g}",
                      str(row["coverage"]), *((caveat_mark(notes, row),) if notes else ()))
    return table


def _say_caveats(console: Console, overall) -> None:
    """The optimizers of the partial table (ranked on too few tasks for the main board), so
    that none goes unmentioned, then the footnotes of both (caveats, marked ``[n]``)."""
    notes = caveat_footnotes(overall)
    partial = overall[overall["board"] != "main"]
    if not partial.empty:
        listed = ", ".join(f"{row['optimizer']} ({row['coverage']}) {caveat_mark(notes, row)}"
                           .rstrip() for _, row in partial.iterrows())
        console.print(f"partial coverage (ranked on too few tasks for the main board; see "
                      f"overall.csv): {listed}", markup=False)
    say_footnotes(console, notes)


def _results_table(written: dict) -> Table:
    """What the run found, at a glance: each task's winners (every optimizer at rank 1 by
    its primary metric's median over seeds: ties are named, not just the first) and their
    places on the overall main board."""
    overall = written["overall"]
    position = {row["optimizer"]: row["position"] for _, row in overall.iterrows()
                if row.get("board") == "main"}
    table = Table(title="Winners (median over seeds; overall position on the main board)",
                  title_justify="left")
    for column in ("task", "winner (overall position)", "metric", "median"):
        table.add_column(column, no_wrap=column in ("median",))
    for label, frame in written["tasks"].items():
        best = frame[frame["rank"] == 1]
        if "counted" in best:
            best = best[best["counted"].astype(bool)]
        if best.empty:
            continue
        names = []
        for _, row in best.iterrows():
            place = position.get(row["optimizer"])
            names.append(f"{row.get('spec', row['optimizer'])} "
                         f"({'-' if place is None or place is pd.NA else int(place)})")
        row = best.iloc[0]
        table.add_row(escape(label), escape(", ".join(names)),
                      escape(f"{row['metric']} ({row['direction']})"), f"{row['median']:.4g}")
    return table


def _say_unmeasured(console: Console, out: Path, runs: list[harness.RunSpec]) -> None:
    """Name the tasks of this run whose boards measure nothing yet, from its records (read
    once): where no optimizer's median beat the start, and where none separates."""
    store = ResultStore(out)
    records = [r for r in (store.get(run.run_id) for run in runs) if r is not None]
    _say_stalled(console, records)
    _say_not_separating(console, records, declared.read(out).baseline)


def _say_stalled(console: Console, records: list[dict]) -> None:
    """Name every task on which no optimizer's median beat the start (primary metric): its
    board measures nothing yet (budget too small, steps at the wrong scale)."""
    labels = leaderboard.stalled(records)
    if labels:
        console.print(f"[yellow]no optimizer improved on the start[/yellow] (median final "
                      f"primary metric) on: {escape(', '.join(labels))}", highlight=False,
                      soft_wrap=True)


def _say_not_separating(console: Console, records: list[dict], baseline: str | None) -> None:
    """Name every task that does not separate (:func:`leaderboard.separation`: no optimizer's
    interval clear of both the start's and the suite's baseline's): its board cannot say
    which optimizer to use at this size and budget."""
    verdicts = leaderboard.separation(records, baseline)
    labels = [label for label, ok in verdicts.items() if ok is False]
    if labels:
        console.print(f"[yellow]does not separate[/yellow] (no optimizer's interval clear of "
                      f"the start's and the baseline's) on: {escape(', '.join(labels))}",
                      highlight=False, soft_wrap=True)


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how runs execute: shared by the commands that run the harness (run and
    claims), so they accept the same flags and build the executor the same way."""
    parser.add_argument("--executor", choices=("inprocess", "pool", "ray"),
                        help="where runs execute (default: pool, one worker process reused "
                        "across runs; N with --workers N, one per device of a device list)")
    parser.add_argument("--in-process", action="store_true",
                        help="debugging: run plugin code in this process (pdb, breakpoints); "
                             "a plugin's os._exit or abort() then ends zgbench itself. Same as "
                             "--executor inprocess")
    parser.add_argument("--workers", type=int, help="parallel runs: worker processes, or the "
                        "CPUs of a local Ray instance (default: run: one per CPU core, or per "
                        "GPU with --device cuda; claims: 1; ray: the CPU count)")
    parser.add_argument("--address", help="Ray cluster address (host:port, auto, ray://...); "
                        "default: start a local instance on 127.0.0.1")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads per run with one worker or in-process; with "
                             "--workers N each gets CPUs/N (default 1: the quick suite's "
                             "small tensors run fastest, and most reproducibly, on one thread; "
                             "oversubscribed OpenMP threads slow them down tenfold)")
    parser.add_argument("--isolate", action="store_true",
                        help="run each run in a fresh process of its own (no plugin state "
                             "carries over; --memory limits it) instead of a reused worker")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="hard wall-clock limit per run: a run still going is abandoned "
                             "(in-process) or killed (workers) and recorded as failed. Default: "
                             f"with --seconds S, S * {1 + watchdog.GRACE[1]:g} + "
                             f"{watchdog.GRACE[0]:g}; otherwise {watchdog.DEFAULT_TIMEOUT:g}")
    parser.add_argument("--memory", metavar="SIZE",
                        help="with --isolate: address-space limit per run (e.g. 8G, 512M)")



def main(args: argparse.Namespace) -> int:
    key = _instance_key(args)  # first: no worker process is started with it in its environment
    if args.isolate:
        _hide_from_optimizers(getattr(args, "instance_key_file", None))
    if args.isolate:
        registry = _described_registry(args)
    else:
        registry = load_registry(args, described=True)
        _precheck(args, registry)
        if registry.manager is None:  # stand-ins from the cache: now the plugins themselves
            registry = load_registry(args)
    entries, seeds, device, declarations = _resolve(args, registry)
    device, devices = _devices(device)
    executor = _executor(args, devices, per_core=True)
    console = Console(stderr=True)
    if args.tasks or args.optimizers:  # components named on the command line must be there
        _check_dependencies(entries, registry)
    else:  # a suite runs what is installed and says what it skipped
        entries = _installed_only(entries, registry, console)
    runs = harness.on_instances(harness.plan(entries, seeds, device), key)
    _check_unique(runs)
    out = Path(args.out)
    ResultStore(out).check_writable()
    _check_instance_set(out, key)
    del key  # the runs carry their derived seeds: no reference to the key is left here
    for folder in ("artifacts", "quarantine") + (() if args.no_leaderboard else ("leaderboard",)):
        outputs.checked(out, out / folder)  # a symbolic link there: refused before any run
    if declarations is not None:
        declared.save(out, declarations)
    try:
        with executor if hasattr(executor, "__enter__") else nullcontext():  # stops workers
            summary = harness.run_all(runs, registry, out, executor, reporter_for(console),
                                      rerun_stale=args.rerun_stale)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        raise UsageError(f"cannot write to {out} ({exc}): fix that (free space, permissions) "
                         "and run the same command again; finished runs are kept.") from None
    for failure in summary.failures:
        console.print(f"[red]failed:[/red] {escape(failure)}", highlight=False)
    console.print(summary.line(), highlight=False, markup=False)
    _say_unmeasured(console, out, runs)
    if not args.no_leaderboard and runs:
        planned = {(run.task.canonical, run.optimizer.canonical) for run in runs}
        written = leaderboard.write(out, out / "leaderboard", planned=planned)
        tables = summary_console(console)
        tables.print(_results_table(written))
        tables.print(_overall_table(written["overall"]))
        _say_caveats(tables, written["overall"])
        console.print(f"leaderboard: {out / 'leaderboard'} ({len(written['tasks'])} tasks)",
                      markup=False, soft_wrap=True)
    if args.report and runs:
        from zgbench import report

        console.print(f"report: {report.build(out, args.report)}", markup=False,
                      soft_wrap=True)  # a path cut in two cannot be pasted
    return 1 if args.strict and summary.failed else 0


def _precheck(args: argparse.Namespace, registry) -> None:
    """Usage errors before any plugin is imported: names and declared parameters checked
    against ``registry``, the cached description (:mod:`zgbench.registry_cache`, as ``zgbench
    list`` reads it) where it is fresh, so an unknown name or a bad parameter is said in a
    fraction of a second instead of after importing torch and every plugin. Valid input goes
    on to the real registry."""
    _check_selection(args)
    for kind, text in (("task", args.tasks), ("optimizer", args.optimizers)):
        for item in specs.split_list(text) if text else []:
            name, params = specs.parse(item)
            entry = registry.task(name) if kind == "task" else registry.optimizer(name)
            specs.resolve(entry.cls, params, f"{kind} {name!r}")  # declared types and bounds


def _check_selection(args: argparse.Namespace) -> None:
    if not (args.suite or not (args.tasks or args.optimizers)) and not (
            args.tasks and args.optimizers):
        raise UsageError("give both --tasks and --optimizers, or a --suite "
                         "(zgbench run with no arguments runs the quick suite).")


def _described_registry(args: argparse.Namespace):
    """--isolate: the registry without importing plugin code here (built-ins are zgbench's
    own; each installed plugin is described by a process of its own, zgbench.sandbox.catalog)."""
    from zgbench.sandbox import catalog

    blocked = []
    for option in getattr(args, "plugin_options", []):
        if not option.startswith("no:") or len(option) <= 3:
            raise UsageError(f"-p {option}: only -p no:NAME (disable a plugin) is supported.")
        blocked.append(option[3:])
    registry = catalog.load(tuple(blocked))
    for error in registry.errors:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(str(error))}",
                                   highlight=False)
    return registry


def _instance_key(args: argparse.Namespace) -> seeding.InstanceKey | None:
    """The organizer's key for ``--instances secret`` (read once, then dropped from the
    environment: see :func:`zgbench.seeding.load_instance_key`); ``None`` for public."""
    if getattr(args, "instances", "public") != "secret":
        if getattr(args, "instance_key_file", None):
            raise UsageError("--instance-key-file is the key of secret instances: add "
                             "--instances secret")
        return None
    return seeding.load_instance_key(args.out, args.instance_key_file)


def _check_instance_set(out: Path, key: seeding.InstanceKey | None) -> None:
    """Refuse to add runs on one instance set to a results folder of another: its boards
    rank one set (:func:`zgbench.seeding.instance_set`)."""
    planned = seeding.PUBLIC if key is None else f"{seeding.SECRET}:{key.id}"
    there = {seeding.record_instances(r) for r in ResultStore(out)} - {planned}
    if there:
        raise UsageError(f"{out} holds runs on other instances ({', '.join(sorted(there))}) "
                         f"than these ({planned}): boards rank one instance set, so give "
                         "these runs their own --out folder")

def _hide_from_optimizers(path: str | None) -> None:
    """--isolate: the instance key file is one more path the optimizers' sandbox hides
    (zgbench.sandbox.bwrap.HIDE_ENV, read where the workers' settings are made)."""
    if path:
        from zgbench.sandbox import bwrap

        listed = os.environ.get(bwrap.HIDE_ENV, "")
        os.environ[bwrap.HIDE_ENV] = os.pathsep.join(p for p in (listed, str(path)) if p)


def _declarations(args: argparse.Namespace, suite, registry) -> declared.Declarations | None:
    """What to keep in OUT/suite.json: the suite's declarations (``--baseline`` replacing its
    baseline), or only ``--baseline`` for a run without a suite; None: leave the file as is."""
    baseline = (suites.optimizer_name(registry, args.baseline, "--baseline")
                if args.baseline else None)
    if suite is not None:
        return suite.declarations().with_baseline(baseline)
    return declared.Declarations(baseline=baseline) if baseline else None


def _resolve(args: argparse.Namespace, registry):
    _check_selection(args)
    suite = None
    if args.suite or not (args.tasks or args.optimizers):
        suite = suites.load(args.suite or "quick", registry)
    budget_override = dict(evals=args.evals, grads=args.grads, steps=args.steps,
                           seconds=args.seconds)
    optimizers = ([specs.resolve_optimizer(registry, o) for o in specs.split_list(args.optimizers)]
                  if args.optimizers else None)
    if args.tasks:
        entries = [_task_entry(text, suite, registry, optimizers, budget_override)
                   for text in specs.split_list(args.tasks)]
    else:
        entries = [(t.spec, t.budget.override(**budget_override),
                    optimizers or t.optimizers or suite.optimizers) for t in suite.tasks]
    if any(not opts for _, _, opts in entries):
        raise UsageError("no optimizers to run: give --optimizers or list them in the suite.")
    seeds = args.seeds if args.seeds is not None else (suite.seeds if suite else 3)
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}.")
    device = args.device or (suite.device if suite else "cpu")
    return entries, seeds, device, _declarations(args, suite, registry)


def _task_entry(text: str, suite, registry, optimizers, budget_override: dict):
    """One ``--tasks`` entry: with ``--suite``, a task the suite names (the same instance, or
    the suite's only instance of that name) keeps the suite's budget and optimizer list, as
    in the suite's own run; any other task gets its default budget. ``--evals`` and the like
    replace either."""
    task = specs.resolve_task(registry, text)
    named = _in_suite(task, suite, bare="[" not in text)
    budget = named.budget if named else registry.task(task.name).cls.default_budget
    if named and task.canonical != named.spec.canonical:
        task = named.spec  # `--tasks step` means the suite's step instance
    chosen = optimizers or (named.optimizers if named else None) or (
        suite.optimizers if suite else None)
    return task, budget.override(**budget_override), chosen


def _in_suite(task: specs.Spec, suite, bare: bool):
    """The suite's entry for ``task``: the same instance, else the only instance of its
    name when ``task`` was given by bare name; None where the suite does not name it."""
    if suite is None:
        return None
    same = [t for t in suite.tasks if t.spec.canonical == task.canonical]
    if same:
        return same[0]
    by_name = [t for t in suite.tasks if t.spec.name == task.name]
    return by_name[0] if bare and len(by_name) == 1 else None


def _devices(text: str) -> tuple[str, list[str]]:
    """The device runs are planned for (part of their identity) and the devices to place them
    on: ``cuda:0,cuda:1`` plans for ``cuda`` and places on both."""
    devices = specs.split_list(text)
    for device in devices:
        _check_device(device)
    if len(devices) == 1:
        return devices[0], devices
    kinds = {torch.device(d).type for d in devices}
    if len(kinds) > 1:
        raise UsageError(f"--device {text}: a device list must be of one kind (all cuda:N or "
                         "all cpu), so that every run's identity names the same device.")
    return kinds.pop(), devices


def default_workers(devices: list[str]) -> int:
    """``zgbench run``'s worker count when none is given: one per GPU of a CUDA device list
    (``--device cuda`` alone: one), else one per CPU core this process may use. Each run's
    seeds are its own, so the records are those a single worker writes; only the wall time
    changes (each worker gets CPUs/N threads)."""
    if devices and devices[0].startswith("cuda"):
        return len(devices)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # no sched_getaffinity (macOS)
        return max(os.cpu_count() or 1, 1)


def _executor(args: argparse.Namespace, devices: list[str], per_core: bool = False):
    """The executor the flags ask for; ``per_core`` (``zgbench run``): no ``--workers`` means
    :func:`default_workers` in the default pool (claims keep one worker: their timings are
    measured without contention)."""
    workers = args.workers
    if (per_core and workers is None and args.executor in (None, "pool")
            and not getattr(args, "in_process", False)):
        workers = default_workers(devices)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}.")
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}.")
    listed = len(devices) > 1
    timeout = _timeout(args)
    memory = _memory(args.memory)
    isolate = args.isolate
    if memory is not None and not isolate:
        raise UsageError("--memory limits the process of each run: add --isolate.")
    in_process = getattr(args, "in_process", False)
    if in_process and args.executor not in (None, "inprocess"):
        raise UsageError(f"--in-process runs plugin code in this process: drop --executor "
                         f"{args.executor}.")
    kind = "inprocess" if in_process else args.executor or "pool"
    if isolate and kind != "pool":
        raise UsageError(f"--isolate runs each run in a local process of its own: drop "
                         f"--executor {kind} (Ray already runs each run in a worker process).")
    if args.address and kind != "ray":
        raise UsageError("--address is the Ray cluster to use: add --executor ray.")
    if kind == "inprocess":
        if listed or (workers or 1) > 1:
            raise UsageError("the in-process executor runs one run at a time: drop --executor "
                             "inprocess to run --workers/--device lists in a pool.")
        torch.set_num_threads(args.threads)
        return executors.InProcessExecutor(timeout=timeout)
    if kind == "pool":  # the default: one worker, with the threads an in-process run has
        one = not listed and (workers or 1) == 1
        return executors.PoolExecutor(workers=workers if listed else workers or 1,
                            devices=devices if listed else None, isolate=isolate,
                            memory=memory, timeout=timeout, threads=args.threads if one else None)
    if listed:
        raise UsageError("with --executor ray give --device cuda (or cpu): Ray assigns each run "
                         "its GPU.")
    executors.import_ray()  # a missing extra stops here, before anything runs
    return executors.RayExecutor(address=args.address, num_cpus=workers, max_in_flight=workers,
                       timeout=timeout)


def _timeout(args: argparse.Namespace) -> float | None:
    timeout = args.timeout
    if timeout is not None and not (timeout > 0 and timeout != float("inf")):
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout}.")
    return timeout


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _memory(text: str | None) -> int | None:
    """Bytes from ``8G``, ``512M``, ``1.5G`` or a plain number of bytes."""
    if text is None:
        return None
    value, unit = text.strip().upper().rstrip("IB") or "0", ""
    if value[-1:] in _UNITS:
        value, unit = value[:-1], value[-1]
    try:
        size = int(float(value) * _UNITS[unit])
    except ValueError:
        size = 0
    if size <= 0:
        raise UsageError(f"--memory {text!r}: give a size such as 8G or 512M.")
    return size


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}: use cpu, cuda or cuda:N.") from None
    if parsed.type not in ("cpu", "cuda"):  # meta, mps, xpu...: no task runs there
        raise UsageError(f"device {device!r} cannot run tasks: use cpu, cuda or cuda:N.")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available here "
                         "(torch.cuda.is_available() is False): use --device cpu.")
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UsageError(f"device {device!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s), numbered from 0.")


def _check_unique(runs: list[harness.RunSpec]) -> None:
    """A task (or optimizer) listed twice plans the same run twice, into one record: refuse,
    naming it, instead of running it twice."""
    seen: set[str] = set()
    for run in runs:
        if run.run_id in seen:
            raise UsageError(f"{run.task.label} × {run.optimizer.label} is planned twice: the "
                             "task or the optimizer is listed twice (in --tasks, --optimizers "
                             "or the suite); list each once.")
        seen.add(run.run_id)


def _installed_only(entries, registry, console: Console):
    """The suite's entries less the tasks and optimizers whose optional dependency is missing,
    each skipped with its install line: ``zgbench run`` on a machine with only some extras
    runs what it can instead of refusing everything."""
    def missing(kind: str, name: str) -> str | None:
        entry = registry.task(name) if kind == "task" else registry.optimizer(name)
        return entry.cls.missing_dependency()

    skipped: dict[str, str] = {}
    kept = []
    for task, budget, optimizers in entries:
        why = missing("task", task.name)
        if why:
            skipped.setdefault(task.name, why)
            continue
        available = []
        for optimizer in optimizers:
            why = missing("optimizer", optimizer.name)
            if why:
                skipped.setdefault(optimizer.name, why)
            else:
                available.append(optimizer)
        if available:
            kept.append((task, budget, available))
    for why in skipped.values():
        console.print(f"[yellow]skipped:[/yellow] {escape(why)}", highlight=False)
    if entries and not kept:
        raise UsageError("nothing in the suite can run with the installed packages; "
                         "install the extras named above.")
    return kept


def _check_dependencies(entries, registry) -> None:
    """Fail before running anything if a component's optional dependency is missing."""
    names = {("task", t.name) for t, _, _ in entries}
    names |= {("optimizer", o.name) for _, _, opts in entries for o in opts}
    for kind, name in sorted(names):
        entry = registry.task(name) if kind == "task" else registry.optimizer(name)
        entry.cls.check_available()
