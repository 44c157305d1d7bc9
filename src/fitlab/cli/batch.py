"""``fitlab run``, ``fitlab batch`` and ``fitlab report``: replicates and their report."""

from __future__ import annotations

import sys

from fitlab.cli.common import EXIT_FAILED, at_least, scenario, workers_default

__all__ = ["add_parser", "cmd_run", "cmd_batch", "cmd_report", "batch_options",
           "report_batch"]

#: Summary columns printed after a batch, where present.
SUMMARY_COLUMNS = ("name", "f_base", "design", "clients_per_unit", "attrition_rate",
                   "estimator", "reps", "power", "power_mcse", "type_i_error", "coverage",
                   "bias", "failed", "analytic_power", "bayes_power", "assurance",
                   "bayes_assurance")


def add_parser(sub) -> None:
    s = sub.add_parser("run", help="replicates of one scenario")
    s.add_argument("scenario", help='scenario YAML or "default"')
    s.add_argument("--reps", type=int, required=True)
    s.add_argument("--estimators", default=None, help="comma-separated names")
    s.add_argument("--no-null", action="store_true", help="skip the null scenario (type I error)")
    s.add_argument("--assurance", action="store_true",
                   help="also run assurance replicates (effects drawn from the scenario's "
                        "effect.design_prior)")
    s.add_argument("--report", action="store_true", help="also render report 04")
    _add_batch_flags(s, workers=1)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("batch", help="replicates of a grid")
    s.add_argument("grid", help="grid YAML")
    s.add_argument("--no-report", action="store_true")
    _add_batch_flags(s, workers=workers_default())
    s.set_defaults(func=cmd_batch)

    s = sub.add_parser("report", help="re-render the report of a results folder")
    s.add_argument("dir")
    s.add_argument("--fast", action="store_true")
    s.set_defaults(func=cmd_report)


def _add_batch_flags(s, workers: int) -> None:
    s.add_argument("--workers", type=int, default=workers)
    s.add_argument("--chunk", type=int, default=None, help="replicates per task")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--scheduler", default=None, help="Dask scheduler address")
    g.add_argument("--dask", action="store_true", help="use a Dask LocalCluster")
    s.add_argument("--out", default="outputs", help="output root (default outputs/)")
    s.add_argument("--fast", action="store_true", help="fast report")
    s.add_argument("--no-progress", action="store_true")


def batch_options(args) -> dict:
    """The keyword arguments of :func:`fitlab.batch.run_jobs` given by the flags."""
    at_least(args.workers, "--workers")
    at_least(args.chunk, "--chunk")
    return {"workers": args.workers, "chunk": args.chunk, "scheduler": args.scheduler,
            "dask": args.dask, "progress": not args.no_progress}


def cmd_run(args) -> int:
    """Replicates of one scenario (and its null twin) into ``--out/<scenario_id>/``."""
    from fitlab.study import run_scenario

    at_least(args.reps, "--reps")
    sc = scenario(args.scenario)
    ests = [e.strip() for e in args.estimators.split(",") if e.strip()] if args.estimators else None
    out = run_scenario(sc, args.reps, args.out, estimators=ests, null=not args.no_null,
                       assurance=args.assurance, report=args.report, fast=args.fast, **batch_options(args))
    return report_batch(out)


def cmd_batch(args) -> int:
    """Replicates of every scenario of a grid into ``--out/<grid name>/``."""
    from fitlab.study import run_grid

    out = run_grid(args.grid, args.out, report=not args.no_report, fast=args.fast,
                   **batch_options(args))
    return report_batch(out)


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
