"""Clear errors for data that do not fit the long format, for every estimator of this family.

No sampling here: each error is raised while validating, before any model is built.
"""

import numpy as np
import pandas as pd
import pytest

from models import EstimatorError, LongFormatError, get_estimator
from models.bayes.base import IdMap
from models.clients import client_table

ESTIMATORS = ["bayes_trajectory", "bayes_stepped_wedge", "bayes_occasion", "bayes_cace", "iv_cace",
              "per_protocol"]


def long_table(n_clients=8, months=(0.0, 6.0, 12.0), seed=0):
    """A tiny valid long table (ORS-like scores) written by hand, not by the simulator."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_clients):
        arm = c % 2
        base = float(rng.uniform(10, 25))
        for m in months:
            rows.append({"unit": c % 2, "therapist": 10 * (c % 2) + arm, "client": c,
                         "arm": arm, "exposure": arm, "month": m,
                         "outcome": base + m / 3, "observed": True, "baseline": base,
                         "uptake": arm * (c % 4 != 1), "fidelity": 2 if arm else -1,
                         "period": int(m // 6), "start_month": float(c)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_missing_column_is_named(name):
    df = long_table().drop(columns=["client"])
    with pytest.raises(LongFormatError, match="client"):
        get_estimator(name, None, primary_month=12.0).prepare(df)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_no_therapist_column_means_no_therapist(name):
    df = get_estimator(name, None, primary_month=12.0).prepare(
        long_table().drop(columns=["therapist"]))
    assert (df["therapist"] == -1).all()


@pytest.mark.parametrize("name", ESTIMATORS)
def test_non_numeric_outcome(name):
    df = long_table()
    df["outcome"] = df["outcome"].astype(object)
    df.loc[3, "outcome"] = "good"
    with pytest.raises(LongFormatError, match="numeric"):
        get_estimator(name, None, primary_month=12.0).prepare(df)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_client_under_two_therapists(name):
    df = long_table()
    df.loc[(df["client"] == 0) & (df["month"] == 12.0), "therapist"] = 99
    with pytest.raises(LongFormatError, match="client 0 appears under 2 different therapists"):
        get_estimator(name, None, primary_month=12.0).prepare(df)


def test_column_mapping_for_real_data():
    df = long_table().rename(columns={"outcome": "ors", "client": "id"})
    est = get_estimator("bayes_trajectory", None, primary_month=12.0,
                        columns={"outcome": "ors", "client": "id"})
    out = est.prepare(df)
    assert {"outcome", "client"} <= set(out.columns)
    assert len(out) == len(df)


def test_unobserved_rows_are_dropped():
    df = long_table()
    df.loc[df["month"] == 12.0, "observed"] = False
    df.loc[df["month"] == 12.0, "outcome"] = np.nan
    out = get_estimator("bayes_trajectory", None, primary_month=12.0).prepare(df)
    assert out["outcome"].notna().all() and len(out) == len(df) - 8


def test_binary_model_refuses_scores():
    with pytest.raises(LongFormatError, match="0/1"):
        get_estimator("bayes_binary", None, primary_month=12.0).prepare(long_table())
    with pytest.raises(LongFormatError, match="0/1"):
        get_estimator("bayes_cace", None, primary_month=12.0, outcome="binary").prepare(
            long_table())


def test_unknown_option_is_refused():
    with pytest.raises(EstimatorError, match="drawz"):
        get_estimator("bayes_trajectory", None, drawz=10)
    with pytest.raises(EstimatorError, match="cluster"):
        get_estimator("iv_cace", None, cluster="district")


def test_uptake_without_offer_is_refused():
    df = long_table()
    df.loc[df["client"] == 0, "uptake"] = 1  # client 0 is in usual care
    with pytest.raises(LongFormatError, match="one-sided"):
        client_table(df, 12.0)


def test_primary_month_must_be_observed():
    est = get_estimator("bayes_occasion", None, primary_month=18.0)
    df = est.prepare(long_table())
    with pytest.raises(LongFormatError, match="primary month 18"):
        est._arrays(df, 18.0)


def test_idmap_codes_and_none():
    codes, n = IdMap.codes(pd.Series([7, 3, 7, -1, 12]))
    assert codes.tolist() == [1, 0, 1, -1, 2] and n == 3
