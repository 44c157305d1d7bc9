"""``fitlab power``: the closed-form power of a scenario."""

from __future__ import annotations

from fitlab.cli.common import add_force, print_json, scenario

__all__ = ["add_parser", "cmd_power"]


def add_parser(sub) -> None:
    s = sub.add_parser("power", help="analytic power of a scenario")
    s.add_argument("scenario", help='scenario YAML or "default"')
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_force(s)
    s.set_defaults(func=cmd_power)


def cmd_power(args) -> int:
    """Print the analytic power, as a table or one JSON object."""
    from simulate.power import power

    res = power(scenario(args.scenario, ("power",), args))
    if args.json:
        print_json(res)
    else:
        for k, v in res.items():
            print(f"{k:>24}: {v}")
    return 0
