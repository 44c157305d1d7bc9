"""Replicates to a precision: the one rule, target runs that stop where suggest_reps says,
resumption that adds only the missing fits, and grids with a target.

The scenario is tiny (4 units x 12 clients, diff_means: ~15 ms per replicate) with power
near 0.5, where p (1 - p) is flat: the replicate count suggest_reps predicts then hardly
depends on the noise in the observed power, so the checks below are tight.
"""

import json
import math

import pandas as pd
import pytest

from fitlab.diagnosands import read_diagnosands, suggest_reps
from fitlab.errors import UsageError
from fitlab.precision import (
    MIN_STEP,
    Precision,
    next_total,
    prefix,
    reps_needed,
    required_reps,
    run_to_precision,
)
from simulate import Scenario

TINY = {"name": "tiny", "size": {"units": 4, "clients_per_unit": 12, "therapists_per_unit": 2,
                                 "cluster_size_cv": 0.0},
        "effect": {"d": 0.8, "not_on_track_d": None},
        "compliance": {"uptake": 1.0, "fidelity_multipliers": [1, 1, 1]}}


def _diag(rows):
    cols = ["role", "estimator", "diagnosand", "value", "mcse", "n", "reps"]
    return pd.DataFrame(rows, columns=cols)


def test_rule_is_suggest_reps_on_the_observed_diagnosands():
    t = 0.01
    diag = _diag([
        ("effect", "a", "power", 0.3, 0.032, 200, 200),
        ("effect", "a", "bias", 0.1, 0.2, 90, 100),       # 10 failed fits
        ("effect", "a", "coverage", 0.95, 0.02, 90, 100),
        ("null", "a", "type_i_error", 0.05, 0.015, 200, 200),
        ("null", "a", "bias", 0.0, 0.5, 200, 200),
    ])
    # power: plug-in (x + 1) / (n + 2) with x = 60 successes of 200
    assert required_reps("power", 0.3, 0.032, 200, 200, t) == suggest_reps(t, proportion=61 / 202)
    assert reps_needed(diag, t) == suggest_reps(t, proportion=61 / 202)
    # bias: sd = mcse sqrt(n), scaled from 90 fits that returned to 100 replicates
    want = math.ceil(suggest_reps(0.1, sd=0.2 * math.sqrt(90)) * 100 / 90)
    assert reps_needed(diag, {"bias": 0.1}) == max(want, suggest_reps(0.1, sd=0.5 * math.sqrt(200)))
    # only what is named counts; power covers the null role's type I error
    assert reps_needed(diag, t, on="coverage") == math.ceil(
        suggest_reps(t, proportion=(85.5 + 1) / 92) * 100 / 90)
    assert reps_needed(diag[diag["role"] == "null"], t) == suggest_reps(t, proportion=11 / 202)
    # every replicate rejected: the plug-in keeps the need above zero
    assert required_reps("power", 1.0, 0.0, 20, 20, 0.01) > 20


def test_rounds_first_and_growth():
    p = Precision.make(0.01)
    assert p.first_round() == 250                 # a tenth of 0.25 / 0.01^2
    assert next_total(0, None, p) == 250
    assert next_total(250, 1600, p) == 500        # at most double what is there
    assert next_total(1000, 1600, p) == 1600      # else straight to what the rule asks
    assert next_total(1600, 1601, p) == 1760      # but at least 10% more
    assert next_total(30, 31, Precision.make(0.05)) == 30 + MIN_STEP
    assert next_total(1600, 1500, p) == 1600      # met: nothing to add
    assert next_total(400, 9000, Precision.make(0.01, max_reps=500)) == 500
    assert Precision.make(0.02, first_reps=40).first_round() == 40


def test_prefix_ignores_replicates_past_a_gap():
    t = pd.DataFrame({"role": "effect", "estimator": "a", "replicate": [0, 1, 2, 5, 6]})
    rows, have = prefix(t)
    assert have == {("effect", "a"): 3} and list(rows["replicate"]) == [0, 1, 2]


@pytest.mark.parametrize("kwargs, message", [
    ({"target_mcse": 0}, "--target-mcse: must be a positive number"),
    ({"target_mcse": 0.01, "on": "power,rmse"}, "unknown diagnosand 'rmse'"),
    ({"target_mcse": 0.01, "on": "bias=x"}, "the target of bias must be a positive number"),
    ({"target_mcse": 0.01, "max_reps": 0}, "--max-reps: must be a positive integer"),
    ({"target_mcse": 0.01, "max_reps": 100, "first_reps": 200}, "exceeds --max-reps"),
])
def test_bad_targets_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        Precision.make(**kwargs, names={"target_mcse": "--target-mcse", "max_reps": "--max-reps"})


def test_target_run_stops_within_one_round_of_suggest_reps(tmp_path, capsys):
    from fitlab.cli import main

    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY))
    target = 0.05
    assert main(["run", str(tmp_path / "tiny.yaml"), "--target-mcse", str(target),
                 "--estimators", "diff_means", "--no-null", "--out", str(tmp_path / "o"),
                 "--no-progress", "--report", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "precision: target MCSE power 0.05" in out and " yes" in out
    (folder,) = (tmp_path / "o").iterdir()
    # report 04 states the precision reached
    assert "1 of 1 targets met" in (folder / "04_compare_designs.html").read_text()
    d = read_diagnosands(folder / "diagnosands.csv").set_index("diagnosand")
    reps, power, mcse = int(d.loc["power", "reps"]), d.loc["power", "value"], d.loc["power", "mcse"]
    predicted = suggest_reps(target, proportion=power)
    rounds = [r["effect"]["diff_means"] for r in
              json.loads((folder / "manifest.json").read_text())["precision"]["rounds"]]
    last_round = rounds[-1] - rounds[-2]
    assert mcse <= target and reps >= predicted
    # the last round went at most its own size past the prediction (+2: the planning
    # plug-in (x+1)/(n+2) and the observed p differ by a replicate or two near p = 0.5)
    assert reps - predicted <= last_round + 2, (reps, predicted, rounds)
    assert len(rounds) >= 2 and rounds[0] == 20   # the first round, then planned ones


def test_resuming_a_target_run_adds_only_what_is_missing(tmp_path, monkeypatch):
    import fitlab.batch as batch
    from fitlab.grid import scenario_job
    from fitlab.store import KEY, ScenarioStore

    sc = Scenario.from_dict(TINY)
    prec = Precision.make(0.07)
    opts = {"workers": 1, "chunk": 10, "progress": False}
    whole = run_to_precision([scenario_job(sc, 1, ["diff_means"])], tmp_path / "a", prec, **opts)
    want = ScenarioStore(tmp_path / "a" / sc.scenario_id).table()

    real, calls = batch.run_task, []

    def killed(task):  # the 6th task is killed: round 2 (tasks 5-9) stops half done
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(batch, "run_task", killed)
    with pytest.raises(KeyboardInterrupt):
        run_to_precision([scenario_job(sc, 1, ["diff_means"])], tmp_path / "b", prec, **opts)
    monkeypatch.setattr(batch, "run_task", real)
    store = ScenarioStore(tmp_path / "b" / sc.scenario_id)
    before = len(store.table())
    assert 0 < before < len(want)
    again = run_to_precision([scenario_job(sc, 1, ["diff_means"])], tmp_path / "b", prec, **opts)
    got = store.table()
    assert again.batch.fits_run == len(want) - before          # only the missing fits ran
    assert not got.duplicated(KEY).any()
    pd.testing.assert_frame_equal(got[KEY + ["estimate"]], want[KEY + ["estimate"]])
    assert again.jobs[0].plan == whole.jobs[0].plan and again.met


def test_grid_target_holds_main_estimators_and_keeps_confirm_fixed(tmp_path):
    from fitlab.grid import GridError, expand_grid
    from fitlab.study import run_grid

    grid = {"name": "g", "base": TINY, "factors": {"effect.d": [0.8, 2.0]},
            "estimators": ["diff_means"], "type_i_error": False, "target_mcse": 0.1,
            "max_reps": 60, "confirm": {"estimators": ["diff_means_naive"], "reps": 5}}
    (tmp_path / "g.yaml").write_text(json.dumps(grid))
    out = run_grid(tmp_path / "g.yaml", tmp_path / "o", report=False, progress=False)
    got = out["precision"].achieved
    assert set(got["estimator"]) == {"diff_means"} and got["met"].all()
    assert (got["mcse"] <= 0.1).all()
    s = out["summary"].set_index(["effect_d", "estimator"])["reps"]
    assert (s.xs("diff_means_naive", level="estimator") == 5).all()
    assert (pd.read_csv(tmp_path / "o" / "g" / "precision.csv")["met"]).all()
    with pytest.raises(GridError, match="target_on: unknown diagnosand 'rmse'"):
        expand_grid({**grid, "target_on": ["rmse"]})
    with pytest.raises(GridError, match="max_reps: needs target_mcse"):
        expand_grid({k: v for k, v in grid.items() if k != "target_mcse"})


def test_run_needs_reps_or_a_target(tmp_path, capsys):
    from fitlab.cli import main

    assert main(["run", "default", "--out", str(tmp_path / "o")]) == 2
    assert "give --reps N" in capsys.readouterr().err
    assert main(["run", "default", "--reps", "3", "--max-reps", "9",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--max-reps need(s) --target-mcse" in capsys.readouterr().err
    assert main(["run", "default", "--target-mcse", "0.6", "--out", str(tmp_path / "o")]) == 2
    assert "--target-mcse: must be below 0.5" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
