"""Bayesian principal stratification on the ORS trajectory (estimator ``bayes_cace_trajectory``).

The growth model of ``bayes_occasion`` (``time_shape="loglinear"``) with the latent
principal stratum of Imbens & Rubin (1997) attached to each client, fitted to *every*
observed occasion as Yau & Little (2001) do for longitudinal outcomes with missing data.

Model (rows ``j`` of client ``i``, ``t_ij = log1p(month) / log1p(primary)``: 0 at baseline,
1 at the primary month; ``Z_i`` offer, ``C_i`` stratum: 1 complier, 0 never-taker)::

    P(C_i = 1) = pi
    mu_ij      = alpha + beta * t_ij + u_unit + u_therapist + a_i + b_i * t_ij
    y_ij | C_i = 0       ~ N(mu_ij, sigma)                                never-takers, both arms
    y_ij | C_i = 1, Z_i=0 ~ N(mu_ij + eta * t_ij, sigma)                  compliers, usual care
    y_ij | C_i = 1, Z_i=1 ~ N(mu_ij + (eta + tau[fid_i]) * t_ij, sigma)   compliers offered FIT

- One-sided noncompliance: in the FIT arm ``C_i = uptake_i`` is observed and the client
  contributes ``log P(C_i) + sum_j log N(y_ij | C_i)``.
- In usual care ``C_i`` is latent and is summed out *per client* (not per row: a client's
  stratum is shared by all of its occasions)::

      log( pi * prod_j N(y_ij | C=1)  +  (1 - pi) * prod_j N(y_ij | C=0) )
        = logsumexp(log pi + ll1_i, log(1 - pi) + ll0_i),   llc_i = sum_j log N(y_ij | C=c)

  with the per-client sums taken as segment sums of the per-row log densities by client
  index, and added to the joint density with ``pm.Potential``; nothing discrete is sampled.
- Exclusion restriction: never-takers have the same distribution in both arms (no ``Z``
  term for ``C = 0``). ``eta`` lets compliers *progress* differently from never-takers
  (``compliance.complier_shift`` in the simulator), which is what biases per-protocol.
- Missing occasions are simply absent rows: the likelihood of the observed occasions is
  valid when missingness is at random given the earlier scores (MAR; Yau & Little 2001),
  so clients who miss the primary month still inform ``pi``, ``eta`` and ``tau``.

Fidelity (option ``fidelity``):

- ``"levels"`` (default when a ``fidelity`` column exists): ``tau[0..2]``, the effect for a
  FIT therapist of low/medium/high fidelity (three level effects, as in ``bayes_cace``;
  they are not constrained to be ordered). Reported as ``extra["cace_fidelity_low"]`` etc.
  A taker whose therapist's fidelity is unknown (``-1``) counts as high (full protocol).
- ``"none"``: one ``tau``.

Estimand: the CACE at the primary month, where ``t = 1`` so the effect of a complier is
``tau[fid_i]``; ``cace`` is ``tau[fid_i]`` averaged over the FIT-arm compliers (takers) in
the data (with one ``tau``, ``tau`` itself). This matches ``trial.truth["cace"]`` (the mean
effect over offered compliers) and the client-level ``bayes_cace``.

Priors (ORS points; those shared with ``bayes_occasion`` and ``bayes_cace`` are theirs)::

    alpha ~ N(20, 10);  beta ~ N(0, 10);  eta, tau ~ N(0, 5);  pi ~ Beta(1, 1)
    sigma_unit, sigma_therapist ~ HalfNormal(3)
    sigma_client ~ HalfNormal(8);  sigma_slope ~ HalfNormal(5);  sigma ~ HalfNormal(8)

All random effects are non-centred with capacity padding (:mod:`models.bayes.base`); the model
is compiled once and re-sampled with ``with_data`` for new data sets.

Why a separate estimator rather than an option of ``bayes_cace``: the data (one row per
occasion, not per client), the parameters monitored for convergence and the cost differ,
and a registry name of its own keeps replicate tables unambiguous (``estimator`` column).
"""

from __future__ import annotations

import numpy as np

from models.base import EstimatorError, LongFormatError, register
from models.bayes.base import BayesEstimator, IdMap, post, random_effect, variance_components
from models.bayes.occasion import GROWTH_SDS
from models.clients import CACE_REQUIRED
from simulate.conventions import FIDELITY_LEVELS

__all__ = ["BayesCaceTrajectory"]


@register
class BayesCaceTrajectory(BayesEstimator):
    """CACE at the primary month from a principal-stratification growth model.

    Parameters
    ----------
    scenario : Scenario, optional
        Supplies the primary month.
    fidelity : {"levels", "none"}
        Three fidelity-level effects (default) or one effect.
    **options
        Sampler options of :class:`models.bayes.base.BayesEstimator`.

    Notes
    -----
    ``extra``: ``pi`` (complier share), ``eta`` (complier shift of the slope at the
    primary month, ORS points), ``cace_fidelity_<level>`` and ``..._sd`` (levels), the
    variance components and intake ICCs (as ``bayes_occasion``), ``n_clients``,
    ``n_takers`` and ``n_rows``.

    Examples
    --------
    >>> est = get_estimator("bayes_cace_trajectory", sc, draws=500)   # doctest: +SKIP
    >>> est.fit(trial.data).estimate                                   # doctest: +SKIP
    """

    name = "bayes_cace_trajectory"
    estimand = "cace"
    outcome_kinds = ("ors",)
    required = CACE_REQUIRED
    exact = ()

    model_defaults = {"fidelity": "levels"}
    monitor = ("alpha", "beta", "eta", "tau", "pi", "sigma_unit", "sigma_therapist",
               "sigma_client", "sigma_slope", "sigma")

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        self.fidelity = self.options["fidelity"]
        if self.fidelity not in ("levels", "none"):
            raise EstimatorError(f"fidelity must be 'levels' or 'none', got {self.fidelity!r}")

    def prepare(self, data):
        df = super().prepare(data)
        if self.fidelity != "none" and "fidelity" not in df.columns:
            raise LongFormatError(f"fidelity={self.fidelity!r} needs a 'fidelity' column "
                                  "(or use fidelity='none')")
        return df

    def _arrays(self, df, primary_month):
        if float(primary_month) not in set(df["month"].astype(float)):
            raise LongFormatError(f"no observed outcome at the primary month {primary_month:g}")
        client, n_client = IdMap.codes(df["client"])
        # client-level offer, uptake and fidelity (constant within a client): first row of each
        first = df.groupby(client, sort=True).first()
        zc = first["exposure"].to_numpy(np.int64)
        dc = first["uptake"].to_numpy(np.int64)
        if ((zc != 0) & (zc != 1)).any() or ((dc != 0) & (dc != 1)).any():
            raise LongFormatError("exposure and uptake must be 0/1")
        if (dc > zc).any():
            raise LongFormatError("uptake is 1 for a client not offered FIT; one-sided "
                                  "noncompliance needs uptake <= exposure")
        if zc.min() == zc.max():
            raise LongFormatError(f"{self.name} needs clients offered FIT and usual care")
        taker = (zc == 1) & (dc == 1)
        fraw = first["fidelity"].to_numpy(np.int64) if "fidelity" in first else -np.ones_like(zc)
        fid = np.where(taker, np.where(fraw >= 0, fraw, 2), 0) if self.fidelity == "levels" \
            else np.zeros_like(zc)
        unit, n_unit = IdMap.codes(df["unit"])
        ther, n_ther = IdMap.codes(df["therapist"])
        data = {
            "y": df["outcome"].to_numpy(float),
            "t": df["time"].to_numpy(float),
            "unit": unit,
            "therapist": ther,
            "client": client,
            # client-level arrays: their length (clients in this data set) may change freely
            "zc": zc.astype(float),
            "dc": dc.astype(float),
            "fidc": fid.astype(np.int64),
        }
        sizes = {"unit": n_unit, "therapist": max(n_ther, 1), "client": n_client}
        meta = {"taker": taker, "fid": fid, "n_clients": n_client, "n_rows": len(df)}
        return data, sizes, meta

    def _build(self, data, capacity):
        import pymc as pm
        import pytensor.tensor as pt

        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            t = pm.Data("t", data["t"])
            client = pm.Data("client", data["client"])
            zc = pm.Data("zc", data["zc"])
            dc = pm.Data("dc", data["dc"])
            fidc = pm.Data("fidc", data["fidc"])
            alpha = pm.Normal("alpha", 20.0, 10.0)
            beta = pm.Normal("beta", 0.0, 10.0)
            eta = pm.Normal("eta", 0.0, 5.0)
            pi = pm.Beta("pi", 1.0, 1.0)
            if self.fidelity == "levels":
                tau_c = pm.Normal("tau", 0.0, 5.0, shape=3)[fidc]
            else:
                tau_c = pm.Normal("tau", 0.0, 5.0) * pt.ones_like(zc)
            u_unit, _ = random_effect("unit", capacity["unit"], 3.0, pm.Data("unit", data["unit"]))
            u_ther, _ = random_effect("therapist", capacity["therapist"], 3.0,
                                      pm.Data("therapist", data["therapist"]))
            a_client, _ = random_effect("client", capacity["client"], 8.0, client)
            b_client, _ = random_effect("slope", capacity["client"], 5.0, client)
            sigma = pm.HalfNormal("sigma", 8.0)
            mu0 = alpha + beta * t + u_unit + u_ther + a_client + b_client * t
            # complier component of each row: + eta*t, and + tau*t only if offered FIT
            # (zc = 0 rows get eta alone, the usual-care complier mean)
            mu1 = mu0 + (eta + zc[client] * tau_c[client]) * t
            ll0_row = pm.logp(pm.Normal.dist(mu0, sigma), y)
            ll1_row = pm.logp(pm.Normal.dist(mu1, sigma), y)
            # segment sums by client: a stratum is shared by all occasions of a client.
            # inc_subtensor accumulates repeated indices; length = clients in the data.
            ll0 = pt.inc_subtensor(pt.zeros_like(zc)[client], ll0_row)
            ll1 = pt.inc_subtensor(pt.zeros_like(zc)[client], ll1_row)
            log_pi, log_1mpi = pt.log(pi), pt.log1p(-pi)
            # FIT arm: stratum observed (uptake); usual care: stratum summed out
            ll_fit = dc * (log_pi + ll1) + (1.0 - dc) * (log_1mpi + ll0)
            ll_ctrl = pt.logaddexp(log_pi + ll1, log_1mpi + ll0)
            pm.Potential("lik", pt.sum(zc * ll_fit + (1.0 - zc) * ll_ctrl))
        return model

    def _summarize(self, idata, meta):
        taker, fid = meta["taker"], meta["fid"]
        tau = post(idata, "tau")
        if self.fidelity == "levels":
            tau_i = tau[:, fid[taker]]  # (S, takers): the effect of each taker at t = 1
            effect = tau_i.mean(axis=1)
        else:
            tau_i, effect = None, tau
        extra = {"pi": float(post(idata, "pi").mean()), "eta": float(post(idata, "eta").mean()),
                 "fidelity": self.fidelity, "n_clients": meta["n_clients"],
                 "n_takers": int(taker.sum()), "n_rows": meta["n_rows"]}
        if tau_i is not None:
            f = fid[taker]
            for lev, name in enumerate(FIDELITY_LEVELS):
                if (f == lev).any():
                    v = tau[:, lev]
                    extra[f"cace_fidelity_{name}"] = float(v.mean())
                    extra[f"cace_fidelity_{name}_sd"] = float(v.std())
        extra.update(variance_components(idata, GROWTH_SDS))
        return effect, extra
