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
Real data are checked before any fit (:func:`models.base.check_long`): a column of Swedish
personal identity numbers is refused without echoing a value, as are arms not coded 0/1,
ORS scores outside 0-40, negative months, repeated rows and an exposure that contradicts
the arm. The output says when a fit did not converge or failed (exit status 1), and flags
the variance components the data cannot identify (one unit, no therapists) instead of
reporting them.
"""

from __future__ import annotations

import math
from pathlib import Path

from fitlab.cli.common import EXIT_FAILED, add_force, at_least, command, print_json, scenario

__all__ = ["add_parser", "cmd_fit", "analysis_plan", "parse_columns",
           "unidentified", "flag_unidentified", "describe_estimate"]

#: Flags that set a field of the analysis plan: flag -> (field, type, metavar, help). The
#: allowed values are checked by AnalysisPlan (one place); the metavars only show them.
PLAN_FLAGS = {
    "--primary-month": ("primary_month", float, "MONTHS",
                        "months since start of the primary outcome (default: the "
                        "scenario's, else the last month in the data; e.g. 12)"),
    "--time": ("time_scale", str, "{log,linear}",
               "model time (default: log; e.g. linear)"),
    "--design": ("design", str, "{individual,cluster,stepped_wedge}",
                 "the randomization (default: individual; e.g. stepped_wedge)"),
    "--alpha": ("alpha", float, "ALPHA", "significance level (default: 0.05; e.g. 0.1)"),
    "--sides": ("sides", int, "{1,2}", "sides of the test (default: 2; e.g. 1)"),
    "--cluster": ("cluster", str, "{therapist,unit,none}",
                  "clustering of robust SEs (default: therapist if individual, else unit; "
                  "e.g. unit)"),
    "--outcome": ("outcome", str, "{ors,binary}",
                  "the outcome's kind (default: ors; e.g. binary)"),
}


def add_parser(sub) -> None:
    s = command(sub, "fit", "fit an estimator to a simulated trial or to real data",
                ["fit default --seed 1 --estimator diff_means",
                 "fit params/fit_individual.yaml --seed 3 --estimator reml_trajectory --json",
                 "fit mydata.csv --columns outcome=ors,client=id --primary-month 12 --json"],
                "Real data must be in the long format of docs/ARCHITECTURE.md (one row per "
                "client and occasion); --columns maps your column names onto it.")
    s.add_argument("source", help='scenario YAML, "default", or a long-format .csv/.parquet '
                   "file (e.g. mydata.csv)")
    s.add_argument("--seed", type=int, default=None, metavar="N",
                   help="simulated trial: its seed (default: the scenario's seed field; e.g. 3)")
    s.add_argument("--estimator", default=None, metavar="NAME",
                   help="estimator name (default: the fast one for the outcome and design; "
                   "e.g. reml_trajectory)")
    s.add_argument("--columns", default=None, metavar="PAIRS",
                   help="real data: standard=yours column pairs (default: the standard "
                   "names; e.g. outcome=ors,client=id)")
    s.add_argument("--scenario", default=None, metavar="SCENARIO",
                   help="real data: scenario whose analysis plan to assume (default: none, "
                   "the plan flags alone; e.g. params/fit_individual.yaml)")
    s.add_argument("--formula", default=None, metavar="FORMULA",
                   help="a mixed model in lme4/brms syntax fitted by Bambi (estimator "
                   "'bambi'), standard column names, time = the plan's time (default: none; "
                   'e.g. "outcome ~ arm * time + (1|unit) + (1|therapist) + (time|client)")')
    s.add_argument("--draws", type=int, default=None, metavar="N",
                   help="Bayesian estimators: posterior draws (and tuning steps) per chain "
                   "(default: the estimator's; e.g. 500)")
    s.add_argument("--json", action="store_true",
                   help="print the whole estimate as one JSON object (default: one line)")
    add_force(s)
    g = s.add_argument_group("analysis plan", "override the scenario's plan (real data "
                             "without --scenario: the plan is these flags alone)")
    for flag, (dest, type_, metavar, help_) in PLAN_FLAGS.items():
        g.add_argument(flag, dest=dest, type=type_, metavar=metavar, default=None, help=help_)
    s.set_defaults(func=cmd_fit)


def cmd_fit(args) -> int:
    """Fit and print the estimate (one line, or the whole Estimate as JSON)."""
    from fitlab.errors import UsageError
    from fitlab.store import DATA_SUFFIXES, read_long
    from models import LongFormatError, get_estimator
    from models.defaults import default_estimators

    src = Path(args.source)
    real = src.suffix in DATA_SUFFIXES
    if not real and (args.columns or args.scenario):
        raise UsageError("--columns and --scenario apply to a data file, not a scenario")
    data = read_long(src) if real else None  # a missing file is named before anything else
    spec = args.scenario if real else args.source
    sc = scenario(spec, () if real else ("simulate",), args) if spec else None
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
    try:
        checked = est.prepare(data)  # refuses bad data before the fit, with a clear message
    except LongFormatError as exc:
        if not real:
            raise
        raise LongFormatError(f"data file {src}: {exc}") from None
    e = flag_unidentified(est.fit(data), unidentified(checked))
    if args.json:
        print_json(e.to_dict())
    else:
        print(describe_estimate(e))
    ok = e.converged and math.isfinite(e.estimate)
    return 0 if ok else EXIT_FAILED


def unidentified(df) -> dict[str, str]:
    """Variance components the data cannot identify -> why (from a checked long table)."""
    out: dict[str, str] = {}
    units = int(df["unit"].nunique()) if "unit" in df.columns else 0
    if units < 2:
        why = f"the data have {units} unit{'s' if units != 1 else ''}"
        out["var_unit"] = out["var_unit_period"] = why
    if "therapist" in df.columns:
        ther = df.loc[df["therapist"] != -1, ["therapist", "unit"]] if "unit" in df.columns \
            else df.loc[df["therapist"] != -1, ["therapist"]]
        n = int(ther["therapist"].nunique())
        if n == 0:
            out["var_therapist"] = "the data have no therapists"
        elif "unit" in ther.columns and n == units and units >= 1:
            out["var_therapist"] = ("one therapist per unit: therapist and unit variance "
                                    "cannot be told apart")
    return out


def flag_unidentified(e, why: dict[str, str]):
    """``e`` with unidentified variance components removed from ``extra`` and named in
    ``diagnostics`` (``unidentified`` and ``warnings``)."""
    hit = {k: v for k, v in why.items() if k in e.extra}
    if hit:
        for k, reason in hit.items():
            e.extra[k] = None
            e.diagnostics.setdefault("warnings", []).append(
                f"{k} not identified ({reason}); not reported")
        e.diagnostics["unidentified"] = sorted(hit)
    return e


def describe_estimate(e) -> str:
    """The text output of one fit: the estimate, or why there is none, and its warnings."""
    head = f"{e.estimator} ({e.estimand}): "
    if not math.isfinite(e.estimate):
        line = head + "FAILED: no estimate"
    else:
        line = (head + ("NOT CONVERGED (do not use): " if not e.converged else "")
                + f"{e.estimate:.3f} [{e.lower:.3f}, {e.upper:.3f}] se {e.se:.3f}"
                + (f" p {e.p_value:.4f}" if e.p_value is not None else ""))
    notes = [str(w) for w in e.diagnostics.get("warnings") or []]
    return "\n".join([line] + [f"  warning: {w}" for w in notes])


def analysis_plan(args, sc=None):
    """The plan of ``sc`` (or the defaults) with the plan flags given in ``args`` applied.

    Raises
    ------
    models.plan.PlanError
        Naming each field whose value is not allowed.
    """
    from models.plan import AnalysisPlan, PlanError

    # real data without a scenario: an ORS outcome unless --outcome says otherwise (so
    # that scores outside 0-40 are refused)
    base = AnalysisPlan.from_scenario(sc).model_dump() if sc is not None else \
        {"outcome": "ors"}
    flag_of = {dest: flag for flag, (dest, *_) in PLAN_FLAGS.items()}
    given = {dest: getattr(args, dest) for dest in flag_of if getattr(args, dest) is not None}
    try:
        return AnalysisPlan.make("from the command line", **(base | given))
    except PlanError as exc:  # name the flag the user typed, not the plan's field
        problems = [flag_of.get(p.partition(":")[0], p.partition(":")[0]) + ":"
                    + p.partition(":")[2] for p in exc.problems]
        raise PlanError(exc.source, problems) from None


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
