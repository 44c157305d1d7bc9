"""The fitlab command line: outputs, JSON, and clear errors without tracebacks.

Tests marked "needs plans" pass an AnalysisPlan to ``get_estimator`` (real data without
``--scenario``, or plan flags that change a scenario's plan).
"""

import json

import pandas as pd
import pytest

from fitlab.cli import main


def test_simulate_csv_and_parquet(tmp_path, capsys):
    for ext in ("csv", "parquet"):
        out = tmp_path / f"t.{ext}"
        assert main(["simulate", "default", "--seed", "3", "--out", str(out)]) == 0
        df = pd.read_csv(out) if ext == "csv" else pd.read_parquet(out)
        info = json.loads(capsys.readouterr().out)
        assert info["rows"] == len(df) > 0 and "itt" in info["truth"]
        assert {"unit", "therapist", "client", "outcome"} <= set(df.columns)


def test_fit_scenario_json_matches_api(capsys):
    from models import get_estimator
    from simulate import Scenario, simulate_trial

    assert main(["fit", "default", "--seed", "5", "--json", "--estimator", "diff_means"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = get_estimator("diff_means", Scenario()).fit(simulate_trial(Scenario(), 5).data)
    assert got["estimate"] == pytest.approx(want.estimate)
    assert got["estimand"] == "itt"


def test_fit_real_data_with_column_mapping(tmp_path, capsys):  # needs plans
    from simulate import Scenario, simulate_trial

    data = simulate_trial(Scenario(), 2).data.rename(columns={"outcome": "ors", "client": "id"})
    data.to_csv(tmp_path / "d.csv", index=False)
    args = ["fit", str(tmp_path / "d.csv"), "--columns", "outcome=ors,client=id", "--json",
            "--estimator", "diff_means", "--primary-month", "12"]
    assert main(args) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["estimator"] == "diff_means" and e["extra"]["n"] > 0
    # without the mapping the long format is refused with the missing columns named
    assert main(args[:2] + ["--json", "--estimator", "diff_means"]) == 2
    err = capsys.readouterr().err
    assert "missing column" in err and "Traceback" not in err


def test_power_json(capsys):
    pytest.importorskip("simulate.power")
    assert main(["power", "default", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0 < res["power"] < 1


def test_power_solve_and_mde_read_as_sentences(capsys):
    # the printed answer is the solver's own (the CLI must not round it into another size)
    from simulate import Scenario
    from simulate.power import mde, solve_size

    sc = Scenario()
    size = solve_size(sc, "size.units", 0.8, method="textbook")
    found = mde(sc, 0.8, method="textbook")
    assert main(["power", "default", "--solve", "size.units", "--mde",
                 "--method", "textbook"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"size.units {size['value']} for power 0.8 (now 12,")
    assert out[1] == (f"  power at {size['value']}: {size['power']:.4f}, at "
                      f"{size['value'] - 1}: {size['power_below']:.4f}")
    assert f"ITT {found['effect']:.3g} ORS points" in out[3]
    assert all("{" not in line for line in out)  # sentences, not a dict dump


@pytest.mark.parametrize("argv, message", [
    (["fit", "default", "--estimator", "nope"], "unknown estimator 'nope'"),
    (["simulate", "missing.yaml", "--out", "OUT/t.csv"], "not found"),
    (["simulate", "default", "--out", "OUT/t.txt"], ".csv or .parquet"),
    (["run", "BAD", "--reps", "3", "--out", "OUT"], "size.units"),
    (["run", "default", "--reps", "0", "--out", "OUT"], "--reps"),
    (["batch", "missing_grid.yaml", "--out", "OUT"], "not found"),
    (["report", "OUT/nothing"], "not found"),
    (["fit", "OUT/none.csv"], "not found"),
    (["run", "default", "--reps", "3", "--workers", "0", "--out", "OUT"], "--workers"),
    (["fit", "default", "--columns", "outcome=ors"], "apply to a data file"),
    (["fit", "default", "--alpha", "1.5", "--time", "quad"], "--time: Input should be"),
    (["fit", "EMPTY", "--scenario", "default"], "cannot be read"),
])
def test_user_errors(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: {units: 0}\n")
    (tmp_path / "empty.csv").write_text("")
    argv = [a.replace("OUT", str(tmp_path / "o")).replace("BAD", str(bad))
            .replace("EMPTY", str(tmp_path / "empty.csv")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_run_prints_table_and_writes_results(tmp_path, capsys):
    argv = ["run", "default", "--reps", "5", "--estimators", "diff_means,diff_means_naive",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "diff_means_naive" in out and "type_i_error" in out
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    d = pd.read_csv(folder / "diagnosands.csv", keep_default_na=False, na_values=[""])
    assert set(d["role"]) == {"effect", "null"} and set(d["n"]) <= {5}
    # the same command again runs nothing
    assert main(argv) == 0
    assert "0 fits" in capsys.readouterr().out


def test_columns_need_pairs(tmp_path, capsys):
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "d.csv", index=False)
    assert main(["fit", str(tmp_path / "d.csv"), "--scenario", "default",
                 "--columns", "outcome"]) == 2
    assert "--columns: expected standard=yours pairs" in capsys.readouterr().err


def test_fit_real_data_default_estimator_from_plan(tmp_path, capsys):
    # needs plans: no --scenario, so the estimator gets the plan of the flags
    from models.defaults import default_estimator
    from simulate import Scenario, simulate_trial

    simulate_trial(Scenario(), 2).data.to_parquet(tmp_path / "d.parquet")
    assert main(["fit", str(tmp_path / "d.parquet"), "--json", "--primary-month", "12"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["estimator"] == default_estimator("ors", "individual")


def test_a_bug_keeps_its_traceback(monkeypatch):
    # only FitlabError is a user mistake; e.g. a LinAlgError inside a command is a bug
    import numpy as np

    import simulate

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(simulate, "simulate_trial", broken)
    with pytest.raises(np.linalg.LinAlgError):
        main(["fit", "default", "--estimator", "diff_means"])


def test_debug_shows_user_mistakes_and_interrupt_is_one_line(monkeypatch, capsys):
    from fitlab import FitlabError
    from fitlab.cli import simulate as simulate_cmd

    monkeypatch.setenv("FITLAB_DEBUG", "1")
    with pytest.raises(FitlabError, match="unknown estimator"):
        main(["fit", "default", "--estimator", "nope"])
    monkeypatch.delenv("FITLAB_DEBUG")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(simulate_cmd, "cmd_simulate", interrupted)
    assert main(["simulate", "default", "--out", "t.csv"]) == 130
    assert capsys.readouterr().err.count("\n") == 1


def test_every_command_module_registers():
    from fitlab.cli import COMMAND_MODULES, build_parser

    helps = build_parser().format_help()
    for name in ("simulate", "power", "fit", "run", "batch", "report", "demo"):
        assert name in helps
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))
