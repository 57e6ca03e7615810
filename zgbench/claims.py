"""Claims: does a seed paper's headline result hold here, and by how much?

A claim is a suite entry (tasks, optimizers, budget, seeds: run by the ordinary harness, so
records, resume and every executor work as for ``zgbench run``) plus a comparison rule written
in ``tasks/claims.toml`` *before* the run. The rule says which optimizers, which metric, the
effect's form and the thresholds of the verdict; the code never chooses them after seeing
the numbers. Rule kinds (each a small function on the records, tested on synthetic ones):

- ``ratio``: effect = median over seeds of ``metric`` for each baseline / the method's (for a
  metric to minimise: > 1 means the method is better), the smallest over the baselines (the
  method must beat each). ``metric`` may be a task metric, ``relative`` (final/start of the
  task's primary metric: "progress") or ``seconds_per_step`` (time per optimizer step).
  With ``identical = true`` the method must also produce the very numbers of each baseline
  (a faster way to the same computation, e.g. DeepZero's feature reuse): every checkpoint's
  metrics of every seed bitwise equal, else the verdict is ``not reproduced`` whatever the
  ratio. With ``rtol`` as well, "the same numbers" means equal up to floating-point
  reassociation: every final metric of every seed within ``rtol`` (relative) of each
  baseline's. Two ways to one computation reduce in different orders (oneDNN picks other
  convolution kernels for a grouped convolution than for a plain one, and which depends on the
  CPU's instruction set), so bitwise equality holds on some CPUs only; the tolerance is
  declared with the claim and measured.
- ``success``: effect = share of the method's seeds whose ``metric`` ends ≤ ``threshold``,
  minus the largest such share among the baselines (none: the share itself).

- ``match``: as ``success`` against one baseline, but the claim is *agreement* (zgbench's CBO
  against CBXpy itself): ``reproduced`` when |effect| is at most ``reproduced`` and the interval
  contains 0, ``partly`` when |effect| is at most ``partly``.
- ``gradcheck``: not a harness run but ``zgbench gradcheck`` (:mod:`zgbench.gradcheck`) of
  the method at ``budget.evals`` evaluations per estimate on ``seeds`` points; effect = the
  noise-corrected relative bias of the mean estimate against the many-sample reference
  (median over points), to *minimise*: ``reproduced`` when the interval's upper end is at most
  ``reproduced``, ``partly`` when the estimate is at most ``partly``.

The interval is a seeded percentile bootstrap over seeds (``zgbench.stats``' helpers). Verdict:
``reproduced`` when the interval's lower end reaches ``reproduced``; ``partly`` when the point
estimate reaches ``partly`` (the right direction, a smaller magnitude); else ``not reproduced``.
A claim whose runs failed reads ``not run`` with the failures, never a verdict.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zgbench import outputs, stats
from zgbench.budget import Budget
from zgbench.errors import UsageError
from zgbench.plugins import Registry
from zgbench.record import repetition
from zgbench.specs import Spec, resolve_optimizer, resolve_task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS = ("ratio", "success", "match", "gradcheck")
VERDICTS = ("reproduced", "partly", "not reproduced")
N_BOOT = 2000
BOOT_SEED = 20240


@dataclass
class Rule:
    """How a claim is judged; every field comes from the TOML."""

    kind: str
    method: str  # optimizer label
    baselines: list[str]
    metric: str
    reproduced: float
    partly: float
    threshold: float | None = None  # success: the metric value that counts as reached
    direction: str = "min"  # the metric's, from the task's records ("max": accuracy)
    identical: bool = False  # ratio: the method's numbers must equal each baseline's bitwise
    rtol: float | None = None  # with identical: final metrics equal up to this relative tolerance


@dataclass
class Claim:
    name: str
    paper: str
    figure: str  # where in the paper
    sentence: str  # the paper's claim, in a line
    paper_value: float  # the paper's figure, on the effect's scale
    setting: str  # how the setting relates to the paper's (scaled down, why)
    tasks: list[Spec]
    optimizers: list[Spec]
    budget: Budget
    seeds: int
    rule: Rule
    gradcheck: dict[str, Any] = field(default_factory=dict)  # gradcheck rule: its settings

    def entries(self) -> list[tuple[Spec, Budget, list[Spec]]]:
        return [(t, self.budget, self.optimizers) for t in self.tasks]


@dataclass
class Verdict:
    claim: str
    effect: float
    lo: float
    hi: float
    verdict: str
    seeds: int
    detail: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ loading
def default_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (Path.cwd() / "tasks" / "claims.toml", here.parent / "tasks" / "claims.toml"):
        if candidate.exists():
            return candidate
    raise UsageError("tasks/claims.toml not found: run from a checkout or give --file PATH.")


def load(path: Path, registry: Registry) -> list[Claim]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"claims file {path}: {exc}") from None
    claims = [parse(item, registry, f"{path} [[claims]] #{i + 1}")
              for i, item in enumerate(data.get("claims", []))]
    if not claims:
        raise UsageError(f"claims file {path}: no [[claims]] entries.")
    return claims


CLAIM_KEYS = {"name", "paper", "figure", "sentence", "paper_value", "setting", "tasks",
              "optimizers", "budget", "seeds", "rule"}
OPTIONAL_KEYS = {"gradcheck"}
GRADCHECK_KEYS = {"samples", "radius", "reference_samples"}
RULE_KEYS = {"kind", "method", "baselines", "metric", "reproduced", "partly", "threshold",
             "identical", "rtol"}


def parse(item: dict[str, Any], registry: Registry, where: str) -> Claim:
    unknown_keys = set(item) - CLAIM_KEYS - OPTIONAL_KEYS
    missing = CLAIM_KEYS - set(item)
    if unknown_keys or missing:
        raise UsageError(f"{where}: unknown keys {sorted(unknown_keys)}, missing {sorted(missing)}.")
    rule = dict(item["rule"])
    if set(rule) - RULE_KEYS or rule.get("kind") not in KINDS:
        raise UsageError(f"{where}: rule keys must be among {sorted(RULE_KEYS)} and kind one of "
                         f"{KINDS}, got {rule}.")
    if rule["kind"] in ("success", "match") and "threshold" not in rule:
        raise UsageError(f"{where}: a {rule['kind']} rule needs threshold.")
    if rule["kind"] == "match" and len(rule.get("baselines", [])) != 1:
        raise UsageError(f"{where}: a match rule compares with exactly one baseline.")
    if set(item.get("gradcheck", {})) - GRADCHECK_KEYS:
        raise UsageError(f"{where}: gradcheck keys must be among {sorted(GRADCHECK_KEYS)}.")
    if rule["kind"] == "gradcheck" and ("evals" not in item["budget"] or len(item["tasks"]) != 1):
        raise UsageError(f"{where}: a gradcheck rule needs one task and budget.evals (the "
                         "evaluations per estimate).")
    optimizers = [resolve_optimizer(registry, o) for o in item["optimizers"]]
    labels = {o.label for o in optimizers}
    # the rule may spell a spec in any order; compare the canonical labels
    label = lambda text: resolve_optimizer(registry, text).label  # noqa: E731
    rule["method"] = label(rule["method"])
    rule["baselines"] = [label(b) for b in rule.get("baselines", [])]
    named = [rule["method"], *rule["baselines"]]
    if not set(named) <= labels:
        raise UsageError(f"{where}: rule names {sorted(set(named) - labels)}, not among the "
                         f"optimizers {sorted(labels)}.")
    return Claim(
        name=item["name"], paper=item["paper"], figure=item["figure"], sentence=item["sentence"],
        paper_value=float(item["paper_value"]), setting=item["setting"],
        tasks=[resolve_task(registry, t) for t in item["tasks"]], optimizers=optimizers,
        budget=Budget.from_dict(item["budget"], where), seeds=int(item["seeds"]),
        rule=Rule(kind=rule["kind"], method=rule["method"], baselines=list(rule.get("baselines", [])),
                  metric=rule["metric"], reproduced=float(rule["reproduced"]),
                  partly=float(rule["partly"]), identical=bool(rule.get("identical", False)),
                  rtol=None if rule.get("rtol") is None else float(rule["rtol"]),
                  threshold=None if rule.get("threshold") is None else float(rule["threshold"])),
        gradcheck=dict(item.get("gradcheck", {})))


def select(claims: list[Claim], only: str | None) -> list[Claim]:
    if only is None:
        return claims
    names = [c.name for c in claims]
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    bad = [n for n in wanted if n not in names]
    if bad:
        raise UsageError(f"unknown claim {', '.join(map(repr, bad))}; known claims: "
                         f"{', '.join(names)}.")
    return [c for c in claims if c.name in wanted]


# ------------------------------------------------------------------------------ measures
def metric_of(record: dict[str, Any], metric: str, point: dict[str, Any] | None = None) -> float:
    """``metric`` of a record at ``point`` (a trajectory entry; default: the final one)."""
    point = point or record["final"]
    if metric == "seconds_per_step":
        return point["optimizer_seconds"] / max(point["steps"], 1)
    if metric == "relative":
        primary = record["task"]["primary_metric"]
        start = record["trajectory"][0]["metrics"][primary]
        return point["metrics"][primary] / start if start else math.nan
    return float(point["metrics"][metric])


def by_optimizer(records: Sequence[dict[str, Any]], rule: Rule
                 ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per optimizer label: the rule's metric per seed (NaN for a failed seed), and failures."""
    wanted = [rule.method, *rule.baselines]
    # a unit is (task, seed): a claim over several tasks (rastrigin at d = 2, 10, 20) pools them
    unit = lambda r: (r["task"]["canonical"], repetition(r))  # noqa: E731
    seeds = sorted({unit(r) for r in records})
    values = {label: np.full(len(seeds), math.nan) for label in wanted}
    failures = []
    for record in records:
        label = record["optimizer"]["label"]
        if label not in values:
            continue
        if record["status"] != "ok":
            failures.append(f"{label} seed {repetition(record)}: {record['status']}")
            continue
        values[label][seeds.index(unit(record))] = metric_of(record, rule.metric)
    return values, failures


def ratio_effect(values: dict[str, np.ndarray], rule: Rule, idx: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of min over baselines of median(baseline) / median(method)."""
    method = stats.resampled_medians(values[rule.method][None], idx)[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):  # a method at 0: an infinite ratio
        ratios = [stats.resampled_medians(values[b][None], idx)[:, 0] / method
                  for b in rule.baselines]
        if rule.direction == "max":  # a metric to maximise: method / baseline
            ratios = [1 / r for r in ratios]
    return np.min(np.stack(ratios), axis=0)


def success_effect(values: dict[str, np.ndarray], rule: Rule, idx: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of share(method reached) − max share(baseline reached)."""
    def share(label):
        v = values[label]
        reached = v >= rule.threshold if rule.direction == "max" else v <= rule.threshold
        hit = np.where(np.isnan(v), 0.0, reached)
        return hit[idx].mean(axis=1)

    base = np.max(np.stack([share(b) for b in rule.baselines]), axis=0) if rule.baselines else 0
    return share(rule.method) - base


EFFECTS = {"ratio": ratio_effect, "success": success_effect, "match": success_effect}


def decide(effect: float, lo: float, rule: Rule, hi: float = math.nan) -> str:
    """The declared thresholds: interval above ``reproduced``, or the point above ``partly``
    (a gradcheck bias: interval below ``reproduced``, or the point below ``partly``)."""
    # inf is a real effect (the method reached 0 where the baseline did not); NaN is none
    if rule.kind == "match":  # agreement: a difference near 0 either way
        if abs(effect) <= rule.reproduced and lo <= 0 <= hi:
            return "reproduced"
        return "partly" if abs(effect) <= rule.partly else "not reproduced"
    if rule.kind == "gradcheck":  # a bias: the smaller the better
        if not math.isnan(hi) and hi <= rule.reproduced:
            return "reproduced"
        return "partly" if not math.isnan(effect) and effect <= rule.partly else "not reproduced"
    if not math.isnan(lo) and lo >= rule.reproduced:
        return "reproduced"
    if not math.isnan(effect) and effect >= rule.partly:
        return "partly"
    return "not reproduced"


def judge(claim: Claim, records: Sequence[dict[str, Any]]) -> Verdict:
    """The verdict of one claim from its records (a seed-resampled interval)."""
    claim = oriented(claim, records)
    values, failures = by_optimizer(records, claim.rule)
    n = len(next(iter(values.values())))
    if failures or n == 0 or any(np.isnan(v).all() for v in values.values()):
        return Verdict(claim.name, math.nan, math.nan, math.nan, "not run", n,
                       failures=failures or ["no records"])
    effect_fn = EFFECTS[claim.rule.kind]
    point = float(effect_fn(values, claim.rule, np.arange(n)[None])[0])
    reps = effect_fn(values, claim.rule, stats.bootstrap_indices(n, N_BOOT, BOOT_SEED))
    lo, hi = stats.interval(reps[:, None])
    detail = {f"median {k}": float(np.nanmedian(v)) for k, v in values.items()}
    verdict = decide(point, float(lo[0]), claim.rule, float(hi[0]))
    if claim.rule.identical:
        differing = differing_units(records, claim.rule)
        detail["seeds with different numbers"] = float(differing)
        if differing:
            verdict = "not reproduced"
    return Verdict(claim.name, point, float(lo[0]), float(hi[0]), verdict, n, detail)


def differing_units(records: Sequence[dict[str, Any]], rule: Rule) -> int:
    """How many (task, seed) units have a baseline whose numbers differ from the method's:
    without ``rule.rtol`` its trajectory (every checkpoint's evaluations, steps and metrics)
    not bitwise equal; with it, a final metric further than ``rtol`` (relative) away."""
    runs: dict[tuple[Any, Any], dict[str, Any]] = {}
    for r in records:
        unit = (r["task"]["canonical"], repetition(r))
        runs.setdefault(unit, {})[r["optimizer"]["label"]] = r
    same = _bitwise_same if rule.rtol is None else functools.partial(_close, rtol=rule.rtol)
    return sum(any(not same(by.get(b), by.get(rule.method)) for b in rule.baselines)
               for by in runs.values())


def _bitwise_same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    def numbers(record):
        return record and [(p["evals"], p["steps"], sorted(p["metrics"].items()))
                           for p in record["trajectory"]]
    return numbers(a) == numbers(b)


def _close(a: dict[str, Any] | None, b: dict[str, Any] | None, rtol: float) -> bool:
    if a is None or b is None:
        return a is b
    ma, mb = a["final"]["metrics"], b["final"]["metrics"]
    return ma.keys() == mb.keys() and all(
        math.isclose(ma[k], mb[k], rel_tol=rtol) for k in ma)


def oriented(claim: Claim, records: Sequence[dict[str, Any]]) -> Claim:
    """The claim with its rule's metric direction taken from the task's declared metrics."""
    from dataclasses import replace

    for record in records:
        direction = record["task"]["metrics"].get(claim.rule.metric)
        if direction:
            return replace(claim, rule=replace(claim.rule, direction=direction))
    return claim


def excess_bias(rows: Sequence[Any]) -> np.ndarray:
    """Per gradcheck row: the squared relative bias of the mean estimate less what the noise
    of that mean (``bias_floor``) and of the reference (``reference_rel_stderr``) contribute in
    expectation, E‖mean ĝ − g‖² = ‖b‖² + tr Σ / n + ref error²: unbiased for ‖b‖²/‖g‖², so
    near 0 (either sign) for an unbiased estimator."""
    return np.array([r.rel_bias ** 2 - (r.bias_floor / r.reference_norm) ** 2
                     - r.reference_rel_stderr ** 2 for r in rows])


def judge_gradcheck(claim: Claim, rows: Sequence[Any]) -> Verdict:
    """The verdict of a gradcheck claim from ``zgbench.gradcheck`` rows (one per point)."""
    ok = [r for r in rows if r.status == "ok" and r.optimizer == claim.rule.method]
    bad = [f"{r.optimizer}: {r.status} {r.reason}" for r in rows if r.status != "ok"]
    if bad or not ok:
        return Verdict(claim.name, math.nan, math.nan, math.nan, "not run", len(ok),
                       failures=bad or ["no gradcheck rows"])
    values = excess_bias(ok)
    root = lambda x: np.sqrt(np.maximum(x, 0.0))  # noqa: E731  (bias² below 0: no bias)
    point = float(root(np.median(values)))
    reps = np.median(values[stats.bootstrap_indices(len(values), N_BOOT, BOOT_SEED)], axis=1)
    lo, hi = (float(root(q)) for q in np.percentile(reps, [2.5, 97.5]))
    detail = {"median raw rel_bias": float(np.median([r.rel_bias for r in ok])),
              "median noise floor": float(np.median([r.bias_floor / r.reference_norm
                                                     for r in ok]))}
    return Verdict(claim.name, point, lo, hi, decide(point, lo, claim.rule, hi), len(ok), detail)


def _save(fig: Any, ax: Any, path: Path) -> Path:
    """A claim plot's common ending: grid, legend, ``path`` written at 100 dpi (atomically),
    figure closed."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return outputs.save_figure(fig, path, dpi=100)


def plot_gradcheck(claim: Claim, verdict: Verdict, rows: Sequence[Any], path: Path) -> Path:
    """Per point: raw and noise-corrected relative bias, with the tolerances as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "ok"]
    x = np.array([r.point for r in ok])
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.bar(x - 0.2, [r.rel_bias for r in ok], 0.4, label="raw ‖mean ĝ − g‖/‖g‖")
    ax.bar(x + 0.2, np.sqrt(np.maximum(excess_bias(ok), 0)), 0.4, label="noise-corrected")
    ax.axhline(claim.paper_value, color="tab:green", ls="--", label="paper: unbiased (0)")
    ax.axhline(claim.rule.reproduced, color="tab:gray", ls=":", label="reproduced below")
    ax.axhline(claim.rule.partly, color="tab:red", ls=":", label="partly below")
    ax.set_xlabel("point (0: θ₀)")
    ax.set_ylabel("relative bias")
    ax.set_title(f"{outputs.literal(claim.name)}: {verdict.verdict} ({verdict.effect:.3g} "
                 f"[{verdict.lo:.3g}, {verdict.hi:.3g}])", fontsize=10)
    return _save(fig, ax, path)


def effect_curve(claim: Claim, records: Sequence[dict[str, Any]], points: int = 12
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The effect (no interval) at shares of the budget, from the records' trajectories: each
    run's metric at its last checkpoint within the share. A checkpoint's share is its largest
    used share over the bounded counters (as the harness takes checkpoints), so a run charged
    gradients (adam) and one charged evaluations meet at equal shares of their own budgets,
    not at equal evaluations, of which a gradient run spends none."""
    claim = oriented(claim, records)
    xs = np.linspace(1 / points, 1.0, points)
    ys = []
    ok = [r for r in records if r["status"] == "ok"]
    for x in xs:
        clipped = []
        for r in ok:
            within = ([p for p in r["trajectory"] if budget_share(p, claim.budget) <= x + 1e-9]
                      or r["trajectory"][:1])
            clipped.append({**r, "final": within[-1]})
        values, _ = by_optimizer(clipped, claim.rule)
        n = len(next(iter(values.values())))
        ys.append(float(EFFECTS[claim.rule.kind](values, claim.rule, np.arange(n)[None])[0])
                  if n else math.nan)
    return xs, np.array(ys)


def budget_share(point: dict[str, Any], budget: Budget) -> float:
    """The largest share of ``budget`` a trajectory point has used over its bounded counters
    (evaluations, gradients, steps); 0 for an unbounded budget."""
    shares = [point.get(key, 0) / limit for key, limit in
              (("evals", budget.evals), ("grads", budget.grads), ("steps", budget.steps))
              if limit]
    return max(shares, default=0.0)


# ------------------------------------------------------------------------------ outputs
CSV_COLUMNS = ("claim", "paper", "figure", "rule", "paper_value", "effect", "lo", "hi",
               "verdict", "seeds", "seconds", "detail", "failures")


def describe_rule(rule: Rule) -> str:
    others = ",".join(rule.baselines) or "-"
    if rule.kind == "gradcheck":
        return (f"noise-corrected relative bias of {rule.method} vs the smoothed reference "
                f"(median over points); reproduced if CI high <= {rule.reproduced:g}, partly "
                f"if <= {rule.partly:g}")
    if rule.kind == "match":
        return (f"share {rule.method} with {rule.metric} <= {rule.threshold:g} minus {others}'s; "
                f"reproduced if |effect| <= {rule.reproduced:g} and CI contains 0, partly if "
                f"|effect| <= {rule.partly:g}")
    if rule.kind == "ratio":
        text = f"median {rule.metric}: min over [{others}] / {rule.method}"
        if rule.identical and rule.rtol is None:
            text += "; numbers bitwise identical"
        elif rule.identical:
            text += f"; final numbers equal within rtol {rule.rtol:g}"
    else:
        text = f"share {rule.method} with {rule.metric} <= {rule.threshold:g} minus max [{others}]"
    return f"{text}; reproduced if CI low >= {rule.reproduced:g}, partly if >= {rule.partly:g}"


def write_csv(claims: Sequence[Claim], verdicts: Sequence[Verdict], seconds: dict[str, float],
              path: Path) -> Path:
    """Write ``path`` atomically: this call's verdicts replace their claims' rows, the rows of
    claims judged by earlier calls (``--only``) are kept; rows follow ``claims``' order."""
    by_name = {c.name: c for c in claims}
    return _merge_rows(path, [_row(by_name[v.claim], v, seconds) for v in verdicts],
                       list(by_name))


#: The columns that identify a run in a published runs.csv (one row per run).
RUN_KEY = ["task_id", "spec", "seed", "evals", "grads"]


def publish(out: Path, dst: Path, names: Sequence[str], records: list[dict[str, Any]],
            order: Sequence[str]) -> list[Path]:
    """Copy what ``zgbench claims`` wrote in ``out`` for the claims ``names`` into the
    published folder ``dst``: their rows of claims.csv (rows in ``order``, the claims file's;
    other claims' rows stay), ``NAME.png`` and ``NAME.gradcheck.json`` per claim,
    ``runs.csv`` (a row per run of ``records``, replacing rows of the same runs; others stay)
    and ``machine.json`` (every machine the runs ran on). Each file is written atomically;
    returns the paths written."""
    import json

    import pandas as pd

    from zgbench.leaderboard import machines, runs_frame
    from zgbench.store import atomic_write, atomic_write_text

    dst.mkdir(parents=True, exist_ok=True)
    written = []
    written.append(_merge_rows(dst / "claims.csv", [
        row for row in read_csv(out / "claims.csv") if row["claim"] in names], order))
    for name in names:
        for src, target in ((out / "claims" / f"{name}.png", dst / f"{name}.png"),
                            (out / "gradcheck" / f"{name}.json", dst / f"{name}.gradcheck.json")):
            if src.is_file():
                atomic_write(target, lambda f, s=src: f.write(s.read_bytes()), binary=True)
                written.append(target)
    if records:
        new = runs_frame(records)
        path = dst / "runs.csv"
        if path.is_file():
            old = pd.read_csv(path)
            kept = old[~old.set_index(RUN_KEY).index.isin(new.set_index(RUN_KEY).index)]
            new = pd.concat([kept, new[[c for c in old.columns if c in new.columns]]],
                            ignore_index=True)
        # claims that share runs hand them over once per claim; one row per run
        new = new.drop_duplicates(subset=RUN_KEY, keep="last")
        new = new.sort_values(["task", "optimizer", "seed"], kind="stable")
        atomic_write_text(path, new.to_csv(index=False))
        known = json.loads((dst / "machine.json").read_text()) if (dst / "machine.json").is_file() else []
        seen = {json.dumps(m, sort_keys=True) for m in known}
        known += [m for m in machines(records) if json.dumps(m, sort_keys=True) not in seen]
        atomic_write_text(dst / "machine.json", json.dumps(known, indent=1))
        written += [path, dst / "machine.json"]
    return written


def _merge_rows(path: Path, rows: Sequence[dict[str, str]], order: Sequence[str]) -> Path:
    """Write the claims.csv at ``path`` atomically: ``rows`` replace the rows of their claims,
    the other claims' rows stay; claims in ``order`` first, in that order, then the rest by
    name."""
    import csv
    import io

    from zgbench.store import atomic_write_text

    merged = {row["claim"]: row for row in read_csv(path)}
    merged.update((row["claim"], row) for row in rows)
    rank = {name: i for i, name in enumerate(order)}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(sorted(merged.values(),
                            key=lambda row: (rank.get(row["claim"], len(rank)), row["claim"])))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of an earlier claims.csv (none if absent)."""
    import csv

    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _row(c: Claim, v: Verdict, seconds: dict[str, float]) -> dict[str, Any]:
    return {
        "claim": v.claim, "paper": c.paper, "figure": c.figure, "rule": describe_rule(c.rule),
        "paper_value": f"{c.paper_value:g}", "effect": f"{v.effect:.4g}", "lo": f"{v.lo:.4g}",
        "hi": f"{v.hi:.4g}", "verdict": v.verdict, "seeds": v.seeds,
        "seconds": f"{seconds.get(v.claim, math.nan):.1f}",
        "detail": "; ".join(f"{k} {x:.4g}" for k, x in v.detail.items()),
        "failures": "; ".join(v.failures)}


def plot(claim: Claim, verdict: Verdict, records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Effect vs budget from the trajectories, the paper's figure and the thresholds as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = effect_curve(claim, records)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(xs, ys, marker="o", label="measured (all seeds)")
    finite = ys[np.isfinite(ys)]
    top = max([*finite, claim.paper_value, claim.rule.reproduced, 1.0]) * 1.15
    infinite = np.isposinf(ys)
    if infinite.any():  # the method reached 0 where a baseline did not: drawn at the top
        ax.plot(xs[infinite], np.full(infinite.sum(), top), "^", color="tab:blue",
                label="infinite ratio (method at 0)")
    if math.isfinite(verdict.effect):
        ax.errorbar([xs[-1]], [verdict.effect],
                    yerr=[[max(verdict.effect - verdict.lo, 0)], [max(verdict.hi - verdict.effect, 0)]],
                    color="black", capsize=4, fmt="none", label="95% bootstrap interval")
    # wide and pale, under the thresholds: a threshold equal to the paper's figure stays visible
    ax.axhline(claim.paper_value, color="tab:green", ls="--", lw=3, alpha=0.45, zorder=1,
               label=f"paper: {claim.paper_value:g}")
    if claim.rule.kind == "match":  # agreement: the tolerances lie on both sides of 0
        for sign in (1, -1):
            ax.axhline(sign * claim.rule.reproduced, color="tab:gray", ls=":",
                       label=f"reproduced within ±{claim.rule.reproduced:g}" if sign > 0 else None)
            ax.axhline(sign * claim.rule.partly, color="tab:red", ls=":",
                       label=f"partly within ±{claim.rule.partly:g}" if sign > 0 else None)
    else:
        ax.axhline(claim.rule.reproduced, color="tab:gray", ls=":", zorder=2,
                   label=f"reproduced from {claim.rule.reproduced:g}")
        ax.axhline(claim.rule.partly, color="tab:red", ls=":", zorder=2,
                   label=f"partly from {claim.rule.partly:g}")
    ax.set_xlabel("share of the budget spent (each run's largest counter: evaluations, "
                  "gradients or steps)", fontsize=8)
    ax.set_ylabel({"ratio": "effect (ratio)", "success": "effect (share of seeds)",
                   "match": "effect (difference of shares)"}.get(claim.rule.kind, "effect"))
    ax.set_title(f"{outputs.literal(claim.name)}: {verdict.verdict}", fontsize=10)
    return _save(fig, ax, path)


def _compact(frame):
    """claims.csv as the report shows it: the verdict and the measured effect with its
    interval first, the paper's figure beside it, the rule last (the CSV keeps every column)."""
    def number(text: str) -> str:
        try:
            return f"{float(text):.3g}"
        except ValueError:
            return text or "-"

    return frame.assign(
        measured=[f"{number(e)} [{number(lo)}, {number(hi)}]"
                  for e, lo, hi in zip(frame["effect"], frame["lo"], frame["hi"])],
        source=frame["paper"] + ": " + frame["figure"],
        run_s=[number(s) for s in frame["seconds"]],
    )[["claim", "verdict", "measured", "paper_value", "source", "seeds", "run_s", "rule"]].rename(
        columns={"paper_value": "paper", "run_s": "run s", "source": "paper, figure"})


def html_section(results: Path, out: Path) -> str:
    """The report's "Claims" block: claims.csv as a table and each claim's plot, when
    ``zgbench claims`` wrote them in ``results`` or its parent (``OUT/records``); else ""."""
    import shutil
    from html import escape

    import pandas as pd

    found = [d for d in (Path(results), Path(results).parent) if (d / "claims.csv").is_file()]
    if not found:
        return ""
    where = found[0]
    frame = pd.read_csv(where / "claims.csv", keep_default_na=False)
    figures = []
    for name in frame["claim"]:
        # OUT/claims/NAME.png as `zgbench claims` writes it, NAME.png in a published folder
        png = next((p for p in (where / "claims" / f"{name}.png", where / f"{name}.png")
                    if p.is_file()), None)
        if png is not None:
            (out / "claims").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, out / "claims" / png.name)
            figures.append(f'<figure><img src="claims/{escape(png.name)}" alt="{escape(name)}">'
                           f"<figcaption>{escape(name)}</figcaption></figure>")
    table = _compact(frame).to_html(index=False, classes="data claims", border=0, escape=True)
    return ('<section id="claims"><h2>Claims</h2><p class="note">Each seed paper\'s claim, '
            "judged by the rule declared in tasks/claims.toml before the run: measured effect "
            "with its 95% bootstrap interval over seeds, the paper's figure, the verdict.</p>"
            f'<div class="scroll">{table}</div><div class="plots three">{"".join(figures)}'
            "</div></section>")
