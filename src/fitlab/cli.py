"""The ``fitlab`` command line.

Examples
--------
::

    fitlab simulate default --seed 1 --out trial.csv
    fitlab power params/fit_individual.yaml --json
    fitlab fit default --seed 1 --json --estimator diff_means
    fitlab fit data.csv --columns outcome=ors,client=id --json --primary-month 12
    fitlab run default --reps 200 --estimators diff_means,diff_means_naive --workers 2
    fitlab batch params/grids/fit_default.yaml --workers 2
    fitlab report outputs/fit_default
    fitlab demo

User mistakes (an invalid scenario or grid, a missing file, an unknown estimator, data not
in the long format) print one clear message on stderr and exit with status 2, without a
traceback and without writing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_USER = 2
EXIT_FAILED = 1
DEMO_NOTEBOOKS = ("01_simulate_design.ipynb", "02_fit_hierarchical.ipynb", "03_cace.ipynb")
DEMO_GRID = "params/grids/fit_default.yaml"


def _workers_default() -> int:
    return max(1, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every sub-command."""
    p = argparse.ArgumentParser(prog="fitlab", description="FIT Trial Design Lab")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("simulate", help="simulate one trial to a csv or parquet file")
    s.add_argument("scenario", help='scenario YAML or "default"')
    s.add_argument("--seed", type=int, default=None, help="seed (default: the scenario's)")
    s.add_argument("--out", required=True, help="output file, .csv or .parquet")

    s = sub.add_parser("power", help="analytic power of a scenario")
    s.add_argument("scenario")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")

    s = sub.add_parser("fit", help="fit an estimator to a simulated trial or to real data")
    s.add_argument("source", help='scenario YAML, "default", or a long-format .csv/.parquet')
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--estimator", default=None, help="estimator name (default: by design)")
    s.add_argument("--columns", default=None,
                   help="real data: standard=yours pairs, e.g. outcome=ors,client=id")
    s.add_argument("--primary-month", type=float, default=None)
    s.add_argument("--scenario", default=None,
                   help="real data: scenario whose design the estimator should assume")
    s.add_argument("--json", action="store_true")

    for name, help_ in (("run", "replicates of one scenario"), ("batch", "replicates of a grid")):
        s = sub.add_parser(name, help=help_)
        if name == "run":
            s.add_argument("scenario")
            s.add_argument("--reps", type=int, required=True)
            s.add_argument("--estimators", default=None, help="comma-separated names")
            s.add_argument("--no-null", action="store_true",
                           help="skip the null scenario (type I error)")
            s.add_argument("--report", action="store_true", help="also render report 04")
        else:
            s.add_argument("grid")
            s.add_argument("--no-report", action="store_true")
        s.add_argument("--workers", type=int, default=_workers_default() if name == "batch" else 1)
        s.add_argument("--chunk", type=int, default=None, help="replicates per task")
        g = s.add_mutually_exclusive_group()
        g.add_argument("--scheduler", default=None, help="Dask scheduler address")
        g.add_argument("--dask", action="store_true", help="use a Dask LocalCluster")
        s.add_argument("--out", default="outputs", help="output root (default outputs/)")
        s.add_argument("--fast", action="store_true", help="fast report")
        s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("report", help="re-render the report of a results folder")
    s.add_argument("dir")
    s.add_argument("--fast", action="store_true")

    s = sub.add_parser("demo", help="notebooks 01-03 and the fit_default grid with report 04")
    s.add_argument("--workers", type=int, default=_workers_default())
    s.add_argument("--out", default="outputs")
    s.add_argument("--grid", default=None, help=f"grid file (default {DEMO_GRID})")
    s.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fitlab``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from fitlab import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER
    from fitlab.grid import GridError
    from models.base import LongFormatError
    from simulate.scenario import ScenarioError

    debug = bool(os.environ.get("FITLAB_DEBUG"))  # show tracebacks when debugging
    try:
        return COMMANDS[args.command](args)
    except (ScenarioError, GridError, LongFormatError, FileNotFoundError, ValueError) as exc:
        if debug:
            raise
        return _fail(str(exc))
    except KeyError as exc:
        if debug:
            raise
        return _fail(str(exc.args[0]) if exc.args else str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted; run the same command again to resume", 130)
    except BrokenPipeError:
        # the reader (e.g. `| head`) closed the pipe: not an error of ours; silence the
        # interpreter's own complaint when it flushes stdout at exit
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


def _fail(msg: str, code: int = EXIT_USER) -> int:
    print(f"fitlab: error: {msg}", file=sys.stderr)
    return code


def _scenario(spec: str):
    from fitlab.grid import resolve_scenario

    return resolve_scenario(spec)


def _cmd_simulate(args) -> int:
    from simulate import simulate_trial

    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {out.name!r}")
    sc = _scenario(args.scenario)
    seed = sc.seed if args.seed is None else args.seed
    trial = simulate_trial(sc, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        trial.data.to_csv(out, index=False)
    else:
        trial.data.to_parquet(out, index=False)
    print(json.dumps({"out": str(out), "rows": int(len(trial.data)), "seed": seed,
                      "scenario_id": sc.scenario_id, "truth": _jsonable(trial.truth)}))
    return 0


def _cmd_power(args) -> int:
    from simulate.power import power

    sc = _scenario(args.scenario)
    res = _jsonable(power(sc))
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>24}: {v}")
    return 0


def _cmd_fit(args) -> int:
    import pandas as pd

    from fitlab.grid import default_estimators
    from models import get_estimator

    src = Path(args.source)
    options = {}
    if args.primary_month is not None:
        options["primary_month"] = args.primary_month
    if src.suffix in (".csv", ".parquet"):
        if not src.is_file():
            raise FileNotFoundError(f"data file not found: {src}")
        data = pd.read_csv(src) if src.suffix == ".csv" else pd.read_parquet(src)
        sc = _scenario(args.scenario) if args.scenario else None
        name = args.estimator or (default_estimators(sc)[0] if sc else "diff_means")
        est = get_estimator(name, sc, columns=_columns(args.columns), **options)
        e = est.fit(data)
    else:
        from simulate import simulate_trial

        if args.columns:
            raise ValueError("--columns applies to a data file, not a scenario")
        sc = _scenario(args.source)
        name = args.estimator or default_estimators(sc)[0]
        est = get_estimator(name, sc, **options)
        trial = simulate_trial(sc, sc.seed if args.seed is None else args.seed)
        e = est.fit(trial.data)
    out = e.to_dict()
    if args.json:
        print(json.dumps(_jsonable(out)))
    else:
        print(f"{e.estimator} ({e.estimand}): {e.estimate:.3f} [{e.lower:.3f}, {e.upper:.3f}]"
              f" se {e.se:.3f}" + (f" p {e.p_value:.4f}" if e.p_value is not None else ""))
    return 0


def _columns(spec: str | None) -> dict | None:
    if not spec:
        return None
    out = {}
    for pair in spec.split(","):
        std, sep, yours = pair.partition("=")
        if not sep or not std.strip() or not yours.strip():
            raise ValueError(f"--columns: expected standard=yours pairs, got {pair!r}")
        out[std.strip()] = yours.strip()
    return out


def _batch_kwargs(args) -> dict:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be at least 1, got {args.chunk}")
    return {"workers": args.workers, "chunk": args.chunk, "scheduler": args.scheduler,
            "dask": args.dask, "progress": not args.no_progress}


def _cmd_run(args) -> int:
    from fitlab.study import run_scenario

    if args.reps < 1:
        raise ValueError(f"--reps must be at least 1, got {args.reps}")
    sc = _scenario(args.scenario)
    ests = [e.strip() for e in args.estimators.split(",") if e.strip()] if args.estimators else None
    out = run_scenario(sc, args.reps, args.out, estimators=ests, null=not args.no_null,
                       report=args.report, fast=args.fast, **_batch_kwargs(args))
    return _report_batch(out)


def _cmd_batch(args) -> int:
    from fitlab.study import run_grid

    out = run_grid(args.grid, args.out, report=not args.no_report, fast=args.fast,
                   **_batch_kwargs(args))
    return _report_batch(out)


def _report_batch(out: dict) -> int:
    res = out["batch"]
    cols = [c for c in ("name", "f_base", "design", "clients_per_unit", "attrition_rate",
                        "estimator", "reps", "power", "power_mcse", "type_i_error",
                        "coverage", "bias", "failed", "analytic_power")
            if c in out["summary"].columns]
    if len(out["summary"]):
        print(out["summary"][cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"\n{res.fits_run} fits in {res.seconds:.0f} s; {len(res.skipped)} scenario(s) "
          f"already complete; results in {out['dir']}")
    for e in res.task_errors:
        print(f"fitlab: task failed ({e['scenario_id']} {e['role']} replicates "
              f"{e['replicates'][0]}-{e['replicates'][-1]}): {e['error']}", file=sys.stderr)
    rec = out.get("report")
    if rec is not None:
        from fitlab.runner import describe

        print(describe(rec))
    bad = res.task_errors or (rec is not None and rec["status"] != "ok")
    return EXIT_FAILED if bad else 0


def _cmd_report(args) -> int:
    from fitlab.runner import describe
    from fitlab.study import render_report

    recs = render_report(args.dir, fast=args.fast)
    for r in recs:
        print(describe(r))
    return 0 if all(r["status"] == "ok" for r in recs) else EXIT_FAILED


def _cmd_demo(args) -> int:
    from fitlab.runner import describe, run_notebooks
    from fitlab.study import notebooks_dir, run_grid

    t0 = time.perf_counter()
    repo = notebooks_dir().parent
    grid = Path(args.grid) if args.grid else repo / DEMO_GRID
    from fitlab.grid import load_grid

    load_grid(grid)  # refuse an invalid grid before running anything
    demo_dir = Path(args.out) / "demo"
    default = repo / "params" / "fit_individual.yaml"
    params = {"scenario": str(default) if default.is_file() else "default",
              "output_dir": str(demo_dir.resolve()), "out_dir": str(demo_dir.resolve()),
              "results_dir": str(demo_dir.resolve()),
              # full-size posterior runs: these reports are what researchers read
              "fast": False}
    print(f"[demo] notebooks 01-03 -> {demo_dir}", flush=True)
    recs = run_notebooks([(notebooks_dir() / nb, params) for nb in DEMO_NOTEBOOKS], demo_dir,
                         log=lambda line: print("  " + line, flush=True))
    print(f"[demo] grid {grid} ({time.perf_counter() - t0:.0f} s so far)", flush=True)
    out = run_grid(grid, args.out, workers=args.workers, progress=not args.no_progress,
                   fast=True)
    status = _report_batch(out)
    print(f"\n[demo] finished in {time.perf_counter() - t0:.0f} s")
    for r in recs + ([out["report"]] if out["report"] else []):
        print("  " + describe(r))
    print(f"[demo] reports: {demo_dir}/ and {out['dir']}/04_compare_designs.html")
    failed = [r for r in recs if r["status"] != "ok"]
    return EXIT_FAILED if failed or status else 0


def _jsonable(obj):
    from models.base import _jsonable as base

    obj = base(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN
    return obj


COMMANDS = {"simulate": _cmd_simulate, "power": _cmd_power, "fit": _cmd_fit,
            "run": _cmd_run, "batch": _cmd_batch, "report": _cmd_report, "demo": _cmd_demo}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
