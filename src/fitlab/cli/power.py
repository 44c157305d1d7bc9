"""``fitlab power``: analytic power of a scenario, the size it needs, the effect it detects.

Examples
--------
::

    fitlab power params/fit_individual.yaml
    fitlab power params/fit_cluster.yaml --solve size.units --target 0.8
    fitlab power params/fit_stepped_wedge.yaml --solve units_per_step --method textbook
    fitlab power params/fit_individual.yaml --mde --json
"""

from __future__ import annotations

from fitlab.cli.common import print_json, scenario

__all__ = ["add_parser", "cmd_power"]


def add_parser(sub) -> None:
    s = sub.add_parser(
        "power", help="analytic power, required size (--solve) and detectable effect (--mde)")
    s.add_argument("scenario", help='scenario YAML or "default"')
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.add_argument("--solve", metavar="FIELD",
                   help="the size reaching --target: size.units, size.clients_per_unit or "
                        "(stepped wedge) units_per_step")
    s.add_argument("--mde", action="store_true",
                   help="the minimum detectable effect at --target power")
    s.add_argument("--target", type=float, default=0.8, help="target power (default 0.8)")
    s.add_argument("--method", choices=("fitted", "textbook"), default=None,
                   help="power of the mixed model actually fitted (default for ORS) or the "
                        "textbook formulas (default for binary outcomes)")
    s.set_defaults(func=cmd_power)


def cmd_power(args) -> int:
    """Print the analytic power, or the solved size / MDE, as a table or one JSON object."""
    from simulate.power import mde, power, solve_size

    sc = scenario(args.scenario)
    if args.solve is None and not args.mde:
        res = power(sc)
    else:
        res = {}
        if args.solve is not None:
            res["solve"] = solve_size(sc, args.solve, args.target, method=args.method)
        if args.mde:
            res["mde"] = mde(sc, args.target, method=args.method)
    if args.json:
        print_json(res)
        return 0
    for k, v in res.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for kk, vv in v.items():
                print(f"{kk:>26}: {vv}")
        else:
            print(f"{k:>24}: {v}")
    return 0
