"""Vectorized power (models.fastpower) against closed forms and against MCPower."""

import math
import sys
from pathlib import Path

import pytest

from models.fastpower import closed_form_power, icc_to_variance, nested_power

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_cluster_trial_power_matches_noncentral_t():
    # balanced cluster trial: GLS = difference of unit means, exact noncentral-t power
    # (up to REML boundary effects, kept rare by sizeable unit variance); 4 * MCSE band
    vu, vt, d = 0.25, 0.1, 0.8
    r = nested_power(delta=d, var_unit=vu, var_therapist=vt, n_reps=2000, seed=7,
                     arm_level="unit")
    exact = closed_form_power(d, vu, vt, arm_level="unit")
    mcse = math.sqrt(exact * (1 - exact) / r.n_reps)
    assert abs(r.power - exact) < 4 * mcse


@pytest.mark.parametrize("arm_level", ["unit", "client"])
def test_type_one_error_near_alpha(arm_level):
    r = nested_power(delta=0.0, var_unit=0.25, var_therapist=0.1, n_reps=2000, seed=11,
                     arm_level=arm_level)
    # binomial MCSE of a rejection rate equal to alpha; 3.5 MCSE band
    mcse = math.sqrt(0.05 * 0.95 / r.n_reps)
    assert abs(r.power - 0.05) < 3.5 * mcse


def test_client_level_estimate_unbiased():
    r = nested_power(delta=0.3, var_unit=0.1, var_therapist=0.1, n_reps=1000, seed=3)
    # mean of estimates within 4 Monte Carlo SEs (SD of an estimate ~ its mean SE)
    assert abs(r.extra["mean_estimate"] - 0.3) < 4 * r.extra["mean_se"] / math.sqrt(1000)


def test_same_power_as_mcpower():
    # an independent implementation is the check of nested_power, so it stays a test; the
    # MCPower driver is benchmark code (MCPower is an optional `bench` dependency)
    pytest.importorskip("mcpower")
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    from mcpower_compare import mcpower_power

    icc = 0.1
    ours = nested_power(delta=0.3, var_unit=icc_to_variance(icc),
                        var_therapist=icc_to_variance(icc), n_reps=2000, seed=5)
    peer = mcpower_power(delta=0.3, icc_unit=icc, icc_therapist=icc, n_reps=2000, seed=5)
    # two independent Monte Carlo estimates of the same power: 4 * combined MCSE
    assert abs(ours.power - peer.power) < 4 * math.hypot(ours.mcse, peer.mcse)


def test_bad_input():
    with pytest.raises(ValueError, match="arm_level"):
        nested_power(arm_level="therapist", n_reps=10)
    with pytest.raises(ValueError, match="even number of units"):
        nested_power(units=5, arm_level="unit", n_reps=10)
    with pytest.raises(ValueError, match="units must be an integer"):
        nested_power(units=1.5, n_reps=10)
    with pytest.raises(ValueError, match="var_unit"):
        nested_power(var_unit=-1, n_reps=10)
    with pytest.raises(ValueError, match="icc"):
        icc_to_variance(1.0)
