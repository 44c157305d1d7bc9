"""``fitlab demo``: notebooks 01-03, the workshop (00, static) and the prediction report
(05), and the ``fit_default`` grid with report 04."""

from __future__ import annotations

import time
from pathlib import Path

from fitlab.cli.common import EXIT_FAILED, at_least, workers_default

__all__ = ["add_parser", "cmd_demo", "DEMO_NOTEBOOKS", "DEMO_EXTRA", "DEMO_GRID"]

DEMO_NOTEBOOKS = ("01_simulate_design.ipynb", "02_fit_hierarchical.ipynb", "03_cace.ipynb")
#: Notebooks run after those, each with its own extra parameters: the workshop without its
#: widgets (a static page), and the prediction study (about 1-2 minutes).
DEMO_EXTRA = (("00_workshop.ipynb", {"interactive": False}), ("05_prediction.ipynb", {}))
DEMO_GRID = "params/grids/fit_default.yaml"


def add_parser(sub) -> None:
    s = sub.add_parser("demo", help="notebooks 01-03, 00 and 05, and the fit_default grid "
                       "with report 04")
    s.add_argument("--workers", type=int, default=workers_default())
    s.add_argument("--out", default="outputs")
    s.add_argument("--grid", default=None, help=f"grid file (default {DEMO_GRID})")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    """Run the demo notebooks into ``--out/demo/``, then the grid and its report."""
    from fitlab.cli.batch import report_batch
    from fitlab.grid import load_grid
    from fitlab.runner import describe, run_notebooks
    from fitlab.study import notebooks_dir, run_grid

    at_least(args.workers, "--workers")
    t0 = time.perf_counter()
    repo = notebooks_dir().parent
    grid = Path(args.grid) if args.grid else repo / DEMO_GRID
    load_grid(grid)  # refuse an invalid grid before running anything
    demo_dir = Path(args.out) / "demo"
    default = repo / "params" / "fit_individual.yaml"
    params = {"scenario": str(default) if default.is_file() else "default",
              "output_dir": str(demo_dir.resolve()),
              # full-size posterior runs: these reports are what researchers read
              "fast": False}
    print(f"[demo] notebooks 01-03, 00, 05 -> {demo_dir}", flush=True)
    runs = [(notebooks_dir() / nb, params) for nb in DEMO_NOTEBOOKS]
    runs += [(notebooks_dir() / nb, {**params, **extra}) for nb, extra in DEMO_EXTRA]
    recs = run_notebooks(runs, demo_dir, log=lambda line: print("  " + line, flush=True))
    print(f"[demo] grid {grid} ({time.perf_counter() - t0:.0f} s so far)", flush=True)
    out = run_grid(grid, args.out, workers=args.workers, progress=not args.no_progress,
                   fast=True)
    status = report_batch(out)
    print(f"\n[demo] finished in {time.perf_counter() - t0:.0f} s")
    for r in recs + ([out["report"]] if out["report"] else []):
        print("  " + describe(r))
    print(f"[demo] reports: {demo_dir}/ and {out['dir']}/04_compare_designs.html")
    failed = [r for r in recs if r["status"] != "ok"]
    return EXIT_FAILED if failed or status else 0
