"""Simulation-based calibration (Talts et al. 2018): the uniformity tests, and a reduced
SBC run that passes under the model's own prior and fails under a deliberately wrong one.

The reduced run uses ``SBC_CI_MODEL`` (the cheapest Bayesian estimator: one compile, tiny
draws, a tiny design) and the integrated logit model ``bayes_binary``. Another estimator plugs in by adding its name and settings to
``CI_SETTINGS`` and setting ``SBC_CI_MODEL`` (or ``FITLAB_SBC_MODEL`` in the
environment). Seeds are fixed, so the run is deterministic; the thresholds say how
unlikely a false alarm would be if the ranks were uniform.
"""

import os

import numpy as np
import pandas as pd
import pytest

from fitlab.errors import UsageError
from fitlab.sbc import rank_bins, run_sbc, uniformity

#: the estimator of the reduced SBC run; the fast integrated route plugs in here
SBC_CI_MODEL = os.environ.get("FITLAB_SBC_MODEL", "bayes_trajectory")
#: per model: options of the fits, replicates, L, and the wrong prior to simulate from
CI_SETTINGS = {
    # the fast integrated route: about 50 ms a fit, so 150 replicates in seconds
    "bayes_trajectory": {
        "options": {}, "reps": 150, "wrong_reps": 40, "draws": 19,
        # 4 units barely inform the unit SD: with true SDs from HalfNormal(0.02) (relative
        # to sigma) every true var_unit falls below the posterior draws of the
        # HalfNormal(0.5) prior's fit
        "wrong": {"unit": 0.02},
    },
    "bayes_binary": {
        "options": {}, "reps": 60, "wrong_reps": 20, "draws": 19,
        # 4 units cannot tell a unit SD of 0.05 from one of 0.3: the posterior stays near
        # its HalfNormal(1) prior, and data simulated with SDs from HalfNormal(0.05) put
        # nearly every true var_unit below its posterior draws
        "wrong": {"sigma_unit": 0.05},
    },
    "bayes_binary_nuts": {
        "options": {"draws": 150, "tune": 200, "chains": 2},
        "reps": 30, "wrong_reps": 20, "draws": 19,
        # 4 units cannot tell a unit SD of 0.05 from one of 0.3: the posterior stays near
        # its HalfNormal(1) prior, and data simulated with SDs from HalfNormal(0.05) put
        # nearly every true var_unit below its posterior draws
        "wrong": {"sigma_unit": 0.05},
    },
}
#: uniform ranks give a p-value below this once in 1,000 tests per parameter
P_FALSE_ALARM = 1e-3


def _ranks(values, draws, name="x"):
    return pd.DataFrame({"parameter": name, "replicate": np.arange(len(values)),
                         "rank": values, "converged": True, "error": None})


def test_uniformity_tests_tell_uniform_from_skewed():
    rng = np.random.default_rng(3)
    draws, n = 99, 400
    uniform = uniformity(_ranks(rng.integers(0, draws + 1, n), draws), draws, 20).iloc[0]
    # the posterior too narrow: truths fall in the tails (a U-shaped histogram)
    tails = np.where(rng.uniform(size=n) < 0.5, rng.integers(0, 10, n),
                     rng.integers(90, 100, n))
    skewed = uniformity(_ranks(tails, draws), draws, 20).iloc[0]
    assert uniform["n"] == n and uniform["bins"] == 20
    assert uniform["chi2_p"] > P_FALSE_ALARM and uniform["ks_p"] > P_FALSE_ALARM
    assert skewed["chi2_p"] < 1e-10 and skewed["outside_band"] >= 10
    # hand-checked chi-square: 4 bins, counts 4, 0, 0, 0 of ranks 0..3 (L = 3)
    one = uniformity(_ranks(np.zeros(4, int), 3), 3, 4).iloc[0]
    assert one["chi2"] == pytest.approx(3 * 1 + (4 - 1) ** 2 / 1)
    assert rank_bins(99, 500) == 20 and rank_bins(19, 40) == 5 and rank_bins(99, 30) == 5


def test_sbc_refuses_models_without_the_contract(tmp_path):
    with pytest.raises(UsageError, match="prior_predictive"):
        run_sbc("diff_means", reps=2, out=tmp_path)
    with pytest.raises(UsageError, match="reps"):
        run_sbc("bayes_binary", reps=0)


@pytest.mark.bayes
@pytest.mark.slow
@pytest.mark.parametrize("model", sorted({SBC_CI_MODEL, "bayes_binary"}))
def test_sbc_uniform_under_own_prior_not_under_wrong_one(tmp_path, model):
    ci = CI_SETTINGS[model]
    kw = {"reps": ci["reps"], "draws": ci["draws"], "options": ci["options"],
          "progress": False, "workers": 2}
    good = run_sbc(model, out=tmp_path / "good", **kw)
    s = good.summary.set_index("parameter")
    assert "effect" in s.index and any(p.startswith("var_") for p in s.index)
    assert (s["n"] == ci["reps"]).all()
    assert (s[["chi2_p", "ks_p"]] > P_FALSE_ALARM).all().all(), s
    for name in ("ranks.parquet", "sbc_summary.csv", "sbc.png", "sbc.json"):
        assert (tmp_path / "good" / name).is_file()
    # resuming adds nothing and changes nothing
    again = run_sbc(model, out=tmp_path / "good", **kw)
    pd.testing.assert_frame_equal(again.ranks, good.ranks)
    wrong = run_sbc(model, generate_priors=ci["wrong"],
                    **{**kw, "reps": ci["wrong_reps"]})
    assert wrong.summary[["chi2_p", "ks_p"]].min().min() < P_FALSE_ALARM, wrong.summary
