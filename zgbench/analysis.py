"""The field's analyses next to the boards: fixed-target runtimes (:mod:`zgbench.targets`) and
significance tests (:mod:`zgbench.significance`), written by ``zgbench leaderboard`` into
``targets/`` and ``significance/`` under its folder; :func:`sections` lists them for the
report (titles, CSVs, PNGs) without reading the records again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """A part of the report: a title, what it shows in words, and its files (paths relative
    to the leaderboard folder), tables before pictures."""

    title: str
    text: str
    csvs: list[str] = field(default_factory=list)
    pngs: list[str] = field(default_factory=list)


def write(out: str | Path, computed: dict[str, Any]) -> list[Section]:
    """Write both folders from :func:`zgbench.leaderboard.compute`'s dict (its runs that
    count, one spec per optimizer name); returns :func:`sections`. Without the ``analysis``
    extra the significance tests are skipped with a warning that names it."""
    from zgbench import significance, targets

    runs = computed["runs"]
    counted = runs[runs["counted"]]
    keep = set(zip(counted["task_id"], counted["spec"]))
    records = [r for r in computed["records"]
               if (r["task"]["canonical"], r["optimizer"]["label"]) in keep]
    available = significance.available()
    key = _key(records, computed["tasks"], runs, available)
    stamp = Path(out) / KEY_FILE
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == key:
        return sections(out)  # the same inputs and code: the files there are these
    stamp.unlink(missing_ok=True)  # until both folders are whole again
    targets.write(out, records, dict(zip(runs["task_id"], runs["family"])))
    if available:
        significance.write(out, computed["tasks"], runs, dict(zip(runs["task"], runs["family"])))
    else:
        warnings.warn(f"no significance tests (scikit-posthocs or scipy missing): pip install "
                      f"'zgbench[{significance.EXTRA}]'.", stacklevel=2)
    from zgbench.store import atomic_write_text

    atomic_write_text(stamp, key)
    return sections(out)


#: Beside the two folders: the key of what they were computed from. An unchanged leaderboard
#: rerun then skips the analyses (and importing the statistics libraries: most of its time).
KEY_FILE = "analysis.key"


def _key(records: list[dict[str, Any]], tables: dict[str, Any], runs: Any,
         available: bool) -> str:
    """What the analyses' files depend on: their inputs, this code and the libraries'
    versions (read from the installed metadata, not imported)."""
    import hashlib
    import importlib.metadata
    import pickle

    from zgbench import significance, targets

    digest = hashlib.blake2b(digest_size=16)
    digest.update(pickle.dumps((records, tables, runs, available), protocol=4))
    for module in (__file__, significance.__file__, targets.__file__):
        digest.update(Path(module).read_bytes())
    for dist in ("scipy", "scikit-posthocs", "matplotlib", "pandas", "numpy"):
        try:
            digest.update(f"{dist}={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dist}=none".encode())
    return digest.hexdigest()


def sections(out: str | Path) -> list[Section]:
    """The report's sections for the files present under the leaderboard folder ``out``
    (empty where ``zgbench leaderboard`` did not write them)."""
    from zgbench import significance, targets

    out = Path(out)
    found = []
    folder = out / targets.FOLDER
    if (folder / "art.csv").is_file():
        found.append(Section(
            "Fixed-target runtimes",
            f"Per task, {targets.N_TARGETS} targets log-spaced from the start to the reference "
            f"({targets.DECADES:g} decades of the gap); each run's runtime to each target in "
            "loss evaluations, gradient evaluations, steps and seconds (never added); aRT "
            "with success counts (COCO); ECDFs of (run, target) pairs per task and family.",
            _rel(out, folder, ["tasks.csv", "art.csv", "runtimes.csv", "ecdf.csv"]),
            _rel(out, folder, sorted(p.name for p in folder.glob("family_*.png")))
            + _rel(out, folder, sorted(p.name for p in folder.glob("*.png")
                                       if not p.name.startswith("family_")))))
    folder = out / significance.FOLDER
    if (folder / "pairs.csv").is_file():
        found.append(Section(
            "Significance",
            "Per task, pairwise Mann-Whitney rank-sum tests on final values with Holm's "
            "correction (tasks.csv marks who is tied with the best); over tasks, Friedman's "
            "test with Nemenyi's critical-difference diagrams (overall and per family).",
            _rel(out, folder, ["tasks.csv", "pairs.csv", "friedman.csv", "ranks.csv"]),
            _rel(out, folder, sorted(p.name for p in folder.glob("cd_*.png")))))
    return found


def _rel(out: Path, folder: Path, names: list[str]) -> list[str]:
    return [str((folder / n).relative_to(out)) for n in names if (folder / n).is_file()]
