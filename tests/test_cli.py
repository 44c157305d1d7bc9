"""The fitlab command line: outputs, JSON, and clear errors without tracebacks."""

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


def test_fit_real_data_with_column_mapping(tmp_path, capsys):
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


@pytest.mark.parametrize("argv, message", [
    (["fit", "default", "--estimator", "nope"], "unknown estimator 'nope'"),
    (["simulate", "missing.yaml", "--out", "OUT/t.csv"], "not found"),
    (["simulate", "default", "--out", "OUT/t.txt"], ".csv or .parquet"),
    (["run", "BAD", "--reps", "3", "--out", "OUT"], "size.units"),
    (["run", "default", "--reps", "0", "--out", "OUT"], "--reps"),
    (["batch", "missing_grid.yaml", "--out", "OUT"], "not found"),
    (["report", "OUT/nothing"], "not found"),
    (["fit", "OUT/none.csv"], "not found"),
])
def test_user_errors(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: {units: 0}\n")
    argv = [a.replace("OUT", str(tmp_path / "o")).replace("BAD", str(bad)) for a in argv]
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
