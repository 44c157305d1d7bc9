"""The scenario schema: shipped files load, bad scenarios are refused with clear messages."""

from pathlib import Path

import pytest

from simulate import Scenario, ScenarioError, load_scenario

PARAMS = Path(__file__).resolve().parents[1] / "params"

SHIPPED = ["fit_individual", "fit_stepped_wedge", "fit_cluster", "ips_2to1"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name):
    sc = load_scenario(PARAMS / f"{name}.yaml")
    assert sc.name == name


def test_default_is_design_a_file():
    from_file = load_scenario(PARAMS / "fit_individual.yaml")
    assert from_file.hash() == Scenario().hash()


def test_ips_file_matches_the_seed_document():
    sc = load_scenario(PARAMS / "ips_2to1.yaml")
    assert sc.design.allocation_ratio == 2.0
    assert sc.size.units * sc.size.clients_per_unit == 135
    assert sc.size.units * sc.size.therapists_per_unit == 6
    assert sc.followup.months == [0, 6, 12, 18]
    assert sc.outcome.kind == "binary"


BAD = [
    ({"size": {"units": -1}}, "size.units", "greater than or equal to 1"),
    ({"size": {"unitz": 3}}, "size.unitz", "allowed keys here: caseload_cap"),
    ({"sise": {}}, "sise", "allowed keys here: allocation, analysis"),
    ({"size": {"units": "many"}}, "size.units", "valid integer"),
    ({"missingness": {"attrition_rate": 1.5}}, "missingness.attrition_rate", "less than 1"),
    ({"compliance": {"uptake": -0.1}}, "compliance.uptake", "greater than or equal to 0"),
    ({"followup": {"months": [0, 3, 1]}}, "followup.months", "strictly increasing"),
    ({"followup": {"months": [1, 3]}}, "followup.months", "start at 0"),
    ({"followup": {"months": [0, 3], "primary_month": 6}}, "primary_month", "must be one of"),
    ({"design": {"kind": "stepped_wedge", "steps": 20}}, "design.steps", "cannot exceed size.units"),
    ({"design": {"allocation_ratio": 0}}, "design.allocation_ratio", "greater than 0"),
    ({"design": {"kind": "crossover"}}, "design.kind", "'individual', 'cluster' or 'stepped_wedge'"),
    ({"design": {"allocation_ratio": 2.0, "block_size": 4}}, "design.block_size", "hold allocation_ratio"),
    ({"outcome": {"kind": "binary", "intake_mean": 3}}, "outcome.intake_mean", "allowed keys here: baseline_rate"),
    ({"outcome": {"kind": "binary", "control_rate": 0.6}, "effect": {"risk_ratio": 2}}, "control_rate * effect.risk_ratio", "below 1"),
    ({"outcome": {"unit_icc": 0.5, "therapist_icc": 0.3, "client_icc": 0.3}}, "client_icc must be below 1", "occasion-level"),
    ({"compliance": {"fidelity_shares": [0.5, 0.5, 0.5]}}, "compliance.fidelity_shares", "sum to 1"),
    ({"compliance": {"fidelity_multipliers": [1, 0.5, 0]}}, "compliance.fidelity_multipliers", "non-decreasing"),
    ({"size": {"caseload_cap": 1}}, "size.caseload_cap", "expected concurrent caseload"),
    ({"design": {"kind": "cluster"}, "size": {"units": 1}}, "size.units", "at least 2"),
]


@pytest.mark.parametrize("bad,field,allowed", BAD)
def test_bad_scenarios_are_refused_with_field_and_allowed(bad, field, allowed):
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(bad)
    message = str(info.value)
    assert field in message
    assert allowed in message


def test_every_problem_is_listed():
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict({"size": {"units": 0, "clients_per_unit": -5}, "seed": -1})
    assert len(info.value.problems) == 3


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)


def test_replace_and_null_and_hash():
    sc = Scenario()
    bigger = sc.replace({"size.units": 20})
    assert bigger.size.units == 20 and sc.size.units == 12
    assert bigger.hash() != sc.hash()
    assert sc.replace({"size.units": 12}).hash() == sc.hash()
    null = sc.null()
    assert null.effect.d == 0 and null.effect.risk_ratio == 1
    with pytest.raises(ScenarioError, match="size.units"):
        sc.replace({"size.units": 0})
    with pytest.raises(ScenarioError, match="not a section"):
        sc.replace({"units.size": 3})
