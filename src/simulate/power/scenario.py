"""Analytic power of a scenario: the textbook formulas applied to a :class:`Scenario`.

:func:`power` gives one JSON-native dict for the scenario's primary ITT comparison and
:func:`power_curve` a table over one field. The adapter reads the scenario the way
``simulate_trial`` draws it, and reuses the simulator's own rules rather than restating
them: the variance components (:func:`simulate.outcomes.variance_components`), the
therapist split (:func:`simulate.conventions.therapist_split`), the stepped-wedge
schedule, units per step and the exposure of each schedule cell after lag and fidelity
ramp (:mod:`simulate.design`). ``tests/test_analytic_vs_simulation.py`` checks the
variance against simulated trials.

Examples
--------
>>> from simulate import Scenario
>>> out = power(Scenario().replace({"effect.d": 0.5}), fitted=False)
>>> out["design"], round(out["power"], 2), round(out["power_baseline_adjusted"], 2)
('individual', 0.2, 0.24)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from simulate import design as des
from simulate.conventions import json_native, therapist_split
from simulate.outcomes import variance_components
from simulate.power.checks import PowerInputError
from simulate.power.formulas import (
    clipped_normal_moments,
    design_effect,
    observed_icc,
    power_from_variance,
)
from simulate.power.stepped_wedge import hooper_variance, stepped_wedge_gls_variance

__all__ = [
    "power",
    "power_curve",
    "ors_variance_at_primary",
    "baseline_correlation",
    "baseline_adjusted",
]


def ors_variance_at_primary(
    outcome: Any, compliance: Any = None, clipped: bool = True
) -> dict[str, float]:
    """Variance components of ORS at the primary month, in ORS points squared.

    The intake variance ``sd^2`` is split into unit (``unit_icc sd^2``), therapist
    (``therapist_icc sd^2``) and the rest (client and occasion). By the primary month the
    total grows by the client random slopes (``slope_sd^2``), the mixture of on-track and
    not-on-track classes (``share (1 - share) (mean_change - not_on_track_change)^2``) and,
    when ``compliance`` is given, the mixture of compliers and never-takers
    (``uptake (1 - uptake) (complier_shift sd)^2``), all assumed independent of the intake
    components. The effect's own heterogeneity is left out (second order). With
    ``clipped`` every component is shrunk by the variance ratio of a normal clipped to the
    0-40 scale at the primary-month mean
    (:func:`simulate.power.formulas.clipped_normal_moments`), because ``simulate_trial``
    records ORS on 0-40.

    Parameters
    ----------
    outcome : OrsOutcome
        The scenario's ``outcome`` section.
    compliance : Compliance, optional
        The scenario's ``compliance`` section; ``None`` leaves out the complier mixture.
    clipped : bool
        Shrink the components for the 0-40 scale.

    Returns
    -------
    dict
        ``var_unit``, ``var_therapist``, ``var_rest``, ``var_total``, ``mean`` (latent mean
        at the primary month under usual care), ``inside`` (share not clipped).
    """
    vc = variance_components(outcome)
    sd2 = outcome.sd**2
    share = outcome.not_on_track_share
    extra = outcome.slope_sd**2 + share * (1 - share) * (
        outcome.mean_change - outcome.not_on_track_change
    ) ** 2
    if compliance is not None:
        uptake = compliance.uptake
        extra += uptake * (1 - uptake) * (compliance.complier_shift * outcome.sd) ** 2
    total = sd2 + extra
    # the 0-40 scale clips scores: shrink every component by the clipped-normal variance
    # ratio at the primary-month mean (an approximation: the mixture is not normal)
    mu = (outcome.intake_mean + (1 - share) * outcome.mean_change
          + share * outcome.not_on_track_change)
    if compliance is not None:
        mu += compliance.uptake * compliance.complier_shift * outcome.sd
    clip = clipped_normal_moments(mu, math.sqrt(total)) if clipped else None
    shrink = clip["variance"] / total if clipped else 1.0
    var_unit = vc["var_unit"] * shrink
    var_th = vc["var_therapist"] * shrink
    total *= shrink
    return {"var_unit": var_unit, "var_therapist": var_th,
            "var_rest": total - var_unit - var_th, "var_total": total,
            "mean": mu, "inside": clip["inside"] if clipped else 1.0}


def _arms(sc: Any) -> dict[str, float]:
    """Evaluable clients per arm, after attrition."""
    q = sc.design.treated_share
    n = sc.size.units * sc.size.clients_per_unit
    a_c = sc.missingness.attrition_rate
    a_t = a_c * sc.missingness.attrition_ratio
    return {"n_treat": n * q * (1 - a_t), "n_control": n * (1 - q) * (1 - a_c),
            "keep_treat": 1 - a_t, "keep_control": 1 - a_c}


def _effect(sc: Any) -> dict[str, Any]:
    """The ITT effect: the full effect diluted by uptake and the mean fidelity multiplier."""
    dilution = sc.compliance.uptake * sc.compliance.mean_multiplier
    if sc.outcome.kind == "ors":
        full = sc.effect.d * sc.outcome.sd
        inside = ors_variance_at_primary(sc.outcome, sc.compliance)["inside"]
        # the recorded (0-40) difference is about the latent one times the unclipped share
        return {"effect": full * dilution * inside, "effect_itt_latent": full * dilution,
                "effect_full": full, "dilution": dilution, "unclipped_share": inside,
                "effect_scale": "ORS points (ITT mean difference on the recorded 0-40 scale)"}
    p_c = sc.outcome.control_rate
    rd = (p_c * sc.effect.risk_ratio - p_c) * dilution
    return {"effect": rd, "effect_full": p_c * sc.effect.risk_ratio - p_c, "dilution": dilution,
            "effect_scale": "risk difference (ITT)", "p_control": p_c, "p_treat": p_c + rd,
            "risk_ratio_itt": (p_c + rd) / p_c}


def _icc_pair(sc: Any, p: float | None = None) -> dict[str, float]:
    """Unit and therapist ICCs on the analysis scale, with the total variance."""
    if sc.outcome.kind == "ors":
        v = ors_variance_at_primary(sc.outcome, sc.compliance)
        tot = v["var_total"]
        return {"var_total": tot, "icc_unit": v["var_unit"] / tot,
                "icc_therapist": v["var_therapist"] / tot}
    # latent (logit-scale) variances; ICCs on the proportion scale one level at a time,
    # the other random effects integrated out
    lat = variance_components(sc.outcome)
    return {"var_total": p * (1 - p),
            "icc_unit": observed_icc(p, lat["var_unit"], lat["var_therapist"] + lat["var_client"]),
            "icc_therapist": observed_icc(p, lat["var_therapist"], lat["var_unit"] + lat["var_client"])}


def _finish(out: dict[str, Any], variance: float, analysis: Any,
            df: float | None = None) -> dict:
    """Add the variance, SE and power (normal; also t with ``df``) of the scenario's test
    (``analysis.alpha``, one- or two-sided by ``analysis.sides``)."""
    alpha, sides = analysis.alpha, analysis.sides
    out["variance"] = variance
    out["se"] = math.sqrt(variance)
    out["alpha"] = alpha
    out["sides"] = sides
    out["power"] = power_from_variance(out["effect"], variance, alpha, sides)
    if df is not None:
        out["df"] = df
        out["power_t"] = power_from_variance(out["effect"], variance, alpha, sides, df)
    return json_native(out)


def _power_individual(sc: Any, base: dict[str, Any]) -> dict[str, Any]:
    """Individual randomization: therapist clustering in each arm (or the FIT arm only)."""
    d, s = sc.design, sc.size
    arms = _arms(sc)
    th_t, th_c = therapist_split(s.therapists_per_unit, d.treated_share, d.control_clustered)
    m_t = arms["n_treat"] / (s.units * th_t)
    m_c = arms["n_control"] / (s.units * th_c) if th_c else None
    if sc.outcome.kind == "ors":
        v = ors_variance_at_primary(sc.outcome, sc.compliance)
        # randomization within unit removes the unit variance from the contrast
        var_w = v["var_total"] - v["var_unit"]
        icc_t = icc_c = v["var_therapist"] / var_w
        # clients without a therapist carry no therapist variance (as in simulate_trial)
        var_terms = (var_w, var_w if d.control_clustered else var_w - v["var_therapist"])
        iccs = {"icc_unit": v["var_unit"] / v["var_total"],
                "icc_therapist": v["var_therapist"] / v["var_total"],
                "icc_therapist_within_unit": icc_t}
        sd = math.sqrt(var_w)
    else:
        p_t, p_c = base["p_treat"], base["p_control"]
        icc_t = _icc_pair(sc, p_t)["icc_therapist"]
        icc_c = _icc_pair(sc, p_c)["icc_therapist"]
        var_terms = (p_t * (1 - p_t), p_c * (1 - p_c))
        iccs = {"icc_therapist_treat": icc_t, "icc_therapist_control": icc_c}
        sd = None
    cv = s.cluster_size_cv
    de_t = design_effect(max(m_t, 1.0), icc_t, cv)
    de_c = design_effect(max(m_c, 1.0), icc_c, cv) if m_c is not None else 1.0
    variance = var_terms[0] * de_t / arms["n_treat"] + var_terms[1] * de_c / arms["n_control"]
    out = {
        **base,
        "method": ("therapist clustering per arm: Var = s_T^2 DE_T/n_T + s_C^2 DE_C/n_C, "
                   "DE = 1 + ((CV^2+1) m - 1) rho (Eldridge 2006); partially nested when "
                   "controls have no therapist (Candlish 2018); unit variance removed by "
                   "randomization within unit"),
        "sd": sd,
        **iccs,
        "therapists_treat": s.units * th_t,
        "therapists_control": s.units * th_c,
        "clients_per_therapist_treat": m_t,
        "clients_per_therapist_control": m_c,
        "variance_per_client_treat": var_terms[0],
        "variance_per_client_control": var_terms[1],
        "design_effect_treat": de_t,
        "design_effect_control": de_c,
        "n_treat": arms["n_treat"],
        "n_control": arms["n_control"],
    }
    return _finish(out, variance, sc.analysis)


def _power_cluster(sc: Any, base: dict[str, Any]) -> dict[str, Any]:
    """Parallel cluster randomization: Eldridge's design effect, therapists within units."""
    d, s = sc.design, sc.size
    arms = _arms(sc)
    k_t = round(s.units * d.treated_share)  # 1..units-1: the scenario refuses an empty arm
    k_c = s.units - k_t
    cv = s.cluster_size_cv
    out = {**base, "units_treat": k_t, "units_control": k_c}
    variance = 0.0
    # every unit's clients see its therapists (simulate_trial ignores control_clustered here)
    for arm, k, keep in (("treat", k_t, arms["keep_treat"]), ("control", k_c, arms["keep_control"])):
        m = s.clients_per_unit * keep
        p = base.get("p_treat" if arm == "treat" else "p_control")
        ic = _icc_pair(sc, p)
        rho_t = ic["icc_therapist"]
        # three levels, sizes weighted as in Eldridge 2006: therapists share a unit's
        # (m (1+CV^2)) clients, so their term is ((CV^2+1) m - 1) rho_t / t
        big = (cv**2 + 1) * m
        de = 1 + (big - 1) * ic["icc_unit"] + (big - 1) * rho_t / s.therapists_per_unit
        variance += ic["var_total"] * de / (k * m)
        out.update({f"icc_unit_{arm}": ic["icc_unit"], f"icc_therapist_{arm}": rho_t,
                    f"design_effect_{arm}": de, f"n_{arm}": k * m,
                    f"clients_per_unit_{arm}": m})
        if sc.outcome.kind == "ors":
            out["sd"] = math.sqrt(ic["var_total"])
    out["method"] = ("parallel cluster randomization, Var = sum_arm s^2 DE/(k m), DE = 1 + "
                     "((CV^2+1) m - 1)(rho_u + rho_t / t) (Eldridge 2006, with therapists "
                     "nested in units)")
    # the t reference needs at least three units (one degree of freedom)
    return _finish(out, variance, sc.analysis,
                   df=float(k_t + k_c - 2) if k_t + k_c > 2 else None)


def _power_stepped_wedge(sc: Any, base: dict[str, Any]) -> dict[str, Any]:
    """Stepped wedge: GLS variance on the scenario's schedule (Hooper et al. 2016 model).

    The schedule is the simulator's, with the units spread over the steps as
    ``simulate_trial`` spreads them; cells are partly exposed where the lag or the
    fidelity ramp delays full FIT (:func:`simulate.design.mean_exposure_matrix`).
    """
    d, s = sc.design, sc.size
    steps, units = d.steps, s.units
    per = des.units_per_step(units, steps).tolist()
    step_of_row = np.repeat(np.arange(1, steps + 1), per)
    x01 = des.schedule_matrix(step_of_row, sc).to_numpy()
    x = des.mean_exposure_matrix(step_of_row, sc).to_numpy()
    arms = _arms(sc)
    open_cells = (~np.isnan(x01)).sum(axis=1, keepdims=True)
    m_cell = s.clients_per_unit / open_cells * np.ones_like(x01)
    # attrition: exposed share of a cell follows FIT attrition, the rest usual care
    keep = np.where(np.isnan(x01), np.nan, x01 * arms["keep_treat"] + (1 - x01) * arms["keep_control"])
    m_eval = m_cell * keep
    if sc.outcome.kind == "ors":
        v = ors_variance_at_primary(sc.outcome, sc.compliance)
        var_u, var_th, var_tot = v["var_unit"], v["var_therapist"], v["var_total"]
    else:
        p_bar = (base["p_treat"] + base["p_control"]) / 2
        ic = _icc_pair(sc, p_bar)
        var_tot = p_bar * (1 - p_bar)
        var_u, var_th = ic["icc_unit"] * var_tot, ic["icc_therapist"] * var_tot
    t = s.therapists_per_unit
    # therapists persist across periods: their share of a cell mean (1/t) counts both
    # within and between periods; the unit part decays with the cluster autocorrelation
    rho_c_unit = sc.outcome.cluster_autocorrelation
    within = var_u + var_th / t
    rho = within / var_tot
    rho_c = (rho_c_unit * var_u + var_th / t) / within if within > 0 else 1.0
    variance = stepped_wedge_gls_variance(x, math.sqrt(var_tot), rho, m_eval, rho_c, 0.0)
    out = {
        **base,
        "method": ("stepped wedge, Hooper et al. (2016) model (cluster autocorrelation, "
                   "cross-sectional), GLS variance on the scenario's schedule with period "
                   "effects (Hussey & Hughes 2007)"),
        "sd": math.sqrt(var_tot) if sc.outcome.kind == "ors" else None,
        "icc_cluster_period": rho,
        "cluster_autocorrelation": rho_c,
        "design_effect": 1 + (float(np.nanmean(m_eval)) - 1) * rho,
        "units_per_step": per,
        "periods": int(x.shape[1]),
        "clients_per_cell": float(np.nanmean(m_cell)),
        "clients_per_cell_evaluable": float(np.nanmean(m_eval)),
        "n_treat": float(np.nansum(m_eval * x)),
        "n_control": float(np.nansum(m_eval * (1 - x))),
        "mean_exposure_exposed_cells": float(np.nanmean(np.where(x01 == 1, x, np.nan))),
    }
    # the closed form holds only for equal steps, full 0/1 exposure and one cell size
    same_keep = arms["keep_treat"] == arms["keep_control"]
    full = np.array_equal(x, x01, equal_nan=True)
    if d.window_periods is None and units % steps == 0 and steps >= 2 and same_keep and full:
        out["variance_hooper_closed_form"] = hooper_variance(
            math.sqrt(var_tot), rho, float(np.nanmean(m_eval)), steps, units // steps, rho_c
        )
    if sc.outcome.kind == "ors":
        out.update(_stepped_wedge_cohort(sc, out["effect"], var_tot, rho, rho_c))
    return _finish(out, variance, sc.analysis)


def _stepped_wedge_cohort(sc: Any, effect: float, var_tot: float, rho: float,
                          rho_c: float) -> dict[str, Any]:
    """Stepped wedge, baseline and primary month: Hooper et al. (2016) for an open cohort.

    Each client is measured at baseline (in the calendar period of their start, before
    any effect) and at the primary month (``primary`` months later, two or three periods
    on): a pre-post cohort. Cells are units x calendar periods (``period_months``); a
    cell's exposure is the share of its measurements that are primary-month scores of
    clients offered FIT, times their fidelity ramp, so the coefficient is the ITT at the
    primary month. The period means of a unit share clients, so the individual
    autocorrelation ``rho_s`` (the latent correlation of a client's baseline and
    primary-month scores beyond unit and therapist: :func:`individual_autocorrelation`)
    enters through the expected pairs of measurements of one client in each pair of
    periods (:func:`stepped_wedge_gls_variance` with ``pairs``), not through Hooper's
    closed cohort, in which everyone is measured in every period and so serves as their
    own control across crossover: here a client's exposure is fixed at their start, so
    that would credit comparisons the design does not have.

    Why baseline and primary month only: the textbook analysis compares primary-month
    scores and its repeated measure is the client's own baseline; the intermediate
    occasions serve the growth model, whose power ``power_fitted`` gives. Putting every
    occasion into the cell means treats a client's growth as cross-sectional information
    and dilutes the effect, which grows with time: at 80 clients per unit of the default
    stepped wedge it gave less power than the primary-month formula. The variance
    components are the primary month's; attrition removes occasions as ``simulate_trial``
    does (:func:`simulate.power.moments.attrition_patterns`); clients per unit are the mean
    unit size.
    """
    from simulate.power.moments import attrition_patterns, expected_design

    design = expected_design(sc)
    used = np.zeros(design.months.size, dtype=bool)
    used[[0, design.primary]] = True
    per_all = [np.floor((u.start[:, None] + design.months[None, :]) / design.period_months)
               .astype(int) for u in design.units]
    n_per = max(int(p.max()) for p in per_all) + 1
    mean_size = float(design.sizes @ design.size_prob)
    rows_x, rows_m, rows_pairs = [], [], []
    for u, per in zip(design.units, per_all):
        cell = per[:, :, None] == np.arange(n_per)[None, None, :]  # clients x J x periods
        m = np.zeros(n_per)
        dose = np.zeros(n_per)
        pairs = np.zeros((n_per, n_per))
        for expo in (0, 1):
            sel = u.exposure == expo
            if not sel.any():
                continue
            masks, prob = attrition_patterns(sc, expo)
            masks = masks & used
            p_obs = prob @ masks  # J
            p_both = np.einsum("o,oa,ob->ab", prob, masks, masks)
            np.fill_diagonal(p_both, 0.0)  # pairs of distinct occasions
            w = u.share[sel] * mean_size
            c = cell[sel]
            m += np.einsum("c,cjk,j->k", w, c, p_obs)
            dose += np.einsum("c,cjk,j,c->k", w, c, p_obs * design.time,
                              (u.exposure * u.ramp)[sel])
            pairs += np.einsum("c,cak,ab,cbl->kl", w, c, p_both, c)
        observed = m > 1e-9
        x = np.where(observed, dose / np.where(observed, m, 1.0), np.nan)
        for _ in range(int(u.count)):
            rows_x.append(x)
            rows_m.append(np.where(observed, m, 1.0))
            rows_pairs.append(pairs)
    x = np.array(rows_x)
    keep = ~np.isnan(x).all(axis=0)
    x = x[:, keep]
    m_cells = np.array(rows_m)[:, keep]
    pairs = np.array(rows_pairs)[:, keep][:, :, keep]
    rho_s = individual_autocorrelation(sc)
    variance = stepped_wedge_gls_variance(x, math.sqrt(var_tot), rho, m_cells, rho_c, rho_s,
                                          pairs=pairs)
    return {"variance_cohort": variance, "individual_autocorrelation": rho_s,
            "power_cohort": power_from_variance(effect, variance, sc.analysis.alpha,
                                                sc.analysis.sides),
            "measurements_per_cell": float(np.nanmean(np.where(np.isnan(x), np.nan, m_cells)))}


def individual_autocorrelation(scenario: Any) -> float:
    """Latent correlation of a client's baseline and primary-month scores beyond unit and
    therapist (the ``rho_s`` of Hooper et al. 2016 for this pre-post cohort).

    A client's score at model time ``t`` (0 at baseline, 1 at the primary month) is
    ``c + P t + e``: client intercept, progress (client slope plus the not-on-track and
    complier mixtures) and occasion noise, so ``rho_s = var_client / sqrt((var_client +
    var_resid) (var_client + var_P + var_resid))``.
    """
    oc, comp = scenario.outcome, scenario.compliance
    vc = variance_components(oc)
    share = oc.not_on_track_share
    var_p = (oc.slope_sd**2 + share * (1 - share) * (oc.mean_change - oc.not_on_track_change) ** 2
             + comp.uptake * (1 - comp.uptake) * (comp.complier_shift * oc.sd) ** 2)
    base = vc["var_client"] + vc["var_resid"]
    return float(vc["var_client"] / math.sqrt(base * (base + var_p)))


def power(scenario: Any, fitted: bool = True) -> dict[str, Any]:
    """Analytic power of a scenario's primary ITT comparison at the primary month.

    Two kinds of answer, labelled in the keys:

    - **Textbook** cross-checks (``power``, ``power_textbook``, and the variants below):
      closed-form formulas for a comparison of scores, the classical way a trial is sized.
      ``power`` keeps its meaning: the **primary-month, cross-sectional** comparison (one
      score per client, no baseline adjustment); ``power_baseline_adjusted`` adjusts it
      for baseline (ANCOVA); the stepped wedge adds ``power_cohort``, Hooper et al.
      (2016) on baseline and primary-month scores with an open-cohort correction.
      ``power_textbook`` is the
      one the sample-size solver uses: ``power_cohort`` for a stepped wedge with an ORS
      outcome, ``power`` otherwise.
    - **The estimator actually fitted** (``power_fitted``, with ``fitted=True``): the
      power of ``reml_trajectory`` / ``reml_stepped_wedge`` on every occasion, from the
      model's expected information under this scenario's data-generating process
      (:func:`simulate.power.fitted.fitted_power`). This is the number to compare with
      simulated power of those estimators; ORS outcomes only (``None`` for binary).

    The textbook formulas, by design:

    - **Effect**: the ITT effect, diluted by uptake and the mean fidelity multiplier:
      ORS ``effect.d * outcome.sd * uptake * mean_multiplier`` (``effect_itt_latent``),
      times the share of scores not clipped by the 0-40 scale (``effect``, the difference
      a comparison of recorded scores sees); binary the risk difference
      ``control_rate (risk_ratio - 1)`` diluted the same way.
    - **Variance** (ORS): :func:`ors_variance_at_primary` (intake ``sd^2`` plus slopes plus
      the class and complier mixtures); ICCs are the unit and therapist variances over
      that total. Binary: ``p (1 - p)`` with ICCs converted from the latent logit scale by
      :func:`~simulate.power.formulas.observed_icc`.
    - **Analysis**: a comparison of primary-month outcomes with no baseline adjustment
      (conservative for ANCOVA and growth models), normal approximation, ``analysis.alpha``
      with ``analysis.sides`` sides (one-sided in the direction of the effect); evaluable
      clients after ``missingness.attrition_rate`` (times ``attrition_ratio`` under FIT).
    - ``individual``: therapists per unit split by the allocation ratio (all of them FIT
      therapists when ``design.control_clustered`` is False: partially nested); each arm
      its own design effect with the unit-size CV as the caseload CV; randomization within
      unit removes the unit variance from the contrast; unclustered controls have no
      therapist variance (so the partially nested formula is applied with arm-specific
      variances).
    - ``cluster``: units split by the allocation ratio; Eldridge's design effect with
      therapists nested in units.
    - ``stepped_wedge``: ``steps + 1`` periods of ``recruitment_months / (steps + 1)``,
      units spread over steps as evenly as possible (the first steps get the extra ones),
      ``clients_per_unit`` spread over the unit's observed periods (fewer periods with
      ``design.window_periods``), cells partly exposed where ``lag_months`` or
      ``ramp_months`` delay full FIT (no FIT for ``lag_months`` after crossover; fidelity
      rising linearly from crossover to full over ``ramp_months``), cluster autocorrelation
      ``outcome.cluster_autocorrelation`` for the unit effect (therapist effects persist);
      GLS variance under the Hooper et al. (2016) model. ``power_cohort``: the same model
      on each client's baseline and primary-month scores by calendar period, with the
      individual autocorrelation of an open cohort (see :func:`_stepped_wedge_cohort`).

    Parameters
    ----------
    scenario : simulate.scenario.Scenario
    fitted : bool
        Also compute ``power_fitted`` (about a second; the textbook formulas take
        milliseconds).

    Returns
    -------
    dict
        JSON-native: ``design``, ``outcome``, ``method``, ``effect`` (and its parts),
        ``sd``, ICCs, design effects, evaluable ``n_treat`` / ``n_control``, ``variance``,
        ``se``, ``power``, ``power_textbook``, ``method_textbook``, ``alpha``, ``sides``;
        cluster designs add ``df`` and ``power_t``; with ``fitted``: ``power_fitted``,
        ``effect_fitted`` (the estimator's expected value, ORS points), ``se_fitted``
        (its true SD), ``se_fitted_model`` (the SE the fit reports), ``df_fitted``,
        ``estimator_fitted``, ``itt_recorded`` (the true ITT on the recorded scale).

    Examples
    --------
    >>> from simulate import Scenario
    >>> out = power(Scenario().replace({"effect.d": 0.5}), fitted=False)
    >>> out["design"], round(out["power"], 2), out["power_textbook"] == out["power"]
    ('individual', 0.2, True)
    """
    kind = scenario.design.kind
    base = {"design": kind, "outcome": scenario.outcome.kind, **_effect(scenario)}
    if kind == "individual":
        out = _power_individual(scenario, base)
    elif kind == "cluster":
        out = _power_cluster(scenario, base)
    elif kind == "stepped_wedge":
        out = _power_stepped_wedge(scenario, base)
    else:
        raise PowerInputError(f"design.kind must be individual, cluster or stepped_wedge, got {kind!r}")
    out = {**out, **baseline_adjusted(scenario, out)}
    cohort = "power_cohort" in out
    out["power_textbook"] = out["power_cohort"] if cohort else out["power"]
    out["method_textbook"] = ("Hooper et al. (2016), baseline and primary month, open cohort"
                              if cohort else "primary month, cross-sectional")
    if fitted:
        out.update(_fitted_keys(scenario))
    return json_native(out)


def _fitted_keys(scenario: Any) -> dict[str, Any]:
    """``power_fitted`` and its parts (``None`` where the fitted model does not apply)."""
    keys = ("power_fitted", "effect_fitted", "se_fitted", "se_fitted_model", "df_fitted",
            "estimator_fitted", "itt_recorded")
    if scenario.outcome.kind != "ors":
        return dict.fromkeys(keys)
    from simulate.power.fitted import fitted_power

    r = fitted_power(scenario)
    return dict(zip(keys, (r["power"], r["effect"], r["se_true"], r["se_model"], r["df"],
                           r["estimator"], r["itt_recorded"])))


def baseline_correlation(scenario: Any) -> float:
    """Correlation of a client's ORS at baseline and at the primary month.

    The components shared by both occasions are the stable unit effect
    (``cluster_autocorrelation`` times the unit variance: baseline and the primary month
    fall in different calendar periods), the therapist and the client intercept; the
    primary month adds slopes and the class and complier mixtures
    (:func:`ors_variance_at_primary`, unclipped).
    """
    oc = scenario.outcome
    sd2 = oc.sd**2
    shared = (oc.unit_icc * oc.cluster_autocorrelation + oc.therapist_icc + oc.client_icc) * sd2
    primary = ors_variance_at_primary(oc, scenario.compliance, clipped=False)["var_total"]
    return float(shared / math.sqrt(sd2 * primary))


def baseline_adjusted(scenario: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Power of the same comparison adjusted for the baseline score (ANCOVA).

    Adjusting for baseline multiplies the variance of the effect by ``1 - r^2``, with
    ``r`` the baseline-primary correlation (Borm, Fransen & Lemmens 2007). The factor is
    exact for individual randomization and an approximation for clustered designs, where
    the cluster-level correlation over time differs from the individual one (Teerenstra
    et al. 2012). Growth models that use every occasion do somewhat better still, so
    simulated power of ``reml_trajectory`` lies between ``power`` and this. Binary
    outcomes: not computed (``None``).
    """
    if scenario.outcome.kind != "ors":
        return {"r_baseline": None, "variance_baseline_adjusted": None,
                "power_baseline_adjusted": None}
    r = baseline_correlation(scenario)
    var = out["variance"] * (1 - r**2)
    return {
        "r_baseline": r,
        "variance_baseline_adjusted": var,
        "power_baseline_adjusted": power_from_variance(
            out["effect"], var, alpha=out["alpha"], sides=out.get("sides", 2)),
    }


def power_curve(scenario: Any, field: str, values: Iterable[Any], fitted: bool = False) -> Any:
    """Power over the values of one dotted field, e.g. ``"size.units"``.

    Parameters
    ----------
    scenario : simulate.scenario.Scenario
    field : str
        Dotted path accepted by ``Scenario.replace``.
    values : iterable
        Values to try.
    fitted : bool
        Include ``power_fitted`` (see :func:`power`; about a second per value, so off
        by default).

    Returns
    -------
    pandas.DataFrame
        One row per value: the field, then the scalar entries of :func:`power`.

    Examples
    --------
    >>> from simulate import Scenario
    >>> df = power_curve(Scenario(), "size.units", [12, 24])
    >>> bool(df["power"].is_monotonic_increasing)
    True
    """
    import pandas as pd  # pandas is heavy; keep `import simulate` cheap

    rows = []
    for v in values:
        res = power(scenario.replace({field: v}), fitted=fitted)
        rows.append({field: v, **{k: r for k, r in res.items() if not isinstance(r, list | dict)}})
    if not rows:
        raise PowerInputError("values must hold at least one value")
    return pd.DataFrame(rows)
