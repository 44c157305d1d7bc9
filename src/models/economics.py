"""The economic consequence analysis of an employment effect: pure functions of posterior draws.

The input is a set of posterior draws of the effect on employment, the *risk difference*
(IPS minus control) in the probability of being employed at the trial's primary month,
e.g. from ``bayes_binary`` (:mod:`models.bayes.binary`), and the scenario's
``economics:`` section (:class:`simulate.economics.Economics`). The steps:

1. **Extra months employed** per client in year y of the horizon::

       months[y] = 12 * RD * w[y]

   The risk difference is read as the difference in the share of the year spent
   employed. ``w`` carries the measured effect over the years: all ones
   (``effect_shape: constant``) or the reference trial's profile relative to the year
   holding the primary month (``reference``: Holmås et al. 2021's 0.245, 0.465, 0.55
   months; an 18-month primary month lies in year 2, so ``w = (0.53, 1, 1.18)``).
2. **Value of one extra month** of employment, by the plan's formula::

       V = employment extent x monthly wage x (1 + employer contributions)
           x (1 - wage-subsidy rate)

   or its hourly alternative, worked hours x hourly wage x (1 - work-capacity
   reduction) x (1 + employer contributions). The value to society used in the decision
   is ``lambda* = V * (1 - displacement share) + other value per month``.
3. **Incremental net benefit** per client, with years discounted (year 1 not, year y by
   ``(1 + r)^-(y-1)``) and the programme's extra cost paid at the start::

       INB(lambda) = lambda * sum_y months[y] / (1 + r)^(y-1) - cost

   one value per posterior draw: its posterior distribution.
4. **Cost-effectiveness acceptability curve**: ``P(INB(lambda) > 0)`` over the
   willingness to pay ``lambda`` for one extra month of employment; at ``lambda*`` it is
   the probability that the programme is worth its cost. With a fixed cost the curve
   rises with ``lambda`` (Fenwick, Claxton & Sculpher 2001).
5. **Expected value of perfect information** per client,
   ``E[max(INB, 0)] - max(E[INB], 0)``: what removing all uncertainty about the effect
   would be worth before choosing between the programme and usual care; zero when there
   is no uncertainty or no draw would change the choice. The population value multiplies
   it by the clients a year, discounted over the years the decision applies (Claxton
   1999; Briggs, Claxton & Sculpher 2006, ch. 6).

Left out, as the plan notes: displacement (unless ``displacement_share`` is set),
transfers such as social assistance (a saving for the state and a loss for the person,
not a net gain to society) and health-care use (``other_value_per_month`` where unit
costs are known).

Examples
--------
>>> import numpy as np
>>> from simulate.economics import Economics
>>> econ = Economics(effect_shape="constant", horizon_years=1, cost_per_client=1000.0)
>>> round(value_per_month(econ))
4408
>>> rd = np.array([0.0, 0.05, 0.10])
>>> incremental_net_benefit(rd, econ, primary_month=12).round().tolist()
[-1000.0, 1645.0, 4289.0]
"""

from __future__ import annotations

import math

import numpy as np

from simulate.errors import FitlabError

__all__ = [
    "EconomicsError",
    "as_draws",
    "value_per_month",
    "hourly_value",
    "decision_value_per_month",
    "year_weights",
    "discount_factors",
    "extra_months",
    "discounted_months",
    "incremental_net_benefit",
    "acceptability",
    "evpi",
    "population_factor",
    "wtp_grid",
    "economic_summary",
]


class EconomicsError(FitlabError, ValueError):
    """Draws or settings the economic analysis cannot use."""


def as_draws(draws) -> np.ndarray:
    """Posterior draws of the risk difference as a flat float array, checked.

    Raises
    ------
    EconomicsError
        When empty, not finite, or outside [-1, 1] (a risk difference).
    """
    d = np.asarray(draws, dtype=float).ravel()
    if d.size == 0:
        raise EconomicsError("no posterior draws of the risk difference were given")
    if not np.isfinite(d).all():
        raise EconomicsError("posterior draws of the risk difference must all be finite numbers")
    if (np.abs(d) > 1).any():
        raise EconomicsError("posterior draws of the risk difference must lie in [-1, 1] "
                             f"(a difference of two probabilities); got {d.min():g} to {d.max():g}")
    return d


def hourly_value(econ) -> float:
    """Value of one worked hour in the hourly alternative, before employer contributions:
    ``hourly_wage * (1 - work_capacity_reduction)`` (129 x 0.3 = 38.7 SEK)."""
    return econ.hourly_wage * (1.0 - econ.work_capacity_reduction)


def value_per_month(econ) -> float:
    """Value of one extra month of employment (``econ.valuation`` chooses the formula).

    ``monthly_wage``: extent x monthly wage x (1 + employer contributions) x (1 - wage
    subsidy rate). ``hourly_wage``: extent x hours per month x :func:`hourly_value` x
    (1 + employer contributions).

    Examples
    --------
    >>> from simulate.economics import Economics
    >>> e = Economics(employment_extent=1.0, monthly_wage=20000.0, wage_subsidy_rate=0.5,
    ...               employer_contributions=0.3)
    >>> value_per_month(e)
    13000.0
    """
    if econ.valuation == "monthly_wage":
        pay = econ.employment_extent * econ.monthly_wage * (1.0 - econ.wage_subsidy_rate)
    else:
        pay = econ.employment_extent * econ.hours_per_month * hourly_value(econ)
    return pay * (1.0 + econ.employer_contributions)


def decision_value_per_month(econ) -> float:
    """``lambda*``: :func:`value_per_month` net of displacement, plus other value."""
    return value_per_month(econ) * (1.0 - econ.displacement_share) + econ.other_value_per_month


def year_weights(econ, primary_month: float) -> np.ndarray:
    """Effect in each year of the horizon relative to the one measured at ``primary_month``.

    Examples
    --------
    >>> from simulate.economics import Economics
    >>> year_weights(Economics(), 18).round(3).tolist()
    [0.527, 1.0, 1.183]
    """
    h = econ.horizon_years
    if econ.effect_shape == "constant":
        return np.ones(h)
    ref = np.asarray(econ.reference_months, dtype=float)
    year = min(max(1, math.ceil(float(primary_month) / 12.0 - 1e-9)), len(ref))
    if ref[year - 1] <= 0:
        raise EconomicsError(f"economics.reference_months: year {year} (the year of the "
                             f"primary month {primary_month:g}) must be positive to scale by")
    return ref[:h] / ref[year - 1]


def discount_factors(econ) -> np.ndarray:
    """``(1 + r)^-(y-1)`` for years y = 1..horizon."""
    return (1.0 + econ.discount_rate) ** -np.arange(econ.horizon_years)


def extra_months(draws, econ, primary_month: float) -> np.ndarray:
    """Extra months employed per client in each year: shape ``(draws, horizon_years)``."""
    return 12.0 * as_draws(draws)[:, None] * year_weights(econ, primary_month)[None, :]


def discounted_months(draws, econ, primary_month: float) -> np.ndarray:
    """Extra months employed over the horizon, discounted: one value per draw."""
    return extra_months(draws, econ, primary_month) @ discount_factors(econ)


def incremental_net_benefit(draws, econ, primary_month: float, wtp=None) -> np.ndarray:
    """Incremental net benefit per client, one value per draw.

    Parameters
    ----------
    draws : array_like
        Posterior draws of the risk difference.
    econ : Economics
    primary_month : float
        The month the risk difference refers to (sets the reference year).
    wtp : float or array_like, optional
        Willingness to pay for one extra month employed; default
        :func:`decision_value_per_month`. An array gives shape ``(len(wtp), draws)``.

    Returns
    -------
    numpy.ndarray
    """
    months = discounted_months(draws, econ, primary_month)
    lam = decision_value_per_month(econ) if wtp is None else np.asarray(wtp, dtype=float)
    return np.multiply.outer(lam, months) - econ.cost_per_client


def acceptability(draws, econ, primary_month: float, wtp) -> np.ndarray:
    """The acceptability curve: ``P(INB(lambda) > 0)`` for each ``lambda`` in ``wtp``."""
    inb = incremental_net_benefit(draws, econ, primary_month, np.atleast_1d(wtp))
    return (inb > 0).mean(axis=-1)


def evpi(inb) -> np.ndarray | float:
    """Expected value of perfect information per client, from INB draws (last axis).

    ``E[max(INB, 0)] - max(E[INB], 0)``; never negative, zero without uncertainty.

    Examples
    --------
    >>> evpi([-1.0, 3.0]), evpi([2.0, 2.0])
    (0.5, 0.0)
    """
    inb = np.asarray(inb, dtype=float)
    value = np.maximum(inb, 0.0).mean(axis=-1) - np.maximum(inb.mean(axis=-1), 0.0)
    # the difference of two means can round to -1e-13; the quantity is never negative
    value = np.maximum(value, 0.0)
    return float(value) if value.ndim == 0 else value


def population_factor(econ) -> float:
    """Clients the decision affects, discounted: clients a year x sum of ``(1+r)^-t``."""
    t = np.arange(econ.decision_years)
    return float(econ.population_per_year * ((1.0 + econ.discount_rate) ** -t).sum())


def wtp_grid(draws, econ, primary_month: float, points: int = 201) -> np.ndarray:
    """Willingness-to-pay values for an acceptability curve: 0 to beyond both ``lambda*``
    and the break-even value (cost over the mean discounted months), ``points`` of them."""
    months = discounted_months(draws, econ, primary_month).mean()
    top = 3.0 * max(decision_value_per_month(econ), 1.0)
    if months > 0:
        top = max(top, 2.0 * econ.cost_per_client / months)
    return np.linspace(0.0, top, int(points))


def economic_summary(draws, econ, primary_month: float, alpha: float = 0.05) -> dict:
    """Every figure of the analysis at ``lambda*``, as a flat dict of plain numbers.

    Returns
    -------
    dict
        ``value_per_month`` (V), ``wtp`` (lambda*), ``hourly_value``, ``cost_per_client``,
        ``extra_months_year_<y>`` (mean) with ``_lower``/``_upper``, ``extra_months_total``
        (undiscounted) and ``discounted_months`` with intervals, ``inb_mean``, ``inb_sd``,
        ``inb_lower``, ``inb_upper``, ``p_cost_effective`` (P(INB > 0) at lambda*),
        ``evpi_per_client``, ``evpi_population``, ``population_factor``,
        ``break_even_wtp`` (cost / mean discounted months; NaN if that mean is not
        positive), ``draws``, ``currency``. Intervals are equal-tailed ``1 - alpha``.
    """
    d = as_draws(draws)
    q = (alpha / 2, 1 - alpha / 2)
    out: dict = {"value_per_month": value_per_month(econ),
                 "wtp": decision_value_per_month(econ), "hourly_value": hourly_value(econ),
                 "cost_per_client": float(econ.cost_per_client)}
    months = extra_months(d, econ, primary_month)

    def add(name, x):
        lo, hi = np.quantile(x, q)
        out.update({name: float(np.mean(x)), f"{name}_lower": float(lo),
                    f"{name}_upper": float(hi)})

    for y in range(months.shape[1]):
        add(f"extra_months_year_{y + 1}", months[:, y])
    add("extra_months_total", months.sum(axis=1))
    disc = months @ discount_factors(econ)
    add("discounted_months", disc)
    inb = incremental_net_benefit(d, econ, primary_month)
    lo, hi = np.quantile(inb, q)
    per_client = evpi(inb)
    out.update({"inb_mean": float(inb.mean()), "inb_sd": float(inb.std(ddof=1)) if d.size > 1
                else 0.0, "inb_lower": float(lo), "inb_upper": float(hi),
                "p_cost_effective": float((inb > 0).mean()), "evpi_per_client": per_client,
                "population_factor": population_factor(econ),
                "evpi_population": per_client * population_factor(econ),
                "break_even_wtp": float(econ.cost_per_client / disc.mean()) if disc.mean() > 0
                else float("nan"),
                "draws": int(d.size), "currency": econ.currency})
    return out
