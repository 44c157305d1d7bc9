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
from simulate.conventions import json_native
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
    keep: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Validate (and rename) a long table.

    Parameters
    ----------
    data : DataFrame
        One row per client x occasion.
    columns : dict, optional
        Mapping from the standard names to the names in ``data``,
        e.g. ``{"outcome": "ors", "client": "id"}``. One column of yours may fill two
        roles (``{"arm": "group", "exposure": "group"}``).
    required : tuple of str
        Standard columns this estimator needs. ``therapist`` may be absent from the data:
        then no client has a therapist (``-1``).
    binary : bool, optional
        If True, the outcome must be 0/1; if False, numeric.
    keep : tuple of str
        Further columns of ``data`` to keep under their own names (e.g. the covariates of
        a model formula).

    Returns
    -------
    DataFrame
        A copy with standard column names and ``observed`` rows only.

    Raises
    ------
    LongFormatError
        Missing columns, no randomized arm (absent, not 0/1, or one value only),
        non-numeric outcomes, a client under two therapists or units.
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
    absent = sorted({v for v in mapping.values() if v not in data.columns} |
                    {c for c in keep if c not in data.columns and c not in mapping})
    if absent:
        raise LongFormatError(f"column(s) {absent} not in the data; its columns: "
                              f"{[str(c) for c in data.columns]}")
    # assigned, not renamed: one column of yours may fill two roles
    df = data.assign(**{k: data[v].to_numpy() for k, v in mapping.items()}) if mapping else data
    if "exposure" not in df.columns and "arm" in df.columns:
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
                f"column 'outcome' must be numeric; found {raw[bad].iloc[0]!r}"
            )
        out = coerced.to_numpy(dtype=float)
    keep = ~np.isnan(out)
    if "observed" in df.columns:
        keep &= df["observed"].to_numpy(dtype=bool)
    if not keep.any():
        raise LongFormatError("no observed outcomes")
    df = df.loc[keep, known].reset_index(drop=True)
    df["outcome"] = out[keep]
    if binary is True and not df["outcome"].isin([0.0, 1.0]).all():
        raise LongFormatError("column 'outcome' must be 0/1 for a binary model")
    if "client" in df.columns:
        for col in ("unit", "therapist"):
            if col in df.columns:
                who = _first_mixed(df["client"].to_numpy(), df[col].to_numpy())
                if who is not None:
                    n = df.loc[df["client"] == who, col].nunique()
                    raise LongFormatError(
                        f"client {who!r} appears under {n} different {col}s; "
                        f"each client must belong to one {col}"
                    )
    if "therapist" in df.columns and "unit" in df.columns:
        has = df["therapist"].to_numpy() != -1
        who = _first_mixed(df["therapist"].to_numpy()[has], df["unit"].to_numpy()[has])
        if who is not None:
            raise LongFormatError(f"therapist {who!r} appears in more than one unit")
    for col in ("month",):
        if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
            raise LongFormatError(f"column '{col}' must be numeric")
    return df


def _check_arm(df: pd.DataFrame) -> None:
    """Refuse data without a randomized comparison: no ``arm``, not 0/1, or one arm only."""
    if "arm" not in df.columns:
        raise LongFormatError(
            "no randomized arm: the data have no column 'arm'. The estimators compare the "
            "arms of a randomized trial and need each client's arm (0 usual care, 1 FIT); "
            "map your column with columns={'arm': 'yours'} (command line: --columns "
            "arm=yours)")
    arm = pd.to_numeric(df["arm"], errors="coerce")
    bad = ~arm.isin([0, 1])
    if bad.any():
        raise LongFormatError(f"column 'arm' must be 0 (usual care) or 1 (FIT); found "
                              f"{df['arm'][bad].iloc[0]!r}")
    if arm.nunique() < 2:
        raise LongFormatError(
            f"column 'arm' is {int(arm.iloc[0])} for every row: the data hold one arm only, "
            "so there is no randomized comparison to estimate an effect from")


def _first_mixed(groups: np.ndarray, values: np.ndarray):
    """First group whose rows do not all share one value, or None (sort-based, O(n log n))."""
    if groups.size == 0:
        return None
    order = np.argsort(groups, kind="stable")
    g, v = groups[order], values[order]
    bad = (g[1:] == g[:-1]) & (v[1:] != v[:-1])
    return g[1:][bad][0].item() if bad.any() else None


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
        df = check_long(data, self.columns, self.required, binary=binary or None,
                        keep=self.keep)
        if (df["month"].to_numpy(dtype=float) < 0).any():
            raise LongFormatError("column 'month' must be >= 0 (months since the client's start)")
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
