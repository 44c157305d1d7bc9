"""``fitlab solve``: the size a design needs for a target power, by simulation.

Examples
--------
::

    fitlab solve params/fit_individual.yaml --factor size.clients_per_unit --target 0.8
    fitlab solve default --factor size.units --reps 200 --rounds 4 --range 6 60 --json
    fitlab solve params/fit_cluster.yaml --factor size.units --target-mcse 0.02
"""

from __future__ import annotations

from fitlab.cli.common import (
    SCENARIO_HELP,
    at_least,
    command,
    print_json,
    scenario,
    workers_default,
)

__all__ = ["add_parser", "cmd_solve"]


def add_parser(sub) -> None:
    s = command(sub, "solve", "size needed for a target power, by simulation",
                ["solve params/fit_individual.yaml --factor size.clients_per_unit --target 0.8",
                 "solve params/fit_cluster.yaml --factor size.units --workers 2 --json"],
                "Sequential rounds of replicates (the batch engine: seeded, resumable) placed "
                "where a fitted power curve crosses the target; the answer comes with a "
                "confidence interval.")
    s.add_argument("scenario", help=SCENARIO_HELP)
    s.add_argument("--factor", default="size.clients_per_unit", metavar="FIELD",
                   help="size factor to vary (default: %(default)s; e.g. size.units)")
    s.add_argument("--target", type=float, default=0.8, metavar="POWER",
                   help="power wanted (default: %(default)s; e.g. 0.9)")
    s.add_argument("--estimator", default=None, metavar="NAME",
                   help="estimator (default: the fast one for the outcome and design; e.g. "
                   "diff_means)")
    s.add_argument("--reps", type=int, default=None, metavar="N",
                   # the default is fitlab.solve.REPS, not imported here: building the
                   # parser must not load numpy and scipy
                   help="replicates added at each size of a round (default: 100; e.g. 200)")
    s.add_argument("--target-mcse", type=float, default=None, metavar="MCSE",
                   help="instead of --reps: replicates per size so that power near the "
                   "target has at most this Monte Carlo SE, by the rule of `fitlab run "
                   "--target-mcse` (default: off; e.g. 0.02 gives 400 at target 0.8)")
    s.add_argument("--rounds", type=int, default=3, metavar="N",
                   help="rounds of the search (default: %(default)s; e.g. 4)")
    s.add_argument("--range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                   help="the first round's sizes (default: 3x either side of the analytic "
                   "answer, else of the scenario's value; e.g. 10 200)")
    s.add_argument("--level", type=float, default=0.95, metavar="LEVEL",
                   help="confidence level of the interval (default: %(default)s; e.g. 0.9)")
    s.add_argument("--workers", type=int, default=min(4, workers_default()), metavar="N",
                   help="worker processes (default: %(default)s; e.g. 2)")
    s.add_argument("--out", default="outputs", metavar="DIR",
                   help="output root (default: %(default)s; e.g. /tmp/solve)")
    s.add_argument("--json", action="store_true",
                   help="one JSON object on stdout (default: a readable summary)")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr (default: show it)")
    s.set_defaults(func=cmd_solve)


def cmd_solve(args) -> int:
    """Run the search and print the size, its interval and the points of the curve."""
    from fitlab.diagnosands import suggest_reps
    from fitlab.errors import UsageError
    from fitlab.solve import REPS, solve_size

    at_least(args.workers, "--workers")
    if args.target_mcse is not None and args.reps is not None:
        raise UsageError("give --reps or --target-mcse, not both")
    reps = REPS if args.reps is None else args.reps
    if args.target_mcse is not None:
        # the one rule of fitlab.precision: the replicates a proportion near the target
        # power needs for this MCSE (the points that matter are those near the crossing)
        if not 0 < args.target_mcse < 0.5:
            raise UsageError(f"--target-mcse must be in (0, 0.5), got {args.target_mcse}")
        if 0 < args.target < 1:  # else the search refuses the target, naming it
            reps = suggest_reps(args.target_mcse, proportion=args.target)
    at_least(reps, "--reps", 2)
    at_least(args.rounds, "--rounds")
    if not 0 < args.level < 1:
        raise UsageError(f"--level must be in (0, 1), got {args.level}")
    sc = scenario(args.scenario)
    res = solve_size(sc, args.factor, args.target, root=args.out, estimator=args.estimator,
                     reps=reps, rounds=args.rounds, bounds=args.range, level=args.level,
                     workers=args.workers, progress=not args.no_progress)
    if args.json:
        print_json(res.to_dict())
        return 0
    name = args.factor.rsplit(".", 1)[-1].replace("_", " ")
    pts = res.points[["size", "reps", "power", "mcse", "fitted"]]
    print(pts.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"\n{res.estimator}: power {args.target:g} at {name} = {res.size:.1f} "
          f"({args.level:.0%} interval {res.lower:.1f} to {res.upper:.1f}); "
          f"needed: {res.needed:g}")
    for method in ("fitted", "textbook"):
        if res.analytic.get(method) is not None:
            print(f"analytic ({method}): {res.analytic[method]:.1f}")
    if args.target_mcse is not None:
        print(f"{reps} replicates per size and round (--target-mcse {args.target_mcse:g}"
              f" at power {args.target:g})")
    print(f"{int(res.points['reps'].sum())} replicates in {len(res.rounds)} rounds; "
          f"results in {res.folder}")
    return 0
