"""Real data in ``fitlab fit``: identity numbers refused and never echoed, text ids, data
that must not be analysed silently, and output that says when a fit is not to be used."""

import json
import random

import numpy as np
import pandas as pd
import pytest

from fitlab.cli import main
from models.base import Estimate, Estimator, register
from models.privacy import identity_number_columns, is_identity_number, redact, show
from simulate import Scenario, simulate_trial

FIT = ["--estimator", "diff_means", "--primary-month", "12"]


def _luhn_digit(nine: str) -> str:
    total = sum((d - 9 if d > 9 else d) for d in
                (int(c) * (2 if i % 2 == 0 else 1) for i, c in enumerate(nine)))
    return str((10 - total % 10) % 10)


def identity_numbers(n: int, form: str, seed: int = 1) -> list:
    """``n`` valid, distinct Swedish identity numbers written in ``form``."""
    rng, out = random.Random(seed), set()
    while len(out) < n:
        year, month, day = rng.randint(1930, 2009), rng.randint(1, 12), rng.randint(1, 28)
        if form == "samordningsnummer":
            day += 60
        serial = f"{rng.randint(0, 999):03d}"
        yymmdd = f"{year % 100:02d}{month:02d}{day:02d}"
        last4 = serial + _luhn_digit(yymmdd + serial)
        out.add({"YYMMDD-NNNN": f"{yymmdd}-{last4}", "YYMMDD+NNNN": f"{yymmdd}+{last4}",
                 "YYYYMMDDNNNN": f"{year}{yymmdd[2:]}{last4}",
                 "YYYYMMDD-NNNN": f"{year}{yymmdd[2:]}-{last4}",
                 "YYMMDDNNNN": f"{yymmdd}{last4}",
                 "samordningsnummer": f"{yymmdd}-{last4}",
                 "integer": int(f"{year}{yymmdd[2:]}{last4}")}[form])
    return sorted(out, key=str)


@pytest.fixture(scope="module")
def trial():
    return simulate_trial(Scenario(), 2).data


def _csv(tmp_path, df, name="d.csv"):
    df.to_csv(tmp_path / name, index=False)
    return str(tmp_path / name)


FORMS = ["YYMMDD-NNNN", "YYMMDD+NNNN", "YYYYMMDDNNNN", "YYYYMMDD-NNNN", "YYMMDDNNNN",
         "samordningsnummer", "integer"]


@pytest.mark.parametrize("form", FORMS)
def test_identity_numbers_refused_and_never_echoed(tmp_path, capsys, trial, form):
    numbers = identity_numbers(trial["client"].nunique(), form)
    data = trial.assign(pnr=trial["client"].map(dict(enumerate(numbers))))
    path = _csv(tmp_path, data)
    for extra in ([], ["--columns", "client=pnr"]):  # a column not used, then mapped
        assert main(["fit", path, *FIT, *extra]) == 2
        cap = capsys.readouterr()
        assert "column 'pnr'" in cap.err and f"{len(data):,} of {len(data):,} rows" in cap.err
        assert "pseudonym" in cap.err and "Traceback" not in cap.err
        printed = cap.out + cap.err
        digits = "".join(ch for ch in printed if ch.isdigit())
        for n in numbers:  # neither as written nor as its digits
            assert str(n) not in printed and str(n).replace("-", "").replace("+", "") \
                not in digits
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]  # nothing written


def test_ordinary_ids_are_not_taken_for_identity_numbers(tmp_path, capsys, trial):
    rng = np.random.default_rng(3)
    n = trial["client"].nunique()
    ids = {"seq": np.arange(1, n + 1),
           "ten_digits": rng.integers(10**9, 10**10, n),
           "twelve_digits": rng.integers(10**11, 10**12, n),
           # sequential ids whose first digits form a date: ~10% pass the Luhn check
           "date_block": 1201010000 + np.arange(n), "short_block": 1010000 + np.arange(n),
           "text": np.array([f"K{i:09d}" for i in range(n)])}
    data = trial.assign(**{k: trial["client"].map(dict(enumerate(v))) for k, v in ids.items()})
    assert identity_number_columns(data) == {}
    assert main(["fit", _csv(tmp_path, data), *FIT, "--columns", "client=ten_digits"]) == 0


@pytest.mark.parametrize("form", ["YYMMDD-NNNN", "YYMMDD+NNNN", "YYYYMMDD-NNNN"])
def test_one_written_identity_number_among_codes_is_refused(tmp_path, capsys, trial, form):
    # a data set of pseudonymous codes with one client's identity number left in: the
    # written form (separator before the last four digits) is refused even as one value
    (number,) = identity_numbers(1, form, seed=7)
    codes = {c: f"K{i:05d}" for i, c in enumerate(trial["client"].unique())}
    first = trial["client"].iloc[0]
    codes[first] = number
    data = trial.assign(client=trial["client"].map(codes))
    rows = int((trial["client"] == first).sum())
    assert identity_number_columns(data) == {"client": rows}
    assert main(["fit", _csv(tmp_path, data), *FIT]) == 2
    cap = capsys.readouterr()
    assert f"column 'client' ({rows:,} of {len(data):,} rows)" in cap.err
    assert number not in cap.out + cap.err and "Traceback" not in cap.err
    # the same data with the number's digits run together (a bare 10/12-digit code) is a
    # single value below the share: analysed, and still never shown
    bare = data.assign(client=data["client"].replace(number, number.replace("-", "")
                                                     .replace("+", "")))
    assert identity_number_columns(bare) == {}


def test_helpers_never_show_an_identity_number():
    assert is_identity_number("19121212-1212") and is_identity_number(8112189876)
    assert not is_identity_number("19121212-1213") and not is_identity_number("121312-1212")
    assert show("121212-1212").startswith("(a value that looks like") and show(7) == "7"
    assert redact("ids 121212-1212 and 42") == "ids [personal identity number] and 42"


def test_text_ids_work_and_every_error_names_them(tmp_path, capsys, trial):
    data = trial.assign(client="c" + trial["client"].astype(str),
                        unit="u" + trial["unit"].astype(str),
                        therapist=trial["therapist"].map(lambda t: f"t{t}"))
    for est in ("diff_means", "reml_trajectory"):
        assert main(["fit", _csv(tmp_path, data), "--estimator", est, "--primary-month", "12",
                     "--json"]) == 0
        assert np.isfinite(json.loads(capsys.readouterr().out)["estimate"])
    moved = data.copy()
    moved.loc[moved.index[1], "therapist"] = "t99"  # client c0 under two therapists
    assert main(["fit", _csv(tmp_path, moved), *FIT]) == 2
    err = capsys.readouterr().err
    assert "client 'c0' appears under 2 different therapists" in err and "Traceback" not in err
    # one bare-digit identity number among text ids is too few to refuse the column (the
    # written form would be: see above), but it is never shown in another error
    moved["client"] = moved["client"].replace("c0", "1212121212")
    assert main(["fit", _csv(tmp_path, moved), *FIT]) == 2
    err = capsys.readouterr().err
    assert "appears under 2 different therapists" in err and "121212" not in err


def _first_observed(df):
    return df.index[df["outcome"].notna()][3]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.assign(arm=d["arm"] * 2), "column 'arm' must be coded 0 (usual care) / 1"),
    (lambda d: d.assign(outcome=d["outcome"].where(d.index != _first_observed(d), 45.0)),
     "1 observed values outside the instrument's range 0-40"),
    (lambda d: d.assign(month=d["month"].where(d.index != 7, -1.0)),
     "column 'month' must be >= 0"),
    (lambda d: pd.concat([d, d.iloc[:5]], ignore_index=True),
     "5 rows repeat another row exactly"),
    (lambda d: d.assign(exposure=np.where(d.index < 10, 1 - d["arm"], d["arm"])),
     "column 'exposure' differs from 'arm' in 10 rows"),
])
def test_suspicious_data_refused(tmp_path, capsys, trial, change, message):
    assert main(["fit", _csv(tmp_path, change(trial)), *FIT]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@register
class _NotConverged(Estimator):
    """A fit that returns but did not converge (as MixedLM can)."""

    name = "_test_i9_fit_not_converged"

    def _fit(self, df, primary_month):
        return Estimate(self.name, "itt", 1.0, 0.5, 0.0, 2.0, p_value=0.04,
                        diagnostics={"converged": False, "warnings": ["Hessian not PD"]})


@register
class _NoEstimate(_NotConverged):
    name = "_test_i9_fit_failed"

    def _fit(self, df, primary_month):
        return Estimate(self.name, "itt", np.nan, np.nan, np.nan, np.nan,
                        diagnostics={"converged": False})


def test_text_output_shows_a_fit_not_to_be_used(capsys):
    assert main(["fit", "default", "--estimator", "_test_i9_fit_not_converged"]) == 1
    out = capsys.readouterr().out
    assert "NOT CONVERGED" in out and "warning: Hessian not PD" in out
    assert main(["fit", "default", "--estimator", "_test_i9_fit_failed"]) == 1
    assert "FAILED: no estimate" in capsys.readouterr().out
    assert main(["fit", "default", "--estimator", "_test_i9_fit_not_converged", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["diagnostics"]["converged"] is False


@pytest.mark.parametrize("change, component", [
    (lambda d: d[d["unit"] == 0], "var_unit"),
    (lambda d: d.assign(therapist=-1), "var_therapist"),
])
def test_unidentified_variance_flagged_not_reported(tmp_path, capsys, trial, change,
                                                    component):
    path = _csv(tmp_path, change(trial))
    args = ["fit", path, "--estimator", "reml_trajectory", "--primary-month", "12"]
    assert main([*args, "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["extra"][component] is None and component in e["diagnostics"]["unidentified"]
    assert main(args) == 0
    assert f"warning: {component} not identified" in capsys.readouterr().out
