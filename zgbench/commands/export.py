"""Export a results folder to the data formats of the field's analysis tools: COCO's (read by
cocopp: .info, .dat, .tdat) or IOHprofiler's (read by IOHanalyzer and iohinspector: .json and
.dat), one folder per optimizer, with OUT/tasks.csv mapping function ids to tasks.

Functions are tasks, instances are repetitions, the evaluation count is one spend axis
(--axis: loss evaluations by default, gradient evaluations or steps; never their sum). See
zgbench/export.py for the mapping (COCO's gap to fopt, IOHprofiler's raw metric).

Examples:
  zgbench export --format coco results/quick -o export/coco
  zgbench export --format ioh results/quick -o export/ioh --axis grads

cocopp's full pipeline (HTML, figures) compares with BBOB's reference algorithm, which has no
entry for these tasks; switch it off:
  python -c "import cocopp; cocopp.testbedsettings.GECCOBBOBTestbed.settings[
  'reference_algorithm_filename'] = ''; cocopp.main('export/coco/cma-es export/coco/cge')"
"""

from __future__ import annotations

import argparse

HELP = "export a results folder in COCO's (cocopp) or IOHprofiler's data format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="results folder written by zgbench run")
    parser.add_argument("--format", dest="fmt", required=True, choices=("coco", "ioh"),
                        help="coco: cocopp's .info/.dat/.tdat; ioh: IOHprofiler's .json/.dat")
    parser.add_argument("-o", "--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--axis", default="evals", choices=("evals", "grads", "steps"),
                        help="the spend counted as evaluations (default: loss evaluations)")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from zgbench import export

    written = export.export(args.results, args.out, args.fmt, args.axis)
    console = Console()
    if written["skipped"]:
        console.print(f"left out (no {args.axis} spent): {', '.join(written['skipped'])}; "
                      f"export them with --axis grads or --axis steps", markup=False)
    console.print(f"{len(written['folders'])} optimizers, {len(written['functions'])} tasks -> "
                  f"{args.out} ({args.fmt}; function ids in {args.out}/tasks.csv)", markup=False)
    return 0
