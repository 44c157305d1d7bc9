"""``fitlab demo``: notebooks 01-03, the workshop (00, static), the prediction report
(05), the allocation examples, notebook 06 and the ``fit_default`` grid with report 04."""

from __future__ import annotations

import time
from pathlib import Path

from fitlab.cli.common import EXIT_FAILED, at_least, command, workers_default

__all__ = ["add_parser", "cmd_demo", "DEMO_NOTEBOOKS", "DEMO_EXTRA", "DEMO_GRID"]

DEMO_NOTEBOOKS = ("01_simulate_design.ipynb", "02_fit_hierarchical.ipynb", "03_cace.ipynb")
#: Notebooks run after those, each with its own extra parameters: the workshop without its
#: widgets (a static page), and the prediction study (about 1-2 minutes).
DEMO_EXTRA = (("00_workshop.ipynb", {"interactive": False}), ("05_prediction.ipynb", {}))
DEMO_GRID = "params/grids/fit_default.yaml"
#: Allocation-list examples (scenario in params/, folder under the demo folder) and the
#: economics notebook with its scenario; the example seed is public, a real one is secret.
DEMO_ALLOCATIONS = (("ips_2to1.yaml", "allocation_ips"),
                    ("fit_stepped_wedge.yaml", "allocation_stepped_wedge"))
DEMO_ALLOCATION_SEED = 20261123
DEMO_ECONOMICS = ("06_economics.ipynb", "ips_2to1.yaml")


def add_parser(sub) -> None:
    s = command(sub, "demo", "notebooks 01-03, 00 and 05, allocation examples, notebook 06, "
                "the fit_default grid with report 04",
                ["demo", "demo --workers 2 --out /tmp/fitlab-demo"],
                "What `make demo` runs; the reports land under OUT/demo/ and OUT/<grid name>/.")
    s.add_argument("--workers", type=int, default=workers_default(), metavar="N",
                   help="worker processes for the grid (default: %(default)s, one per CPU; "
                   "e.g. 2)")
    s.add_argument("--out", default="outputs", metavar="DIR",
                   help="output root (default: %(default)s; e.g. /tmp/fitlab-demo)")
    s.add_argument("--grid", default=None, metavar="FILE",
                   help=f"grid file (default: {DEMO_GRID}; e.g. my_grid.yaml)")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr (default: show it)")
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
    recs += _allocations_and_economics(repo, demo_dir)
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


def _allocations_and_economics(repo: Path, demo_dir: Path) -> list[dict]:
    """The allocation examples (written, then verified) and notebook 06, as run records."""
    from fitlab.allocate import verify_allocation, write_allocation
    from fitlab.runner import run_notebooks
    from fitlab.study import notebooks_dir
    from simulate import load_scenario

    recs = []
    for params, folder in DEMO_ALLOCATIONS:
        out = demo_dir / folder
        man = write_allocation(load_scenario(repo / "params" / params), DEMO_ALLOCATION_SEED,
                               out, source=f"params/{params}", overwrite=True)
        problems = verify_allocation(out)
        recs.append({"notebook": str(out), "status": "failed" if problems else "ok",
                     "seconds": 0.0, "output": str(out), "html": None,
                     "ename": "allocation list differs", "evalue": "; ".join(problems)})
        print(f"[demo] allocation list {params} -> {out} ({man['entries']} entries, "
              f"{'DIFFERENT' if problems else 'verified'})", flush=True)
    notebook, params = DEMO_ECONOMICS
    return recs + run_notebooks(
        [(notebooks_dir() / notebook, {"scenario": str(repo / "params" / params),
                                       "output_dir": str((demo_dir / "economics").resolve())})],
        demo_dir, log=lambda line: print("  " + line, flush=True))
