"""``fitlab predict``: does ORS/SRS predict dropout and reliable or clinically significant
change? On a simulated trial (with the simulator's truth) or on real long-format data.

Examples
--------
::

    fitlab predict default --seed 1 --folds 5 --out outputs/predict
    fitlab predict data.csv --columns outcome=ors,client=id --cutoff 25 --json
"""

from __future__ import annotations

__all__ = ["add_parser", "cmd_predict"]


def add_parser(sub) -> None:
    s = sub.add_parser("predict", help="predictive value of baseline and early ORS/SRS for "
                       "dropout and reliable/clinically significant change")
    s.add_argument("source", help='scenario YAML, "default", or a long-format .csv/.parquet')
    s.add_argument("--seed", type=int, default=None,
                   help="simulated trial: its seed (default: the scenario's)")
    s.add_argument("--columns", default=None,
                   help="real data: standard=yours pairs, e.g. outcome=ors,client=id")
    s.add_argument("--scenario", default=None,
                   help="real data: scenario whose plan and ORS instrument to assume")
    s.add_argument("--primary-month", type=float, default=None, metavar="MONTHS",
                   help="months since start of the primary outcome")
    s.add_argument("--targets", default="dropout,reliable_improvement,clinically_significant",
                   help="comma-separated targets (default: all three)")
    s.add_argument("--predictors", choices=("baseline", "early"), default="early",
                   help="intake scores only, or intake and early scores (default)")
    s.add_argument("--early-month", type=float, default=None, metavar="MONTHS",
                   help="last follow-up month of the early scores (default: the first)")
    s.add_argument("--folds", type=int, default=5, help="cross-validation folds (1: none)")
    s.add_argument("--fold-seed", type=int, default=0, help="seed of the folds and bootstrap")
    g = s.add_argument_group("reliable change", "default: the scenario's ORS instrument, "
                             "else sd 7.5, reliability 0.87, cutoff 25")
    g.add_argument("--sd", type=float, default=None, help="SD of intake scores")
    g.add_argument("--reliability", type=float, default=None, help="the instrument's")
    g.add_argument("--cutoff", type=float, default=None, help="clinical cutoff")
    g = s.add_argument_group("sampler")
    g.add_argument("--draws", type=int, default=1000)
    g.add_argument("--tune", type=int, default=500)
    g.add_argument("--chains", type=int, default=4)
    s.add_argument("--out", default=None, help="folder for prediction.json and "
                   "prediction_clients.csv (default: write nothing)")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    """Run the prediction study and print its summary table (or JSON)."""
    import pandas as pd

    from fitlab.cli.common import at_least, print_json
    from fitlab.cli.fit import parse_columns
    from fitlab.prediction_report import run_prediction, write_prediction

    for flag in ("folds", "draws", "tune", "chains"):
        at_least(getattr(args, flag), f"--{flag}")
    instrument = {k: getattr(args, k) for k in ("sd", "reliability", "cutoff")
                  if getattr(args, k) is not None}
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    report = run_prediction(
        args.source, seed=args.seed, scenario=args.scenario,
        columns=parse_columns(args.columns), primary_month=args.primary_month,
        instrument=instrument, targets=targets, predictors=args.predictors,
        early_month=args.early_month, folds=args.folds, fold_seed=args.fold_seed,
        sampler={"draws": args.draws, "tune": args.tune, "chains": args.chains})
    if args.out:
        for path in write_prediction(report, args.out):
            if not args.json:
                print(f"wrote {path}")
    if args.json:
        print_json(report.to_dict())
        return 0
    with pd.option_context("display.width", 120, "display.max_columns", 30):
        print(report.summary_table().round(3).T.to_string())
    for ref, acc in report.signal_accuracy.items():
        print(f"not-on-track signal vs {ref}: sensitivity {acc['sensitivity']:.2f} "
              f"[{acc['sensitivity_lower']:.2f}, {acc['sensitivity_upper']:.2f}], "
              f"specificity {acc['specificity']:.2f} "
              f"[{acc['specificity_lower']:.2f}, {acc['specificity_upper']:.2f}]")
    return 0
