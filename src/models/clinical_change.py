"""Reliable and clinically significant change (Jacobson & Truax 1991), and the client
table of baseline, early and primary-month ORS/SRS that the prediction models use.

The rules, written once:

- the standard error of a difference of two scores is ``S_diff = sd * sqrt(2) *
  sqrt(1 - reliability)``, with ``sd`` the SD of the pre-treatment scores and
  ``reliability`` the instrument's (ORS alpha .87-.96; a test-retest reliability gives a
  much larger threshold);
- the reliable change index is ``RCI = (post - pre) / S_diff``; a change is *reliable*
  where ``|RCI| > z`` (1.96);
- a change is *clinically significant* (a "recovery") where it is a reliable improvement
  **and** the client crosses the clinical cutoff: ``pre < cutoff <= post`` (ORS: 25 for
  adults, 32 for children). Clients who start at or above the cutoff cannot cross it; the
  prediction of clinically significant change is therefore made among clients who start
  below it.

Examples
--------
>>> inst = Instrument(sd=7.5, reliability=0.87, cutoff=25.0)
>>> round(inst.s_diff, 4), round(inst.threshold, 3)
(3.8243, 7.496)
>>> change_categories([15.0], [26.0], inst)["clinically_significant"].tolist()
[True]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from models.base import LongFormatError

__all__ = [
    "Instrument",
    "reliable_change_index",
    "change_categories",
    "client_outcomes",
    "TARGETS",
]

#: The binary targets a prediction model can have, and the column that holds each.
TARGETS = ("dropout", "reliable_improvement", "clinically_significant")


@dataclass(frozen=True)
class Instrument:
    """The constants of the reliable-change rules for one instrument.

    Attributes
    ----------
    sd : float
        SD of pre-treatment scores (ORS: about 7-8).
    reliability : float
        The reliability in the RCI (ORS alpha .87).
    cutoff : float
        The clinical cutoff (ORS: 25 for adults).
    z : float
        The critical value for a reliable change (1.96).
    """

    sd: float = 7.5
    reliability: float = 0.87
    cutoff: float = 25.0
    z: float = 1.96

    def __post_init__(self):
        problems = []
        if not (self.sd > 0 and math.isfinite(self.sd)):
            problems.append(f"sd must be positive, got {self.sd!r}")
        if not 0 < self.reliability < 1:
            problems.append(f"reliability must be in (0, 1), got {self.reliability!r}")
        if not math.isfinite(self.cutoff):
            problems.append(f"cutoff must be a number, got {self.cutoff!r}")
        if not self.z > 0:
            problems.append(f"z must be positive, got {self.z!r}")
        if problems:
            raise LongFormatError("reliable-change instrument: " + "; ".join(problems))

    @classmethod
    def from_scenario(cls, scenario) -> Instrument:
        """The ORS instrument of a scenario (``outcome.sd``, ``reliability``, ``cutoff``)."""
        oc = scenario.outcome
        if oc.kind != "ors":
            raise LongFormatError("reliable change needs an ORS outcome; the scenario's "
                                  f"outcome is {oc.kind!r}")
        return cls(sd=float(oc.sd), reliability=float(oc.reliability), cutoff=float(oc.cutoff))

    @property
    def s_diff(self) -> float:
        """Standard error of the difference of two scores."""
        return self.sd * math.sqrt(2.0) * math.sqrt(1.0 - self.reliability)

    @property
    def threshold(self) -> float:
        """The smallest reliable change in score points, ``z * S_diff``."""
        return self.z * self.s_diff

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "s_diff": self.s_diff, "threshold": self.threshold}


def reliable_change_index(pre, post, instrument: Instrument) -> np.ndarray:
    """``(post - pre) / S_diff`` (NaN where either score is missing)."""
    pre = np.asarray(pre, dtype=float)
    post = np.asarray(post, dtype=float)
    return (post - pre) / instrument.s_diff


def change_categories(pre, post, instrument: Instrument) -> pd.DataFrame:
    """Reliable improvement, reliable deterioration and clinically significant change.

    Returns
    -------
    DataFrame
        ``rci``, ``reliable_improvement`` (RCI > z), ``reliable_deterioration``
        (RCI < -z), ``below_cutoff`` (pre < cutoff), ``clinically_significant``
        (reliable improvement and ``pre < cutoff <= post``). Where ``post`` is missing
        the categories are missing too (pandas' nullable booleans).
    """
    pre = np.asarray(pre, dtype=float)
    post = np.asarray(post, dtype=float)
    rci = reliable_change_index(pre, post, instrument)
    seen = ~np.isnan(rci)
    c = instrument.cutoff
    cols = {
        "reliable_improvement": rci > instrument.z,
        "reliable_deterioration": rci < -instrument.z,
        "clinically_significant": (rci > instrument.z) & (pre < c) & (post >= c),
    }
    out = pd.DataFrame({"rci": rci})
    for k, v in cols.items():
        out[k] = pd.array(np.where(seen, v, False), dtype="boolean")
        out.loc[~seen, k] = pd.NA
    out["below_cutoff"] = pre < c
    return out


def client_outcomes(df: pd.DataFrame, primary_month: float, instrument: Instrument,
                    early_month: float | None = None) -> pd.DataFrame:
    """One row per client: baseline, early and primary-month scores, change categories.

    Parameters
    ----------
    df : DataFrame
        Validated long table, observed rows only (:meth:`models.base.Estimator.prepare`).
    primary_month : float
    instrument : Instrument
    early_month : float, optional
        The early scores are those of the last observed follow-up at or before this
        month (default: the first follow-up month in the data; the simulator measures
        at months 1 and 3 before the primary month).

    Returns
    -------
    DataFrame
        ``client, unit, therapist, exposure, ors0, srs0, early_month, ors_early,
        srs_early, early_change, early_missing, ors_primary, observed_primary`` and the
        columns of :func:`change_categories`, plus ``dropout`` when the data have it.
        ``srs0``/``srs_early`` are NaN without an ``srs`` column. Clients without a
        baseline (month 0) score are left out.

    Raises
    ------
    LongFormatError
        No baseline scores, or an early month that is not a follow-up before the primary.
    """
    months = np.sort(df["month"].unique().astype(float))
    follow = months[(months > 0) & (months < float(primary_month))]
    if early_month is None:
        if follow.size == 0:
            raise LongFormatError("no follow-up before the primary month to take early "
                                  f"scores from; months seen: {months.tolist()}")
        early_month = float(follow[0])
    if not 0 < early_month < float(primary_month):
        raise LongFormatError(f"early_month must lie between 0 and the primary month "
                              f"{primary_month:g}, got {early_month!r}")
    srs = "srs" in df.columns
    first = df.sort_values("month").groupby("client", sort=True).first()
    base = df[df["month"] == 0].drop_duplicates("client").set_index("client")
    if base.empty:
        raise LongFormatError("no baseline (month 0) scores: prediction needs each "
                              "client's intake ORS")
    early = (df[(df["month"] > 0) & (df["month"] <= early_month)]
             .sort_values("month").groupby("client").last())
    prim = df[df["month"] == float(primary_month)].drop_duplicates("client").set_index("client")
    ids = base.index
    out = pd.DataFrame({
        "unit": first.loc[ids, "unit"],
        "therapist": first.loc[ids, "therapist"],
        "exposure": first.loc[ids, "exposure"].astype(int),
        "ors0": base["outcome"].astype(float),
        "srs0": base["srs"].astype(float) if srs else np.nan,
        "early_month": early["month"].reindex(ids).astype(float),
        "ors_early": early["outcome"].reindex(ids).astype(float),
        "srs_early": early["srs"].reindex(ids).astype(float) if srs else np.nan,
        "ors_primary": prim["outcome"].reindex(ids).astype(float),
    }, index=ids)
    out["early_change"] = out["ors_early"] - out["ors0"]
    out["early_missing"] = out["ors_early"].isna().astype(int)
    out["observed_primary"] = out["ors_primary"].notna()
    cats = change_categories(out["ors0"], out["ors_primary"], instrument)
    cats.index = ids
    out = out.join(cats)
    if "dropout" in df.columns:
        out["dropout"] = first.loc[ids, "dropout"].astype(int)
    out.attrs["early_month"] = float(early_month)
    return out.reset_index()
