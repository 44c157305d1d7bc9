"""The economic consequence analysis end to end: posterior draws in, figures and tables out.

Draws of the employment risk difference come from a file (a real trial's posterior), from
fitting ``bayes_binary`` to a real trial's long-format data (:func:`posterior_from_data`),
or from fitting it to a trial simulated from the scenario; the analysis itself is
:mod:`models.economics`. Used by ``fitlab economics`` and notebook
``06_economics.ipynb``.

Examples
--------
>>> import numpy as np
>>> from simulate import load_scenario
>>> sc = load_scenario({"outcome": {"kind": "binary"}, "economics": {"cost_per_client": 0}})
>>> res = economic_analysis(sc, np.full(100, 0.1))
>>> res.summary["p_cost_effective"], res.summary["evpi_per_client"]
(1.0, 0.0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fitlab.errors import MissingFileError
from models import economics as ec

__all__ = ["EmploymentPosterior", "EconomicAnalysis", "employment_posterior",
           "posterior_from_data", "read_draws", "economic_analysis", "SAMPLER", "FAST_SAMPLER"]

#: Options of the employment model (``bayes_binary``, integrated): full precision, and a
#: coarser integration for tests and quick looks (Monte Carlo errors up to 0.06 posterior
#: SDs instead of 0.03)
SAMPLER: dict = {}
FAST_SAMPLER = {"max_error": 0.06}


@dataclass
class EmploymentPosterior:
    """Posterior draws of the employment risk difference and where they came from.

    ``estimate`` is the :class:`models.base.Estimate` of the fit and ``truth`` the
    simulated trial's true risk difference (both ``None`` for draws read from a file).
    """

    draws: np.ndarray
    source: str
    estimate: object = None
    truth: float | None = None


@dataclass
class EconomicAnalysis:
    """Everything the analysis computes at once.

    Attributes
    ----------
    summary : dict
        :func:`models.economics.economic_summary` (at the plan's value of a month).
    curve : pandas.DataFrame
        ``wtp``, ``p_cost_effective`` (the acceptability curve), ``evpi_per_client`` and
        ``inb_mean`` at each willingness to pay for one extra month employed.
    inb : numpy.ndarray
        Incremental net benefit per client at the plan's value, one per draw.
    months : pandas.DataFrame
        Extra months employed per client: one column per year, one row per draw.
    """

    summary: dict
    curve: pd.DataFrame
    inb: np.ndarray
    months: pd.DataFrame


def employment_posterior(scenario, seed: int = 1, **sampler) -> EmploymentPosterior:
    """Simulate one trial of ``scenario`` and fit ``bayes_binary`` to it.

    Parameters
    ----------
    scenario : Scenario
        With a binary (employment) outcome, e.g. ``params/ips_2to1.yaml``.
    seed : int
        Seed of the simulated trial.
    **sampler
        Options of the estimator (default :data:`SAMPLER`).

    Returns
    -------
    EmploymentPosterior
    """
    from models import get_estimator
    from simulate import simulate_trial

    if scenario.outcome.kind != "binary":
        raise ec.EconomicsError(
            f"scenario {scenario.name} has outcome.kind {scenario.outcome.kind!r}; the "
            "economic analysis needs the employment effect (outcome.kind: binary, e.g. "
            "params/ips_2to1.yaml), or posterior draws from a file")
    trial = simulate_trial(scenario, seed)
    est = get_estimator("bayes_binary", scenario, **{**SAMPLER, **sampler})
    post = est.posterior(trial.data)
    return EmploymentPosterior(post.effect_draws, f"bayes_binary on a trial simulated from "
                               f"{scenario.name} (seed {seed})", post.estimate,
                               float(trial.truth["risk_difference"]))


def posterior_from_data(scenario, data: pd.DataFrame | str | os.PathLike, source: str,
                        columns=None, **sampler) -> EmploymentPosterior:
    """Fit ``bayes_binary`` to a real trial's long-format data under the scenario's plan.

    Parameters
    ----------
    scenario : Scenario
        Supplies the analysis plan (primary month, design) and the ``economics`` section;
        its outcome kind is taken as binary, since the data hold the employment outcome.
    data : pandas.DataFrame or path
        Long format (or a ``.csv``/``.parquet`` file of it), ``outcome`` coded 0/1
        (employed or not) per client and occasion; checked as every estimator checks it
        (identity numbers refused, and so on).
    source : str
        Where the data came from, for the summary and the messages.
    columns : dict, optional
        Standard name -> the data's column name.
    **sampler
        Options of the estimator (default :data:`SAMPLER`).

    Returns
    -------
    EmploymentPosterior
        Without a truth: nobody knows a real trial's effect.
    """
    from models import get_estimator
    from models.base import LongFormatError
    from models.plan import AnalysisPlan

    if not isinstance(data, pd.DataFrame):
        from fitlab.store import read_long

        data = read_long(data)
    plan = AnalysisPlan.from_scenario(scenario).replace(outcome="binary")
    est = get_estimator("bayes_binary", plan, columns=columns, **{**SAMPLER, **sampler})
    try:
        post = est.posterior(data)
    except LongFormatError as exc:
        raise LongFormatError(f"data file {source}: {exc}") from None
    return EmploymentPosterior(post.effect_draws, f"bayes_binary on the data in {source}",
                               post.estimate)


def read_draws(path: str | os.PathLike) -> EmploymentPosterior:
    """Posterior draws of the risk difference from ``.npy``, or CSV with a column
    ``risk_difference`` (or a single column)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"draws file not found: {path}")
    if path.suffix == ".npy":
        try:
            draws = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ec.EconomicsError(f"{path}: not a numeric .npy array ({exc})") from None
    else:
        try:
            df = pd.read_csv(path)
        except Exception as exc:
            raise ec.EconomicsError(f"{path}: cannot be read as CSV ({exc})") from None
        if "risk_difference" in df.columns:
            col = "risk_difference"
        elif df.shape[1] == 1:
            col = df.columns[0]
        else:
            raise ec.EconomicsError(f"{path}: needs a column 'risk_difference' (or a single "
                                    f"column); got {list(df.columns)}")
        draws = pd.to_numeric(df[col], errors="coerce").to_numpy()
    try:
        return EmploymentPosterior(ec.as_draws(draws), f"draws from {path}")
    except ec.EconomicsError as exc:
        raise ec.EconomicsError(f"{path}: {exc}") from None


def economic_analysis(scenario, draws, *, wtp=None, points: int = 201) -> EconomicAnalysis:
    """Run the whole analysis on posterior draws of the risk difference.

    Parameters
    ----------
    scenario : Scenario
        Its ``economics`` section and primary month are used.
    draws : array_like
        Posterior draws of the employment risk difference at the primary month.
    wtp : array_like, optional
        Willingness-to-pay values for the curve; default
        :func:`models.economics.wtp_grid` with ``points`` values, plus the plan's value.
    points : int

    Returns
    -------
    EconomicAnalysis
    """
    econ, primary = scenario.economics, scenario.followup.primary_month
    d = ec.as_draws(draws)
    grid = ec.wtp_grid(d, econ, primary, points) if wtp is None else np.asarray(wtp, float)
    grid = np.unique(np.append(grid, ec.decision_value_per_month(econ)))
    inb_grid = ec.incremental_net_benefit(d, econ, primary, grid)
    curve = pd.DataFrame({"wtp": grid, "p_cost_effective": (inb_grid > 0).mean(axis=1),
                          "evpi_per_client": ec.evpi(inb_grid),
                          "inb_mean": inb_grid.mean(axis=1)})
    months = ec.extra_months(d, econ, primary)
    return EconomicAnalysis(
        summary=ec.economic_summary(d, econ, primary, scenario.analysis.alpha),
        curve=curve, inb=ec.incremental_net_benefit(d, econ, primary),
        months=pd.DataFrame(months, columns=[f"year {y + 1}" for y in range(months.shape[1])]))
