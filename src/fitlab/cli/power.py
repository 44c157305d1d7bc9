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

__all__ = ["add_parser", "cmd_power", "claim_check", "CLAIMS"]

#: Scenario name -> (function of ``simulate.power.claims`` recomputing the power sentence
#: of that trial's plan, the sentence as the plan wrote it).
CLAIMS = {
    "ips_2to1": ("ips_power_claim", "RR 1.96 (d = 0.37) gives 82% power with 30 + 30 "
                                    "evaluable, one-sided alpha 0.05 (IPS pre-study plan)"),
}


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
    from fitlab.cli.summary import mde_summary, power_summary, solve_summary
    from simulate.power import mde, power, solve_size

    sc = scenario(args.scenario, ("power",), args)
    if args.solve is None and not args.mde:
        res = power(sc)
        claim = claim_check(sc)
        if args.json:
            print_json(res | ({"claim_check": claim} if claim else {}))
        else:
            print(power_summary(res, sc))
            if claim:
                print(format_claim(claim))
        return 0
    res = {}
    if args.solve is not None:
        res["solve"] = solve_size(sc, args.solve, args.target, method=args.method)
    if args.mde:
        res["mde"] = mde(sc, args.target, method=args.method)
    if args.json:
        print_json(res)
        return 0
    if "solve" in res:
        print(solve_summary(res["solve"]))
    if "mde" in res:
        print(mde_summary(res["mde"]))
    return 0


def claim_check(sc) -> dict | None:
    """The published power claim of this scenario's trial, recomputed (None if none).

    Returns
    -------
    dict or None
        ``claim`` (the sentence), ``claimed_power`` and what is true by the plan's own
        numbers: ``power_t`` (two-sample t), ``power_binary_risk_ratio`` (the
        employment rates), ``power_t_60_30`` (the planned 2:1 allocation),
        ``n_per_arm_for_claim`` and ``d_for_claim``, plus the full recomputation
        (``details``).
    """
    from simulate.power import claims

    entry = CLAIMS.get(sc.name)
    if entry is None:
        return None
    func, sentence = entry
    out = getattr(claims, func)()
    keys = ("claimed_power", "power_t", "power_binary_risk_ratio", "power_t_60_30",
            "n_per_arm_for_claim", "d_for_claim")
    return {"claim": sentence, **{k: out[k] for k in keys if k in out}, "details": out}


def format_claim(c: dict) -> str:
    """The claim check as a few readable lines."""
    d = c["details"]
    n = f"{d['n_treat']:g} + {d['n_control']:g}"
    names = {"power_t": f"two-sample t test, d {d['d']:g}, {n}",
             "power_binary_risk_ratio": (f"employment {d.get('control_rate', 0):.0%} vs "
                                         f"{d.get('control_rate', 0) * d.get('risk_ratio', 0):.0%}"
                                         f" (RR {d.get('risk_ratio', 0):g}), {n}"),
             "power_t_60_30": "t test, the planned 60 + 30 evaluable (2:1)"}
    lines = ["", "claim check (the plan's power sentence, recomputed from its own numbers)",
             f"  claimed: {c['claim']}", f"  claimed power: {c['claimed_power']:.2f}"]
    lines += [f"  true power, {label}: {c[k]:.2f}" for k, label in names.items() if k in c]
    if "n_per_arm_for_claim" in c:
        lines.append(f"  the claimed power needs {c['n_per_arm_for_claim']} per arm at "
                     f"d {d['d']:g}, or d {c['d_for_claim']:.2f} with {n}")
    return "\n".join(lines)
