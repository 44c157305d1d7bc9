"""The economic consequence analysis: the plan's formula by hand, the acceptability curve, EVPI.

Posterior draws are passed in directly (no sampling); the notebook runs on a draws file.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import PARAMS
from fitlab.cli import main
from fitlab.economics import economic_analysis, read_draws
from models import economics as ec
from simulate import ScenarioError, load_scenario
from simulate.economics import Economics

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_economics.ipynb"


@pytest.fixture(scope="module")
def ips():
    return load_scenario(PARAMS / "ips_2to1.yaml")


@pytest.fixture(scope="module")
def draws():
    # a posterior-like sample: mean 0.1, SD 0.08, some draws below zero
    return np.random.default_rng(4).normal(0.10, 0.08, 4000).clip(-1, 1)


def test_value_of_a_month_by_hand():
    # the plan's formula: extent x monthly wage x (1 + contributions) x (1 - subsidy)
    e = Economics(employment_extent=0.75, monthly_wage=25_000, employer_contributions=0.3142,
                  wage_subsidy_rate=0.4)
    assert ec.value_per_month(e) == pytest.approx(0.75 * 25_000 * 1.3142 * 0.6)
    # the hourly alternative: hours worked x 129 SEK x (1 - 0.7) x (1 + contributions)
    h = e.model_copy(update={"valuation": "hourly_wage", "hours_per_month": 160.0})
    assert ec.hourly_value(h) == pytest.approx(38.7)
    assert ec.value_per_month(h) == pytest.approx(0.75 * 160 * 38.7 * 1.3142)
    # with the defaults both routes give 0.5 x 22 360 x 1.3142 x 0.3 = 4 407.83 SEK
    d = Economics()
    assert ec.value_per_month(d) == pytest.approx(4407.8268)
    assert ec.value_per_month(d.model_copy(update={"valuation": "hourly_wage"})) == \
        pytest.approx(4407.8268)
    # displacement and other value enter the decision value only
    x = d.model_copy(update={"displacement_share": 0.25, "other_value_per_month": 100.0})
    assert ec.decision_value_per_month(x) == pytest.approx(4407.8268 * 0.75 + 100.0)


def test_months_and_net_benefit_by_hand():
    e = Economics(effect_shape="constant", horizon_years=2, discount_rate=0.03,
                  cost_per_client=1000.0)
    lam = ec.value_per_month(e)
    rd = np.array([0.1, -0.05])
    assert np.allclose(ec.extra_months(rd, e, 12), [[1.2, 1.2], [-0.6, -0.6]])
    want = 12 * rd * (1 + 1 / 1.03) * lam - 1000.0
    assert ec.incremental_net_benefit(rd, e, 12) == pytest.approx(want)
    # the reference shape: Holmås et al.'s 0.245 / 0.465 / 0.55 relative to the primary year
    ref = Economics()
    assert ec.year_weights(ref, 18) == pytest.approx([0.245 / 0.465, 1.0, 0.55 / 0.465])
    assert ec.year_weights(ref, 12) == pytest.approx([1.0, 0.465 / 0.245, 0.55 / 0.245])
    assert ec.year_weights(ref, 60) == pytest.approx([0.245 / 0.55, 0.465 / 0.55, 1.0])
    # 12 x RD in the primary year equals the reference when RD = 0.465 / 12
    assert ec.extra_months([0.465 / 12], ref, 18)[0] == pytest.approx([0.245, 0.465, 0.55])


def test_acceptability_curve(ips, draws):
    e, pm = ips.economics, ips.followup.primary_month
    grid = ec.wtp_grid(draws, e, pm)
    curve = ec.acceptability(draws, e, pm, grid)
    assert np.all(np.diff(curve) >= 0)  # never falls as the willingness to pay grows
    assert curve[0] == 0.0  # nothing is worth a positive cost at a price of zero
    # as the willingness to pay grows without bound it tends to P(RD > 0)
    assert ec.acceptability(draws, e, pm, 1e12)[0] == pytest.approx((draws > 0).mean(), abs=1e-3)
    # at the plan's value it is P(INB > 0) of the summary
    s = ec.economic_summary(draws, e, pm)
    at = ec.acceptability(draws, e, pm, s["wtp"])[0]
    assert at == s["p_cost_effective"] == (ec.incremental_net_benefit(draws, e, pm) > 0).mean()
    # and about one half at the break-even value (mean INB = 0; the INB is symmetric here)
    assert ec.acceptability(draws, e, pm, s["break_even_wtp"])[0] == pytest.approx(0.5, abs=0.05)


def test_evpi(ips, draws):
    e, pm = ips.economics, ips.followup.primary_month
    assert ec.evpi([-1.0, 3.0]) == pytest.approx(0.5)
    inb = ec.incremental_net_benefit(draws, e, pm, ec.wtp_grid(draws, e, pm))
    values = ec.evpi(inb)
    assert np.all(values >= 0)
    # no uncertainty: no value of information, at any willingness to pay
    assert ec.evpi(ec.incremental_net_benefit(np.full(50, 0.1), e, pm)) == 0.0
    # every draw on the same side of zero: information cannot change the decision
    assert ec.evpi(np.abs(draws) + 1.0) == 0.0
    # largest near the break-even value, where the decision is most uncertain
    s = ec.economic_summary(draws, e, pm)
    peak = ec.wtp_grid(draws, e, pm)[np.argmax(values)]
    assert peak == pytest.approx(s["break_even_wtp"], rel=0.15)
    factor = 300 * sum(1.03**-t for t in range(5))
    assert s["evpi_population"] == pytest.approx(s["evpi_per_client"] * factor)


def test_summary_figures_agree(ips, draws):
    res = economic_analysis(ips, draws)
    s = res.summary
    assert s["inb_mean"] == pytest.approx(res.inb.mean())
    assert s["inb_lower"] < s["inb_mean"] < s["inb_upper"]
    assert s["extra_months_total"] == pytest.approx(res.months.sum(axis=1).mean())
    assert s["wtp"] in res.curve["wtp"].to_numpy()
    row = res.curve.loc[res.curve["wtp"] == s["wtp"]].iloc[0]
    assert row["p_cost_effective"] == s["p_cost_effective"]
    assert row["evpi_per_client"] == pytest.approx(s["evpi_per_client"])


def test_bad_draws_and_settings_are_refused(tmp_path):
    for bad in ([], [np.nan, 0.1], [1.5]):
        with pytest.raises(ec.EconomicsError):
            ec.as_draws(bad)
    with pytest.raises(ScenarioError, match="horizon_years .4. cannot exceed"):
        load_scenario({"economics": {"horizon_years": 4}})
    with pytest.raises(ScenarioError, match="economics.cost: unknown key"):
        load_scenario({"economics": {"cost": 4}})
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ec.EconomicsError, match="risk_difference"):
        read_draws(tmp_path / "d.csv")


def test_cli_with_draws(tmp_path, capsys, draws):
    np.save(tmp_path / "d.npy", draws)
    args = ["economics", str(PARAMS / "ips_2to1.yaml"), "--draws", str(tmp_path / "d.npy"),
            "--wtp", "10000", "--json", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["p_cost_effective_at_given_wtp"] >= got["p_cost_effective"]  # 10 000 > 4 408
    assert (tmp_path / "out" / "curve.csv").is_file()
    assert main(["economics", "default"]) == 2  # the FIT default has no employment outcome
    assert "outcome.kind" in capsys.readouterr().err


def test_notebook_06_runs_on_a_real_trial_file(tmp_path, ips):
    # the notebook's data_file route: the same fit as `fitlab economics --data`, no truth
    import nbformat
    import papermill as pm

    from simulate import simulate_trial

    data = simulate_trial(ips, 2).data.rename(columns={"outcome": "employed"})
    data.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "06.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(NOTEBOOK.parent),
                        parameters={"data_file": str(tmp_path / "t.csv"), "fast": True,
                                    "columns": {"outcome": "employed"},
                                    "output_dir": str(tmp_path / "res")})
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert f"bayes_binary on the data in {tmp_path / 't.csv'}" in text
    assert "risk difference at month" in text and "truth of this simulated trial" not in text
    assert {"summary.csv", "curve.csv"} <= {p.name for p in (tmp_path / "res").iterdir()}


def test_notebook_06_runs_on_draws(tmp_path, draws):
    import nbformat
    import pandas as pd
    import papermill as pm

    pd.DataFrame({"risk_difference": draws[:500]}).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "06.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(NOTEBOOK.parent),
                        parameters={"draws_file": str(tmp_path / "d.csv"), "wtp": 8000,
                                    "output_dir": str(tmp_path / "res")})
    nb = nbformat.read(out, as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 3  # months per year, INB distribution, CEAC with EVPI
    assert {"summary.csv", "curve.csv"} <= {p.name for p in (tmp_path / "res").iterdir()}


def test_cli_with_real_data_is_the_same_analysis(tmp_path, capsys, ips):
    # a real trial's long-format file goes through the same fit as the simulated trial it
    # was written from: the same data give the same posterior (seeds come from the data),
    # whatever the file calls its columns
    from simulate import simulate_trial

    trial = simulate_trial(ips, 1)
    trial.data.rename(columns={"outcome": "employed"}).to_csv(tmp_path / "t.csv", index=False)
    common = ["economics", str(PARAMS / "ips_2to1.yaml"), "--fast", "--json"]
    assert main([*common, "--seed", "1"]) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert main([*common, "--data", str(tmp_path / "t.csv"), "--columns",
                 "outcome=employed"]) == 0
    real = json.loads(capsys.readouterr().out)
    assert "true_risk_difference" in simulated and "true_risk_difference" not in real
    assert real["source"].endswith("t.csv")
    for key in ("risk_difference", "risk_difference_lower", "inb_mean", "evpi_per_client"):
        assert real[key] == simulated[key], key


def test_cli_real_data_refusals_write_nothing(tmp_path, capsys, ips):
    from simulate import simulate_trial
    from test_private_data import identity_numbers

    data = simulate_trial(ips, 1).data
    pnr = dict(enumerate(identity_numbers(data["client"].nunique(), "YYMMDD-NNNN")))
    data.assign(client=data["client"].map(pnr)).to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "d.npy").write_bytes(b"")
    base = ["economics", str(PARAMS / "ips_2to1.yaml"), "--out", str(tmp_path / "out")]
    cases = [
        (["--data", str(tmp_path / "p.csv")], "personal identity numbers"),
        (["--data", str(tmp_path / "p.csv"), "--draws", str(tmp_path / "d.npy")],
         "give --draws or --data, not both"),
        (["--columns", "outcome=employed"], "--columns applies to a data file"),
        (["--data", str(tmp_path / "missing.csv")], "data file not found"),
        (["--data", str(tmp_path / "d.npy")], "--data must be a .csv or .parquet file"),
    ]
    printed = ""
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
        assert not (tmp_path / "out").exists()
        printed += err
    assert not any(v in printed for v in pnr.values())
