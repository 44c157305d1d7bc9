"""Estimators are pure functions of their data and plan.

The same data give the same Estimate whatever the estimator object fitted before, in
whichever order replicates arrive, and (Bayesian) whatever the number of sampler threads;
and a batch gives the same replicate table with 1 or 2 workers, on Dask, or cut short and
resumed.
"""

import pytest

from conftest import PARAMS
from models import get_estimator
from simulate import Scenario, load_scenario, simulate_trial

KEYS = ("estimate", "se", "lower", "upper", "p_value", "p_positive")


def same(a, b):
    """Bit-identical results (timing diagnostics aside)."""
    return all(getattr(a, k) == getattr(b, k) or (getattr(a, k) != getattr(a, k)
                                                   and getattr(b, k) != getattr(b, k))
               for k in KEYS) and a.extra == b.extra


SMALL = {"size.units": 6, "size.clients_per_unit": 12}
CASES = [
    ("reml_trajectory", Scenario().replace(SMALL), {}),
    ("reml_stepped_wedge", load_scenario(PARAMS / "fit_stepped_wedge.yaml").replace(
        {"size.units": 8, "size.clients_per_unit": 12}), {}),
    ("mixedlm", Scenario().replace(SMALL), {}),
    ("iv_cace", Scenario().replace(SMALL), {}),
    ("bayes_trajectory", Scenario().replace(SMALL), {}),
    ("bayes_stepped_wedge", load_scenario(PARAMS / "fit_stepped_wedge.yaml").replace(
        {"size.units": 8, "size.clients_per_unit": 12}), {}),
]


@pytest.mark.parametrize("name, sc, opts", CASES, ids=[c[0] for c in CASES])
def test_order_of_fits_does_not_matter(name, sc, opts):
    trials = [simulate_trial(sc, s).data for s in (11, 12, 13)]
    fresh = [get_estimator(name, sc, **opts).fit(d) for d in trials]
    shared = get_estimator(name, sc, **opts)
    forward = [shared.fit(d) for d in trials]
    backward = [shared.fit(d) for d in reversed(trials)][::-1]
    for f, a, b in zip(fresh, forward, backward):
        assert same(f, a) and same(f, b)


@pytest.mark.bayes
def test_bayesian_fit_depends_on_the_data_only():
    # tiny draws: the point is identity of the draws, not their quality
    sc = Scenario().replace(SMALL)
    opts = dict(draws=30, tune=30, chains=2)
    a, b = simulate_trial(sc, 1).data, simulate_trial(sc, 2).data
    est = get_estimator("bayes_trajectory_nuts", sc, cores=1, **opts)
    b_first = est.fit(b)
    est.fit(a)
    b_after_a = est.fit(b)
    assert same(b_first, b_after_a)
    # another object, two sampler threads instead of one: the same draws
    other = get_estimator("bayes_trajectory_nuts", sc, cores=2, **opts).fit(b)
    assert same(b_first, other)
    # a different data set gives different draws (the check can fail)
    assert not same(est.fit(a), b_first)


# -- the same tables however the work is split ----------------------------------------------
TIMING = ["sim_seconds", "fit_seconds", "diag_fit_seconds"]


def _batch_table(root, job):
    from fitlab.store import ScenarioStore

    t = ScenarioStore(root / job.scenario_id).table()
    return t.drop(columns=[c for c in TIMING if c in t.columns]).reset_index(drop=True)


@pytest.mark.parametrize("design", ["individual", "stepped_wedge"])
def test_workers_dask_and_resume_give_identical_tables(tmp_path, design):
    """REML and the Bayesian (integrated) estimators, 1 vs 2 workers vs Dask vs a run cut
    short and resumed: bit-identical replicate tables (timings aside)."""
    import pandas as pd

    from fitlab.batch import run_jobs
    from fitlab.grid import scenario_job

    if design == "individual":
        sc, ests = Scenario().replace(SMALL), ["reml_trajectory", "bayes_trajectory"]
    else:
        sc = load_scenario(PARAMS / "fit_stepped_wedge.yaml").replace(
            {"size.units": 8, "size.clients_per_unit": 12})
        ests = ["reml_stepped_wedge", "bayes_stepped_wedge"]
    job = scenario_job(sc, 6, ests, null=True)
    run_jobs([job], tmp_path / "one", workers=1, progress=False)
    ref = _batch_table(tmp_path / "one", job)
    assert len(ref) == 2 * 6 * 2 and ref["error"].isna().all()
    run_jobs([job], tmp_path / "two", workers=2, chunk=1, progress=False)
    pd.testing.assert_frame_equal(ref, _batch_table(tmp_path / "two", job))
    if design == "individual":  # a Dask cluster costs seconds: once is enough
        pytest.importorskip("distributed")
        run_jobs([job], tmp_path / "dask", dask=True, workers=2, chunk=2, progress=False)
        pd.testing.assert_frame_equal(ref, _batch_table(tmp_path / "dask", job))
    # cut short after a few tasks (in another order of work), then resumed
    run_jobs([job], tmp_path / "cut", chunk=2, progress=False, max_tasks=2)
    run_jobs([job], tmp_path / "cut", chunk=3, progress=False)
    pd.testing.assert_frame_equal(ref, _batch_table(tmp_path / "cut", job))
