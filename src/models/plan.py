"""The analysis plan: what an estimator needs to know besides the data.

An estimator is a pure function of its data and its plan. The plan says where the primary
time point is, how months become model time, the test's level and sides, how the design
clusters and (for a stepped wedge with learning) how long fidelity takes to ramp up. It is
a small frozen value: a scenario produces one (:meth:`AnalysisPlan.from_scenario`), and
real data get one from the command line's flags. Estimators never read a ``Scenario``.

Examples
--------
>>> from simulate import Scenario
>>> plan = AnalysisPlan.from_scenario(Scenario())
>>> plan.primary_month, plan.design, plan.time_scale
(12.0, 'individual', 'log')
>>> plan.replace(primary_month=6).primary_month
6.0
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulate.conventions import scaled_time
from simulate.errors import ProblemsError

__all__ = ["AnalysisPlan", "PlanError", "as_plan"]


class PlanError(ProblemsError):
    """An analysis plan that cannot be used; one problem per field."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__("analysis plan", source, problems)


class AnalysisPlan(BaseModel):
    """What the analysis assumes about the design, independent of any one data set.

    Attributes
    ----------
    primary_month : float or None
        Months since start of the primary outcome. ``None``: the last month observed in
        each data set (a function of that data set only).
    time_scale : {"log", "linear"}
        Model time ``log1p(month) / log1p(primary)`` or ``month / primary``
        (:func:`simulate.conventions.scaled_time`).
    alpha : float
        Significance level of the tests and ``1 - alpha`` intervals' complement.
    sides : {1, 2}
        Two-sided tests, or one-sided in the direction of benefit (FIT better).
    design : {"individual", "cluster", "stepped_wedge"} or None
        The randomization; sets the default clustering of robust standard errors.
    cluster : {"therapist", "unit", "none"} or None
        Clustering of robust standard errors; ``None``: therapist for individual
        randomization, unit otherwise.
    outcome : {"ors", "binary"} or None
        The outcome's kind where an estimator handles both.
    ramp_months : float or None
        Stepped wedge: months for fidelity to reach its level after a unit's crossover.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    primary_month: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    time_scale: Literal["log", "linear"] = "log"
    alpha: float = Field(0.05, gt=0.0, lt=1.0, allow_inf_nan=False)
    sides: Literal[1, 2] = 2
    design: Literal["individual", "cluster", "stepped_wedge"] | None = None
    cluster: Literal["therapist", "unit", "none"] | None = None
    outcome: Literal["ors", "binary"] | None = None
    ramp_months: float | None = Field(None, ge=0.0, allow_inf_nan=False)

    @classmethod
    def from_scenario(cls, scenario) -> AnalysisPlan:
        """The plan a scenario implies: its primary month, alpha, sides, design, ramp."""
        a = scenario.analysis
        return cls(primary_month=float(scenario.followup.primary), alpha=a.alpha,
                   sides=getattr(a, "sides", 2), design=scenario.design.kind,
                   outcome=scenario.outcome.kind,
                   ramp_months=scenario.compliance.ramp_months)

    @classmethod
    def make(cls, source: str = "analysis plan", **values: Any) -> AnalysisPlan:
        """Validate ``values``, raising :class:`PlanError` naming each bad field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise PlanError(source, [f"{'.'.join(map(str, e['loc'])) or '(plan)'}: "
                                     f"{e['msg']} (got {e.get('input')!r})"
                                     for e in exc.errors()]) from None

    def replace(self, **changes: Any) -> AnalysisPlan:
        """The same plan with some fields changed (validated)."""
        return AnalysisPlan.make(**{**self.model_dump(), **changes})

    def primary(self, df: pd.DataFrame) -> float:
        """The primary month for this data set: the plan's, else the last month observed."""
        if self.primary_month is not None:
            return float(self.primary_month)
        return float(np.nanmax(df["month"].to_numpy(dtype=float)))

    def time(self, month, primary_month: float) -> np.ndarray:
        """Model time of ``month`` (see ``time_scale``)."""
        return scaled_time(month, primary_month, self.time_scale)

    def cluster_level(self) -> str:
        """Clustering for robust standard errors (the plan's, else by design)."""
        if self.cluster is not None:
            return self.cluster
        return "therapist" if self.design == "individual" else "unit"

    def critical(self) -> float:
        """The normal quantile of a two-sided ``1 - alpha`` interval (for reference)."""
        from scipy.special import ndtri

        return float(ndtri(1 - self.alpha / 2))


def as_plan(plan_or_scenario=None, **overrides: Any) -> AnalysisPlan:
    """An :class:`AnalysisPlan` from a plan, a scenario, or ``None`` (all defaults).

    ``overrides`` (e.g. ``primary_month=6``) replace fields; ``None`` values are ignored.
    """
    if plan_or_scenario is None:
        plan = AnalysisPlan()
    elif isinstance(plan_or_scenario, AnalysisPlan):
        plan = plan_or_scenario
    elif hasattr(plan_or_scenario, "followup") and hasattr(plan_or_scenario, "design"):
        plan = AnalysisPlan.from_scenario(plan_or_scenario)
    else:
        raise TypeError(f"expected an AnalysisPlan or a Scenario, got "
                        f"{type(plan_or_scenario).__name__}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return plan.replace(**changes) if changes else plan
