"""The HTML report: one static page (no server, no script, nothing fetched from the network)
with everything a leaderboard holds, for people.

``build(results, out)`` writes the leaderboard files (:func:`zgbench.leaderboard.write`) into
``out``, copies the pictures tasks saved (record ``artifacts``, relative to the results folder)
next to the page under the same relative paths, and renders ``out/index.html`` with Jinja2:
the overall board (main and partial tables), the family boards, the win-rate matrix, the
runtime ECDFs, one section per task (ranked table, convergence plot, ECDF, pictures) and the
machines and versions the numbers came from. ``build(..., tuned=RESULTS2)`` adds the tuned
track (:mod:`zgbench.tuning`): both tracks side by side, the tuned board and tuned tables.
The statistics it shows are defined in :mod:`zgbench.stats` (Bayesmark-style normalised scores,
Turner et al. 2021; COCO runtime ECDFs, Hansen et al. 2021; percentile bootstrap, Efron &
Tibshirani 1993).
"""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

import zgbench
from zgbench import leaderboard, outputs
from zgbench.paths import UnsafePath, inside
from zgbench.record import repetition
from zgbench.store import RecordWarning, ResultStore, atomic_write, atomic_write_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
#: Optimizers whose pictures a task's grid shows (best ranked first); the rest stay linked.
MAX_PICTURE_ROWS = 12

_EXPLAIN = {
    "overall": "One row per optimizer (the spec each task used is in its table). Position by "
               "mean rank over the tasks ranked (lower is better; rank_lo/rank_hi: 95% "
               "bootstrap interval of the mean rank over seeds). Only optimizers ranked on at "
               "least half the tasks (coverage) get a position; the others are in the partial "
               "table below. norm_score: mean over tasks of the normalised median, 0 = best "
               "value any run reached, 1 = the median of {baseline}, clipped at 5 (failures). "
               "wins: tasks ranked first.",
    "partial": "Ranked on fewer than half the tasks: their mean rank is over too few tasks to "
               "compare with the table above (see the family boards).",
    "families": "The same board over each family's own tasks: methods that only run on one "
                "family (radiosity, pde) are compared there.",
    "tracks": "How to read the two tracks: default is every optimizer out of the box, tuned is "
              "every optimizer after the same number of tuning trials per task on seeds apart "
              "from these (zgbench tune); an optimizer that climbs only in the tuned track "
              "depends on its hyper-parameters, one that leads both is robust.",
    "task": "Median over seeds of the final primary metric (failed runs count as the worst "
            "value) with its 95% bootstrap interval (median_lo, median_hi), quartiles, "
            "normalised score and rank interval. separates: some optimizer's interval lies "
            "clear of the start's (start_lo, start_hi) and the baseline's (beats_start, "
            "beats_baseline); where it is False the board cannot yet say which optimizer to "
            "use.",
    "win_rate": "Share of (task, seed) pairs on which the row's optimizer ended better than the "
                "column's (ties count one half).",
    "profiles": "Fraction of (run, target) pairs reached against the share of the budget spent; "
                "targets are log-spaced between each task's median initial value and the best "
                "known value (COCO-style runtime ECDF, every task weighted equally).",
}

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
nav a { margin-right: 0.8em; } .note { color: #555; max-width: 60em; }
table.data { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; }
table.data th, table.data td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
table.data th { background: #f3f3f3; }
table.data td:first-child, table.data th:first-child { text-align: left; }
table.claims td, table.claims th { text-align: left; vertical-align: top; }
.scroll { overflow-x: auto; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; }
figure img { max-width: 560px; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
.caveats { font-size: 13px; background: #fff8e1; border-left: 3px solid #f0b400;
           padding: 0.3em 0.8em; margin: 0.6em 0; max-width: 60em; }
table.pictures td, table.pictures th { vertical-align: top; text-align: left; }
table.pictures img { max-width: 100%; width: 360px; border: 1px solid #eee; }
table.pictures img.reference { width: auto; }  /* its own size: one panel, not four */
table.pictures .metric { font-size: 12px; color: #555; }
p.anchors { font-size: 13px; margin: 0.3em 0; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="note">{{ records }} runs on {{ tasks|length }} tasks from <code>{{ results }}</code>;
generated {{ generated }} by zgbench {{ version }}.</p>
<nav>{% if claims %}<a href="#claims">claims</a>{% endif %}<a href="#overall">overall</a>{% if tracks %}<a href="#tracks">tracks</a>{% endif %}
<a href="#families">families</a><a href="#win-rate">win rate</a><a href="#profiles">profiles</a>
{% for task in tasks %}<a href="#{{ task.anchor }}">{{ task.label }}</a>{% endfor %}
<a href="#machine">machine</a></nav>
{{ claims|safe }}

{% if tracks %}<section id="tracks"><h2>Tracks: default and tuned</h2>
<p class="note">{{ explain.tracks }} {{ tracks_note }}</p>
{{ tracks|safe }}
</section>{% endif %}

<section id="overall"><h2>Overall{% if tracks %} (default track){% endif %}</h2>
<p class="note">{{ explain.overall }}</p>
{% if caveats %}<div class="caveats"><b>Read next to these numbers</b> (the suite's caveats:
its budgets are far below these methods' claims; the claims above judge them):<ul>
{% for name, text in caveats %}<li><b>{{ name }}</b>: {{ text }}</li>{% endfor %}</ul></div>{% endif %}
{{ overall|safe }}
{% if partial %}<h3>Partial coverage</h3><p class="note">{{ explain.partial }}</p>
{{ partial|safe }}{% endif %}
{% if tuned_overall %}<h3>Overall, tuned track</h3>
{{ tuned_overall|safe }}{% endif %}
</section>

<section id="families"><h2>Families</h2>
<p class="note">{{ explain.families }}</p>
{% for family in families %}<h3>{{ family.name }}</h3>
<p class="note">Tasks: {{ family.tasks }}</p>
{{ family.table|safe }}{% endfor %}
</section>

<section id="win-rate"><h2>Win rate</h2>
<p class="note">{{ explain.win_rate }}</p>
{{ win_rate|safe }}
<figure><img src="win_rate.png" alt="win-rate matrix"></figure>
</section>

<section id="profiles"><h2>Runtime profiles</h2>
<p class="note">{{ explain.profiles }}</p>
<figure><img src="profiles.png" alt="runtime ECDF over all tasks"></figure>
</section>

{% for task in tasks %}
<section id="{{ task.anchor }}" class="task"><h2>{{ task.label }}</h2>
<p class="note">Metric: <b>{{ task.metric }}</b> ({{ task.direction }}). {{ explain.task }}
Files: <a href="{{ task.csv }}">{{ task.csv }}</a></p>
<p class="anchors">{{ task.anchors }}</p>
{{ task.table|safe }}
<figure><img src="{{ task.plot }}" alt="convergence of {{ task.label }}">
<figcaption>median and interquartile range over seeds</figcaption></figure>
{% if task.tuned %}<h3>Tuned track</h3>
{{ task.tuned.table|safe }}
<figure><img src="{{ task.tuned.plot }}" alt="convergence of {{ task.label }}, tuned track">
<figcaption>tuned track: median and interquartile range over seeds</figcaption></figure>
{% endif %}
{% if task.profile %}<figure><img src="{{ task.profile }}" alt="runtime ECDF of {{ task.label }}">
<figcaption>runtime ECDF</figcaption></figure>{% endif %}
{% if task.grid %}<h3>Pictures</h3>
<p class="note">One row per optimizer (best rank first), one column per seed; each seed has its
own task instance, whose reference (the target) heads its column. Click a picture for full size.</p>
<table class="pictures"><thead><tr><th></th>
{% for seed in task.grid.seeds %}<th>seed {{ seed }}</th>{% endfor %}</tr></thead><tbody>
{% if task.grid.references %}<tr><th>reference</th>
{% for pic in task.grid.references %}<td>{% if pic %}<a href="{{ pic.path }}"><img class="reference" src="{{ pic.path }}" alt="reference, seed {{ pic.seed }}"></a>{% endif %}</td>{% endfor %}</tr>{% endif %}
{% for row in task.grid.rows %}<tr><th>{{ row.optimizer }}</th>
{% for pic in row.cells %}<td>{% if pic %}<a href="{{ pic.path }}"><img src="{{ pic.path }}" alt="{{ row.optimizer }}, seed {{ pic.seed }}"></a>
<div class="metric">{{ pic.metric }}</div>{% endif %}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% if task.grid.more %}<p class="note">{{ task.grid.more }} more optimizers' pictures under <code>artifacts/</code>.</p>{% endif %}
{% endif %}
</section>
{% endfor %}

<section id="machine"><h2>Machine and versions</h2>
{{ machines|safe }}
<h3>Plugins</h3>
{{ plugins|safe }}
</section>
</body>
</html>
"""


def build(results: str | Path, out: str | Path, title: str = "zgbench report",
          tuned: str | Path | None = None, baseline: str | None = None,
          claims: str | Path | None = None) -> Path:
    """Write the leaderboard files and ``index.html`` into ``out``; return the page's path.
    With ``tuned`` (the results of a suite written by ``zgbench tune``) the page shows both
    tracks: the tracks table, the tuned overall board and each task's tuned table. With
    ``claims`` (a folder holding claims.csv: ``zgbench claims``'s output or a published one)
    the page opens with its Claims section; without, one beside the records is used."""
    from jinja2 import Environment

    results, out = Path(results), outputs.checked(results, out)  # RESULTS/report a link: refused
    written = (leaderboard.write_tracks(results, tuned, out, baseline) if tuned is not None
               else leaderboard.write(results, out, baseline))
    records = list(ResultStore(results))
    pictures = copy_artifacts(records, results, out)
    tuned_tasks = written["tuned"]["tasks"] if tuned is not None else {}
    tasks = [_task_context(label, table, pictures.get(label, []), out, tuned_tasks.get(label))
             for label, table in written["tasks"].items()]
    overall = written["overall"]
    main = overall[overall["board"] == "main"] if "board" in overall else overall
    partial = overall[overall["board"] == "partial"] if "board" in overall else overall[:0]
    page = Environment(autoescape=True).from_string(TEMPLATE).render(
        title=title, records=len(records), tasks=tasks, results=str(results),
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=zgbench.__version__, explain=_explain(written["declarations"]),
        overall=html_table(main), partial=html_table(partial) if len(partial) else "",
        caveats=sorted(written["declarations"].caveats.items()),
        families=_families(written["families"]),
        tracks=html_table(written["tracks"]) if tuned is not None else "",
        tracks_note=_tracks_note(written) if tuned is not None else "",
        tuned_overall=html_table(written["tuned"]["overall"]) if tuned is not None else "",
        win_rate=html_table(written["win_rate"].reset_index()),
        machines=html_table(pd.DataFrame(json.loads((out / "machine.json").read_text()))),
        plugins=html_table(plugin_versions(records)),
        claims=claims_html(Path(claims) if claims is not None else results, out))
    path = out / "index.html"
    atomic_write_text(path, page)
    return path


def _explain(declarations) -> dict[str, str]:
    """The notes under each table, naming the baseline the suite declared."""
    baseline = (f"the suite's baseline, {declarations.baseline}" if declarations.baseline
                else "a baseline (none declared here: no normalised scores)")
    return {**_EXPLAIN, "overall": _EXPLAIN["overall"].format(baseline=baseline)}


def claims_html(results: Path, out: Path) -> str:
    """The "Claims" section when ``results`` (or its parent) holds a claims.csv."""
    from zgbench import claims

    return claims.html_section(results, out)


def html_table(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table (escaped; numbers to 4 significant digits; blanks -).
    A ``caveat`` column is left out: the page lists the caveats once, above the boards."""
    frame = frame.drop(columns=["caveat"], errors="ignore")
    nullable = [c for c in frame.columns if str(frame[c].dtype) == "Int64"]
    frame = frame.astype({c: float for c in nullable})  # positions: NA shows as -, not <NA>
    table = frame.to_html(index=False, classes="data", border=0, na_rep="-", escape=True,
                          float_format=_fmt)
    return f'<div class="scroll">{table}</div>'


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def copy_artifacts(records: list[dict[str, Any]], results: Path,
                   out: Path) -> dict[str, list[dict[str, Any]]]:
    """Copy every record's pictures from ``results`` to ``out`` (same relative path; other
    artifacts, such as the stored θ, stay behind); return them per task label, ordered by
    optimizer and seed, each with its optimizer, seed, metric and whether it is the task's
    reference (``reference.*``), for the grid.

    A record's paths are data: one that leaves either folder or passes through a symbolic
    link (:func:`zgbench.paths.inside`) is skipped with a warning naming the record, so a
    crafted results folder can neither read nor write outside them."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r["optimizer"]["label"], repetition(r))):
        for rel in r.get("artifacts") or []:
            try:
                src, dst = inside(results, rel), inside(out, rel)
            except UnsafePath as exc:
                warnings.warn(f"record {r.get('run_id')!r} ({_describe(r)}): artifact skipped: "
                              f"{exc}", RecordWarning, stacklevel=2)
                continue
            if not src.is_file() or src.suffix.lower() not in IMAGE_SUFFIXES:
                continue  # moved or deleted since the run, or not a picture
            if src != dst:
                atomic_write(dst, lambda f, s=src: f.write(s.read_bytes()), binary=True)
            by_task.setdefault(r["task"]["label"], []).append({
                "path": Path(rel).as_posix(), "optimizer": r["optimizer"]["label"],
                "seed": repetition(r), "reference": src.stem == "reference",
                "metric": metric_caption(r)})
    return by_task


def metric_caption(record: dict[str, Any]) -> str:
    """``metric = value`` of a run's final primary metric (n/a where it is missing or not
    finite): the caption of its picture here and in ``zgbench show``'s sheets."""
    name = record["task"]["primary_metric"]
    value = ((record.get("final") or {}).get("metrics") or {}).get(name)
    if value is None or not math.isfinite(value):
        return f"{name} = n/a"
    return f"{name} = {value:.4g}"


def picture_grid(pictures: list[dict[str, Any]], order: list[str]) -> dict[str, Any] | None:
    """The task's pictures as a grid: a column per seed headed by that seed's reference, a
    row per optimizer in ``order`` (best rank first; unranked ones after, by name), the
    first picture of each run in its cell. None without pictures."""
    if not pictures:
        return None
    seeds = sorted({p["seed"] for p in pictures})
    references = {p["seed"]: p for p in pictures if p["reference"]}
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    for p in pictures:
        if not p["reference"]:
            cells.setdefault(p["optimizer"], {}).setdefault(p["seed"], p)
    names = [o for o in order if o in cells] + sorted(set(cells) - set(order))
    rows = [{"optimizer": o, "cells": [cells[o].get(s) for s in seeds]}
            for o in names[:MAX_PICTURE_ROWS]]
    return {"seeds": seeds, "rows": rows, "more": max(0, len(names) - MAX_PICTURE_ROWS),
            "references": [references.get(s) for s in seeds] if references else []}


def _describe(record: dict[str, Any]) -> str:
    return (f"{record['task']['label']} x {record['optimizer']['label']}, "
            f"seed {repetition(record)}")


def _families(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One table per family of the long ``families.csv`` frame."""
    if frame.empty:
        return []
    return [{"name": family, "tasks": group["tasks"].iloc[0],
             "table": html_table(group.drop(columns=["family", "tasks"]))}
            for family, group in frame.groupby("family", sort=True)]


def _tracks_note(written: dict[str, Any]) -> str:
    """Kendall's tau between the tracks' overall positions (main tables of both)."""
    from zgbench.boards import kendall_tau

    tracks = written["tracks"]
    tau = kendall_tau(tracks["default_position"], tracks["tuned_position"])
    return ("" if math.isnan(tau) else
            f"Kendall's tau between the two tracks' positions: {tau:.2f} (1 = same order).")


def _task_context(label: str, table: pd.DataFrame, pictures: list[dict[str, Any]],
                  out: Path, tuned: pd.DataFrame | None = None) -> dict[str, Any]:
    name = leaderboard.slug(label)
    profile = f"{name}.profile.png"
    return {
        "tuned": None if tuned is None else {"table": html_table(tuned),
                                             "plot": f"tuned/{name}.png"},
        "label": label, "anchor": f"task-{name}",
        "table": html_table(table.drop(columns=["reference_note"], errors="ignore")),
        "metric": table["metric"].iloc[0], "csv": f"{name}.csv", "plot": f"{name}.png",
        "direction": "lower is better" if table["direction"].iloc[0] == "min"
        else "higher is better",
        "profile": profile if (out / profile).exists() else None,
        "grid": picture_grid(pictures, _rank_order(table)),
        "anchors": anchors_line(table),
    }


def anchors_line(table: pd.DataFrame) -> str:
    """The task's start and reference in words, above its table (both are also columns):
    the two values every optimizer's median should be read between."""
    metric = table["metric"].iloc[0]
    values = {c: float(table[c].iloc[0]) if c in table and len(table) else math.nan
              for c in ("start", "reference")}
    note = str(table["reference_note"].iloc[0]) if "reference_note" in table else ""
    note = "" if note == "nan" else note
    start = _fmt(values["start"]) if not math.isnan(values["start"]) else "unknown"
    reference = ("none" if math.isnan(values["reference"]) else
                 _fmt(values["reference"]) + (f" ({note})" if note else ""))
    return (f"{metric} of the start θ₀: {start}; of the reference: {reference} (medians over "
            "the task's instances; final_over_start: each optimizer's median final / start).")


def _rank_order(table: pd.DataFrame) -> list[str]:
    """The task table's optimizers (labels) best rank first."""
    if "rank" not in table:
        return list(table["optimizer"])
    return list(table.sort_values(["rank", "optimizer"], na_position="last")["optimizer"])


def plugin_versions(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The plugins (and their versions) behind the tasks and optimizers of the records."""
    rows = set()
    for r in records:
        for kind in ("task", "optimizer"):
            part = r[kind]
            rows.add((kind, part["name"], part.get("plugin", "?"), part.get("plugin_version", "?")))
    return pd.DataFrame(sorted(rows), columns=["kind", "name", "plugin", "version"])
