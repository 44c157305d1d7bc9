"""``fitlab solve``: the size reaching a target power by simulation, against the analytic
answer where the two-sample formula holds, and the curve it fits.

The scenario has no clustering (no unit or therapist variance, equal units), no missing
data and full uptake and fidelity, so that the naive difference in means at the primary
month is a two-sample t test and :func:`simulate.power.power` gives its power; the
analytic clients per unit for 80% power are found by bisection on it. Checked once with
4000 replicates at 41 clients per unit: simulated power 0.794 (MCSE 0.006) against the
analytic 0.800. The search's 95% interval was checked too: over 40 searches from other
seeds (100 replicates per size and round, 3 rounds) it covered the analytic size 38 times.
"""

import json

import numpy as np
import pytest
from scipy import optimize

from fitlab.cli import main
from fitlab.solve import fit_power_curve, solve_size
from simulate import Scenario
from simulate.power import power

UNCLUSTERED = {
    "outcome.unit_icc": 0.0, "outcome.therapist_icc": 0.0, "effect.d": 0.5,
    "effect.not_on_track_d": None, "size.units": 4, "size.cluster_size_cv": 0.0,
    "size.clients_per_unit": 10, "size.caseload_cap": 500,
    "missingness.attrition_rate": 0.0, "missingness.dropout_rate": 0.0,
    "compliance.uptake": 1.0, "compliance.fidelity_multipliers": [1.0, 1.0, 1.0],
}
SEARCH = dict(estimator="diff_means_naive", reps=100, rounds=3, bounds=(10, 100))


@pytest.fixture(scope="module")
def scenario():
    return Scenario().replace(UNCLUSTERED)


@pytest.fixture(scope="module")
def solved(scenario, tmp_path_factory):
    root = tmp_path_factory.mktemp("solve")
    return root, solve_size(scenario, "size.clients_per_unit", 0.8, root=root, **SEARCH)


def analytic_size(scenario, target=0.8):
    f = lambda m: power(scenario.replace({"size.clients_per_unit": m}))["power"] - target  # noqa: E731
    return optimize.brentq(f, 2, 400)


def test_interval_covers_the_analytic_size(scenario, solved):
    _, res = solved
    truth = analytic_size(scenario)
    assert 38 < truth < 44  # the two-sample answer: 2 (1.96 + 0.84)^2 (sd / effect)^2 / 4
    assert res.lower <= truth <= res.upper, (res.lower, truth, res.upper)
    # 1100 replicates pin the size to about +-7%: the later rounds were spent near it
    assert res.upper / res.lower < 1.3
    assert res.needed == np.ceil(res.size)
    first = res.rounds[0]
    for later in res.rounds[1:]:
        assert all(first["lower"] - 1 <= s <= first["upper"] + 1 for s in later["sizes"])
    assert 0.35 < res.curve.b < 0.65  # the two-sample noncentrality grows as sqrt(n)


def test_rerun_reuses_every_replicate(scenario, solved):
    root, res = solved
    parts = sorted(root.rglob("parts/*.parquet"))
    again = solve_size(scenario, "size.clients_per_unit", 0.8, root=root, **SEARCH)
    assert sorted(root.rglob("parts/*.parquet")) == parts
    assert again.size == pytest.approx(res.size)
    saved = json.loads((res.folder / "solve.json").read_text())
    assert saved["size"] == pytest.approx(res.size) and saved["replicates"] == 1100


def test_cli_solve_json(scenario, solved, tmp_path, capsys):
    import yaml

    root, res = solved
    path = tmp_path / "unclustered.yaml"
    path.write_text(yaml.safe_dump(scenario.to_dict()))
    argv = ["solve", str(path), "--factor", "size.clients_per_unit", "--estimator",
            "diff_means_naive", "--reps", "100", "--rounds", "3", "--range", "10", "100",
            "--out", str(root), "--workers", "1", "--no-progress"]
    assert main(argv + ["--json"]) == 0  # the same search: every replicate reused
    got = json.loads(capsys.readouterr().out)
    assert got["size"] == pytest.approx(res.size) and got["lower"] < got["size"] < got["upper"]


def test_cli_solve_target_mcse_uses_the_precision_rule(scenario, solved, tmp_path, capsys):
    import yaml

    from fitlab.diagnosands import suggest_reps

    root, res = solved
    path = tmp_path / "unclustered.yaml"
    path.write_text(yaml.safe_dump(scenario.to_dict()))
    # MCSE 0.04 at power 0.8: 0.8 x 0.2 / 0.04^2 = 100 replicates per size, the module
    # search's own count, so every replicate is reused and the answer is the same
    assert suggest_reps(0.04, proportion=0.8) == 100
    argv = ["solve", str(path), "--estimator", "diff_means_naive", "--target-mcse", "0.04",
            "--range", "10", "100", "--out", str(root), "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "100 replicates per size and round (--target-mcse 0.04 at power 0.8)" in out
    assert "1100 replicates in 3 rounds" in out and f"{res.size:.1f}" in out
    bad = ["solve", str(path), "--target-mcse", "0.5", "--out", str(tmp_path / "bad")]
    assert main(bad) == 2
    assert "--target-mcse must be in (0, 0.5)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("extra, message", [
    (["--factor", "size.nope"], "--factor must be one of"),
    (["--target", "1.5"], "--target must be in (0, 1)"),
    (["--reps", "1"], "--reps must be at least 2"),
    (["--reps", "50", "--target-mcse", "0.02"], "give --reps or --target-mcse, not both"),
    (["--range", "50", "10"], "--range must be two sizes"),
])
def test_cli_solve_errors(extra, message, tmp_path, capsys):
    assert main(["solve", "default", "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_curve_recovers_the_two_sample_form():
    # expected counts of an exact two-sample power curve: the fit returns its exponent
    # (1/2) and its crossing; rounding the counts is the only error
    n = np.array([10.0, 20, 40, 80])
    lam = 0.4 * np.sqrt(n)
    from scipy.special import ndtr

    p = ndtr(lam - 1.959964) + ndtr(-lam - 1.959964)
    curve = fit_power_curve(n, np.round(p * 10000), np.full(4, 10000))
    assert curve.b == pytest.approx(0.5, abs=0.01)
    want = ((1.959964 + 0.841621) / 0.4) ** 2
    s = curve.solve(0.8)
    assert s["size"] == pytest.approx(want, rel=0.01) and s["lower"] < want < s["upper"]
    band = curve.band(n)
    assert (band["lower"] < p).all() and (p < band["upper"]).all()


def test_cli_help_states_the_searchs_own_default(capsys):
    # the parser does not import fitlab.solve (numpy, scipy), so its help repeats REPS
    from fitlab.solve import REPS

    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    assert f"(default: {REPS}; e.g. 200)" in " ".join(capsys.readouterr().out.split())
