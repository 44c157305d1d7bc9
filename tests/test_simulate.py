"""The simulator's statistical properties on large trials, within Monte Carlo tolerance.

Tolerances are 4 standard errors of the checked statistic (binomial SEs for rates,
cluster-level SEs where outcomes are clustered), so a correct simulator fails a given
check with probability below 1e-4.
"""

import numpy as np
import pandas as pd
import pytest

from simulate import Scenario, simulate_trial
from simulate.population import max_caseload

Z = 4.0  # tolerance in standard errors


def binom_ok(successes, n, p):
    se = np.sqrt(p * (1 - p) / n)
    return abs(successes / n - p) <= Z * se


def clients(trial):
    """One row per client."""
    return trial.data.drop_duplicates("client").set_index("client")


# -- seeding --------------------------------------------------------------------------
def test_same_seed_same_table_different_seed_different_table(default_scenario):
    a = simulate_trial(default_scenario, seed=7).data
    b = simulate_trial(default_scenario, seed=7).data
    c = simulate_trial(default_scenario, seed=8).data
    pd.testing.assert_frame_equal(a, b)
    assert not a["outcome"].equals(c["outcome"])
    ss = np.random.SeedSequence(7)
    pd.testing.assert_frame_equal(simulate_trial(default_scenario, ss).data,
                                  simulate_trial(default_scenario, np.random.SeedSequence(7)).data)


def test_default_seed_comes_from_scenario(default_scenario):
    a = simulate_trial(default_scenario).data
    b = simulate_trial(default_scenario, seed=default_scenario.seed).data
    pd.testing.assert_frame_equal(a, b)


# -- structure ------------------------------------------------------------------------
def test_long_table_shape_and_nesting(default_trial):
    df = default_trial.data
    n_occ = len(default_trial.scenario.followup.months)
    assert len(df) == df["client"].nunique() * n_occ
    assert (df.groupby("client")["therapist"].nunique() == 1).all()
    assert (df.groupby("therapist")["unit"].nunique() == 1).all()
    # individual randomization: therapists are nested in arms
    assert (df.groupby("therapist")["arm"].nunique() == 1).all()
    assert df["outcome"].isna().eq(~df["observed"]).all()
    assert df.loc[df["month"] == 0, "observed"].all()  # baseline always observed


def test_bounds_of_ors_and_srs():
    trial = simulate_trial(Scenario().replace({"size.units": 40, "size.clients_per_unit": 50}), 3)
    df = trial.data
    obs = df[df["observed"]]
    assert obs["outcome"].between(0, 40).all()
    assert obs["srs"].between(0, 40).all()
    # SRS piles up at its ceiling (Meier & Feeley 2022), ORS does not
    assert (obs["srs"] == 40).mean() > 0.10
    assert (obs["outcome"] == 40).mean() < 0.02
    # one decimal, like the four 10 cm lines of the instrument
    assert np.allclose(obs["outcome"] * 10, np.round(obs["outcome"] * 10))


def test_cluster_sizes_mean_and_cv():
    sc = Scenario().replace({"size.units": 3000, "size.clients_per_unit": 30,
                             "size.cluster_size_cv": 0.5, "size.therapists_per_unit": 2,
                             "followup.months": [0, 12]})
    sizes = simulate_trial(sc, 1).units["n_clients"].to_numpy()
    # SE of the mean is cv*m/sqrt(U); SE of the sample CV of a gamma is about
    # cv*sqrt((1 + 2 cv^2)/ (2U)) (delta method); rounding adds well under that.
    assert abs(sizes.mean() - 30) < Z * 0.5 * 30 / np.sqrt(3000)
    cv = sizes.std() / sizes.mean()
    assert abs(cv - 0.5) < Z * 0.5 * np.sqrt(1.5 / 6000) + 0.01


def test_caseload_is_counted_and_respected(ips_scenario):
    trial = simulate_trial(ips_scenario, 2)
    assert 0 < trial.info["max_caseload"] <= ips_scenario.size.caseload_cap
    # the sweep counts overlaps exactly on a hand-made case
    ther = np.array([0, 0, 0, 1])
    start = np.array([0.0, 1.0, 6.0, 0.0])
    assert max_caseload(ther, start, episode=5.0) == 2
    assert max_caseload(ther, start, episode=7.0) == 3


# -- allocation -----------------------------------------------------------------------
def test_simple_randomization_ratio_2_to_1():
    sc = Scenario().replace({"design.allocation_ratio": 2.0, "design.randomization": "simple",
                             "size.units": 50, "size.clients_per_unit": 100,
                             "size.therapists_per_unit": 6, "followup.months": [0, 12]})
    c = clients(simulate_trial(sc, 4))
    assert binom_ok(c["arm"].sum(), len(c), 2 / 3)


def test_blocked_randomization_is_exact_within_blocks(ips_scenario):
    c = clients(simulate_trial(ips_scenario, 5))
    for _, g in c.groupby("unit"):
        arms = g["arm"].to_numpy()
        full = len(arms) // 3 * 3
        blocks = arms[:full].reshape(-1, 3)
        assert (blocks.sum(axis=1) == 2).all()  # every block of three holds two IPS clients
    # partially nested: controls have no specialist
    assert (c.loc[c["arm"] == 0, "therapist"] == -1).all()
    assert (c.loc[c["arm"] == 1, "therapist"] >= 0).all()
    assert c.loc[c["arm"] == 1, "therapist"].nunique() == 6


def test_cluster_stratified_allocation_balances_sizes():
    sc = Scenario().replace({"design.kind": "cluster", "design.randomization": "stratified",
                             "design.block_size": 2, "size.units": 20})
    trial = simulate_trial(sc, 6)
    units = trial.units.sort_values("n_clients", kind="stable")
    assert units["arm"].sum() == 10
    c = clients(trial)
    assert (c.groupby("unit")["arm"].nunique() == 1).all()  # whole units randomized


# -- stepped wedge -------------------------------------------------------------------
def test_stepped_wedge_exposure_matrix():
    sc = Scenario().replace({"design.kind": "stepped_wedge", "design.steps": 4,
                             "size.units": 12})
    trial = simulate_trial(sc, 7)
    sched = trial.schedule.to_numpy()
    assert sched.shape == (12, 5)
    assert (sched[:, 0] == 0).all() and (sched[:, -1] == 1).all()
    assert (np.diff(sched, axis=1) >= 0).all()  # once exposed, always exposed
    assert (trial.units["step"].value_counts() == 3).all()
    c = clients(trial)
    # with no lag, a client is exposed exactly when the schedule says so at the start period
    expected = sched[c["unit"].to_numpy(), c["step_period"].to_numpy()]
    assert (c["exposure"].to_numpy() == expected).all()
    assert (c["arm"] == c["exposure"]).all()


def test_stepped_wedge_lag_and_incomplete_window():
    sc = Scenario().replace({"design.kind": "stepped_wedge", "design.steps": 3,
                             "design.lag_months": 3, "design.window_periods": 1,
                             "size.units": 6, "size.clients_per_unit": 60})
    trial = simulate_trial(sc, 8)
    c = clients(trial)
    cross = trial.units.set_index("unit")["crossover_month"]
    since = c["start_month"] - cross.loc[c["unit"]].to_numpy()
    assert (c.loc[(since >= 0) & (since < 3), "exposure"] == 0).all()
    assert (c.loc[since >= 3, "exposure"] == 1).all()
    length = sc.size.recruitment_months / 4
    assert (since.abs() <= length + 1e-9).all()  # recruits only one period either side


# -- outcomes: variance components, effect, binary calibration -----------------------
def _pair_cov(values, groups):
    """Mean product of deviations over distinct pairs within groups, and its SE.

    Ratio estimator sum(S_g)/sum(P_g) with a linearized SE over groups.
    """
    df = pd.DataFrame({"v": values, "g": groups})
    s1 = df.groupby("g")["v"].sum()
    s2 = df.groupby("g")["v"].apply(lambda v: (v**2).sum())
    n = df.groupby("g")["v"].size()
    pair_sum = (s1**2 - s2) / 2
    pairs = n * (n - 1) / 2
    est = pair_sum.sum() / pairs.sum()
    se = np.sqrt(((pair_sum - est * pairs) ** 2).sum()) / pairs.sum()
    return est, se


def test_empirical_iccs_at_each_level():
    sc = Scenario().replace({
        "size.units": 300, "size.clients_per_unit": 40, "size.cluster_size_cv": 0.0,
        "size.therapists_per_unit": 4, "size.caseload_cap": 100,
        "outcome.intake_mean": 20, "outcome.sd": 5, "outcome.secular_trend": 0.0,
        "outcome.unit_icc": 0.05, "outcome.therapist_icc": 0.08, "outcome.client_icc": 0.45,
        "outcome.cluster_autocorrelation": 1.0, "missingness.attrition_rate": 0.0,
    })
    trial = simulate_trial(sc, 9)
    df = trial.data
    base = df[df["month"] == 0]
    dev = base["outcome"].to_numpy() - 20.0  # known mean at baseline
    total = sc.outcome.sd**2
    same_ther, se_t = _pair_cov(dev, base["therapist"].to_numpy())
    same_unit, se_u = _pair_cov(dev, base["unit"].to_numpy())
    # unit pairs mix same- and different-therapist pairs; remove the former
    sizes = base.groupby("unit").size().to_numpy()
    tsizes = base.groupby("therapist").size().to_numpy()
    p_unit = (sizes * (sizes - 1) / 2).sum()
    p_ther = (tsizes * (tsizes - 1) / 2).sum()
    diff_ther = (same_unit * p_unit - same_ther * p_ther) / (p_unit - p_ther)
    assert abs(diff_ther / total - 0.05) < Z * se_u / total * 1.5
    assert abs((same_ther - diff_ther) / total - 0.08) < Z * (se_t + se_u) / total
    # client level: covariance of a client's baseline and month-1 scores
    wide = df.pivot(index="client", columns="month", values="outcome")
    d0 = wide[0.0].to_numpy() - 20.0
    d1 = wide[1.0].to_numpy() - wide[1.0].mean()
    cov01 = np.mean(d0 * d1)
    se01 = np.std(d0 * d1) / np.sqrt(len(d0)) * np.sqrt(1 + 40 * 0.13)  # clustering inflation
    assert abs(cov01 / total - (0.05 + 0.08 + 0.45)) < Z * se01 / total
    # total variance at baseline
    assert abs(dev.var() / total - 1) < 0.05


def test_itt_and_cace_match_the_truth_on_a_large_trial():
    sc = Scenario().replace({
        "size.units": 60, "size.clients_per_unit": 100, "size.therapists_per_unit": 10,
        "outcome.intake_mean": 20, "outcome.sd": 5, "effect.d": 0.5,
        "effect.not_on_track_d": None, "compliance.uptake": 0.6,
    })
    trial = simulate_trial(sc, 10, complete=True)
    df = trial.data[trial.data["month"] == 12]
    fit = df[df["arm"] == 1]["outcome_complete"]
    uc = df[df["arm"] == 0]["outcome_complete"]
    itt = fit.mean() - uc.mean()
    # SE with therapist/unit clustering: therapist-level means as the independent units
    ther = df.groupby(["arm", "therapist"])["outcome_complete"].mean()
    se = np.sqrt(ther.loc[1].var() / len(ther.loc[1]) + ther.loc[0].var() / len(ther.loc[0]))
    assert abs(itt - trial.truth["itt"]) < Z * se
    # the latent ITT is diluted by uptake and fidelity: d * sd * uptake * mean multiplier;
    # on the recorded scale (clipped at 0-40, rounded) it is a little smaller or equal
    expected = 0.5 * 5 * 0.6 * 0.5
    assert abs(trial.truth["itt_latent"] - expected) < 0.15
    assert trial.truth["itt"] <= trial.truth["itt_latent"] + 0.01
    assert trial.truth["cace"] == pytest.approx(trial.truth["itt"] / trial.truth["uptake"])
    assert trial.truth["cace_fidelity_low"] == 0.0
    assert trial.truth["cace_fidelity_high_latent"] == pytest.approx(0.5 * 5)
    assert trial.truth["cace_fidelity_high"] == pytest.approx(0.5 * 5, abs=0.1)


def test_not_on_track_clients_get_the_larger_effect():
    from simulate.compliance import client_effect_sizes

    sc = Scenario()
    not_on_track = np.array([0, 1, 0, 0, 1])
    d = client_effect_sizes(not_on_track, sc.effect, 0.3)
    assert d[1] == 0.30
    assert 0.3 * 0.30 + 0.7 * d[0] == pytest.approx(0.15)


def test_binary_rates_and_risk_ratio_are_calibrated():
    sc = Scenario().replace({
        "outcome": {"kind": "binary", "control_rate": 0.2, "baseline_rate": 0.05},
        "followup.months": [0, 6, 12, 18], "followup.primary_month": 18, "size.units": 200, "size.clients_per_unit": 60,
        "size.therapists_per_unit": 6, "effect.risk_ratio": 1.8,
        "compliance.fidelity_multipliers": [1.0, 1.0, 1.0], "missingness.attrition_rate": 0.0,
    })
    trial = simulate_trial(sc, 11)
    df = trial.data
    prim = df[df["month"] == 18]
    base = df[df["month"] == 0]
    # cluster-level SE: unit means are independent
    def rate_and_se(frame):
        m = frame.groupby("unit")["outcome"].mean()
        return frame["outcome"].mean(), m.std() / np.sqrt(len(m))

    r0, se0 = rate_and_se(prim[prim["arm"] == 0])
    assert abs(r0 - 0.2) < Z * se0
    rb, seb = rate_and_se(base)
    assert abs(rb - 0.05) < Z * seb
    # compliers under FIT vs compliers under usual care (latent stratum known here)
    c1, se1 = rate_and_se(prim[(prim["arm"] == 1) & (prim["complier"] == 1)])
    c0, se0c = rate_and_se(prim[(prim["arm"] == 0) & (prim["complier"] == 1)])
    rr = c1 / c0
    se_log_rr = np.sqrt((se1 / c1) ** 2 + (se0c / c0) ** 2)
    assert abs(np.log(rr) - np.log(1.8)) < Z * se_log_rr
    assert set(np.unique(prim["outcome"])) <= {0.0, 1.0}


# -- missingness and compliance ---------------------------------------------------------
def _big(**changes):
    base = {"size.units": 80, "size.clients_per_unit": 100, "size.therapists_per_unit": 10}
    return Scenario().replace({**base, **changes})


def test_dropout_rates_by_arm_mcar():
    sc = _big(**{"missingness.mechanism": "mcar", "missingness.dropout_rate": 0.2,
                 "missingness.dropout_odds_ratio": 2.0, "compliance.uptake": 0.8})
    c = clients(simulate_trial(sc, 12))
    uc = c[c["arm"] == 0]
    assert binom_ok(uc["dropout"].sum(), len(uc), 0.2)
    odds = 0.25 / 2.0
    p_fit = 0.8 * odds / (1 + odds) + 0.2 * 0.2
    fit = c[c["arm"] == 1]
    assert binom_ok(fit["dropout"].sum(), len(fit), p_fit)


@pytest.mark.parametrize("mechanism", ["mcar", "mar", "mnar"])
def test_attrition_rate_by_arm_and_monotone(mechanism):
    sc = _big(**{"missingness.mechanism": mechanism, "missingness.attrition_rate": 0.25,
                 "missingness.attrition_ratio": 0.8, "missingness.strength": 1.0})
    trial = simulate_trial(sc, 13)
    df = trial.data
    prim = df[df["month"] == 12]
    for arm, p in ((0, 0.25), (1, 0.2)):
        g = prim[prim["arm"] == arm]
        assert binom_ok((~g["observed"]).sum(), len(g), p)
    wide = df.pivot(index="client", columns="month", values="observed").to_numpy()
    assert (np.diff(wide.astype(int), axis=1) <= 0).all()  # monotone: never come back


def test_mnar_attrition_is_driven_by_lack_of_progress():
    sc = _big(**{"missingness.mechanism": "mnar", "missingness.strength": 1.0})
    trial = simulate_trial(sc, 14, complete=True)
    wide = trial.data.pivot(index="client", columns="month", values="outcome_complete")
    obs = trial.data.pivot(index="client", columns="month", values="observed")[12.0]
    change = wide[12.0] - wide[0.0]
    gap = change[obs].mean() - change[~obs].mean()
    se = np.sqrt(change[obs].var() / obs.sum() + change[~obs].var() / (~obs).sum())
    assert gap > Z * se  # stayers progressed more than leavers
    # MCAR: no such gap
    sc0 = _big(**{"missingness.mechanism": "mcar"})
    t0 = simulate_trial(sc0, 14, complete=True)
    w0 = t0.data.pivot(index="client", columns="month", values="outcome_complete")
    o0 = t0.data.pivot(index="client", columns="month", values="observed")[12.0]
    ch0 = w0[12.0] - w0[0.0]
    se0 = np.sqrt(ch0[o0].var() / o0.sum() + ch0[~o0].var() / (~o0).sum())
    assert abs(ch0[o0].mean() - ch0[~o0].mean()) < Z * se0


def test_uptake_is_one_sided_and_at_its_rate():
    sc = _big(**{"compliance.uptake": 0.7})
    c = clients(simulate_trial(sc, 15))
    assert (c.loc[c["arm"] == 0, "uptake"] == 0).all()
    fit = c[c["arm"] == 1]
    assert binom_ok(fit["uptake"].sum(), len(fit), 0.7)
    assert (fit["uptake"] == fit["complier"]).all()
    assert binom_ok(c["complier"].sum(), len(c), 0.7)  # defined in both arms


def test_fidelity_shares_of_fit_therapists():
    sc = _big(**{"size.units": 300})
    c = clients(simulate_trial(sc, 16))
    ther = c[c["arm"] == 1].groupby("therapist")["fidelity"].first()
    for level, p in enumerate([0.25, 0.5, 0.25]):
        assert binom_ok((ther == level).sum(), len(ther), p)
    assert (c.loc[c["arm"] == 0, "fidelity"] == -1).all()


def test_stepped_wedge_fidelity_ramps_up_after_crossover():
    sc = Scenario().replace({"design.kind": "stepped_wedge", "size.units": 60,
                             "size.clients_per_unit": 60, "effect.d": 0.6,
                             "effect.not_on_track_d": None, "compliance.ramp_months": 6})
    trial = simulate_trial(sc, 17)
    # the truth averages the ramped effect: below the full-fidelity CACE of a design
    # without ramp-up, which it equals when ramp_months is 0
    no_ramp = simulate_trial(sc.replace({"compliance.ramp_months": 0}), 17)
    assert trial.truth["cace"] < no_ramp.truth["cace"]
    full = 0.6 * 7.5 * 0.5  # d * sd * mean multiplier
    assert abs(no_ramp.truth["cace"] - full) < 0.15 * full
