"""Sample size and minimum detectable effect (``simulate.power.solve``) and the CLI.

Against a published table (two samples, d = 0.5, power 0.8: 63 per arm by the normal
approximation, 64 by the t test; Cohen 1988), the closed form of the MDE, brute-force
search over the size grid, and the fitted-model power at the solution's boundary.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats

from conftest import PARAMS
from fitlab.cli import main
from simulate import Scenario, load_scenario
from simulate.power import mde, n_for_power, power, solve_size
from simulate.power.checks import PowerInputError

# Two independent samples in disguise: one unit, no clustering, no attrition, full uptake
# and fidelity, no progress variance, and scores far from the ends of 0-40.
TWO_SAMPLE = {
    "size.units": 1, "size.clients_per_unit": 100, "size.cluster_size_cv": 0.0,
    "size.therapists_per_unit": 20, "outcome.intake_mean": 20.0, "outcome.sd": 2.0,
    "outcome.mean_change": 0.0, "outcome.slope_sd": 0.0, "outcome.not_on_track_share": 0.0,
    "outcome.unit_icc": 0.0, "outcome.therapist_icc": 0.0, "compliance.uptake": 1.0,
    "compliance.complier_shift": 0.0, "compliance.fidelity_multipliers": [1.0, 1.0, 1.0],
    "missingness.attrition_rate": 0.0, "effect.d": 0.5, "effect.not_on_track_d": None,
}


def test_two_sample_size_matches_the_published_table():
    sc = Scenario().replace(TWO_SAMPLE)
    out = solve_size(sc, "size.clients_per_unit", 0.8, method="textbook")
    assert n_for_power(0.5, 1.0) == (63, 63)  # normal; the t test's 64 is in test_analytic
    assert out["value"] == 2 * 63
    assert out["power"] >= 0.8 > out["power_below"]


def test_mde_matches_the_closed_form():
    sc = Scenario().replace(TWO_SAMPLE)
    out = mde(sc, 0.8, method="textbook")
    # delta / sd = (z_{1-alpha/2} + z_{0.8}) sqrt(1/50 + 1/50), the far tail negligible
    expected = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(2 / 50)
    assert out["d"] == pytest.approx(expected, rel=1e-3)
    assert out["effect"] == pytest.approx(expected * 2.0, rel=1e-3)  # ORS points (sd 2)
    one = mde(sc.replace({"analysis.sides": 1}), 0.8, method="textbook")
    expected_one = (stats.norm.ppf(0.95) + stats.norm.ppf(0.8)) * math.sqrt(2 / 50)
    assert one["d"] == pytest.approx(expected_one, rel=1e-3)


def test_one_sided_power_honours_analysis_sides():
    sc = Scenario().replace({**TWO_SAMPLE, "analysis.sides": 1})
    out = power(sc, fitted=False)
    lam = 1.0 / math.sqrt(4.0 * (1 / 50 + 1 / 50))
    assert out["sides"] == 1
    assert out["power"] == pytest.approx(stats.norm.cdf(lam - stats.norm.ppf(0.95)), rel=1e-3)


def _brute(sc, field, values, target=0.8):
    for v in values:
        changes = ({"size.units": v * sc.design.steps} if field == "units_per_step"
                   else {field: v})
        if power(sc.replace(changes), fitted=False)["power_textbook"] >= target:
            return v
    return None


@pytest.mark.parametrize("name, field, d, top", [
    ("fit_cluster", "size.units", 0.6, 400),
    ("fit_individual", "size.clients_per_unit", 0.6, 300),
    ("fit_stepped_wedge", "units_per_step", 0.6, 60),
])
def test_textbook_solution_matches_brute_force(name, field, d, top):
    sc = load_scenario(PARAMS / f"{name}.yaml").replace({"effect.d": d})
    out = solve_size(sc, field, 0.8, method="textbook")
    lowest = {"size.units": 2, "size.clients_per_unit": 1, "units_per_step": 1}[field]
    assert out["value"] == _brute(sc, field, range(lowest, top + 1))


def test_fitted_solution_is_at_the_power_boundary():
    sc = load_scenario(PARAMS / "fit_individual.yaml").replace({"effect.d": 0.8})
    out = solve_size(sc, "size.units", 0.8, method="fitted")
    assert out["method"] == "fitted" and out["current"] == 12
    v = out["value"]
    assert power(sc.replace({"size.units": v}))["power_fitted"] >= 0.8
    assert power(sc.replace({"size.units": v - 1}))["power_fitted"] < 0.8


def test_solver_reports_what_cannot_be_reached_and_refuses_bad_input():
    sc = load_scenario(PARAMS / "fit_individual.yaml")
    # clients per unit run into the caseload cap long before d = 0.15 is detectable
    out = solve_size(sc, "size.clients_per_unit", 0.8, method="textbook")
    assert out["value"] is None and "caseload" in out["limit"]
    with pytest.raises(PowerInputError, match="field must be one of"):
        solve_size(sc, "size.therapists", 0.8)
    with pytest.raises(PowerInputError, match="stepped-wedge"):
        solve_size(sc, "units_per_step", 0.8)
    with pytest.raises(PowerInputError, match="target"):
        mde(sc, 1.2)
    with pytest.raises(PowerInputError, match="binary"):
        mde(load_scenario(PARAMS / "ips_2to1.yaml"), method="fitted")


def test_cli_solve_and_mde(capsys):
    assert main(["power", str(PARAMS / "fit_cluster.yaml"), "--solve", "size.units",
                 "--target", "0.8", "--method", "textbook", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["solve"]["field"] == "size.units" and res["solve"]["value"] > 12
    assert main(["power", "default", "--mde", "--method", "textbook", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mde"]["power"] == pytest.approx(0.8, abs=1e-3)
    assert main(["power", "default", "--solve", "size.nope"]) == 2
    err = capsys.readouterr().err
    assert "field must be one of" in err and "Traceback" not in err


def test_open_cohort_reduces_to_hooper_closed_cohort():
    from simulate.power import hooper_variance, stepped_wedge_gls_variance, stepped_wedge_schedule

    # everyone measured once in every period: P_ts = m between periods, 0 within
    x = stepped_wedge_schedule(4, units_per_step=2)
    m, rho, rho_c, rho_s = 10.0, 0.05, 0.8, 0.6
    pairs = np.full(x.shape + (x.shape[1],), m)
    pairs[:, np.arange(x.shape[1]), np.arange(x.shape[1])] = 0.0
    closed = hooper_variance(1.0, rho, m, steps=4, clusters_per_step=2,
                             cluster_autocorrelation=rho_c, individual_autocorrelation=rho_s)
    assert stepped_wedge_gls_variance(x, 1.0, rho, m, rho_c, rho_s, pairs=pairs) == \
        pytest.approx(closed, rel=1e-10)
    # nobody measured twice: the cross-sectional design, whatever rho_s
    cross = stepped_wedge_gls_variance(x, 1.0, rho, m, rho_c)
    assert stepped_wedge_gls_variance(x, 1.0, rho, m, rho_c, rho_s, pairs=0 * pairs) == \
        pytest.approx(cross, rel=1e-10)
