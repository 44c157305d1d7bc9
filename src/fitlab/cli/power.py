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

from fitlab.cli.common import SCENARIO_HELP, add_force, command, print_json, scenario

__all__ = ["add_parser", "cmd_power"]


def add_parser(sub) -> None:
    s = command(sub, "power", "analytic power, required size (--solve) and detectable effect "
                "(--mde)",
                ["power default", "power params/fit_stepped_wedge.yaml",
                 "power params/fit_cluster.yaml --solve size.units --target 0.8",
                 "power params/fit_individual.yaml --mde --json",
                 "power params/ips_2to1.yaml --json"],
                "The power of the mixed model actually fitted (expected information of "
                "reml_trajectory / reml_stepped_wedge) beside the textbook formulas "
                "(Eldridge 2006, Hussey & Hughes 2007, Hooper et al. 2016; docs/MODEL.md) "
                "for the scenario's primary ITT comparison.")
    s.add_argument("scenario", help=SCENARIO_HELP)
    s.add_argument("--json", action="store_true",
                   help="print every quantity as one JSON object (default: a short summary)")
    s.add_argument("--solve", metavar="FIELD",
                   help="the size reaching --target: size.units, size.clients_per_unit or "
                   "(stepped wedge) units_per_step (default: off; e.g. size.units)")
    s.add_argument("--mde", action="store_true",
                   help="the minimum detectable effect at --target power (default: off)")
    s.add_argument("--target", type=float, default=0.8, metavar="POWER",
                   help="target power of --solve and --mde (default: %(default)s; e.g. 0.9)")
    s.add_argument("--method", choices=("fitted", "textbook"), default=None,
                   help="power of the mixed model actually fitted or the textbook formulas "
                   "(default: fitted for ORS, textbook for binary outcomes; e.g. textbook)")
    add_force(s)
    s.set_defaults(func=cmd_power)


def cmd_power(args) -> int:
    """Print the analytic power (a short summary or one JSON object), or the solved size
    and the detectable effect with ``--solve`` / ``--mde``."""
    from fitlab.cli.summary import power_summary
    from simulate.power import mde, power, solve_size

    sc = scenario(args.scenario, ("power",), args)
    if args.solve is None and not args.mde:
        res = power(sc)
        if args.json:
            print_json(res)
        else:
            print(power_summary(res, sc))
        return 0
    res = {}
    if args.solve is not None:
        res["solve"] = solve_size(sc, args.solve, args.target, method=args.method)
    if args.mde:
        res["mde"] = mde(sc, args.target, method=args.method)
    if args.json:
        print_json(res)
        return 0
    for k, v in res.items():
        print(f"{k}:")
        for kk, vv in v.items():
            print(f"{kk:>26}: {vv}")
    return 0
