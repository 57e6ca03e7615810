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
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import zgbench
from zgbench import leaderboard, outputs, report_plots
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

#: Columns a table shows until its "all columns" box is ticked (the CSV beside it has all).
KEY_COLUMNS = {
    "board": ["position", "optimizer", "mean_rank", "rank_lo", "rank_hi", "coverage", "wins",
              "n/a", "failed_tasks", "norm_score", "norm_score_lo", "norm_score_hi"],
    "task": ["rank", "optimizer", "spec", "median", "tied_with_best", "median_lo", "median_hi",
             "final_over_start", "norm_score", "runs_ok", "evals", "grads", "seconds",
             "beats_start", "beats_baseline"],
}
#: A task table's columns that hold one value for the whole task: said once above the table.
TASK_CONSTANTS = ["separates", "start_lo", "start_hi", "best_known", "baseline_median"]
#: Files of the page that come with zgbench (report_assets/), copied next to index.html.
ASSETS = ["report.css", "report.js", "tablesort.min.js", "tablesort.LICENCE"]
ASSET_DIR = Path(__file__).parent / "report_assets"


@dataclass
class Section:
    """A section of the page after the tasks: other analyses' tables and figures (files they
    wrote into the report folder) in the page's style. ``tables``: (caption, frame, CSV file
    name relative to the page or ""); ``figures``: PNG paths relative to the page, shown
    and linked; ``plots``: interactive figure specs (:mod:`zgbench.report_plots`) by id."""

    title: str
    anchor: str
    note: str = ""
    tables: list[tuple[str, pd.DataFrame, str]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    plots: dict[str, dict[str, Any]] = field(default_factory=dict)


#: A section's CSV with more rows than this is linked, not shown (art.csv: 4,600 rows).
MAX_SECTION_ROWS = 400
#: One with more rows than this is shown folded (its summary line names it).
OPEN_SECTION_ROWS = 40


def files_section(out: Path, title: str, anchor: str, note: str = "",
                  csvs: Iterable[str] = (), pngs: Iterable[str] = ()) -> Section | None:
    """A :class:`Section` of the CSVs (sortable tables) and PNGs (linked figures) that exist
    in ``out`` among ``csvs`` and ``pngs`` (glob patterns relative to ``out``); None when
    none does, so an analysis that wrote nothing adds no empty section."""
    tables = [(p.stem, pd.read_csv(p), p.relative_to(out).as_posix())
              for pattern in csvs for p in sorted(out.glob(pattern))]
    figures = [p.relative_to(out).as_posix() for pattern in pngs for p in sorted(out.glob(pattern))]
    if not tables and not figures:
        return None
    return Section(title, anchor, note, tables, figures)


def extra_sections(out: Path, written: dict[str, Any]) -> list[Section]:
    """The sections other analyses add to every report, from the files
    :func:`zgbench.leaderboard.write` left in ``out`` (``written``: what it returned): the
    fixed-target runtimes and significance tests (:func:`zgbench.analysis.sections`). Add
    more here, e.g. ``files_section(out, "Title", "anchor", csvs=["x/*.csv"],
    pngs=["x/*.png"])`` (None when nothing was written)."""
    from zgbench import analysis

    found = [files_section(out, s.title, f"extra-{leaderboard.slug(s.title).lower()}", s.text,
                           s.csvs, s.pngs) for s in analysis.sections(out)]
    return [s for s in found if s is not None]


def _section_tables(section: Section) -> list[dict[str, Any]]:
    """A section's tables as the page shows them: small ones open, larger ones folded, the
    largest only linked (their rows would make the page long and slow)."""
    shown = []
    for caption, frame, csv in section.tables:
        rows = len(frame)
        shown.append({"caption": caption, "csv": csv, "rows": rows,
                      "open": rows <= OPEN_SECTION_ROWS,
                      "html": html_table(frame, csv=csv) if rows <= MAX_SECTION_ROWS else ""})
    return shown


def _task_figures(sections: list[Section], tasks: list[dict[str, Any]]) -> None:
    """Move a section's per-task figures (a PNG named after a task: targets/<task>.png) into
    that task's view, where one task at a time is shown; the section keeps the others."""
    by_name = {t["slug"]: t for t in tasks}
    for section in sections:
        kept = []
        for png in section.figures:
            task = by_name.get(Path(png).stem)
            if task is None:
                kept.append(png)
            else:
                task["figures"].append({"title": section.title, "path": png})
        section.figures = kept


def _significance(out: Path) -> pd.DataFrame:
    """significance/tasks.csv (Holm-corrected rank-sum tests against each task's best), or
    an empty frame where the leaderboard wrote none."""
    path = out / "significance" / "tasks.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["task", "optimizer"])
    return pd.read_csv(path, keep_default_na=True)


def build(results: str | Path, out: str | Path, title: str = "zgbench report",
          tuned: str | Path | None = None, baseline: str | None = None,
          claims: str | Path | None = None,
          sections: Iterable[Section] = ()) -> Path:
    """Write the leaderboard files and ``index.html`` into ``out``; return the page's path.
    With ``tuned`` (the results of a suite written by ``zgbench tune``) the page shows both
    tracks: the tracks table, the tuned overall board and each task's tuned table. With
    ``claims`` (a folder holding claims.csv: ``zgbench claims``'s output or a published one)
    the page opens with its Claims section; without, one beside the records is used.
    ``sections``: more sections after the tasks (:class:`Section`), besides
    :func:`extra_sections`."""
    from jinja2 import Environment, FileSystemLoader

    results, out = Path(results), outputs.checked(results, out)  # RESULTS/report a link: refused
    seed_figures(results / "leaderboard", out)
    if tuned is not None:
        seed_figures(Path(tuned) / "leaderboard", out / "tuned")
    written = (leaderboard.write_tracks(results, tuned, out, baseline) if tuned is not None
               else leaderboard.write(results, out, baseline))
    records = list(ResultStore(results))
    pictures = copy_artifacts(records, results, out)
    copy_assets(out)
    order = leaderboard.board_order(written["overall"])
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_task.setdefault(r["task"]["label"], []).append(r)
    tuned_tasks = written["tuned"]["tasks"] if tuned is not None else {}
    plots: dict[str, dict[str, Any]] = {}
    significance = _significance(out)
    tasks = [_task_context(label, table, pictures.get(label, []), out, by_task.get(label, []),
                           written["profiles"], plots, tuned_tasks.get(label),
                           significance[significance["task"] == label])
             for label, table in written["tasks"].items()]
    extra = [*sections, *extra_sections(out, written)]
    _task_figures(extra, tasks)
    for section in extra:
        plots.update(section.plots)
    shown_sections = [{"section": s, "tables": _section_tables(s)} for s in extra]
    plots.update(_board_plots(written, order))
    overall = written["overall"]
    main = overall[overall["board"] == "main"] if "board" in overall else overall
    partial = overall[overall["board"] == "partial"] if "board" in overall else overall[:0]
    environment = Environment(loader=FileSystemLoader(ASSET_DIR), autoescape=True)
    environment.globals["table"] = html_table
    page = environment.get_template("index.html.j2").render(
        title=title, records=len(records), tasks=tasks, results=str(results),
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=zgbench.__version__, explain=_explain(written["declarations"]),
        overall=html_table(main, "board", "overall.csv"),
        partial=html_table(partial, "board") if len(partial) else "",
        caveats=sorted(written["declarations"].caveats.items()),
        families=_families(written["families"]),
        tracks=html_table(written["tracks"], csv="tracks.csv") if tuned is not None else "",
        tracks_note=_tracks_note(written) if tuned is not None else "",
        tuned_overall=(html_table(written["tuned"]["overall"], "board", "tuned/overall.csv")
                       if tuned is not None else ""),
        win_rate=html_table(written["win_rate"].reset_index(), csv="win_rate.csv"),
        machines=html_table(pd.DataFrame(json.loads((out / "machine.json").read_text()))),
        plugins=html_table(plugin_versions(records)), sections=shown_sections,
        colours=report_plots.colours(order + sorted({n for t in tasks for n in t["names"]}
                                                    - set(order))),
        plots=plots, claims=claims_html(Path(claims) if claims is not None else results, out))
    path = out / "index.html"
    atomic_write_text(path, page)
    return path


def seed_figures(board: Path, out: Path) -> int:
    """Copy the PNGs of the leaderboard ``zgbench run`` wrote (``RESULTS/leaderboard``) into
    ``out`` where ``out`` has none of that name yet, and return how many. The leaderboard
    redraws a figure only when its PNG does not hold the key of what it shows (its text
    chunk), so figures of unchanged records are not drawn twice (run, then report); a
    stale one holds another key and is redrawn. Symbolic links are not followed."""
    if board.is_symlink() or not board.is_dir() or board.resolve() == out.resolve():
        return 0
    copied = 0
    for png in sorted(board.glob("*.png")):
        target = out / png.name
        if png.is_symlink() or not png.is_file() or target.exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        _copy_bytes(png.read_bytes(), target)
        copied += 1
    return copied


def copy_assets(out: Path) -> None:
    """Copy the page's scripts and style (:data:`ASSETS`) and plotly.js (from the plotly
    package, the one file the interactive plots need) next to the page, so the folder opens
    from disk with no server and no network. A file already there with the same bytes is
    left alone (plotly.js is 4.8 MB)."""
    from plotly.offline import get_plotlyjs

    for name in ASSETS:
        _copy_bytes((ASSET_DIR / name).read_bytes(), out / name)
    _copy_bytes(get_plotlyjs().encode(), out / "plotly.min.js")


def _copy_bytes(data: bytes, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == len(data) and dst.read_bytes() == data:
        return
    atomic_write(dst, lambda f: f.write(data), binary=True)


def _board_plots(written: dict[str, Any], order: list[str]) -> dict[str, dict[str, Any]]:
    """The interactive win-rate matrix and overall runtime ECDF."""
    plots = {"win-rate": report_plots.win_rate(written["win_rate"], order)}
    profiles = written["profiles"]
    overall = report_plots.ecdf(profiles[profiles["scope"] == "all"], right=1.0)
    if overall is not None:
        plots["profiles"] = overall
    return plots


def _explain(declarations) -> dict[str, str]:
    """The notes under each table, naming the baseline the suite declared."""
    baseline = (f"the suite's baseline, {declarations.baseline}" if declarations.baseline
                else "a baseline (none declared here: no normalised scores)")
    return {**_EXPLAIN, "overall": _EXPLAIN["overall"].format(baseline=baseline)}


def claims_html(results: Path, out: Path) -> str:
    """The "Claims" section when ``results`` (or its parent) holds a claims.csv."""
    from zgbench import claims

    return claims.html_section(results, out)


def html_table(frame: pd.DataFrame, kind: str | None = None, csv: str = "") -> str:
    """A DataFrame as a sortable, filterable HTML table (``report.js``): escaped, numbers to
    4 significant digits with their full value kept for sorting (``data-sort``), blanks -.
    With ``kind`` (a key of :data:`KEY_COLUMNS`) the other columns are hidden until the
    table's "all columns" box is ticked, so the page fits the window; ``csv``: the file it
    came from, linked. A ``caveat`` column is left out: the page lists the caveats once,
    above the boards."""
    frame = frame.drop(columns=["caveat"], errors="ignore")
    key = set(KEY_COLUMNS.get(kind or "", frame.columns))
    columns = list(frame.columns)
    numeric = {c: pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(
        frame[c]) for c in columns}
    head = "".join(
        f'<th{_attrs(numeric[c], c not in key)} title="{escape(str(c))}">'
        f'{escape(str(c)).replace("_", "_<wbr>")}</th>' for c in columns)
    rows = []
    for values in frame.itertuples(index=False, name=None):
        cells = []
        for c, v in zip(columns, values):
            classes = " ".join(n for n, on in (("extra", c not in key),
                                                ("text", not numeric[c])) if on)
            attrs = f' class="{classes}"' if classes else ""
            if numeric[c]:
                sort = "" if _missing(v) else repr(float(v))
                cells.append(f'<td{attrs} data-sort="{sort}">{_cell(v)}</td>')
            else:
                cells.append(f"<td{attrs}>{_cell(v)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    hidden = sum(c not in key for c in columns)
    tools = ('<div class="tools"><input type="search" class="filter" placeholder="filter rows '
             '(words, all must match)" aria-label="filter rows"><span class="count"></span>'
             + (f'<label><input type="checkbox" class="allcols"> all {len(columns)} columns '
                f'({hidden} more)</label>' if hidden else "")
             + (f' <a href="{escape(csv)}">CSV</a>' if csv else "") + "</div>")
    return (f'<div class="table">{tools}<div class="scroll"><table class="data">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div></div>")


def _attrs(numeric: bool, hidden: bool) -> str:
    return ((' data-sort-method="float"' if numeric else "")
            + (' class="extra"' if hidden else ""))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _cell(value: Any) -> str:
    """A cell's text: - for a blank, 4 significant digits for a non-integer number."""
    if _missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return _fmt(float(value))
    return escape(str(value))


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
                _copy_bytes(src.read_bytes(), dst)  # already there (a rebuild): not rewritten
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
             "table": html_table(group.drop(columns=["family", "tasks"]), "board")}
            for family, group in frame.groupby("family", sort=True)]


def _tracks_note(written: dict[str, Any]) -> str:
    """Kendall's tau between the tracks' overall positions (main tables of both)."""
    from zgbench.boards import kendall_tau

    tracks = written["tracks"]
    tau = kendall_tau(tracks["default_position"], tracks["tuned_position"])
    return ("" if math.isnan(tau) else
            f"Kendall's tau between the two tracks' positions: {tau:.2f} (1 = same order).")


def _task_context(label: str, table: pd.DataFrame, pictures: list[dict[str, Any]],
                  out: Path, records: list[dict[str, Any]], profiles: pd.DataFrame,
                  plots: dict[str, dict[str, Any]],
                  tuned: pd.DataFrame | None = None,
                  significance: pd.DataFrame | None = None) -> dict[str, Any]:
    """What the page shows of one task; its interactive plots go into ``plots`` by id.
    ``significance``: the task's rows of significance/tasks.csv, whose ``tied_with_best``
    (no Holm-corrected rank-sum difference from the best) and ``p_holm_vs_best`` join the
    table."""
    name = leaderboard.slug(label)
    profile = f"{name}.profile.png"
    anchor = f"task-{name}"
    plots[f"{anchor}-convergence"] = report_plots.convergence(records, table)
    ecdf = report_plots.ecdf(profiles[profiles["scope"] == label],
                             right=report_plots.most_spent(records, profiles, label))
    if ecdf is not None:
        plots[f"{anchor}-ecdf"] = ecdf
    shown = table.drop(columns=["reference_note", "metric", "direction", "start", "reference",
                                "counted", *TASK_CONSTANTS], errors="ignore")
    if "spec" in shown and (shown["spec"] == shown["optimizer"]).all():
        shown = shown.drop(columns=["spec"])  # every optimizer ran its defaults
    if significance is not None and len(significance):
        marks = significance[["optimizer", "tied_with_best", "p_holm_vs_best"]]
        shown = shown.merge(marks.drop_duplicates("optimizer"), on="optimizer", how="left")
        at = list(shown.columns).index("median") + 1 if "median" in shown else len(shown.columns)
        shown.insert(at, "tied_with_best", shown.pop("tied_with_best"))
    return {
        "tuned": None if tuned is None else {"table": html_table(tuned, "task",
                                                                 f"tuned/{name}.csv"),
                                             "plot": f"tuned/{name}.png"},
        "label": label, "anchor": anchor, "names": sorted(set(table["optimizer"])),
        "slug": name, "figures": [],
        "table": html_table(shown, "task", f"{name}.csv"),
        "metric": table["metric"].iloc[0], "csv": f"{name}.csv", "plot": f"{name}.png",
        "direction": "lower is better" if table["direction"].iloc[0] == "min"
        else "higher is better",
        "profile": profile if (out / profile).exists() else None,
        "ecdf": ecdf is not None,
        "grid": picture_grid(pictures, _rank_order(table)),
        "anchors": anchors_line(table), "constants": _constants(table),
        "winner": ", ".join(table.loc[table.get("rank") == 1, "optimizer"])
        if "rank" in table else "",
    }


def _constants(table: pd.DataFrame) -> str:
    """The task-wide columns of a task table (:data:`TASK_CONSTANTS`) in one line."""
    parts = []
    for column in TASK_CONSTANTS:
        if column in table and len(table):
            value = table[column].iloc[0]
            parts.append(f"{column} = {_cell(value) if not isinstance(value, str) else value}")
    return "; ".join(parts)


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
