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
from scipy.special import expit

from simulate import compliance as comp
from simulate import design as des
from simulate import missingness as miss
from simulate import outcomes as out
from simulate import population as pop
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
    d, s, f, oc = sc.design, sc.size, sc.followup, sc.outcome

    # -- units, schedule and recruitment ---------------------------------------------
    n_u = pop.cluster_sizes(s, rng)
    n_units = s.units
    lo = np.zeros(n_units)
    hi = np.full(n_units, s.recruitment_months)
    step_u = np.full(n_units, -1, dtype=np.int16)
    cross_u = np.full(n_units, -np.inf)
    unit_arm = np.full(n_units, -1, dtype=np.int8)
    schedule = None
    if d.kind == "stepped_wedge":
        step_u = des.assign_steps(n_u, d, rng)
        cross_u = des.crossover_months(sc)[step_u]
        schedule = des.schedule_matrix(step_u, sc)
        if d.window_periods is not None:
            length = des.step_length(sc)
            lo = np.maximum(0.0, (step_u - d.window_periods) * length)
            hi = np.minimum(s.recruitment_months, (step_u + d.window_periods) * length)
    elif d.kind == "cluster":
        unit_arm = des.allocate_units(n_u, d, rng)

    start = pop.recruitment_months(n_u, lo, hi, rng)
    unit = np.repeat(np.arange(n_units), n_u)
    n = unit.size

    if d.kind == "individual":
        arm = des.allocate_clients(n_u, d, rng)
        exposure = arm
    elif d.kind == "cluster":
        arm = unit_arm[unit]
        exposure = arm
    else:
        exposure = (start >= cross_u[unit] + d.lag_months).astype(np.int8)
        arm = exposure

    # -- therapists, fidelity and uptake ----------------------------------------------
    k = s.therapists_per_unit
    if d.kind == "individual":
        if d.control_clustered:
            n_fit = int(np.clip(round(k * d.treated_share), 1, k - 1))
        else:
            n_fit = k
        therapist = pop.assign_therapists(unit, arm, n_fit, k - n_fit, d.control_clustered, rng)
    else:
        therapist = pop.assign_therapists(unit, np.ones(n, dtype=np.int8), k, 0, True, rng)
    fid_t = comp.draw_fidelity(n_units * k, sc.compliance, rng)
    has_t = therapist >= 0
    fid_level = np.where(has_t, fid_t[np.maximum(therapist, 0)], 2)
    multipliers = np.asarray(sc.compliance.fidelity_multipliers)
    ramp = comp.fidelity_ramp(start, cross_u[unit], sc.compliance.ramp_months)
    dose = multipliers[fid_level] * ramp  # effect multiplier if the client took up FIT
    complier = comp.draw_compliers(n, sc.compliance, rng)
    uptake = (exposure * complier).astype(np.int8)

    # -- occasions ---------------------------------------------------------------------
    months = np.asarray(f.months, dtype=float)
    primary = f.primary
    j_primary = int(np.flatnonzero(months == primary)[0])
    time = out.log_time(months, primary)
    calendar = start[:, None] + months[None, :]
    period = np.floor(calendar / f.period_months).astype(np.int64)

    # -- random effects shared by both outcome kinds ------------------------------------
    vc = out.variance_components(oc)
    cac = oc.cluster_autocorrelation
    u_stable = rng.normal(0, np.sqrt(vc["var_unit"] * cac), n_units)
    u_period = rng.normal(0, np.sqrt(vc["var_unit_period"]), (n_units, int(period.max()) + 1))
    v_ther = rng.normal(0, np.sqrt(vc["var_therapist"]), n_units * k)
    c_client = rng.normal(0, np.sqrt(vc["var_client"]), n)
    level = (u_stable[unit][:, None] + u_period[unit[:, None], period]
             + np.where(has_t, v_ther[np.maximum(therapist, 0)], 0.0)[:, None]
             + c_client[:, None])

    if oc.kind == "ors":
        not_on_track = (rng.random(n) < oc.not_on_track_share).astype(np.int8)
        d_i = comp.client_effect_sizes(not_on_track, sc.effect, oc.not_on_track_share)
        tau_potential = d_i * oc.sd * dose  # effect at the primary month if taken up
        slope = rng.normal(0, oc.slope_sd, n)
        change = np.where(not_on_track == 1, oc.not_on_track_change, oc.mean_change)
        shift = sc.compliance.complier_shift * oc.sd * complier
        progress = change + slope + shift + tau_potential * uptake
        latent = (oc.intake_mean + level + progress[:, None] * time[None, :]
                  + oc.secular_trend * calendar / 12.0
                  + rng.normal(0, np.sqrt(vc["var_resid"]), calendar.shape))
        y_full = np.round(np.clip(latent, 0.0, 40.0), 1)
        alliance = rng.standard_normal(n)
        srs = out.srs_scores(latent, alliance, oc, rng)
        exposed = exposure == 1
        effect_primary = tau_potential  # ORS points, latent scale
        truth_binary: dict[str, float] = {}
    else:
        not_on_track = np.zeros(n, dtype=np.int8)
        re_sd = float(np.sqrt(vc["var_unit"] + vc["var_therapist"] + vc["var_client"]))
        a0, a1, delta = out.binary_calibration(
            oc.baseline_rate, oc.control_rate, sc.effect.risk_ratio,
            sc.compliance.uptake, sc.compliance.complier_shift, re_sd,
        )
        shift = sc.compliance.complier_shift * complier
        tau_logit = delta * dose
        progress = shift + tau_logit * uptake
        eta = a0 + (a1 - a0) * time[None, :] + level + progress[:, None] * time[None, :]
        y_full = (rng.random(eta.shape) < expit(eta)).astype(float)
        srs = np.full(eta.shape, np.nan)
        exposed = exposure == 1
        eta0 = a0 + (a1 - a0) + level[:, j_primary] + shift  # primary month, no FIT
        p0 = expit(eta0)
        p1 = expit(eta0 + tau_logit)
        effect_primary = p1 - p0  # risk difference if taken up
        sel = exposed & (complier == 1)
        truth_binary = {
            "risk_control": _mean(p0[exposed]),
            "risk_treated": _mean(np.where(complier == 1, p1, p0)[exposed]),
        }
        truth_binary["risk_ratio"] = truth_binary["risk_treated"] / truth_binary["risk_control"]
        truth_binary["risk_ratio_compliers"] = _mean(p1[sel]) / _mean(p0[sel])

    # -- missingness ---------------------------------------------------------------------
    m = sc.missingness
    z = miss.missingness_score(m.mechanism, y_full[:, 0], progress)
    dropout = miss.draw_dropout(z, uptake, m, rng)
    attrited = miss.draw_attrition(z, dropout, exposure, m, rng)
    leave = rng.integers(1, j_primary + 1, n)  # first missed follow-up of those who leave
    occ = np.arange(months.size)
    observed = ~((attrited == 1)[:, None] & (occ[None, :] >= leave[:, None]))
    drop_occ = rng.integers(1, j_primary + 1, n)
    dropout_month = np.where(dropout == 1, months[drop_occ], np.nan)

    # -- the long table ------------------------------------------------------------------
    j = months.size
    outcome = np.where(observed, y_full, np.nan)
    srs = np.where(observed, srs, np.nan)
    rep = lambda a: np.repeat(a, j)  # noqa: E731  (client-level column to long)
    fidelity = np.where(exposed & has_t, fid_level, -1).astype(np.int8)
    cols = {
        "unit": rep(unit),
        "therapist": rep(therapist),
        "client": rep(np.arange(n)),
        "arm": rep(arm.astype(np.int8)),
        "exposure": rep(exposure.astype(np.int8)),
        "step": rep(step_u[unit]),
        "start_month": rep(start),
        "month": np.tile(months, n),
        "calendar_month": calendar.ravel(),
        "period": period.ravel(),
        "step_period": rep(_step_period(start, sc)),
        "time": np.tile(time, n),
        "outcome": outcome.ravel(),
        "observed": observed.ravel(),
        "baseline": rep(y_full[:, 0]),
        "srs": srs.ravel(),
        "dropout": rep(dropout),
        "dropout_month": rep(dropout_month),
        "complier": rep(complier),
        "uptake": rep(uptake),
        "fidelity": rep(fidelity),
        "not_on_track": rep(not_on_track),
    }
    if complete:
        cols["outcome_complete"] = y_full.ravel()
    data = pd.DataFrame(cols)

    # -- truth -----------------------------------------------------------------------------
    truth = _truth(effect_primary, exposed, complier, fid_level)
    truth.update(truth_binary)
    truth.update(vc)
    if oc.kind == "binary":
        truth["risk_difference"] = truth["itt"]
    units = pd.DataFrame({
        "unit": np.arange(n_units),
        "n_clients": n_u,
        "arm": unit_arm,
        "step": step_u,
        "crossover_month": np.where(np.isfinite(cross_u), cross_u, np.nan),
        "n_therapists": np.full(n_units, k),
    })
    info = {
        "n_clients": int(n),
        "n_rows": int(n * j),
        "max_caseload": pop.max_caseload(therapist, start, s.episode_months),
        "caseload_cap": s.caseload_cap,
    }
    info["caseload_exceeded"] = info["max_caseload"] > s.caseload_cap
    seed_out = seed if not isinstance(seed, np.random.Generator) else "generator"
    return Trial(data, truth, units, schedule, sc, sc.seed if seed is None else seed_out, info)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def _step_period(start: np.ndarray, sc: Scenario) -> np.ndarray:
    """Schedule period of each client's start (stepped wedge) or calendar period."""
    if sc.design.kind == "stepped_wedge":
        length = des.step_length(sc)
        return np.minimum(np.floor(start / length), sc.design.steps).astype(np.int64)
    return np.floor(start / sc.followup.period_months).astype(np.int64)


def _truth(effect, exposed, complier, fid_level) -> dict[str, float]:
    """Sample estimands over the clients offered FIT.

    ``itt``: mean effect of offering FIT (non-compliers contribute 0); ``cace``: mean
    effect among offered compliers; ``cace_fidelity_*``: the same within each fidelity
    level of the client's therapist.
    """
    realized = effect * complier
    sel = exposed & (complier == 1)
    truth = {
        "itt": _mean(realized[exposed]),
        "cace": _mean(effect[sel]),
        "uptake": _mean(complier[exposed].astype(float)),
        "n_offered": float(exposed.sum()),
    }
    for lev, name in enumerate(comp.FIDELITY_LEVELS):
        truth[f"cace_fidelity_{name}"] = _mean(effect[sel & (fid_level == lev)])
    return truth
