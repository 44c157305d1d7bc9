"""The Bayesian hierarchical logistic model that predicts a client's dropout or change from
baseline and early ORS/SRS, with therapist and unit effects.

One row per client (:func:`models.clinical_change.client_outcomes`)::

    logit P(y_i = 1) = alpha + x_i' beta + u_unit[i] + v_therapist[i]

``y`` is treatment ``dropout``, ``reliable_improvement`` or ``clinically_significant``
change at the primary month (:mod:`models.clinical_change`; the last among clients who
start below the cutoff; both change targets among clients observed at the primary month).
The predictors ``x`` are

- ``baseline``: intake ORS and SRS, and the offer of FIT (``exposure``, randomized);
- ``early`` (the default): these plus the change in ORS from intake to the early follow-up,
  the early SRS, and whether the early follow-up is missing (its change and SRS are then
  set to the mean). The simulator measures at months 1 and 3 before the primary month;
  ``early_month`` picks the last follow-up used (default: the first).

Continuous predictors are standardized with the fitted clients' mean and SD (population
SD, ``ddof=0``), so each coefficient is a log odds ratio per SD; in the simulator's MAR
scenario the dropout coefficient of intake ORS is then exactly ``-missingness.strength``
(:func:`simulate.missingness.missingness_score`). Priors::

    alpha ~ N(0, 2.5); beta ~ N(0, prior_sd = 1)
    sigma_unit, sigma_therapist ~ HalfNormal(1)        (non-centred effects)

It is built on :class:`models.bayes.base.BayesEstimator` (compiled once per capacity, the
sampler seeded from the data) and its ``Estimate`` is the intake-ORS coefficient, but it
is deliberately **not registered** among the treatment-effect estimators: its estimand is
not an effect of FIT, and the grids and power studies must not pick it up. Predictions for
new clients (cross-validation) come from :meth:`BayesPrediction.predict_draws`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.base import LongFormatError
from models.bayes.base import BayesEstimator, IdMap, post, random_effect, summarize_draws
from models.clinical_change import TARGETS, Instrument, client_outcomes
from models.prediction_metrics import auc_draws
from simulate.conventions import expit, gauss_hermite

__all__ = ["BayesPrediction", "PREDICTOR_SETS", "model_rows"]

#: Predictor sets: continuous (standardized) and binary columns of the client table.
PREDICTOR_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "baseline": (("ors0", "srs0"), ("exposure",)),
    "early": (("ors0", "srs0", "early_change", "srs_early"), ("exposure", "early_missing")),
}


def model_rows(clients: pd.DataFrame, target: str) -> pd.DataFrame:
    """The clients a target is modelled on (see the module docstring)."""
    if target not in TARGETS:
        raise LongFormatError(f"target must be one of {list(TARGETS)}, got {target!r}")
    if target not in clients.columns:
        raise LongFormatError(f"target {target!r} needs a '{target}' column in the data")
    keep = clients[target].notna()
    if target == "clinically_significant":
        keep &= clients["below_cutoff"]
    return clients[keep.to_numpy(dtype=bool)]


class BayesPrediction(BayesEstimator):
    """Hierarchical logistic prediction of dropout or reliable/clinically significant change.

    Options (besides the sampler's): ``target`` (one of
    :data:`models.clinical_change.TARGETS`), ``predictors`` (``"baseline"`` or
    ``"early"``), ``early_month`` (None: the first follow-up), ``sd``, ``reliability``,
    ``cutoff`` (the reliable-change instrument; defaults ORS: 7.5, 0.87, 25) and
    ``prior_sd`` (of each coefficient per SD).

    ``extra``: every coefficient's posterior mean and 95% interval (``beta_<name>``,
    ``beta_<name>_lower/upper``), the in-sample AUC's posterior (``auc``,
    ``auc_lower/upper``), ``sigma_unit``, ``sigma_therapist``, ``n`` and ``events``.
    """

    name = "bayes_prediction"
    estimand = "log_odds_ratio_ors0_per_sd"
    outcome_kinds = ("ors",)
    monitor = ("alpha", "beta", "sigma_unit", "sigma_therapist")
    exact = ("coef",)
    # small unit and therapist SDs make a funnel: a smaller step avoids the odd divergence
    sampler_overrides = {"draws": 1000, "tune": 500, "target_accept": 0.9}
    model_defaults = {"target": "dropout", "predictors": "early", "early_month": None,
                      "sd": 7.5, "reliability": 0.87, "cutoff": 25.0, "prior_sd": 1.0}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        o = self.options
        if o["predictors"] not in PREDICTOR_SETS:
            raise LongFormatError(f"predictors must be one of {list(PREDICTOR_SETS)}, "
                                  f"got {o['predictors']!r}")
        if o["target"] not in TARGETS:
            raise LongFormatError(f"target must be one of {list(TARGETS)}, got {o['target']!r}")
        self.instrument = Instrument(sd=float(o["sd"]), reliability=float(o["reliability"]),
                                     cutoff=float(o["cutoff"]))

    @classmethod
    def for_targets(cls, plan, targets, columns=None, **options) -> dict[str, BayesPrediction]:
        """One estimator per target, all sharing one cache of compiled models.

        Sharing is sound because the model (:meth:`_build`) depends on the capacities and
        ``prior_sd`` only, never on the target: the targets then cost one compilation.
        """
        ests = {t: cls(plan, columns, **{**options, "target": t}) for t in targets}
        shared = next(iter(ests.values()))._models
        for e in ests.values():
            e._models = shared
        return ests

    # -- data ----------------------------------------------------------------------------
    def clients(self, df: pd.DataFrame, primary_month: float) -> pd.DataFrame:
        """The client table of a prepared long frame (:func:`client_outcomes`)."""
        return client_outcomes(df, primary_month, self.instrument, self.options["early_month"])

    def _design(self, rows: pd.DataFrame, meta: dict | None = None):
        """Predictor matrix, names, centres and scales (``meta``: those of a fit).

        A predictor that does not vary among the fitted clients carries no information
        and is left out: an SRS that was never recorded, or a missing early score among
        clients seen at the primary month (attrition is monotone). ``names`` lists the
        columns in use; the matrix is padded with zero columns after them.
        """
        cont, binary = PREDICTOR_SETS[self.options["predictors"]]
        if meta is None:
            vals = rows[list(cont)].to_numpy(dtype=float)
            seen = ~np.isnan(vals).all(axis=0)
            center = np.full(len(cont), np.nan)
            scale = np.zeros(len(cont))
            center[seen] = np.nanmean(vals[:, seen], axis=0)
            scale[seen] = np.nanstd(vals[:, seen], axis=0)
            keep = scale > 0
            cont = tuple(c for c, k in zip(cont, keep) if k)
            center, scale = center[keep], scale[keep]
            binary = tuple(b for b in binary if rows[b].nunique() > 1)
        else:
            cont = tuple(c for c in cont if c in meta["names"])
            binary = tuple(b for b in binary if b in meta["names"])
            center, scale = meta["center"], meta["scale"]
        z = (rows[list(cont)].to_numpy(dtype=float) - center) / scale
        z = np.where(np.isnan(z), 0.0, z)  # a missing early score sits at the mean
        X = np.column_stack([z, rows[list(binary)].to_numpy(dtype=float)])
        # pad to the whole predictor set with zero columns (their coefficients keep their
        # prior and touch nothing), so that every target and fold compiles the same model
        width = sum(map(len, PREDICTOR_SETS[self.options["predictors"]]))
        X = np.column_stack([X, np.zeros((X.shape[0], width - X.shape[1]))])
        return X, list(cont) + list(binary), center, scale

    def _arrays(self, df, primary_month):
        rows = model_rows(self.clients(df, primary_month), self.options["target"])
        y = rows[self.options["target"]].to_numpy(dtype=float)
        if rows.empty or y.min() == y.max():
            raise LongFormatError(f"target {self.options['target']!r}: needs clients with "
                                  f"and without the event; found {int(y.sum())} of {y.size}")
        X, names, center, scale = self._design(rows)
        unit, n_unit = IdMap.codes(rows["unit"])
        ther, n_ther = IdMap.codes(rows["therapist"])
        data = {"y": y, "X": X, "unit": unit, "therapist": ther}
        sizes = {"coef": X.shape[1], "unit": n_unit, "therapist": max(n_ther, 1)}
        meta = {"names": names, "center": center, "scale": scale, "y": y, "X": X,
                "unit_codes": unit, "therapist_codes": ther,
                "units": np.unique(rows["unit"]),
                "therapists": np.unique(rows["therapist"][rows["therapist"] != -1]),
                "clients": rows["client"].to_numpy()}
        return data, sizes, meta

    # -- model ---------------------------------------------------------------------------
    def _build(self, data, capacity):
        import pymc as pm

        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            X = pm.Data("X", data["X"])
            alpha = pm.Normal("alpha", 0.0, 2.5)
            beta = pm.Normal("beta", 0.0, float(self.options["prior_sd"]),
                             shape=capacity["coef"])
            u, _ = random_effect("unit", capacity["unit"], 1.0, pm.Data("unit", data["unit"]))
            v, _ = random_effect("therapist", capacity["therapist"], 1.0,
                                 pm.Data("therapist", data["therapist"]))
            pm.Bernoulli("obs", logit_p=alpha + X @ beta + u + v, observed=y)
        return model

    def _linear(self, idata, X, unit_idx, ther_idx):
        """Draws x clients of the linear predictor with known effects (index -1: none)."""
        eta = post(idata, "alpha")[:, None] + post(idata, "beta") @ X.T
        for name, idx in (("unit", unit_idx), ("therapist", ther_idx)):
            re = post(idata, f"z_{name}") * post(idata, f"sigma_{name}")[:, None]
            re = np.concatenate([re, np.zeros((re.shape[0], 1))], axis=1)
            eta = eta + re[:, idx]
        return eta

    def _summarize(self, idata, meta):
        beta = post(idata, "beta")
        extra: dict = {}
        for j, name in enumerate(meta["names"]):
            s = summarize_draws(beta[:, j], self.plan.alpha)
            extra[f"beta_{name}"] = s["estimate"]
            extra[f"beta_{name}_lower"] = s["lower"]
            extra[f"beta_{name}_upper"] = s["upper"]
        for k in ("unit", "therapist"):
            extra[f"sigma_{k}"] = float(post(idata, f"sigma_{k}").mean())
        eta = self._linear(idata, meta["X"], meta["unit_codes"], meta["therapist_codes"])
        a = auc_draws(meta["y"], eta)
        extra.update(auc=float(a.mean()), auc_lower=float(np.quantile(a, 0.025)),
                     auc_upper=float(np.quantile(a, 0.975)))
        extra.update(n=int(meta["y"].size), events=int(meta["y"].sum()),
                     target=self.options["target"], predictors=",".join(meta["names"]))
        j = meta["names"].index("ors0") if "ors0" in meta["names"] else 0
        chains = idata.posterior.sizes["chain"]
        return beta[:, j].reshape(chains, -1), extra

    # -- prediction ----------------------------------------------------------------------
    def predict_draws(self, fit, clients: pd.DataFrame, nodes: int = 20) -> np.ndarray:
        """Posterior draws (draws x clients) of each client's probability of the target.

        ``fit`` is this estimator's :class:`~models.bayes.base.Posterior`; ``clients`` a
        client table (:meth:`clients`), e.g. of held-out clients. Their predictors are
        standardized with the fitted clients' mean and SD; a unit or therapist not in
        the fit gets a new effect from its fitted distribution, integrated out
        (Gauss-Hermite), and a client without a therapist (-1) gets none.
        """
        _, _, meta = self._arrays(fit.data, fit.data.attrs["primary_month"])
        X, _, _, _ = self._design(clients, meta)
        idata = fit.idata
        var_new = np.zeros((post(idata, "alpha").size, len(clients)))
        idx = {}
        for name, known in (("unit", meta["units"]), ("therapist", meta["therapists"])):
            ids = clients[name].to_numpy()
            pos = np.clip(np.searchsorted(known, ids), 0, max(known.size - 1, 0))
            found = (known.size > 0) & (known[pos] == ids) if known.size else np.zeros(
                ids.size, dtype=bool)
            idx[name] = np.where(found, pos, -1)
            new = ~found & (ids != -1)
            var_new += (post(idata, f"sigma_{name}") ** 2)[:, None] * new[None, :]
        eta = self._linear(idata, X, idx["unit"], idx["therapist"])
        x, w = gauss_hermite(nodes)
        sd = np.sqrt(var_new)
        if not sd.any():
            return expit(eta)
        return np.einsum("sck,k->sc", expit(eta[..., None] + sd[..., None] * x), w)
