"""Analytic variance against the simulator: a brute-force check with a simple estimator.

For each design, R simulated trials (MCAR attrition) are analysed by the difference in
observed means at the primary month. The empirical variance of that estimator must match
``simulate.power.power(scenario)["variance"]``. The relative standard error of a sample variance
is sqrt(2 / (R - 1)) for normal estimates, so the tolerance is 4 of those.
"""

import numpy as np
import pytest

from conftest import FULL
from simulate import Scenario, simulate_trial
from simulate.power import power

R = 4000 if FULL else 800


def _diff_in_means(trial):
    d = trial.data
    prim = d[(d["month"] == trial.scenario.followup.primary) & d["observed"]]
    m = prim.groupby("exposure")["outcome"].mean()
    return m.loc[1] - m.loc[0]


@pytest.mark.parametrize("changes", [
    {"design.kind": "individual"},
    {"design.kind": "cluster", "outcome.unit_icc": 0.05},
    {"design.kind": "individual", "design.allocation_ratio": 2.0, "design.block_size": 3,
     "design.control_clustered": False, "outcome.therapist_icc": 0.10},
], ids=["individual", "cluster", "partially-nested-2to1"])
def test_analytic_variance_matches_simulated_variance(changes):
    sc = Scenario().replace({**changes, "missingness.mechanism": "mcar"})
    seeds = np.random.SeedSequence(99).spawn(R)
    est = np.array([_diff_in_means(simulate_trial(sc, s)) for s in seeds])
    analytic = power(sc, fitted=False)
    rel_se = np.sqrt(2 / (R - 1))
    assert abs(est.var(ddof=1) / analytic["variance"] - 1) < 4 * rel_se
    # and the estimator is unbiased for the analytic ITT effect
    assert abs(est.mean() - analytic["effect"]) < 4 * est.std(ddof=1) / np.sqrt(R)
