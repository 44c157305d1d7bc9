"""What every estimator shares: the long data format, the ``Estimate`` result, the registry.

The long format is one row per client x occasion, as :func:`simulate.simulate_trial`
returns it. Real data in the same shape can be used through a column mapping
(:func:`check_long`). Every estimator is a small class built once for an analysis plan
(:class:`models.plan.AnalysisPlan`; a scenario gives one) and options, then fitted to many
data sets: ``est = get_estimator(name, plan)`` then ``est.fit(data) -> Estimate``.
Building once is what lets a Bayesian model compile once; each fit is nevertheless a pure
function of its data, plan and options.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.plan import as_plan
from models.privacy import refuse_identity_numbers, show
from simulate.conventions import ORS_MAX, ORS_MIN, json_native
from simulate.errors import FitlabError

__all__ = [
    "Estimate",
    "Estimator",
    "LongFormatError",
    "EstimatorError",
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "check_long",
    "register",
    "get_estimator",
    "ESTIMATORS",
]

#: Columns every estimator may rely on, with their meaning.
REQUIRED_COLUMNS: dict[str, str] = {
    "unit": "unit (cluster) identifier",
    "therapist": "therapist identifier; -1 for a client with no therapist (partially nested)",
    "client": "client identifier, unique across the trial",
    "arm": "randomized arm (0 usual care, 1 FIT); in a stepped wedge, equal to exposure",
    "exposure": "1 if FIT was offered to the client (stepped wedge: unit had crossed over)",
    "month": "months since the client's start (0 = baseline)",
    "outcome": "ORS score (0-40) or 0/1 binary outcome; NaN where not observed",
}
#: Columns used by some estimators when present.
OPTIONAL_COLUMNS: dict[str, str] = {
    "period": "calendar period of the observation (stepped-wedge period effects)",
    "calendar_month": "calendar month of the observation",
    "start_month": "calendar month of the client's start",
    "uptake": "1 if the client took up FIT (observed compliance; 0 in usual care)",
    "fidelity": "fidelity level of the FIT therapist (0 low, 1 medium, 2 high; -1 none)",
    "dropout": "1 if the client dropped out of treatment",
    "observed": "True where the outcome was measured",
    "time": "model time, 0 at baseline and 1 at the primary month (recomputed from month "
            "by the analysis plan)",
    "baseline": "the client's baseline outcome",
    "step": "stepped wedge: the unit's step (1..S)",
    "step_period": "stepped wedge: schedule period of the client's start",
    "complier": "latent complier status (simulation only)",
    "srs": "Session Rating Scale score",
}


class LongFormatError(FitlabError, ValueError):
    """Data that do not fit the long format; the message says which column and why."""


class EstimatorError(FitlabError, ValueError):
    """An unknown estimator, or options an estimator does not accept."""


def check_long(
    data: pd.DataFrame,
    columns: dict[str, str] | None = None,
    required: tuple[str, ...] = tuple(REQUIRED_COLUMNS),
    binary: bool | None = None,
    outcome_range: tuple[float, float] | None = None,
    design: str | None = None,
    keep: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Validate (and rename) a long table; refuse data that must not or cannot be analysed.

    Parameters
    ----------
    data : DataFrame
        One row per client x occasion.
    columns : dict, optional
        Mapping from the standard names to the names in ``data``,
        e.g. ``{"outcome": "ors", "client": "id"}``.
    required : tuple of str
        Standard columns this estimator needs.
    binary : bool, optional
        If True, the outcome must be 0/1; if False, numeric.
    outcome_range : (float, float), optional
        The instrument's range (ORS: 0-40); observed outcomes outside it are refused.
    design : str, optional
        The analysis plan's design: outside a stepped wedge, ``exposure`` must equal
        ``arm`` (the offer is the randomized arm).
    keep : tuple of str
        Further columns of ``data`` to keep under their own names (e.g. the covariates of
        a model formula).

    Returns
    -------
    DataFrame
        A copy with standard column names and ``observed`` rows only. One column of the
        data may fill two roles (``{"arm": "group", "exposure": "group"}``). Without a
        ``therapist`` column no client has a therapist (-1). Text identifiers (``unit``,
        ``therapist``, ``client``) are replaced by integer codes (a text therapist id that
        is missing, ``""`` or ``"-1"`` becomes -1).

    Raises
    ------
    LongFormatError
        Any column (mapped or not) of Swedish personal identity numbers (never echoed:
        :mod:`models.privacy`); mapped or kept columns the data do not have; missing
        columns; no randomized arm (absent, or one arm only) where ``arm`` is required;
        fully duplicated rows; non-numeric outcomes, or outside ``outcome_range``;
        ``arm``/``exposure`` not coded 0/1; ``exposure`` contradicting ``arm`` outside a
        stepped wedge; negative months; a client under two therapists or units.
    """
    if not isinstance(data, pd.DataFrame):
        raise LongFormatError(f"expected a pandas DataFrame, got {type(data).__name__}")
    mapping = dict(columns or {})
    unknown = set(mapping) - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS)
    if unknown:
        raise LongFormatError(
            f"unknown standard column(s) in mapping: {sorted(unknown)}; allowed: "
            f"{sorted(set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS))}"
        )
    # before anything else, and on every column: identifiers never go further
    refuse_identity_numbers(data, LongFormatError)
    absent = sorted({v for v in mapping.values() if v not in data.columns}
                    | {c for c in keep if c not in data.columns and c not in mapping})
    if absent:
        raise LongFormatError(f"column(s) {absent} not in the data; its columns: "
                              f"{[str(c) for c in data.columns]}")
    # assigned, not renamed: one column of yours may fill two roles, and a standard
    # column the user mapped from another one is replaced by it
    df = data.assign(**{k: data[v].to_numpy() for k, v in mapping.items()}) if mapping else data
    given_exposure = "exposure" in df.columns
    if not given_exposure and "arm" in df.columns:
        df = df.assign(exposure=df["arm"])
    if "therapist" not in df.columns:  # no therapist level: every client on its own
        df = df.assign(therapist=-1)
    if "arm" in required:
        _check_arm(df)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise LongFormatError(
            f"missing column(s) {missing}; the long format needs {list(required)} "
            "(pass columns={'standard': 'yours'} to map your names)"
        )
    _refuse_duplicated_rows(data, df)
    # keep the standard columns only: smaller copies, and no name clashes downstream
    known = [c for c in df.columns if c in REQUIRED_COLUMNS or c in OPTIONAL_COLUMNS
             or c in keep]
    raw = df["outcome"]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        out = raw.to_numpy(dtype=float)
    else:
        coerced = pd.to_numeric(raw, errors="coerce")
        bad = coerced.isna() & raw.notna()
        if bad.any():
            raise LongFormatError(
                f"column 'outcome' must be numeric; found {show(raw[bad].iloc[0])} "
                f"({int(bad.sum()):,} rows)"
            )
        out = coerced.to_numpy(dtype=float)
    rows = ~np.isnan(out)
    if "observed" in df.columns:
        rows &= df["observed"].to_numpy(dtype=bool)
    if not rows.any():
        raise LongFormatError("no observed outcomes")
    df = df.loc[rows, known].reset_index(drop=True)
    df["outcome"] = out[rows]
    if binary is True and not df["outcome"].isin([0.0, 1.0]).all():
        raise LongFormatError("column 'outcome' must be 0/1 for a binary model")
    if outcome_range is not None and binary is not True:
        lo, hi = outcome_range
        bad = (df["outcome"] < lo) | (df["outcome"] > hi)
        if bad.any():
            raise LongFormatError(
                f"column 'outcome': {int(bad.sum()):,} observed values outside the "
                f"instrument's range {lo:g}-{hi:g} (min {df['outcome'].min():g}, max "
                f"{df['outcome'].max():g}); check the coding, or map the right column")
    for col in ("arm", "exposure"):
        if col in df.columns:
            _refuse_not_binary(df[col], col)
    if given_exposure and design != "stepped_wedge" and {"arm", "exposure"} <= set(df.columns):
        differ = int((df["arm"].to_numpy() != df["exposure"].to_numpy()).sum())
        if differ:
            raise LongFormatError(
                f"column 'exposure' differs from 'arm' in {differ:,} rows, but outside a "
                "stepped wedge FIT is offered by the randomized arm; pass --design "
                "stepped_wedge if it is one, or drop or fix the exposure column")
    if "month" in df.columns:
        if not pd.api.types.is_numeric_dtype(df["month"]):
            raise LongFormatError("column 'month' must be numeric")
        negative = int((df["month"].to_numpy(dtype=float) < 0).sum())
        if negative:
            raise LongFormatError(f"column 'month' must be >= 0 (months since the client's "
                                  f"start); {negative:,} rows are negative")
    if "client" in df.columns:
        for col in ("unit", "therapist"):
            if col in df.columns:
                who = _first_mixed(df["client"].to_numpy(), df[col].to_numpy())
                if who is not None:
                    ids = df["client"]
                    n = df.loc[(ids.astype(str) if ids.dtype == object else ids) == who,
                               col].nunique()
                    raise LongFormatError(
                        f"client {show(who)} appears under {n} different {col}s; "
                        f"each client must belong to one {col}"
                    )
    if "therapist" in df.columns and "unit" in df.columns:
        has = ~_no_therapist(df["therapist"])
        who = _first_mixed(df["therapist"].to_numpy()[has], df["unit"].to_numpy()[has])
        if who is not None:
            raise LongFormatError(f"therapist {show(who)} appears in more than one unit")
    for col in ("unit", "therapist", "client"):
        if col in df.columns and not pd.api.types.is_integer_dtype(df[col]):
            df[col] = _integer_codes(df[col], col == "therapist")
    return df



def _check_arm(df: pd.DataFrame) -> None:
    """Refuse data without a randomized comparison: no ``arm``, or one arm only (the
    0/1 coding is checked with the other columns)."""
    if "arm" not in df.columns:
        raise LongFormatError(
            "no randomized arm: the data have no column 'arm'. The estimators compare the "
            "arms of a randomized trial and need each client's arm (0 usual care, 1 FIT); "
            "map your column with columns={'arm': 'yours'} (command line: --columns "
            "arm=yours)")
    arm = pd.to_numeric(df["arm"], errors="coerce")
    if arm.isin([0, 1]).all() and arm.nunique() < 2:
        raise LongFormatError(
            f"column 'arm' is {int(arm.iloc[0])} for every row: the data hold one arm only, "
            "so there is no randomized comparison to estimate an effect from")

def _refuse_duplicated_rows(data: pd.DataFrame, df: pd.DataFrame) -> None:
    """Refuse rows that repeat another row in every column (a copy-paste or a bad join)."""
    # cheap first: with one row per (client, month) no row can repeat another
    if not {"client", "month"} <= set(df.columns):
        return
    client, month = df["client"].to_numpy(), df["month"].to_numpy()
    if client.dtype.kind in "iuf" and month.dtype.kind in "iuf":
        if not _sorted_pairs_repeat(client, month):
            return
    elif not df.duplicated(["client", "month"]).any():
        return
    dup = data.duplicated(keep="first")
    if dup.any():
        first = int(np.flatnonzero(dup.to_numpy())[0])
        raise LongFormatError(
            f"{int(dup.sum()):,} rows repeat another row exactly (the first at row "
            f"{first + 1} of the data); remove the duplicates")


def _sorted_pairs_repeat(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether some (a, b) pair occurs twice (O(n) when already sorted, as simulated)."""
    if a.size < 2:
        return False
    if not np.all((a[1:] > a[:-1]) | ((a[1:] == a[:-1]) & (b[1:] > b[:-1]))):
        order = np.lexsort((b, a))
        a, b = a[order], b[order]
    return bool(((a[1:] == a[:-1]) & (b[1:] == b[:-1])).any())


def _refuse_not_binary(col: pd.Series, name: str) -> None:
    values = col.to_numpy() if col.dtype.kind in "iufb" else \
        pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad = (values != 0) & (values != 1)  # NaN too
    if bad.any():
        seen = sorted({show(v) for v in col[bad].unique()[:5]})
        raise LongFormatError(
            f"column {name!r} must be coded 0 (usual care) / 1 (FIT); {int(bad.sum()):,} "
            f"rows are not (values {', '.join(seen)}); recode it (e.g. 1/2 -> 0/1)")


def _no_therapist(col: pd.Series) -> np.ndarray:
    """Rows of clients without a therapist: -1 (or, for text ids, missing, "" or "-1")."""
    if pd.api.types.is_numeric_dtype(col):
        return (col.to_numpy() == -1)
    text = col.astype(str).str.strip()
    return (col.isna() | text.isin(["", "-1", "-1.0"])).to_numpy()


def _integer_codes(col: pd.Series, therapist: bool) -> np.ndarray:
    """Integer codes of text identifiers (sorted order); -1 kept for 'no therapist'."""
    none = _no_therapist(col) if therapist else np.zeros(len(col), dtype=bool)
    codes, _ = pd.factorize(col.astype(str), sort=True)
    codes = codes.astype(np.int64)
    if therapist:
        codes[none] = -1
    return codes


def _first_mixed(groups: np.ndarray, values: np.ndarray):
    """First group whose rows do not all share one value, or None (sort-based, O(n log n))."""
    if groups.size == 0:
        return None
    if groups.dtype == object or values.dtype == object:  # text ids: compare as text
        groups, values = groups.astype(str), values.astype(str)
    order = np.argsort(groups, kind="stable")
    g, v = groups[order], values[order]
    bad = (g[1:] == g[:-1]) & (v[1:] != v[:-1])
    if not bad.any():
        return None
    first = g[1:][bad][0]
    return first.item() if isinstance(first, np.generic) else first


@dataclass
class Estimate:
    """The small, uniform result of every estimator.

    Attributes
    ----------
    estimator : str
        Registry name of the estimator.
    estimand : str
        What ``estimate`` targets: ``"itt"``, ``"cace"``, ``"risk_difference"``, ...
    estimate : float
        Point estimate (posterior mean for Bayesian estimators).
    se : float
        Standard error (posterior SD for Bayesian estimators).
    lower, upper : float
        95% confidence or credible interval.
    p_positive : float or None
        Posterior P(effect > 0) (Bayesian fits; ``None`` for frequentist ones).
    p_value : float or None
        Two-sided p-value of no effect (frequentist estimators).
    extra : dict
        Other derived quantities (e.g. risk ratio, variance components, per-fidelity
        effects), JSON-native.
    diagnostics : dict
        ``converged`` (bool), ``fit_seconds``, and for Bayesian fits ``rhat_max``,
        ``ess_bulk_min``, ``divergences``; ``warnings`` as a list of strings.
    """

    estimator: str
    estimand: str
    estimate: float
    se: float
    lower: float
    upper: float
    p_positive: float | None = None
    p_value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """False when the fit's diagnostics failed; such fits are flagged, never hidden."""
        return bool(self.diagnostics.get("converged", True))

    def significant(self, alpha: float = 0.05, sides: int = 2) -> bool:
        """The decision rule used for power.

        Two-sided: ``p < alpha``, or P(effect > 0) outside ``[alpha/2, 1 - alpha/2]``.
        One-sided (benefit of FIT, a positive effect): the one-sided p-value
        (``p/2`` when the estimate is positive) below ``alpha``, or P(effect > 0) above
        ``1 - alpha``. Without either, the interval excluding 0 (in the benefit
        direction when one-sided).
        """
        if sides not in (1, 2):
            raise ValueError(f"sides must be 1 or 2, got {sides!r}")
        if self.p_value is not None and not math.isnan(self.p_value):
            if sides == 2:
                return self.p_value < alpha
            one = self.p_value / 2 if self.estimate > 0 else 1 - self.p_value / 2
            return one < alpha
        if self.p_positive is not None and not math.isnan(self.p_positive):
            if sides == 2:
                return self.p_positive > 1 - alpha / 2 or self.p_positive < alpha / 2
            return self.p_positive > 1 - alpha
        if sides == 1:
            return self.lower > 0.0
        return not (self.lower <= 0.0 <= self.upper)

    def to_dict(self) -> dict[str, Any]:
        """JSON-native dict (NaN kept as float)."""
        return json_native(asdict(self))

    def to_row(self) -> dict[str, Any]:
        """Flat dict for one row of a replicate table (extra and diagnostics prefixed)."""
        d = asdict(self)
        row = {k: d[k] for k in ("estimator", "estimand", "estimate", "se", "lower",
                                 "upper", "p_positive", "p_value")}
        for k, v in d["diagnostics"].items():
            row[f"diag_{k}"] = "; ".join(map(str, v)) if isinstance(v, list) else v
        for k, v in d["extra"].items():
            if isinstance(v, (int, float, bool, str, np.floating, np.integer)) or v is None:
                row[f"x_{k}"] = v
        row["converged"] = self.converged
        return json_native(row)


class Estimator:
    """Base class: build once, then ``fit`` many data sets, each fit a pure function.

    ``fit(data)`` depends on the data, the plan and the options only: never on what this
    object (or this process) fitted before. Subclasses set ``name``, ``estimand``,
    ``outcome_kinds``, ``required`` and ``defaults`` (their options and default values)
    and implement ``_fit(df, primary_month)``.

    Parameters
    ----------
    plan : AnalysisPlan, Scenario or None
        The analysis plan (a scenario gives its own, :meth:`AnalysisPlan.from_scenario`).
    columns : dict, optional
        Column mapping for real data (see :func:`check_long`).
    primary_month : float, optional
        Overrides the plan's primary month.
    **options
        Estimator-specific options; unknown ones raise :class:`EstimatorError`.
    """

    name: ClassVar[str] = "base"
    estimand: ClassVar[str] = "itt"
    outcome_kinds: ClassVar[tuple[str, ...]] = ("ors",)
    required: ClassVar[tuple[str, ...]] = tuple(REQUIRED_COLUMNS)
    #: the options this estimator accepts, with their defaults
    defaults: ClassVar[dict[str, Any]] = {}
    #: further data columns kept by ``prepare`` under their own names (e.g. covariates)
    keep: tuple[str, ...] = ()

    def __init__(self, plan=None, columns: dict[str, str] | None = None, **options):
        self.plan = as_plan(plan, primary_month=options.pop("primary_month", None))
        self.columns = dict(columns) if columns else None
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise EstimatorError(f"unknown option(s) {unknown} for {self.name}; allowed: "
                                 f"{sorted(self.defaults) or 'none'}")
        self.options = {**self.defaults, **options}

    def prepare(self, data: pd.DataFrame) -> pd.DataFrame:
        """Validate and rename ``data``; keep observed rows; add the plan's model ``time``.

        ``time`` is always computed here from ``month`` and the plan (its primary month
        and time scale), so that every estimator uses the same time axis; a ``time``
        column in the data is replaced.
        """
        binary = "binary" in self.outcome_kinds and "ors" not in self.outcome_kinds
        ors = not binary and self.plan.outcome == "ors"  # the CLI's default for real data
        df = check_long(data, self.columns, self.required, binary=binary or None,
                        outcome_range=(ORS_MIN, ORS_MAX) if ors else None,
                        design=self.plan.design, keep=tuple(self.keep))
        primary = self.plan.primary(df)
        df["time"] = self.plan.time(df["month"].to_numpy(dtype=float), primary)
        df.attrs["primary_month"] = primary
        return df

    def fit(self, data: pd.DataFrame) -> Estimate:
        """Fit to one long table and return an :class:`Estimate`."""
        df = self.prepare(data)
        return self._fit(df, df.attrs["primary_month"])

    def _fit(self, df: pd.DataFrame, primary_month: float) -> Estimate:  # pragma: no cover
        raise NotImplementedError


ESTIMATORS: dict[str, type[Estimator]] = {}


def register(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator adding an estimator to :data:`ESTIMATORS` under ``cls.name``."""
    ESTIMATORS[cls.name] = cls
    return cls


def get_estimator(name: str, plan=None, **options) -> Estimator:
    """Build the estimator called ``name`` for an analysis plan (or a scenario's plan).

    Raises
    ------
    EstimatorError
        With the list of known estimators.
    """
    import models  # noqa: F401  (importing the package registers every estimator)

    if name not in ESTIMATORS:
        raise EstimatorError(f"unknown estimator {name!r}; known: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name](plan, **options)
