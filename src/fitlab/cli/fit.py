"""``fitlab fit``: one estimator on a simulated trial or on real long-format data.

The estimator gets an analysis plan (:class:`models.plan.AnalysisPlan`): the scenario's
(the simulated one, or ``--scenario`` for real data), with the plan flags overriding it;
for real data without ``--scenario``, the plan flags alone (defaults elsewhere: the primary
month is the last one observed, log time, alpha 0.05, two-sided, individual randomization,
ORS outcome). The default estimator comes from :mod:`models.defaults` for the plan's
outcome and design; ``--formula`` fits a mixed model written in lme4/brms syntax with
Bambi (:mod:`models.bambi_formula`).

Real data as users bring them: ``--columns`` maps standard names to yours, and one column
of yours may fill two roles (``--columns arm=group,exposure=group``); a data set without a
``therapist`` column has no therapist level; one without a randomized ``arm`` is refused.
"""

from __future__ import annotations

from pathlib import Path

from fitlab.cli.common import at_least, print_json, scenario

__all__ = ["add_parser", "cmd_fit", "analysis_plan", "read_long", "parse_columns"]

DATA_SUFFIXES = (".csv", ".parquet")
#: Flags that set a field of the analysis plan: flag -> (field, type, metavar, help). The
#: allowed values are checked by AnalysisPlan (one place); the metavars only show them.
PLAN_FLAGS = {
    "--primary-month": ("primary_month", float, "MONTHS",
                        "months since start of the primary outcome (default: the "
                        "scenario's, else the last month in the data)"),
    "--time": ("time_scale", str, "{log,linear}", "model time (default log)"),
    "--design": ("design", str, "{individual,cluster,stepped_wedge}",
                 "the randomization (default individual)"),
    "--alpha": ("alpha", float, "ALPHA", "significance level (default 0.05)"),
    "--sides": ("sides", int, "{1,2}", "sides of the test (default 2)"),
    "--cluster": ("cluster", str, "{therapist,unit,none}",
                  "clustering of robust SEs (default: therapist if individual, else unit)"),
    "--outcome": ("outcome", str, "{ors,binary}", "the outcome's kind (default ors)"),
}


def add_parser(sub) -> None:
    s = sub.add_parser("fit", help="fit an estimator to a simulated trial or to real data")
    s.add_argument("source", help='scenario YAML, "default", or a long-format .csv/.parquet')
    s.add_argument("--seed", type=int, default=None,
                   help="simulated trial: its seed (default: the scenario's)")
    s.add_argument("--estimator", default=None,
                   help="estimator name (default: the fast one for the outcome and design)")
    s.add_argument("--columns", default=None,
                   help="real data: standard=yours pairs, e.g. outcome=ors,client=id")
    s.add_argument("--scenario", default=None,
                   help="real data: scenario whose analysis plan to assume")
    s.add_argument("--formula", default=None,
                   help='a mixed model in lme4/brms syntax, fitted by Bambi (estimator '
                        '"bambi"), e.g. "outcome ~ arm * time + (1|unit) + (1|therapist) '
                        '+ (time|client)"; standard column names, time = the plan\'s time')
    s.add_argument("--draws", type=int, default=None,
                   help="Bayesian estimators: posterior draws per chain")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    g = s.add_argument_group("analysis plan", "override the scenario's plan (real data "
                             "without --scenario: the plan is these flags alone)")
    for flag, (dest, type_, metavar, help_) in PLAN_FLAGS.items():
        g.add_argument(flag, dest=dest, type=type_, metavar=metavar, default=None, help=help_)
    s.set_defaults(func=cmd_fit)


def cmd_fit(args) -> int:
    """Fit and print the estimate (one line, or the whole Estimate as JSON)."""
    from fitlab.errors import UsageError
    from models import get_estimator
    from models.defaults import default_estimators

    src = Path(args.source)
    real = src.suffix in DATA_SUFFIXES
    if not real and (args.columns or args.scenario):
        raise UsageError("--columns and --scenario apply to a data file, not a scenario")
    data = read_long(src) if real else None  # a missing file is named before anything else
    spec = args.scenario if real else args.source
    sc = scenario(spec) if spec else None
    plan = analysis_plan(args, sc)
    options = {}
    if args.formula is not None:
        if args.estimator not in (None, "bambi"):
            raise UsageError(f"--formula is fitted by the estimator 'bambi', not "
                             f"{args.estimator!r}")
        options["formula"] = args.formula
    name = "bambi" if args.formula is not None else args.estimator or default_estimators(plan)[0]
    if args.draws is not None:
        at_least(args.draws, "--draws", 10)
        options.update(draws=args.draws, tune=args.draws)
    est = get_estimator(name, plan, columns=parse_columns(args.columns), **options)
    if data is None:
        from simulate import simulate_trial

        data = simulate_trial(sc, sc.seed if args.seed is None else args.seed).data
    e = est.fit(data)
    if args.json:
        print_json(e.to_dict())
    else:
        print(f"{e.estimator} ({e.estimand}): {e.estimate:.3f} [{e.lower:.3f}, {e.upper:.3f}]"
              f" se {e.se:.3f}" + (f" p {e.p_value:.4f}" if e.p_value is not None else ""))
    return 0


def analysis_plan(args, sc=None):
    """The plan of ``sc`` (or the defaults) with the plan flags given in ``args`` applied.

    Raises
    ------
    models.plan.PlanError
        Naming each field whose value is not allowed.
    """
    from models.plan import AnalysisPlan, PlanError

    base = AnalysisPlan.from_scenario(sc).model_dump() if sc is not None else {}
    flag_of = {dest: flag for flag, (dest, *_) in PLAN_FLAGS.items()}
    given = {dest: getattr(args, dest) for dest in flag_of if getattr(args, dest) is not None}
    try:
        return AnalysisPlan.make("from the command line", **(base | given))
    except PlanError as exc:  # name the flag the user typed, not the plan's field
        problems = [flag_of.get(p.partition(":")[0], p.partition(":")[0]) + ":"
                    + p.partition(":")[2] for p in exc.problems]
        raise PlanError(exc.source, problems) from None


def read_long(path: Path):
    """A long-format data file (``.csv`` or ``.parquet``) as a DataFrame.

    Raises
    ------
    MissingFileError, ProblemsError
    """
    import pandas as pd

    from fitlab.errors import MissingFileError, ProblemsError

    if not path.is_file():
        raise MissingFileError(f"data file not found: {path}")
    try:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # a parser's complaint about the user's file
        raise ProblemsError("data file", str(path), [f"cannot be read: {exc}"]) from None


def parse_columns(spec: str | None) -> dict[str, str] | None:
    """``"outcome=ors,client=id"`` -> ``{"outcome": "ors", "client": "id"}``."""
    from fitlab.errors import UsageError

    if not spec:
        return None
    out = {}
    for pair in spec.split(","):
        std, sep, yours = pair.partition("=")
        if not sep or not std.strip() or not yours.strip():
            raise UsageError(f"--columns: expected standard=yours pairs, got {pair!r}")
        out[std.strip()] = yours.strip()
    return out
