"""Shared machinery of the Bayesian estimators: compile once, swap data, diagnose, summarise.

Every Bayesian estimator in this package is a :class:`BayesEstimator`. It turns a long
table into a dict of plain arrays (``_arrays``), builds a PyMC model whose data are
``pm.Data`` containers (``_build``), compiles it once with nutpie and then, for every new
data set, swaps the arrays in with ``CompiledPyMCModel.with_data`` and samples again
without recompiling.

Why capacity padding
--------------------
nutpie compiles the log density for a fixed number of parameters, so the length of each
random-effect vector (units, therapists, clients, ...) is fixed at compile time, while the
number of observations may change freely. Each vector is therefore built with a
*capacity* (the first data set's count times ``headroom``, 1.25 by default) and the
identifiers of a data set are mapped to ``0..n-1``; entries ``n..capacity-1`` receive no
data and are sampled from their standard-normal prior (non-centred parameterisation),
which changes nothing in the posterior of the other parameters. A data set that needs more
than the capacity triggers one rebuild and recompile with a larger capacity.

Convergence flags
-----------------
Each fit reports ``rhat_max`` (rank-normalised split R-hat, Vehtari et al. 2021),
``ess_bulk_min`` and ``divergences`` over the *monitored* parameters (fixed effects,
standard deviations and the effect; the padded standard-normal vectors are not
monitored). ``converged`` is True when

- ``divergences == 0``,
- ``rhat_max < 1.01`` when at least 4 chains x 1000 draws are run, else ``< 1.05``
  (R-hat from two short chains is noisy; 1.05 is the conventional bar for small runs),
- ``ess_bulk_min >= min(400, 50 * chains)`` (400 is the full-size bar; with the default run of
  2 chains x 1000 draws the bar is 100).

Failing fits are returned with ``converged=False`` and the reason in ``warnings``;
they are never dropped or re-run silently.

Examples
--------
>>> from models import get_estimator                                # doctest: +SKIP
>>> est = get_estimator("bayes_trajectory", scenario, draws=500)    # doctest: +SKIP
>>> e1 = est.fit(trial1.data)   # compiles once                     # doctest: +SKIP
>>> e2 = est.fit(trial2.data)   # re-samples, no recompile          # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from models.base import Estimate, Estimator, LongFormatError

__all__ = [
    "BayesEstimator",
    "IdMap",
    "diagnose",
    "summarize_draws",
    "gauss_hermite",
    "invlogit",
]

#: Sampler defaults: small, so that replicate studies stay affordable; override per estimator.
DEFAULTS: dict[str, Any] = {
    "draws": 1000,  # ~3 s per fit on the default trial; the variance components of
    "tune": 1000,   # 12 units need this many for bulk ESS >= 100 (2 chains)
    "chains": 2,
    "cores": 1,
    "seed": 1,
    "sampler": "nutpie",  # or "pymc" (pm.sample, rebuilds every fit; for comparison)
    "headroom": 1.25,
    "save_idata": None,
    "target_accept": None,  # nutpie: target_accept passed through when set
    "low_rank": False,  # nutpie: low_rank_modified_mass_matrix (helps correlated posteriors)
}


def invlogit(x):
    """Logistic function, numerically safe for arrays."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def gauss_hermite(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights to average ``f(Z)``, ``Z ~ N(0, 1)``: ``sum(w * f(x))``."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


class IdMap:
    """Map identifiers to ``0..n-1``; the "none" identifier (``-1``) stays ``-1``.

    Models append a structural zero to a random-effect vector, ``concatenate([re, [0]])``,
    so that index ``-1`` (the last element) is "no effect" whatever the capacity: e.g.
    usual-care clients with no therapist in a partially nested design.

    Examples
    --------
    >>> codes, n = IdMap.codes(pd.Series([7, 3, 7, -1]))
    >>> codes.tolist(), n
    ([1, 0, 1, -1], 2)
    """

    @staticmethod
    def codes(values, none: Any = -1) -> tuple[np.ndarray, int]:
        v = pd.Series(values).to_numpy()
        is_none = v == none
        uniq = np.unique(v[~is_none])
        codes = np.searchsorted(uniq, v).astype(np.int64)
        codes[is_none] = -1
        return codes, int(len(uniq))


def diagnose(idata, var_names: list[str], chains: int, draws: int,
             fit_seconds: float) -> dict[str, Any]:
    """R-hat max, bulk ESS min, divergences and the ``converged`` flag (see module doc)."""
    import arviz as az

    post = idata.posterior[var_names]
    rhat = az.rhat(post)
    ess = az.ess(post, method="bulk")
    rhat_max = float(np.nanmax([np.nanmax(rhat[v].values) for v in var_names]))
    ess_min = float(np.nanmin([np.nanmin(ess[v].values) for v in var_names]))
    div = 0
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        div = int(np.asarray(idata.sample_stats["diverging"]).sum())
    rhat_bar = 1.01 if (chains >= 4 and draws >= 1000) else 1.05
    ess_bar = min(400.0, 50.0 * chains)
    warnings = []
    if div:
        warnings.append(f"{div} divergent transitions")
    if not rhat_max < rhat_bar:
        warnings.append(f"rhat_max {rhat_max:.3f} >= {rhat_bar}")
    if not ess_min >= ess_bar:
        warnings.append(f"ess_bulk_min {ess_min:.0f} < {ess_bar:.0f}")
    return {
        "converged": not warnings,
        "fit_seconds": float(fit_seconds),
        "rhat_max": rhat_max,
        "ess_bulk_min": ess_min,
        "divergences": div,
        "warnings": warnings,
    }


def summarize_draws(draws: np.ndarray) -> dict[str, float]:
    """Mean, SD, 95% equal-tailed interval and P(> 0) of a 1-D array of draws."""
    d = np.asarray(draws, dtype=float).ravel()
    lo, hi = np.quantile(d, [0.025, 0.975])
    return {"estimate": float(d.mean()), "se": float(d.std(ddof=1)), "lower": float(lo),
            "upper": float(hi), "p_positive": float((d > 0).mean())}


class BayesEstimator(Estimator):
    """Base of the PyMC estimators: compile once with ``pm.Data``, re-sample with new data.

    Subclasses implement

    - ``_arrays(df) -> (data, sizes, meta)``: ``data`` maps ``pm.Data`` names to arrays,
      ``sizes`` maps each random-effect vector to the count this data set needs, ``meta``
      is anything ``_summarize`` needs (weights, shares, ...);
    - ``_build(data, capacity) -> pm.Model`` using ``pm.Data(name, data[name])`` and
      vectors of length ``capacity[k]``;
    - ``_summarize(idata, meta) -> (effect_draws, extra)``;
    - ``monitor``: names of the parameters whose R-hat/ESS decide convergence.

    Options (all estimators): ``draws``, ``tune``, ``chains``, ``cores``, ``seed``,
    ``sampler`` (``"nutpie"``, the default, or ``"pymc"``), ``headroom``,
    ``save_idata`` (a netCDF path; ``{n}`` in it is replaced by the fit counter).
    """

    monitor: tuple[str, ...] = ()
    #: size keys built exactly (no headroom; a change rebuilds), e.g. occasion effects
    exact: tuple[str, ...] = ("occ",)

    def __init__(self, scenario=None, columns=None, **options):
        super().__init__(scenario, columns, **options)
        self.settings = {**DEFAULTS, **{k: self.options.pop(k) for k in list(self.options)
                                        if k in DEFAULTS}}
        self._capacity: dict[str, int] | None = None
        self._compiled = None
        self._model = None
        self.n_compiles = 0
        self.n_fits = 0
        self.last_idata = None
        self.last_effect_draws = None  # posterior draws of the estimand, last fit

    # -- to implement ------------------------------------------------------------------
    def _arrays(self, df: pd.DataFrame):  # pragma: no cover - abstract
        raise NotImplementedError

    def _build(self, data: dict[str, np.ndarray], capacity: dict[str, int]):  # pragma: no cover
        raise NotImplementedError

    def _summarize(self, idata, meta):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- machinery ---------------------------------------------------------------------
    def _ensure_model(self, data, sizes) -> bool:
        """Build (and compile) when there is no model yet or a size exceeds capacity."""
        cap = self._capacity
        if cap is not None and set(cap) == set(sizes) and all(
                (sizes[k] == cap[k]) if k in self.exact else (sizes[k] <= cap[k])
                for k in sizes):
            return False
        head = float(self.settings["headroom"])
        self._capacity = {k: max(1, n if k in self.exact else int(math.ceil(n * head)))
                          for k, n in sizes.items()}
        self._model = self._build(data, self._capacity)
        self._compiled = None
        if self.settings["sampler"] == "nutpie":
            import nutpie

            self._compiled = nutpie.compile_pymc_model(self._model)
        self.n_compiles += 1
        return True

    def build_model(self, df: pd.DataFrame):
        """The PyMC model for one (validated) data set, uncompiled; for inspection."""
        data, sizes, _ = self._arrays(df)
        cap = {k: max(1, n) for k, n in sizes.items()}
        return self._build(data, cap)

    def sample(self, df: pd.DataFrame):
        """Sample the posterior for a validated frame; returns ``(idata, meta, seconds)``."""
        s = self.settings
        t0 = time.perf_counter()
        data, sizes, meta = self._arrays(df)
        fresh = self._ensure_model(data, sizes)
        seed = int(s["seed"]) + self.n_fits
        if s["sampler"] == "nutpie":
            import nutpie

            compiled = self._compiled if fresh else self._compiled.with_data(**data)
            kw = {"low_rank_modified_mass_matrix": bool(s["low_rank"])}
            if s["target_accept"] is not None:
                kw["target_accept"] = float(s["target_accept"])
            idata = nutpie.sample(compiled, draws=int(s["draws"]), tune=int(s["tune"]),
                                  chains=int(s["chains"]), cores=int(s["cores"]),
                                  seed=seed, progress_bar=False, save_warmup=False, **kw)
        elif s["sampler"] == "pymc":
            import pymc as pm

            # the naive path: a fresh model every fit, sampled by PyMC's own NUTS
            model = self._build(data, {k: max(1, n) for k, n in sizes.items()})
            with model:
                idata = pm.sample(draws=int(s["draws"]), tune=int(s["tune"]),
                                  chains=int(s["chains"]), cores=int(s["cores"]),
                                  random_seed=seed, progressbar=False,
                                  target_accept=float(s["target_accept"] or 0.8),
                                  compute_convergence_checks=False)
        else:
            raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {s['sampler']!r}")
        self.n_fits += 1
        return idata, meta, time.perf_counter() - t0

    def posterior_predictive(self, df: pd.DataFrame, idata=None, draws: int = 200,
                             seed: int = 0) -> np.ndarray:
        """Replicated outcomes for the rows of a validated frame ``df``.

        Uses the compiled-once model with ``df``'s data swapped in and ``draws`` posterior
        draws of ``idata`` (default: the last fit). Returns ``(draws, rows)``. Models
        whose likelihood is a ``pm.Potential`` (the CACE mixture) have no ``obs`` and
        raise ``ValueError``.
        """
        import pymc as pm

        idata = self.last_idata if idata is None else idata
        if idata is None or self._model is None:
            raise ValueError("fit the estimator first")
        if "obs" not in self._model.named_vars:
            raise ValueError(f"{self.name} has no observed variable 'obs' to replicate")
        data, _, _ = self._arrays(df)
        n_chain, n_draw = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
        step = max(1, (n_chain * n_draw) // max(draws, 1))
        thin = idata.posterior.isel(draw=slice(None, None, step))
        with self._model:
            pm.set_data(data)
            pp = pm.sample_posterior_predictive(thin, var_names=["obs"], progressbar=False,
                                                random_seed=seed)
        obs = np.asarray(pp.posterior_predictive["obs"])
        return obs.reshape(-1, obs.shape[-1])

    def _fit(self, df: pd.DataFrame) -> Estimate:
        idata, meta, seconds = self.sample(df)
        effect, extra = self._summarize(idata, meta)
        s = self.settings
        diag = diagnose(idata, list(self.monitor), int(s["chains"]), int(s["draws"]), seconds)
        diag["compiles"] = self.n_compiles
        path = s["save_idata"]
        if path:
            path = str(path).replace("{n}", str(self.n_fits))
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            idata.to_netcdf(path)
            extra["idata_path"] = path
        self.last_idata = idata
        self.last_effect_draws = np.asarray(effect, dtype=float).ravel()
        return Estimate(estimator=self.name, estimand=self.estimand,
                        **summarize_draws(effect), extra=extra, diagnostics=diag)


# -- helpers shared by the model modules -----------------------------------------------
def occasion_codes(df: pd.DataFrame, primary_month: float) -> tuple[np.ndarray, list[float], int]:
    """Occasion index of each row (months sorted, 0 = baseline) and the primary's index."""
    months = sorted(float(m) for m in df["month"].unique())
    if float(primary_month) not in months:
        raise LongFormatError(
            f"no observed outcome at the primary month {primary_month:g}; months seen: {months}"
        )
    occ = np.searchsorted(np.asarray(months), df["month"].to_numpy(dtype=float))
    return occ.astype(np.int64), months, months.index(float(primary_month))


def log_time(month, primary_month: float) -> np.ndarray:
    """``log1p(month) / log1p(primary)``: 0 at baseline, 1 at the primary month."""
    return np.log1p(np.asarray(month, dtype=float)) / math.log1p(float(primary_month))


def post(idata, name: str) -> np.ndarray:
    """Posterior draws of ``name`` stacked over chains: shape ``(samples, ...)``."""
    a = np.asarray(idata.posterior[name])
    return a.reshape((-1,) + a.shape[2:])


def random_effect(name: str, capacity: int, sigma_scale: float, index):
    """Non-centred random intercepts ``sigma * z`` with a trailing structural zero.

    Creates ``sigma_<name> ~ HalfNormal(sigma_scale)`` and ``z_<name> ~ N(0, 1)`` of length
    ``capacity`` inside the current model and returns ``(values[index], sigma)``, where
    index ``-1`` selects the appended zero (no such level). Must be called in a model
    context.
    """
    import pymc as pm
    import pytensor.tensor as pt

    sigma = pm.HalfNormal(f"sigma_{name}", sigma_scale)
    z = pm.Normal(f"z_{name}", 0.0, 1.0, shape=capacity)
    values = pt.concatenate([sigma * z, pt.zeros(1)])
    return values[index], sigma
