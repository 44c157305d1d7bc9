"""``simulate_trial``: one seeded, vectorized draw of a FIT trial as a tidy long table.

Examples
--------
>>> from simulate import Scenario, simulate_trial
>>> trial = simulate_trial(Scenario(), seed=1)
>>> trial.data.columns[:5].tolist()
['unit', 'therapist', 'client', 'arm', 'exposure']
>>> round(trial.truth["itt"], 2) > 0
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from simulate import compliance as comp
from simulate import design as des
from simulate import missingness as miss
from simulate import outcomes as out
from simulate import population as pop
from simulate.conventions import (
    FIDELITY_LEVELS,
    ORS_MAX,
    ORS_MIN,
    expit,
    scaled_time,
    therapist_split,
)
from simulate.scenario import Scenario, load_scenario

__all__ = ["Trial", "simulate_trial", "make_rng"]


@dataclass
class Trial:
    """A simulated trial.

    Attributes
    ----------
    data : DataFrame
        One row per client x planned occasion (see ``docs/ARCHITECTURE.md``); ``outcome``
        is NaN where not observed.
    truth : dict
        True estimands of this trial (``itt``, ``cace``, ``cace_fidelity_*``, ...) and the
        data-generating variance components (``var_*``).
    units : DataFrame
        One row per unit: clients, arm, step, crossover month, therapists.
    schedule : DataFrame or None
        Stepped wedge: units x step periods exposure (1/0, NaN where not recruiting).
    scenario : Scenario
    seed : object
        The seed the trial was drawn with.
    info : dict
        Realized design facts (largest caseload, sizes).
    """

    data: pd.DataFrame
    truth: dict[str, float]
    units: pd.DataFrame
    schedule: pd.DataFrame | None
    scenario: Scenario
    seed: Any
    info: dict[str, Any] = field(default_factory=dict)


def make_rng(seed) -> np.random.Generator:
    """A Generator from an int, a SeedSequence, or a Generator (returned as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def simulate_trial(scenario=None, seed=None, complete: bool = False) -> Trial:
    """Simulate one trial of a scenario.

    The trial is drawn in stages, each a function below, always in the same order so that
    a scenario and a seed give the same table: units, schedule and recruitment; allocation;
    therapists, fidelity and uptake; occasions; random effects; the outcome (ORS or
    binary); missingness; then the long table and the true estimands.

    Parameters
    ----------
    scenario : Scenario, dict, path or None
        The scenario (``None``: the embedded default, FIT design A).
    seed : int, SeedSequence or Generator, optional
        Defaults to ``scenario.seed``. The same scenario and seed give the same table.
    complete : bool
        Also return ``outcome_complete``: the outcome as it would have been measured
        without missingness (for checking missing-data methods).

    Returns
    -------
    Trial
    """
    sc = load_scenario(scenario)
    rng = make_rng(sc.seed if seed is None else seed)
    layout = _layout(sc, rng)
    arm, exposure = _allocate(sc, layout, rng)
    care = _care(sc, layout, arm, exposure, rng)
    occ = _occasions(sc, layout.start)
    vc = out.variance_components(sc.outcome)
    level = _random_effects(sc, vc, layout, care.therapist, occ.period, rng)
    draw = _ors_outcome if sc.outcome.kind == "ors" else _binary_outcome
    res = draw(sc, vc, level, care, occ, rng)
    missing = _missingness(sc, res, care, occ, rng)
    data = _long_table(sc, layout, arm, care, occ, res, missing, complete)
    truth = _truth(sc, res, care, vc)
    if seed is None:
        seed = sc.seed
    elif isinstance(seed, np.random.Generator):
        seed = "generator"  # a Generator's state is not a reproducible seed
    return Trial(data, truth, _units_table(sc, layout), layout.schedule, sc, seed,
                 _info(sc, care.therapist, layout.start))


# -- stages, in the order the random numbers are drawn ----------------------------------
@dataclass
class _Layout:
    """Units, their schedule, and the clients' units and start months."""

    n_per_unit: np.ndarray  # clients per unit
    step: np.ndarray  # stepped wedge: the unit's step 1..S; -1 otherwise
    crossover: np.ndarray  # calendar month the unit starts FIT; -inf if none
    unit_arm: np.ndarray  # cluster design: the unit's arm; -1 otherwise
    schedule: pd.DataFrame | None
    unit: np.ndarray  # per client, ordered by unit then start
    start: np.ndarray  # per client: calendar month of the start


def _layout(sc: Scenario, rng) -> _Layout:
    """Units, stepped-wedge steps or cluster arms, and recruitment over calendar time.

    Clients arrive uniformly over each unit's recruitment window: the whole recruitment
    period, or in an incomplete stepped wedge only ``window_periods`` step periods either
    side of the unit's crossover.
    """
    d, s = sc.design, sc.size
    n_u = pop.cluster_sizes(s, rng)
    n_units = s.units
    lo = np.zeros(n_units)
    hi = np.full(n_units, s.recruitment_months)
    step = np.full(n_units, -1, dtype=np.int16)
    cross = np.full(n_units, -np.inf)
    unit_arm = np.full(n_units, -1, dtype=np.int8)
    schedule = None
    if d.kind == "stepped_wedge":
        step = des.assign_steps(n_u, d, rng)
        cross = des.crossover_months(sc)[step]
        schedule = des.schedule_matrix(step, sc)
        if d.window_periods is not None:
            length = des.step_length(sc)
            lo = np.maximum(0.0, (step - d.window_periods) * length)
            hi = np.minimum(s.recruitment_months, (step + d.window_periods) * length)
    elif d.kind == "cluster":
        unit_arm = des.allocate_units(n_u, d, rng)
    start = pop.recruitment_months(n_u, lo, hi, rng)
    unit = np.repeat(np.arange(n_units), n_u)
    return _Layout(n_u, step, cross, unit_arm, schedule, unit, start)


def _allocate(sc: Scenario, layout: _Layout, rng) -> tuple[np.ndarray, np.ndarray]:
    """Randomized arm and FIT exposure of each client (int8 0/1).

    Individual design: clients randomized within unit. Cluster: the unit's arm. Stepped
    wedge: exposed when the client starts after the unit's crossover plus the lag; the
    ``arm`` column then equals the exposure.
    """
    d = sc.design
    if d.kind == "individual":
        arm = des.allocate_clients(layout.n_per_unit, d, rng)
        return arm, arm
    if d.kind == "cluster":
        arm = layout.unit_arm[layout.unit]
        return arm, arm
    exposure = des.exposed(layout.start, layout.crossover[layout.unit], d.lag_months)
    return exposure, exposure


@dataclass
class _Care:
    """Who treats each client, how well, and whether the client takes FIT up."""

    exposure: np.ndarray  # FIT offered, 0/1
    therapist: np.ndarray  # global id; -1 without a therapist
    has_therapist: np.ndarray
    fidelity: np.ndarray  # level of the client's therapist (0, 1, 2); 2 without one
    dose: np.ndarray  # effect multiplier if the client takes FIT up: fidelity x ramp
    complier: np.ndarray  # latent principal stratum
    uptake: np.ndarray  # exposure x complier


def _care(sc: Scenario, layout: _Layout, arm, exposure, rng) -> _Care:
    """Therapists, their fidelity, the stepped-wedge fidelity ramp, and client uptake.

    Individual design: therapists nested in arms, split by the allocation share
    (:func:`simulate.conventions.therapist_split`). Cluster and stepped wedge: every
    therapist of a unit treats its clients. Clients without a therapist (partially nested
    controls) are given the high-fidelity multiplier, which only matters if they were
    exposed, and they never are.
    """
    d, k = sc.design, sc.size.therapists_per_unit
    unit = layout.unit
    if d.kind == "individual":
        n_fit, n_ctrl = therapist_split(k, d.treated_share, d.control_clustered)
        therapist = pop.assign_therapists(unit, arm, n_fit, n_ctrl, d.control_clustered, rng)
    else:
        therapist = pop.assign_therapists(unit, np.ones(unit.size, dtype=np.int8), k, 0, True,
                                          rng)
    fid_t = comp.draw_fidelity(sc.size.units * k, sc.compliance, rng)
    has_t = therapist >= 0
    fidelity = np.where(has_t, fid_t[np.maximum(therapist, 0)], 2)
    multipliers = np.asarray(sc.compliance.fidelity_multipliers)
    ramp = comp.fidelity_ramp(layout.start, layout.crossover[unit], sc.compliance.ramp_months)
    complier = comp.draw_compliers(unit.size, sc.compliance, rng)
    uptake = (exposure * complier).astype(np.int8)
    dose = multipliers[fidelity] * ramp
    return _Care(exposure, therapist, has_t, fidelity, dose, complier, uptake)


@dataclass
class _Occasions:
    """The planned follow-up occasions of every client."""

    months: np.ndarray  # months since start, one per occasion
    primary: int  # index of the primary month
    time: np.ndarray  # model time per occasion: 0 at baseline, 1 at the primary month
    calendar: np.ndarray  # clients x occasions: calendar month
    period: np.ndarray  # clients x occasions: calendar period


def _occasions(sc: Scenario, start: np.ndarray) -> _Occasions:
    """Months, model time, calendar months and calendar periods of the occasions."""
    f = sc.followup
    months = np.asarray(f.months, dtype=float)
    primary = int(np.flatnonzero(months == f.primary)[0])
    calendar = start[:, None] + months[None, :]
    period = np.floor(calendar / f.period_months).astype(np.int64)
    return _Occasions(months, primary, scaled_time(months, f.primary), calendar, period)


def _random_effects(sc: Scenario, vc: dict, layout: _Layout, therapist, period, rng):
    """Level of each client at each occasion: unit, unit x period, therapist and client.

    The unit effect has a stable part (share ``cluster_autocorrelation``) and a part that
    is new in every calendar period (Hooper et al. 2016). Both outcome kinds share it.
    """
    n_units, unit = sc.size.units, layout.unit
    cac = sc.outcome.cluster_autocorrelation
    u_stable = rng.normal(0, np.sqrt(vc["var_unit"] * cac), n_units)
    u_period = rng.normal(0, np.sqrt(vc["var_unit_period"]), (n_units, int(period.max()) + 1))
    v_ther = rng.normal(0, np.sqrt(vc["var_therapist"]), n_units * sc.size.therapists_per_unit)
    c_client = rng.normal(0, np.sqrt(vc["var_client"]), unit.size)
    return (u_stable[unit][:, None] + u_period[unit[:, None], period]
            + np.where(therapist >= 0, v_ther[np.maximum(therapist, 0)], 0.0)[:, None]
            + c_client[:, None])


@dataclass
class _Result:
    """The drawn outcome, before missingness."""

    y_full: np.ndarray  # clients x occasions, as it would be measured
    srs: np.ndarray  # clients x occasions; NaN for a binary outcome
    progress: np.ndarray  # per client: change by the primary month (drives MNAR)
    not_on_track: np.ndarray
    effect: np.ndarray  # per client: the effect at the primary month if FIT is taken up
    risks: tuple[np.ndarray, np.ndarray] | None = None  # binary: risk without, with FIT
    # ORS: each client's recorded score at the primary month without FIT, Y(0), from the
    # same draws as ``y_full`` (which is Y(1) for a client offered FIT)
    y0_primary: np.ndarray | None = None


def _ors_outcome(sc: Scenario, vc: dict, level, care: _Care, occ: _Occasions, rng) -> _Result:
    """ORS trajectories, log-linear in time and recorded on 0-40, and SRS.

    See :mod:`simulate.outcomes` for the model. Each client's effect at the primary month
    is their standardized effect (larger when not on track) times ``sd`` times the dose.
    """
    oc, n = sc.outcome, level.shape[0]
    not_on_track = (rng.random(n) < oc.not_on_track_share).astype(np.int8)
    d_i = comp.client_effect_sizes(not_on_track, sc.effect, oc.not_on_track_share)
    tau_potential = d_i * oc.sd * care.dose  # effect at the primary month if taken up
    slope = rng.normal(0, oc.slope_sd, n)
    change = np.where(not_on_track == 1, oc.not_on_track_change, oc.mean_change)
    shift = sc.compliance.complier_shift * oc.sd * care.complier
    progress = change + slope + shift + tau_potential * care.uptake
    latent = (oc.intake_mean + level + progress[:, None] * occ.time[None, :]
              + oc.secular_trend * occ.calendar / 12.0
              + rng.normal(0, np.sqrt(vc["var_resid"]), occ.calendar.shape))
    y_full = np.round(np.clip(latent, ORS_MIN, ORS_MAX), 1)
    # the potential outcome without FIT takes the same draws (no random numbers used)
    j = occ.primary
    y0 = latent[:, j] - tau_potential * care.uptake * occ.time[j]
    y0_primary = np.round(np.clip(y0, ORS_MIN, ORS_MAX), 1)
    alliance = rng.standard_normal(n)
    srs = out.srs_scores(latent, alliance, oc, rng)
    return _Result(y_full, srs, progress, not_on_track, tau_potential, None, y0_primary)


def _binary_outcome(sc: Scenario, vc: dict, level, care: _Care, occ: _Occasions,
                    rng) -> _Result:
    """Binary outcome (employment) on the logit scale, calibrated to marginal rates.

    The intercepts and the effect come from :func:`simulate.outcomes.binary_calibration`.
    Each client's effect is the risk difference at the primary month if FIT is taken up;
    the risks without and with FIT are kept for the risk-scale estimands.
    """
    oc, n = sc.outcome, level.shape[0]
    re_sd = float(np.sqrt(vc["var_unit"] + vc["var_therapist"] + vc["var_client"]))
    a0, a1, delta = out.binary_calibration(
        oc.baseline_rate, oc.control_rate, sc.effect.risk_ratio,
        sc.compliance.uptake, sc.compliance.complier_shift, re_sd,
    )
    complier = care.complier
    shift = sc.compliance.complier_shift * complier
    tau_logit = delta * care.dose
    progress = shift + tau_logit * care.uptake
    time = occ.time[None, :]
    eta = a0 + (a1 - a0) * time + level + progress[:, None] * time
    y_full = (rng.random(eta.shape) < expit(eta)).astype(float)
    eta0 = a0 + (a1 - a0) + level[:, occ.primary] + shift  # primary month, no FIT
    p0 = expit(eta0)
    p1 = expit(eta0 + tau_logit)
    return _Result(y_full, np.full(eta.shape, np.nan), progress, np.zeros(n, dtype=np.int8),
                   p1 - p0, (p0, p1))


@dataclass
class _Missing:
    """Which occasions are observed, and treatment dropout."""

    observed: np.ndarray  # clients x occasions
    dropout: np.ndarray  # per client, 0/1
    dropout_month: np.ndarray  # per client: the follow-up month of dropout; NaN if none


def _missingness(sc: Scenario, res: _Result, care: _Care, occ: _Occasions, rng) -> _Missing:
    """Treatment dropout and monotone attrition from the follow-ups.

    Both are driven by the mechanism's score (:mod:`simulate.missingness`). A client who
    leaves the study misses every occasion from a random follow-up up to the primary month
    on; a dropout's month is drawn the same way. Baseline is always observed.
    """
    m, j_primary, n = sc.missingness, occ.primary, res.y_full.shape[0]
    z = miss.missingness_score(m.mechanism, res.y_full[:, 0], res.progress)
    dropout = miss.draw_dropout(z, care.uptake, m, rng)
    attrited = miss.draw_attrition(z, dropout, care.exposure, m, rng)
    leave = rng.integers(1, j_primary + 1, n)  # first missed follow-up of those who leave
    occasion = np.arange(occ.months.size)
    observed = ~((attrited == 1)[:, None] & (occasion[None, :] >= leave[:, None]))
    drop_occ = rng.integers(1, j_primary + 1, n)
    dropout_month = np.where(dropout == 1, occ.months[drop_occ], np.nan)
    return _Missing(observed, dropout, dropout_month)


# -- outputs ----------------------------------------------------------------------------
def _long_table(sc: Scenario, layout: _Layout, arm, care: _Care, occ: _Occasions,
                res: _Result, missing: _Missing, complete: bool) -> pd.DataFrame:
    """One row per client x planned occasion; unobserved outcomes are NaN.

    The columns are documented in ``docs/ARCHITECTURE.md``.
    """
    n, j = layout.unit.size, occ.months.size

    def rep(a):  # client-level column to long
        return np.repeat(a, j)

    observed = missing.observed
    fidelity = np.where((care.exposure == 1) & care.has_therapist, care.fidelity, -1)
    cols = {
        "unit": rep(layout.unit),
        "therapist": rep(care.therapist),
        "client": rep(np.arange(n)),
        "arm": rep(arm.astype(np.int8)),
        "exposure": rep(care.exposure.astype(np.int8)),
        "step": rep(layout.step[layout.unit]),
        "start_month": rep(layout.start),
        "month": np.tile(occ.months, n),
        "calendar_month": occ.calendar.ravel(),
        "period": occ.period.ravel(),
        "step_period": rep(_step_period(layout.start, sc)),
        "time": np.tile(occ.time, n),
        "outcome": np.where(observed, res.y_full, np.nan).ravel(),
        "observed": observed.ravel(),
        "baseline": rep(res.y_full[:, 0]),
        "srs": np.where(observed, res.srs, np.nan).ravel(),
        "dropout": rep(missing.dropout),
        "dropout_month": rep(missing.dropout_month),
        "complier": rep(care.complier),
        "uptake": rep(care.uptake),
        "fidelity": rep(fidelity.astype(np.int8)),
        "not_on_track": rep(res.not_on_track),
    }
    if complete:
        cols["outcome_complete"] = res.y_full.ravel()
    return pd.DataFrame(cols)


def _step_period(start: np.ndarray, sc: Scenario) -> np.ndarray:
    """Schedule period of each client's start (stepped wedge) or calendar period."""
    if sc.design.kind == "stepped_wedge":
        length = des.step_length(sc)
        return np.minimum(np.floor(start / length), sc.design.steps).astype(np.int64)
    return np.floor(start / sc.followup.period_months).astype(np.int64)


def _truth(sc: Scenario, res: _Result, care: _Care, vc: dict) -> dict[str, float]:
    """Sample estimands over the clients offered FIT, and the variance components.

    ``itt``: mean effect of offering FIT (non-compliers contribute 0); ``cace``: mean
    effect among offered compliers; ``cace_fidelity_*``: the same within each fidelity
    level of the client's therapist.

    ORS: the effect is on the recorded scale, as the estimators see it: ``Y(1) - Y(0)``
    at the primary month with both potential outcomes clipped to 0-40 and rounded, drawn
    with the same random numbers. The latent (unclipped) effects are kept as
    ``itt_latent``, ``cace_latent`` and ``cace_fidelity_*_latent``; they are larger where
    scores pile up at the ceiling. Binary outcomes: the effect is the risk difference at
    the primary month; the risks over the clients offered FIT are added
    (``risk_control`` had none taken FIT up, ``risk_treated`` as drawn), their ratio, the
    ratio among compliers, and ``risk_difference`` (equal to ``itt``).
    """
    latent, complier = res.effect, care.complier
    exposed = care.exposure == 1
    sel = exposed & (complier == 1)
    if res.y0_primary is not None:
        j = int(np.flatnonzero(np.asarray(sc.followup.months) == sc.followup.primary)[0])
        effect = res.y_full[:, j] - res.y0_primary  # 0 for non-compliers: Y(1) = Y(0)
    else:
        effect = latent * complier
    truth = {
        "itt": _mean(effect[exposed]),
        "cace": _mean(effect[sel]),
        "uptake": _mean(complier[exposed].astype(float)),
        "n_offered": float(exposed.sum()),
    }
    for lev, name in enumerate(FIDELITY_LEVELS):
        truth[f"cace_fidelity_{name}"] = _mean(effect[sel & (care.fidelity == lev)])
    if res.y0_primary is not None:
        truth["itt_latent"] = _mean((latent * complier)[exposed])
        truth["cace_latent"] = _mean(latent[sel])
        for lev, name in enumerate(FIDELITY_LEVELS):
            truth[f"cace_fidelity_{name}_latent"] = _mean(latent[sel & (care.fidelity == lev)])
    if res.risks is not None:
        p0, p1 = res.risks
        truth["risk_control"] = _mean(p0[exposed])
        truth["risk_treated"] = _mean(np.where(complier == 1, p1, p0)[exposed])
        truth["risk_ratio"] = truth["risk_treated"] / truth["risk_control"]
        truth["risk_ratio_compliers"] = _mean(p1[sel]) / _mean(p0[sel])
    truth.update(vc)
    if res.risks is not None:
        truth["risk_difference"] = truth["itt"]
    return truth


def _units_table(sc: Scenario, layout: _Layout) -> pd.DataFrame:
    """One row per unit: clients, arm, step, crossover month, therapists."""
    n_units = sc.size.units
    cross = layout.crossover
    return pd.DataFrame({
        "unit": np.arange(n_units),
        "n_clients": layout.n_per_unit,
        "arm": layout.unit_arm,
        "step": layout.step,
        "crossover_month": np.where(np.isfinite(cross), cross, np.nan),
        "n_therapists": np.full(n_units, sc.size.therapists_per_unit),
    })


def _info(sc: Scenario, therapist: np.ndarray, start: np.ndarray) -> dict[str, Any]:
    """Realized design facts: sizes and the largest concurrent caseload."""
    s, n = sc.size, therapist.size
    load = pop.max_caseload(therapist, start, s.episode_months)
    return {
        "n_clients": int(n),
        "n_rows": int(n * len(sc.followup.months)),
        "max_caseload": load,
        "caseload_cap": s.caseload_cap,
        "caseload_exceeded": load > s.caseload_cap,
    }


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")
