"""Malformed scenarios: exit 2, one error, no traceback and nothing written, for every
command that reads a scenario (the corpus is built in ``tests/bad_scenarios.py``)."""

import subprocess
import sys

import pytest

from bad_scenarios import corpus
from fitlab.cli import main

CORPUS = corpus()


def _argv(command: str, path, out) -> list[str]:
    if command == "power":
        return ["power", str(path)]
    if command == "simulate":
        return ["simulate", str(path), "--out", str(out / "t.csv")]
    return ["run", str(path), "--reps", "2", "--estimators", "diff_means", "--out", str(out),
            "--no-progress"]


def test_the_corpus_is_large_and_covers_every_command():
    assert len(CORPUS) >= 100
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    for command in ("power", "simulate", "run"):
        assert sum(command in c.commands for c in CORPUS) >= 100


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_malformed_scenario_refused_without_writing(tmp_path, capsys, case):
    path = tmp_path / "scenario.yaml"
    path.write_bytes(case.content)
    out = tmp_path / "out"
    for command in case.commands:
        assert main(_argv(command, path, out)) == 2, command
        cap = capsys.readouterr()
        assert cap.err.startswith("fitlab: error:") and "Traceback" not in cap.err, command
        assert "scenario.yaml" in cap.err  # every refusal names the file
        assert cap.out == ""
        assert sorted(p.name for p in tmp_path.iterdir()) == ["scenario.yaml"], command


def test_no_traceback_reaches_stderr_of_the_process(tmp_path):
    procs = []
    for name, command in [("alias-bomb", "power"), ("latin-1", "simulate"),
                          ("effect.d=nan", "run")]:
        (case,) = [c for c in CORPUS if c.name == name]
        path = tmp_path / f"{command}.yaml"
        path.write_bytes(case.content)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fitlab.cli", *_argv(command, path, tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        assert err.startswith("fitlab: error:") and "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists()


def test_force_runs_what_the_estimate_refuses(tmp_path, capsys, monkeypatch):
    import simulate.limits as limits

    monkeypatch.setattr(limits, "available_memory", lambda: 1e5)  # a 100 kB machine
    out = tmp_path / "t.csv"
    assert main(["simulate", "default", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "too large for this machine" in err and "size.units" in err and not out.exists()
    assert main(["simulate", "default", "--out", str(out), "--force"]) == 0
    assert "warning" in capsys.readouterr().err and out.is_file()


def test_schema_rules_hold_for_every_command_and_the_api():
    # the cluster allocation rule lives in the schema, so simulate and run refuse it too
    from simulate import Scenario, ScenarioError

    with pytest.raises(ScenarioError, match="leave an arm without units"):
        Scenario.from_dict({"design": {"kind": "cluster", "allocation_ratio": 3},
                            "size": {"units": 2}})
    with pytest.raises(ScenarioError, match="expected a number"):
        Scenario().replace({"size.units": True})
    # int -> float still works, and true/false still sets a boolean field
    assert Scenario().replace({"effect.d": 1}).effect.d == 1.0
    assert Scenario().replace({"design.control_clustered": False}).design.control_clustered \
        is False


@pytest.mark.parametrize("text, message", [
    (b"name: g\nreps: 2\nreps: 3\n", "reps: duplicate key"),
    (b"name: g\nbase: &b default\nfactors: {size.units: [6]}\nreps: *b\n", "anchors"),
    (b"name: g\nreps: .nan\n", "reps"),
    ("name: g\ndescription: Bergström\n".encode("latin-1"), "not UTF-8"),
    (b"# an empty grid\n", "empty"),
    (b"name: g\nreps: 2\nestimators: [diff_means]\nfactors: {size.therapists_per_unit: "
     b"[4, 1000000000]}\n", "too large for this machine"),
])
def test_grids_are_read_and_checked_the_same_way(tmp_path, capsys, text, message):
    path = tmp_path / "grid.yaml"
    path.write_bytes(text)
    assert main(["batch", str(path), "--out", str(tmp_path / "out"), "--no-progress",
                 "--no-report", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert message in err and "grid.yaml" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_batch_summary_skips_analytic_power_that_would_not_fit():
    import math

    from fitlab.batch import analytic_power
    from simulate import Scenario

    huge = Scenario().replace({"design.kind": "stepped_wedge", "design.steps": 2000,
                               "design.randomization": "simple", "size.units": 2000,
                               "size.clients_per_unit": 2})
    assert math.isnan(analytic_power(huge)["analytic_power"])  # at once, not in hours
