"""``fitlab economics``: the economic consequence analysis of the employment effect."""

from __future__ import annotations

from fitlab.cli.common import command, print_json, scenario

__all__ = ["add_parser", "cmd_economics"]


def add_parser(sub) -> None:
    s = command(sub, "economics", "value the employment effect: net benefit, acceptability, "
                "EVPI",
                ["economics params/ips_2to1.yaml --wtp 10000",
                 "economics params/ips_2to1.yaml --draws posterior_rd.csv --json",
                 "economics params/ips_2to1.yaml --data trial.csv --columns outcome=employed"],
                "Value the employment effect by the scenario's economics section: from "
                "posterior draws in --draws, by fitting bayes_binary to a real trial's "
                "long-format data in --data, or to a trial simulated from SCENARIO.")
    s.add_argument("scenario", help="scenario YAML, a binary employment outcome unless "
                   "--draws (e.g. params/ips_2to1.yaml)")
    s.add_argument("--draws", metavar="FILE",
                   help="posterior draws of the risk difference, .npy or CSV with a column "
                   "risk_difference (default: fit a simulated trial; e.g. draws.csv)")
    s.add_argument("--data", metavar="FILE",
                   help="a real trial's long-format .csv/.parquet, outcome 0/1 employed, to "
                   "fit bayes_binary to (default: a simulated trial; e.g. trial.csv)")
    s.add_argument("--columns", default=None, metavar="PAIRS",
                   help="with --data: standard=yours column pairs (default: the standard "
                   "names; e.g. outcome=employed,client=id)")
    s.add_argument("--seed", type=int, default=1, metavar="N",
                   help="seed of the simulated trial (default: %(default)s; e.g. 7)")
    s.add_argument("--fast", action="store_true",
                   help="a coarser posterior integration for a quick look (default: full precision)")
    s.add_argument("--wtp", type=float, default=None, metavar="SEK",
                   help="also report P(cost-effective) at this willingness to pay for one "
                   "extra month employed (default: off; e.g. 10000)")
    s.add_argument("--out", metavar="DIR",
                   help="also write summary.json and curve.csv here (default: print only; "
                   "e.g. outputs/economics)")
    s.add_argument("--json", action="store_true",
                   help="one JSON object on stdout (default: a readable summary)")
    s.set_defaults(func=cmd_economics)


def cmd_economics(args) -> int:
    """Print the figures of the analysis (and write them with ``--out``)."""
    from pathlib import Path

    from fitlab import economics as fe
    from fitlab.cli.fit import parse_columns
    from fitlab.errors import UsageError
    from fitlab.manifest import write_json
    from fitlab.store import DATA_SUFFIXES, atomic_write, read_long
    from models import economics as ec

    if args.draws and args.data:
        raise UsageError("give --draws or --data, not both")
    if args.columns and not args.data:
        raise UsageError("--columns applies to a data file given with --data")
    if args.data and Path(args.data).suffix not in DATA_SUFFIXES:
        raise UsageError(f"--data must be a {' or '.join(DATA_SUFFIXES)} file, got "
                         f"{args.data}")
    data = read_long(Path(args.data)) if args.data else None  # a missing file named first
    sc = scenario(args.scenario)
    sampler = fe.FAST_SAMPLER if args.fast else {}
    if args.draws:
        post = fe.read_draws(args.draws)
    elif data is not None:
        post = fe.posterior_from_data(sc, data, args.data, parse_columns(args.columns),
                                      **sampler)
    else:
        post = fe.employment_posterior(sc, args.seed, **sampler)
    res = fe.economic_analysis(sc, post.draws)
    out = {"scenario": sc.name, "scenario_hash": sc.hash(), "source": post.source, **res.summary}
    if post.truth is not None:
        out["true_risk_difference"] = post.truth
    if post.estimate is not None:
        e = post.estimate
        out.update(risk_difference=e.estimate, risk_difference_lower=e.lower,
                   risk_difference_upper=e.upper, converged=e.converged)
    if args.wtp is not None:
        out["p_cost_effective_at_given_wtp"] = float(
            ec.acceptability(post.draws, sc.economics, sc.followup.primary_month, args.wtp)[0])
        out["given_wtp"] = args.wtp
    if args.out:
        write_json(Path(args.out) / "summary.json", out)
        atomic_write(Path(args.out) / "curve.csv", lambda p: res.curve.to_csv(p, index=False))
    if args.json:
        print_json(out)
        return 0
    cur = out["currency"]
    print(f"{sc.name}: {post.source}")
    if "risk_difference" in out:
        print(f"  employment risk difference {out['risk_difference']:.3f} "
              f"[{out['risk_difference_lower']:.3f}, {out['risk_difference_upper']:.3f}]"
              + (f"; truth {out['true_risk_difference']:.3f}" if "true_risk_difference" in out
                 else ""))
    print(f"  value of one extra month employed: {out['value_per_month']:,.0f} {cur} "
          f"(decision value {out['wtp']:,.0f} {cur})")
    years = [k for k in out if k.startswith("extra_months_year_") and k.count("_") == 3]
    for k in years:
        print(f"  extra months employed, year {k.rsplit('_', 1)[1]}: {out[k]:.2f} "
              f"[{out[k + '_lower']:.2f}, {out[k + '_upper']:.2f}]")
    print(f"  incremental net benefit per client: {out['inb_mean']:,.0f} {cur} "
          f"[{out['inb_lower']:,.0f}, {out['inb_upper']:,.0f}] (cost {out['cost_per_client']:,.0f})")
    print(f"  P(cost-effective) at {out['wtp']:,.0f} {cur} per month: {out['p_cost_effective']:.3f}")
    if args.wtp is not None:
        print(f"  P(cost-effective) at {args.wtp:,.0f} {cur} per month: "
              f"{out['p_cost_effective_at_given_wtp']:.3f}")
    print(f"  break-even willingness to pay: {out['break_even_wtp']:,.0f} {cur} per month")
    print(f"  EVPI: {out['evpi_per_client']:,.0f} {cur} per client, "
          f"{out['evpi_population']:,.0f} {cur} for the population")
    return 0
