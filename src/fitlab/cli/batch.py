"""``fitlab run``, ``fitlab batch`` and ``fitlab report``: replicates and their report."""

from __future__ import annotations

import sys
import textwrap

from fitlab.cli.common import (
    EXIT_FAILED,
    SCENARIO_HELP,
    add_force,
    at_least,
    check_size,
    command,
    scenario,
    workers_default,
)
from fitlab.precision import DEFAULT_MAX_REPS

__all__ = ["add_parser", "cmd_run", "cmd_batch", "cmd_report", "batch_options",
           "report_batch", "precision_flags"]

#: Summary columns printed after a batch, where present.
SUMMARY_COLUMNS = ("name", "f_base", "design", "clients_per_unit", "attrition_rate",
                   "estimator", "reps", "power", "power_mcse", "type_i_error", "coverage",
                   "bias", "failed", "not_converged", "analytic_power", "bayes_power",
                   "assurance", "bayes_assurance")


def add_parser(sub) -> None:
    s = command(sub, "run", "replicates of one scenario (and its null twin), to a count or "
                "to a precision",
                ["run default --reps 200 --estimators diff_means,diff_means_naive",
                 "run params/fit_cluster.yaml --target-mcse 0.01 --workers 2",
                 "run default --target-mcse 0.02 --target-on power,coverage --max-reps 4000"],
                "Results go to OUT/<scenario_id>/; running the same command again resumes "
                "and adds only the missing fits. Exit status 1 when a task failed or a "
                "target was not met within --max-reps.")
    s.add_argument("scenario", help=SCENARIO_HELP)
    s.add_argument("--reps", type=int, default=None, metavar="N",
                   help="replicates per estimator; with --target-mcse the size of the first "
                   "round (default: none, required without --target-mcse; with it a tenth "
                   "of the worst case 0.25/target^2; e.g. 500)")
    s.add_argument("--estimators", default=None, metavar="NAMES",
                   help="comma-separated estimator names (default: the fast one for the "
                   "outcome and design; e.g. diff_means,reml_trajectory)")
    s.add_argument("--no-null", action="store_true",
                   help="skip the null twin, so no type I error (default: run it)")
    s.add_argument("--assurance", action="store_true",
                   help="also run assurance replicates, the effect drawn from the "
                   "scenario's effect.design_prior (default: off)")
    s.add_argument("--report", action="store_true",
                   help="also render report 04 into the results folder (default: off)")
    _add_precision_flags(s)
    _add_batch_flags(s, workers=1)
    s.set_defaults(func=cmd_run)

    s = command(sub, "batch", "replicates of every scenario of a grid, then report 04",
                ["batch params/grids/fit_default.yaml --workers 2",
                 "batch params/grids/fit_default.yaml --target-mcse 0.02 --max-reps 2000",
                 "batch params/grids/fit_default.yaml --dask --no-report"],
                "Results go to OUT/<grid name>/; running the same command again resumes. "
                "A grid may set target_mcse, target_on and max_reps itself; the flags "
                "override them. Exit status 1 when a task or the report failed, or a target "
                "was not met within max_reps.")
    s.add_argument("grid", help="grid YAML file (e.g. params/grids/fit_default.yaml)")
    s.add_argument("--no-report", action="store_true",
                   help="do not render report 04 (default: render it)")
    _add_precision_flags(s, grid=True)
    _add_batch_flags(s, workers=workers_default())
    s.set_defaults(func=cmd_batch)

    s = command(sub, "report", "re-render report 04 of a results folder",
                ["report outputs/fit_default", "report outputs/fit_default --fast"])
    s.add_argument("dir", help="a results folder of fitlab batch or fitlab run "
                   "(e.g. outputs/fit_default)")
    s.add_argument("--fast", action="store_true",
                   help="fast report: skip the per-replicate pictures (default: off)")
    s.set_defaults(func=cmd_report)


def _add_precision_flags(s, grid: bool = False) -> None:
    where = "the grid's target_mcse, else off" if grid else "off: run --reps"
    g = s.add_argument_group("precision", textwrap.fill(
        "run in rounds until the Monte Carlo SE of each targeted diagnosand is at most the "
        "target, for every scenario and estimator (fitlab.precision)", 77))
    g.add_argument("--target-mcse", type=float, default=None, metavar="MCSE",
                   help=f"the Monte Carlo SE wanted (default: {where}; e.g. 0.01 for "
                   "power to +-1 point)")
    g.add_argument("--target-on", default=None, metavar="NAMES",
                   help="diagnosands the target applies to, of power (with type I error), "
                   "bias and coverage; name=MCSE gives one its own target (default: "
                   + ("the grid's target_on, else " if grid else "") + "power; "
                   "e.g. power,coverage,bias=0.1)")
    g.add_argument("--max-reps", type=int, default=None, metavar="N",
                   help="cap on replicates per scenario and estimator (default: "
                   + ("the grid's max_reps, else " if grid else "")
                   + f"{DEFAULT_MAX_REPS}; e.g. 4000)")


def _add_batch_flags(s, workers: int) -> None:
    g = s.add_argument_group("execution")
    g.add_argument("--workers", type=int, default=workers, metavar="N",
                   help="worker processes (default: %(default)s"
                   + (", one per CPU" if workers != 1 else "") + "; e.g. 4)")
    g.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="replicates per task (default: about four tasks per worker, at most "
                   "25; e.g. 10)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on this Dask scheduler (default: local processes; "
                   "e.g. tcp://10.0.0.5:8786)")
    x.add_argument("--dask", action="store_true",
                   help="run on a Dask LocalCluster of --workers processes "
                   "(default: off, local processes)")
    g.add_argument("--out", default="outputs", metavar="DIR",
                   help="output root (default: %(default)s; e.g. /scratch/fitlab)")
    g.add_argument("--fast", action="store_true",
                   help="fast report: skip the per-replicate pictures (default: off)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr (default: show it)")
    add_force(g)


def batch_options(args) -> dict:
    """The keyword arguments of :func:`fitlab.batch.run_jobs` given by the flags."""
    at_least(args.workers, "--workers")
    at_least(args.chunk, "--chunk")
    return {"workers": args.workers, "chunk": args.chunk, "scheduler": args.scheduler,
            "dask": args.dask, "progress": not args.no_progress,
            "log": None if args.no_progress else _log}


def _log(line: str) -> None:
    print(f"[precision] {line}", file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    """Replicates of one scenario (and its null twin) into ``--out/<scenario_id>/``."""
    from fitlab.errors import UsageError
    from fitlab.precision import Precision
    from fitlab.study import FLAG_NAMES, run_scenario

    at_least(args.reps, "--reps")
    prec = Precision.from_settings({}, precision_flags(args), args.reps, names=FLAG_NAMES)
    if prec is None and args.reps is None:
        raise UsageError("give --reps N (replicates) or --target-mcse MCSE (a precision)")
    sc = scenario(args.scenario, ("simulate",), args, workers=args.workers)
    ests = [e.strip() for e in args.estimators.split(",") if e.strip()] if args.estimators else None
    out = run_scenario(sc, args.reps, args.out, estimators=ests, null=not args.no_null,
                       assurance=args.assurance, report=args.report, fast=args.fast,
                       precision=prec, **batch_options(args))
    return report_batch(out)


def cmd_batch(args) -> int:
    """Replicates of every scenario of a grid into ``--out/<grid name>/``."""
    from fitlab.grid import load_grid
    from fitlab.study import run_grid

    for job in load_grid(args.grid)[1]:  # refuse (before writing) what would not fit
        check_size(job.scenario, ("simulate",), f"{args.grid} ({job.scenario_id})", args,
                   args.workers)
    out = run_grid(args.grid, args.out, report=not args.no_report, fast=args.fast,
                   precision=precision_flags(args), **batch_options(args))
    return report_batch(out)


def precision_flags(args) -> dict:
    """The precision flags given (``None`` where not)."""
    return {"target_mcse": args.target_mcse, "target_on": args.target_on,
            "max_reps": args.max_reps}


def cmd_report(args) -> int:
    """Re-render report 04 of a results folder."""
    from fitlab.runner import describe
    from fitlab.study import render_report

    recs = render_report(args.dir, fast=args.fast)
    for r in recs:
        print(describe(r))
    return 0 if all(r["status"] == "ok" for r in recs) else EXIT_FAILED


def report_batch(out: dict) -> int:
    """Print a batch's summary table, task errors and report; the exit status."""
    res = out["batch"]
    cols = [c for c in SUMMARY_COLUMNS if c in out["summary"].columns]
    if len(out["summary"]):
        print(out["summary"][cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    run = out.get("precision")
    if run is not None:
        print("\n" + run.describe())
    print(f"\n{res.fits_run} fits in {res.seconds:.0f} s; {len(res.skipped)} scenario(s) "
          f"already complete; results in {out['dir']}")
    for e in res.task_errors:
        print(f"fitlab: task failed ({e['scenario_id']} {e['role']} replicates "
              f"{e['replicates'][0]}-{e['replicates'][-1]}): {e['error']}", file=sys.stderr)
    for f in res.all_failed:
        print(f"fitlab: every fit failed: {f['estimator']} on {f['scenario_id']} "
              f"({f['role']}, {f['fits']} fits); first error: {f['error']}", file=sys.stderr)
    rec = out.get("report")
    if rec is not None:
        from fitlab.runner import describe

        print(describe(rec))
    bad = res.task_errors or res.all_failed or (rec is not None and rec["status"] != "ok") \
        or (run is not None and not run.met)
    return EXIT_FAILED if bad else 0
