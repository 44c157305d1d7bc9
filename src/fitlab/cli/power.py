"""``fitlab power``: the closed-form power of a scenario."""

from __future__ import annotations

from fitlab.cli.common import SCENARIO_HELP, add_force, command, print_json, scenario

__all__ = ["add_parser", "cmd_power"]


def add_parser(sub) -> None:
    s = command(sub, "power", "analytic power of a scenario",
                ["power default", "power params/fit_stepped_wedge.yaml",
                 "power params/ips_2to1.yaml --json"],
                "The textbook formulas (Eldridge 2006, Hussey & Hughes 2007, Hooper et al. "
                "2016; docs/MODEL.md) applied to the scenario's primary ITT comparison.")
    s.add_argument("scenario", help=SCENARIO_HELP)
    s.add_argument("--json", action="store_true",
                   help="print every quantity as one JSON object (default: a short summary)")
    add_force(s)
    s.set_defaults(func=cmd_power)


def cmd_power(args) -> int:
    """Print the analytic power, as a short summary or one JSON object."""
    from fitlab.cli.summary import power_summary
    from simulate.power import power

    sc = scenario(args.scenario, ("power",), args)
    res = power(sc)
    if args.json:
        print_json(res)
    else:
        print(power_summary(res, sc))
    return 0
