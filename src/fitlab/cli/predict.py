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
    from fitlab.cli.common import command

    s = command(sub, "predict", "predictive value of baseline and early ORS/SRS for dropout "
                "and reliable/clinically significant change",
                ["predict default --seed 1 --folds 5 --out outputs/predict",
                 "predict data.csv --columns outcome=ors,client=id --cutoff 25 --json"],
                "On a simulated trial (with the simulator's truth marked) or on real "
                "long-format data: discrimination (AUC), calibration and the not-on-track "
                "signal's sensitivity and specificity.")
    s.add_argument("source", help='scenario YAML, "default", or a long-format .csv/.parquet '
                   "(e.g. params/fit_individual.yaml)")
    s.add_argument("--seed", type=int, default=None, metavar="N",
                   help="simulated trial: its seed (default: the scenario's; e.g. 1)")
    s.add_argument("--columns", default=None, metavar="PAIRS",
                   help="real data: standard=yours pairs (default: the standard names; "
                   "e.g. outcome=ors,client=id)")
    s.add_argument("--scenario", default=None, metavar="FILE",
                   help="real data: scenario whose plan and ORS instrument to assume "
                   "(default: none; e.g. params/fit_individual.yaml)")
    s.add_argument("--primary-month", type=float, default=None, metavar="MONTHS",
                   help="months since start of the primary outcome (default: the last "
                   "observed; e.g. 12)")
    s.add_argument("--targets", default="dropout,reliable_improvement,clinically_significant",
                   metavar="NAMES",
                   help="comma-separated targets (default: all three; e.g. dropout)")
    s.add_argument("--predictors", choices=("baseline", "early"), default="early",
                   help="intake scores only, or intake and early scores (default: "
                   "%(default)s; e.g. baseline)")
    s.add_argument("--early-month", type=float, default=None, metavar="MONTHS",
                   help="last follow-up month of the early scores (default: the first; "
                   "e.g. 3)")
    s.add_argument("--folds", type=int, default=5, metavar="K",
                   help="cross-validation folds, 1 for none (default: %(default)s; e.g. 10)")
    s.add_argument("--fold-seed", type=int, default=0, metavar="N",
                   help="seed of the folds and bootstrap (default: %(default)s; e.g. 2)")
    g = s.add_argument_group("reliable change", "default: the scenario's ORS instrument, "
                             "else sd 7.5, reliability 0.87, cutoff 25")
    g.add_argument("--sd", type=float, default=None,
                   help="SD of intake scores (default: the instrument's; e.g. 7.5)")
    g.add_argument("--reliability", type=float, default=None,
                   help="the instrument's reliability (default: the instrument's; e.g. 0.87)")
    g.add_argument("--cutoff", type=float, default=None,
                   help="clinical cutoff (default: the instrument's; e.g. 25)")
    g = s.add_argument_group("sampler")
    g.add_argument("--draws", type=int, default=1000, metavar="N",
                   help="posterior draws per chain (default: %(default)s; e.g. 500)")
    g.add_argument("--tune", type=int, default=500, metavar="N",
                   help="tuning steps per chain (default: %(default)s; e.g. 300)")
    g.add_argument("--chains", type=int, default=4, metavar="N",
                   help="chains (default: %(default)s; e.g. 2)")
    s.add_argument("--out", default=None, metavar="DIR",
                   help="folder for prediction.json and prediction_clients.csv (default: "
                   "write nothing; e.g. outputs/predict)")
    s.add_argument("--json", action="store_true",
                   help="one JSON object on stdout (default: a readable table)")
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
