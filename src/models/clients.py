"""The client-level table at the primary month, shared by the client-level estimators.

``glm_binary``, ``iv_cace``, ``per_protocol`` and ``bayes_cace`` analyse one row per client:
the outcome at the primary month with the baseline score as a covariate, the offer
(``exposure``), the uptake and the FIT therapist's fidelity.
"""

from __future__ import annotations

import pandas as pd

from models.base import LongFormatError

__all__ = ["client_table", "CACE_REQUIRED"]

#: Columns the compliance estimators need.
CACE_REQUIRED = ("unit", "therapist", "client", "arm", "exposure", "month", "outcome",
                 "uptake")


def client_table(df: pd.DataFrame, primary_month: float) -> pd.DataFrame:
    """One row per client with an observed outcome at the primary month.

    Columns: ``client, unit, therapist, z`` (offer: ``exposure``), ``d`` (uptake; 0 when
    the data have no ``uptake``), ``fidelity`` (-1 when unknown), ``baseline`` (the
    ``baseline`` column, else the month-0 outcome; clients with neither are dropped), ``y``.

    Raises
    ------
    LongFormatError
        No outcome at the primary month, or uptake without an offer (one-sided
        noncompliance needs ``uptake <= exposure``).
    """
    first = df.sort_values("month").groupby("client", sort=True).first()
    if "baseline" in df.columns:
        base = df.groupby("client")["baseline"].first()
    else:
        m0 = df[df["month"] == 0].set_index("client")["outcome"]
        base = m0[~m0.index.duplicated()]
    prim = df[df["month"] == float(primary_month)].drop_duplicates("client")
    if prim.empty:
        raise LongFormatError(f"no observed outcome at the primary month {primary_month:g}")
    prim = prim.set_index("client")
    out = pd.DataFrame({
        "unit": first["unit"],
        "therapist": first["therapist"],
        "z": first["exposure"].astype(int),
        "d": first["uptake"].astype(int) if "uptake" in first else first["exposure"] * 0,
        "fidelity": first["fidelity"].astype(int) if "fidelity" in first else -1,
        "baseline": base.reindex(first.index),
    }).loc[prim.index.intersection(first.index)]
    out["y"] = prim["outcome"].astype(float)
    out = out[out["baseline"].notna()].reset_index()
    if (out["d"] > out["z"]).any():
        raise LongFormatError("uptake is 1 for a client not offered FIT; one-sided "
                              "noncompliance needs uptake <= exposure")
    return out
