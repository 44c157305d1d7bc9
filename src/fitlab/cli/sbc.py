"""``fitlab sbc``: simulation-based calibration of a Bayesian estimator.

Examples
--------
::

    fitlab sbc bayes_binary --reps 500 --workers 2
    fitlab sbc bayes_binary --reps 100 --generate-priors sigma_unit=0.05 --out outputs/sbc/wrong
    fitlab sbc bayes_cace --reps 200 --options draws=300,chains=2
"""

from __future__ import annotations

from fitlab.cli.common import at_least, command, scenario, workers_default

__all__ = ["add_parser", "cmd_sbc", "parse_pairs"]


def add_parser(sub) -> None:
    s = command(sub, "sbc", "simulation-based calibration of a Bayesian estimator",
                ["sbc bayes_trajectory --reps 500 --workers 2",
                 "sbc bayes_binary_nuts --reps 200 --options draws=300,chains=2",
                 "sbc bayes_trajectory --reps 100 --generate-priors unit=2.0"],
                "Draw parameters from the model's prior, simulate data from the model on a "
                "small design, fit, and rank each true value among posterior draws (Talts "
                "et al. 2018); uniform ranks mean a calibrated posterior.")
    s.add_argument("model", help="Bayesian estimator (e.g. bayes_binary)")
    s.add_argument("--reps", type=int, default=100, metavar="N",
                   help="replicates (default: %(default)s; e.g. 500)")
    s.add_argument("--draws", type=int, default=99, metavar="L",
                   help="posterior draws each truth is ranked among (default: %(default)s; "
                   "e.g. 199)")
    s.add_argument("--scenario", default=None, metavar="FILE",
                   help='design scenario, YAML or "default" (default: a small design; '
                   "e.g. params/fit_cluster.yaml)")
    s.add_argument("--options", default=None, metavar="PAIRS",
                   help="estimator options for the fits (default: the estimator's; e.g. "
                   "draws=300,chains=2)")
    s.add_argument("--generate-priors", default=None, metavar="PAIRS",
                   help="prior scales for simulating only, a deliberately wrong prior "
                   "(default: the model's own; e.g. sigma_unit=0.05)")
    s.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the calibration (default: %(default)s; e.g. 7)")
    s.add_argument("--workers", type=int, default=workers_default(), metavar="N",
                   help="worker processes (default: %(default)s, one per CPU; e.g. 2)")
    s.add_argument("--out", default=None, metavar="DIR",
                   help="folder (default: outputs/sbc/<model>; e.g. /tmp/sbc)")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr (default: show it)")
    s.set_defaults(func=cmd_sbc)


def parse_pairs(text: str | None, flag: str) -> dict:
    """``a=1,b=x`` as ``{"a": 1, "b": "x"}`` (values read as YAML scalars)."""
    import yaml

    from fitlab.errors import UsageError

    out: dict = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{flag}: expected name=value pairs separated by commas, "
                             f"got {part!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_sbc(args) -> int:
    """Run (or resume) SBC and print the uniformity tests."""
    from fitlab.sbc import run_sbc

    at_least(args.reps, "--reps")
    at_least(args.draws, "--draws")
    at_least(args.workers, "--workers")
    sc = scenario(args.scenario) if args.scenario else None
    out = args.out or f"outputs/sbc/{args.model}"
    res = run_sbc(args.model, args.reps, args.draws, scenario=sc,
                  options=parse_pairs(args.options, "--options"),
                  generate_priors=parse_pairs(args.generate_priors, "--generate-priors"),
                  seed=args.seed, workers=args.workers, out=out,
                  progress=not args.no_progress)
    print(res.summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\n{len(res.ranks['replicate'].unique()) if len(res.ranks) else 0} replicates, "
          f"L = {res.draws}, {res.bins} bins, {res.seconds:.0f} s; wrote {res.out}/"
          "{ranks.parquet, sbc_summary.csv, sbc.png, sbc.json}")
    return 0
