"""Replicates, seeds, workers, resumption, Dask, grids and failure records."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fitlab.batch import run_jobs
from fitlab.grid import GridError, expand_grid, load_grid, scenario_job
from fitlab.replicates import replicate_seed
from fitlab.store import ScenarioStore
from models.base import Estimator, register
from simulate import Scenario

# timing columns differ between runs; everything else must be identical
TIMING = ["sim_seconds", "fit_seconds", "diag_fit_seconds"]
ESTS = ["diff_means", "diff_means_naive"]


def _table(root, job):
    t = ScenarioStore(Path(root) / job.scenario_id).table()
    return t.drop(columns=[c for c in TIMING if c in t.columns])


@pytest.fixture(scope="module")
def small():
    return Scenario().replace({"size.units": 6, "size.clients_per_unit": 10})


def test_seeds_do_not_depend_on_count():
    a = replicate_seed(7, "effect", 3).generate_state(4)
    import numpy as np

    b = np.random.SeedSequence(7).spawn(2)[0].spawn(10)[3].generate_state(4)
    assert (a == b).all()
    assert not (replicate_seed(7, "null", 3).generate_state(4) == a).all()


def test_type_one_error_near_nominal(tmp_path):
    # no clustering at all, so the classical t-test of diff_means_naive is valid and the
    # null twin must reject about 5% of the time; tolerance: 3.5 binomial MCSEs
    sc = Scenario().replace({"outcome.unit_icc": 0.0, "outcome.therapist_icc": 0.0})
    job = scenario_job(sc, 400, ["diff_means_naive"], null=True)
    job.plan["effect"] = {"diff_means_naive": 1}
    run_jobs([job], tmp_path, progress=False)
    t = ScenarioStore(tmp_path / job.scenario_id).table()
    null = t[t["role"] == "null"]
    assert len(null) == 400
    assert (null["truth_itt"] == 0).all()  # the null twin has no effect
    rate = null["significant"].mean()
    assert abs(rate - 0.05) < 3.5 * math.sqrt(0.05 * 0.95 / 400)


def test_one_and_two_workers_identical(tmp_path, small):
    job = scenario_job(small, 8, ESTS)
    run_jobs([job], tmp_path / "w1", workers=1, progress=False)
    run_jobs([job], tmp_path / "w2", workers=2, chunk=3, progress=False)
    a, b = _table(tmp_path / "w1", job), _table(tmp_path / "w2", job)
    assert len(a) == 2 * 8 * 2
    pd.testing.assert_frame_equal(a, b)


def test_interrupted_batch_resumes_to_same_table(tmp_path, small):
    job = scenario_job(small, 10, ESTS)
    run_jobs([job], tmp_path / "full", chunk=2, progress=False)
    part = run_jobs([job], tmp_path / "cut", chunk=2, progress=False, max_tasks=3)
    assert part.fits_run == 3 * 2 * 2
    # a write that was killed half-way leaves only a hidden temporary file
    parts = tmp_path / "cut" / job.scenario_id / "parts"
    (parts / ".tmp-effect-000009-dead.parquet").write_bytes(b"garbage")
    rest = run_jobs([job], tmp_path / "cut", chunk=2, progress=False)
    assert rest.fits_run == 2 * 10 * 2 - 3 * 2 * 2
    assert not list(parts.glob(".tmp-*"))
    full, cut = _table(tmp_path / "full", job), _table(tmp_path / "cut", job)
    assert not cut.duplicated(["role", "replicate", "estimator"]).any()
    pd.testing.assert_frame_equal(full, cut)
    # a finished scenario is skipped
    again = run_jobs([job], tmp_path / "cut", progress=False)
    assert again.fits_run == 0 and again.skipped == [job.scenario_id]


def test_killed_process_resumes(tmp_path):
    # a real SIGKILL of `fitlab run` in the middle, then the same command again
    cmd = [sys.executable, "-m", "fitlab.cli", "run", "default", "--reps", "120",
           "--estimators", "diff_means", "--chunk", "5", "--out", str(tmp_path / "k"),
           "--no-progress"]
    sc = Scenario()
    parts = tmp_path / "k" / sc.scenario_id / "parts"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(parts.glob("*.parquet"))) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(ScenarioStore(parts.parent).done())
    assert 0 < n_before < 240
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = ScenarioStore(parts.parent).table()
    assert len(t) == 240
    assert not t.duplicated(["role", "replicate", "estimator"]).any()
    # the same rows as an uninterrupted run of the first replicates
    job = scenario_job(sc, 120, ["diff_means"])
    job.plan = {"effect": {"diff_means": 6}}
    run_jobs([job], tmp_path / "ref", progress=False)
    ref = _table(tmp_path / "ref", job)
    got = t[(t["role"] == "effect") & (t["replicate"] < 6)].drop(columns=TIMING,
                                                                    errors="ignore")
    pd.testing.assert_frame_equal(ref.reset_index(drop=True), got.reset_index(drop=True))


def test_dask_local_cluster_matches_local(tmp_path, small):
    pytest.importorskip("distributed")
    job = scenario_job(small, 6, ["diff_means"])
    run_jobs([job], tmp_path / "local", progress=False)
    res = run_jobs([job], tmp_path / "dask", dask=True, workers=2, chunk=2, progress=False)
    assert res.task_errors == []
    pd.testing.assert_frame_equal(_table(tmp_path / "local", job), _table(tmp_path / "dask", job))


@register
class _Fails(Estimator):
    """Raises on every fit: failures must be recorded, not dropped."""

    name = "_test_fails"

    def _fit(self, df, primary_month):
        raise RuntimeError("singular matrix (on purpose)")


def test_failed_fits_are_recorded(tmp_path, small):
    job = scenario_job(small, 5, ["diff_means", "_test_fails"], null=False)
    res = run_jobs([job], tmp_path, progress=False)
    t = ScenarioStore(tmp_path / job.scenario_id).table()
    bad = t[t["estimator"] == "_test_fails"]
    assert len(bad) == 5 and bad["error"].str.contains("singular matrix").all()
    assert t.loc[t["estimator"] == "diff_means", "error"].isna().all()
    s = res.summary.set_index("estimator")
    assert s.loc["_test_fails", "failed"] == 1.0
    assert s.loc["_test_fails", "power"] == 0.0
    assert s.loc["diff_means", "failed"] == 0.0


def _write(path, text):
    path.write_text(text)
    return path


def test_grid_expansion_zip_exclude_confirm(tmp_path):
    g = _write(tmp_path / "g.yaml", """
name: g
base: [fit_individual.yaml, {name: sw, design: {kind: stepped_wedge}}]
factors:
  size.clients_per_unit: [10, 20]
  size.units: [8, 12]
  missingness.attrition_rate: [0.1, 0.3]
zip: [[size.units, missingness.attrition_rate]]
exclude: [{base: sw, size.clients_per_unit: 10}]
reps: 7
estimators: {individual: [diff_means], stepped_wedge: [diff_means_naive]}
confirm: {estimators: [diff_means_naive], where: [{base: fit_individual, size.units: 8}], reps: 3}
""")
    spec, jobs = load_grid(g)
    # 2 bases x 2 sizes x 2 zipped pairs, minus the 2 excluded sw scenarios
    assert len(jobs) == 6
    assert {(j.factors["size.units"], j.factors["missingness.attrition_rate"]) for j in jobs} \
        == {(8, 0.1), (12, 0.3)}
    sw = [j for j in jobs if j.factors["base"] == "sw"]
    assert all(j.plan["effect"] == {"diff_means_naive": 7} for j in sw)
    conf = [j for j in jobs if "diff_means_naive" in j.plan["effect"] and j.factors["base"] != "sw"]
    assert len(conf) == 2 and all(j.plan["effect"]["diff_means_naive"] == 3 for j in conf)
    assert all(j.plan["null"] == {"diff_means": 7} for j in jobs if j.factors["base"] != "sw")


@pytest.mark.parametrize("spec, message", [
    ({"name": "g", "repz": 3}, "allowed keys"),
    ({"name": "g", "factors": {"size.units": [0]}}, "size.units"),
    ({"name": "g", "factors": {"size.nope": [1]}}, "size.nope"),
    ({"name": "g", "estimators": ["nope"]}, "unknown estimator 'nope'"),
    ({"name": "g", "reps": 0}, "reps"),
    ({"name": "bad name"}, "name"),
    ({"name": "g", "confirm": {"estimators": ["diff_means"], "where": [{"size.units": 99}]}},
     "matches no scenario"),
])
def test_invalid_grid_refused_before_writing(tmp_path, spec, message):
    with pytest.raises(GridError, match=message):
        expand_grid(spec)
    import yaml

    from fitlab.study import run_grid

    path = _write(tmp_path / "bad.yaml", yaml.safe_dump(spec))
    with pytest.raises(GridError):
        run_grid(path, tmp_path / "out", report=False, progress=False)
    assert not (tmp_path / "out").exists()


def test_grid_default_estimators_follow_models_defaults():
    from models.defaults import default_estimators

    jobs = expand_grid({"name": "g", "reps": 2, "type_i_error": False,
                        "base": ["default", {"name": "sw", "size": {"units": 6},
                                             "design": {"kind": "stepped_wedge", "steps": 3}}]})
    assert len(jobs) == 2
    for j in jobs:
        assert list(j.plan["effect"]) == default_estimators(j.scenario)


def test_atomic_write_whole_or_nothing(tmp_path):
    from fitlab.store import TMP_PREFIX, atomic_write

    target = tmp_path / "s" / "diagnosands.csv"

    def killed(tmp):
        tmp.write_text("half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, killed)
    assert not target.parent.exists()  # nor the folder it created
    atomic_write(target, lambda tmp: tmp.write_text("whole"))
    assert target.read_text() == "whole"
    # what a killed process leaves is ignored by readers and removed by clean()
    (target.parent / f"{TMP_PREFIX}0000-manifest.json").write_text("{")
    (target.parent / "parts").mkdir()
    (target.parent / "parts" / f"{TMP_PREFIX}x.parquet").write_text("")
    store = ScenarioStore(target.parent)
    assert store.part_files() == []
    store.clean()
    assert sorted(p.name for p in target.parent.rglob("*")) == ["diagnosands.csv", "parts"]
