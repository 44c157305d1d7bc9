"""``fitlab power``: the closed-form power of a scenario."""

from __future__ import annotations

from fitlab.cli.common import print_json, scenario

__all__ = ["add_parser", "cmd_power", "claim_check", "CLAIMS"]

#: Scenario name -> (function of ``simulate.power.claims`` recomputing the power sentence
#: of that trial's plan, the sentence as the plan wrote it).
CLAIMS = {
    "ips_2to1": ("ips_power_claim", "RR 1.96 (d = 0.37) gives 82% power with 30 + 30 "
                                    "evaluable, one-sided alpha 0.05 (IPS pre-study plan)"),
}


def add_parser(sub) -> None:
    s = sub.add_parser("power", help="analytic power of a scenario")
    s.add_argument("scenario", help='scenario YAML or "default"')
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.set_defaults(func=cmd_power)


def cmd_power(args) -> int:
    """Print the analytic power, as a table or one JSON object."""
    from simulate.power import power

    sc = scenario(args.scenario)
    res = power(sc)
    claim = claim_check(sc)
    if args.json:
        print_json(res | ({"claim_check": claim} if claim else {}))
    else:
        for k, v in res.items():
            print(f"{k:>24}: {v}")
        if claim:
            print(format_claim(claim))
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
