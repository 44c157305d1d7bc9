"""The one base of the NUTS-sampled Bayesian estimators: compile once, seed from the data,
one convergence rule, one summary.

Every PyMC estimator here is a :class:`BayesEstimator`. It turns a prepared long table into
a dict of plain arrays (``_arrays``), builds a PyMC model whose data are ``pm.Data``
containers (``_build``), compiles it with nutpie and, for every data set, swaps the arrays
in with ``CompiledPyMCModel.with_data`` and samples.

A fit is a pure function of the data
-------------------------------------
- **Seeds** come from the data: the sampler's seed is the option ``seed`` mixed with a
  CRC-32 checksum of the data arrays (:func:`data_seed`), so the same data give the same
  draws whatever was fitted before, in any process.
- **Sizes** come from the data: nutpie compiles the log density for a fixed number of
  parameters, so each random-effect vector (units, therapists, clients, ...) has a
  *capacity*, the data set's own count rounded up to the next size on a fixed ladder
  (:func:`capacity`); entries beyond the count receive no data and are sampled from their
  standard-normal prior (non-centred parameterisation), which changes nothing in the
  posterior of the other parameters. Compiled models are cached by capacity, an
  optimisation that never changes a result.

One convergence rule
--------------------
A fit is ``converged`` when (Vehtari et al. 2021):

- there are no divergent transitions;
- the rank-normalised split R-hat of every monitored parameter is below ``rhat_max``
  (1.01);
- bulk and tail ESS of the estimand are at least ``min_ess`` (400);
- bulk ESS of every other monitored parameter is at least ``min_ess_per_chain`` (50)
  times the number of chains, enough for R-hat to be trusted.

Failing fits are returned with ``converged=False`` and the reasons in ``warnings``; they
are never dropped or re-run silently. Variance components are reported as ``var_*``.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.base import Estimate, Estimator, EstimatorError, LongFormatError

__all__ = [
    "BayesEstimator",
    "Posterior",
    "IdMap",
    "capacity",
    "data_seed",
    "diagnose",
    "summarize_draws",
    "occasion_codes",
    "post",
    "random_effect",
]

#: Sampler options every Bayesian estimator accepts, and their defaults.
SAMPLER_DEFAULTS: dict[str, Any] = {
    "draws": 500,
    "tune": 500,
    "chains": 4,
    "cores": None,  # threads for the chains; None: min(chains, cpu count)
    "seed": 0,
    "sampler": "nutpie",  # or "pymc" (pm.sample, rebuilds every fit; for comparison)
    "target_accept": None,
    "low_rank": False,  # nutpie's low-rank modified mass matrix
    "rhat_max": 1.01,
    "min_ess": 400.0,
    "min_ess_per_chain": 50.0,
    "capacity": None,  # {vector: minimum size}, e.g. to compile once for a whole grid
}

# capacities: powers of two and 1.5 times them, so padding adds at most 50%
_LADDER = sorted({int(b * f) for b in (2**k for k in range(1, 24)) for f in (1.0, 1.5)})


def capacity(n: int) -> int:
    """The smallest size on a fixed ladder (1, 2, 3, 4, 6, 8, 12, 16, ...) that holds ``n``."""
    if n <= 1:
        return 1
    return next(c for c in _LADDER if c >= n)


def data_seed(data: dict[str, np.ndarray], seed: int = 0) -> int:
    """A sampler seed from the data arrays (sorted by name) and a base seed."""
    crc = 0
    for name in sorted(data):
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(np.ascontiguousarray(data[name]).tobytes(), crc)
    return (int(seed) * 1_000_003 + crc) % (2**31 - 1)


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


def diagnose(idata, monitor: list[str], effect: np.ndarray, settings: dict,
             fit_seconds: float) -> dict[str, Any]:
    """The convergence rule of the module docstring, on ``monitor`` and the estimand.

    Names in ``monitor`` that the model does not have (an optional level) are skipped.

    ``effect`` holds the estimand's draws with shape ``(chains, draws)``.
    """
    import arviz as az

    chains = int(settings["chains"])
    monitor = [v for v in monitor if v in idata.posterior]
    post_ = idata.posterior[monitor]
    rhat = az.rhat(post_)
    ess = az.ess(post_, method="bulk")
    rhat_max = float(np.nanmax([np.nanmax(rhat[v].values) for v in monitor]))
    ess_min = float(np.nanmin([np.nanmin(ess[v].values) for v in monitor]))
    eff = np.asarray(effect, dtype=float).reshape(chains, -1)
    ess_bulk = float(az.ess(eff, method="bulk"))
    ess_tail = float(az.ess(eff, method="tail"))
    rhat_eff = float(az.rhat(eff))
    rhat_max = max(rhat_max, rhat_eff)
    div = 0
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        div = int(np.asarray(idata.sample_stats["diverging"]).sum())
    warnings = []
    if div:
        warnings.append(f"{div} divergent transitions")
    if not rhat_max < settings["rhat_max"]:
        warnings.append(f"rhat_max {rhat_max:.3f} >= {settings['rhat_max']}")
    if not min(ess_bulk, ess_tail) >= settings["min_ess"]:
        warnings.append(f"estimand ESS bulk {ess_bulk:.0f} / tail {ess_tail:.0f} < "
                        f"{settings['min_ess']:.0f}")
    bar = settings["min_ess_per_chain"] * chains
    if not ess_min >= bar:
        warnings.append(f"ess_bulk_min {ess_min:.0f} < {bar:.0f}")
    return {"converged": not warnings, "fit_seconds": float(fit_seconds),
            "rhat_max": rhat_max, "ess_bulk_min": ess_min, "ess_bulk_estimand": ess_bulk,
            "ess_tail_estimand": ess_tail, "divergences": div, "warnings": warnings}


def summarize_draws(draws: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Mean, SD, equal-tailed ``1 - alpha`` interval and P(> 0) of a set of draws."""
    d = np.asarray(draws, dtype=float).ravel()
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    return {"estimate": float(d.mean()), "se": float(d.std(ddof=1)), "lower": float(lo),
            "upper": float(hi), "p_positive": float((d > 0).mean())}


@dataclass
class Posterior:
    """A whole posterior fit: the Estimate, the ArviZ data and the estimand's draws."""

    estimate: Estimate
    idata: Any
    effect_draws: np.ndarray
    data: pd.DataFrame


class BayesEstimator(Estimator):
    """Base of the PyMC estimators: compile once per capacity, sample with new data.

    Subclasses implement

    - ``_arrays(df, primary_month) -> (data, sizes, meta)``: ``data`` maps ``pm.Data``
      names to arrays, ``sizes`` maps each random-effect vector to the count this data
      set needs, ``meta`` is anything ``_summarize`` needs;
    - ``_build(data, capacity) -> pm.Model`` with ``pm.Data(name, data[name])`` and
      vectors of length ``capacity[k]``;
    - ``_summarize(idata, meta) -> (effect_draws (chains, draws), extra)``;
    - ``monitor``: the parameters whose R-hat and ESS decide convergence.

    Options: those of :data:`SAMPLER_DEFAULTS` (``draws``, ``tune``, ``chains``,
    ``cores``, ``seed``, ``sampler``, ``target_accept``, ``low_rank``, ``rhat_max``,
    ``min_ess``, ``min_ess_per_chain``, ``capacity``) plus the model's own
    (``model_defaults``).
    """

    monitor: tuple[str, ...] = ()
    #: size keys built exactly (a change compiles another model), e.g. occasion effects
    exact: ClassVar[tuple[str, ...]] = ("occ",)
    #: the model's own options and defaults
    model_defaults: ClassVar[dict[str, Any]] = {}
    #: this model's sampler defaults where they differ from SAMPLER_DEFAULTS
    sampler_overrides: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.defaults = {**SAMPLER_DEFAULTS, **cls.sampler_overrides, **cls.model_defaults}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        o = self.options
        if o["sampler"] not in ("nutpie", "pymc"):
            raise EstimatorError(f"sampler must be 'nutpie' or 'pymc', got {o['sampler']!r}")
        for key in ("draws", "tune", "chains"):
            if not isinstance(o[key], int | np.integer) or o[key] < 1:
                raise EstimatorError(f"{key} must be a positive integer, got {o[key]!r}")
        self._models: dict[tuple, tuple[Any, Any]] = {}  # capacity -> (model, compiled)

    # -- to implement ------------------------------------------------------------------
    def _arrays(self, df: pd.DataFrame, primary_month: float):  # pragma: no cover
        raise NotImplementedError

    def _build(self, data: dict[str, np.ndarray], capacity: dict[str, int]):  # pragma: no cover
        raise NotImplementedError

    def _summarize(self, idata, meta):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- machinery ---------------------------------------------------------------------
    def _capacity(self, sizes: dict[str, int]) -> dict[str, int]:
        """Each vector's size for these counts: exact, or on the ladder and at least the
        ``capacity`` option's minimum (a function of the data and the options only)."""
        least = self.options["capacity"] or {}
        return {k: int(n) if k in self.exact else max(capacity(n), int(least.get(k, 0)))
                for k, n in sizes.items()}

    def _compiled(self, data, cap):
        """The model and its nutpie compilation for this capacity (built once)."""
        key = tuple(sorted(cap.items()))
        if key not in self._models:
            model = self._build(data, cap)
            compiled = None
            if self.options["sampler"] == "nutpie":
                import nutpie

                compiled = nutpie.compile_pymc_model(model)
            self._models[key] = (model, compiled)
        return self._models[key]

    @property
    def n_compiles(self) -> int:
        """Models compiled so far (one per capacity met)."""
        return len(self._models)

    def build_model(self, data: pd.DataFrame):
        """The PyMC model for one data set, uncompiled, for inspection."""
        df = self.prepare(data)
        arrays, sizes, _ = self._arrays(df, df.attrs["primary_month"])
        return self._build(arrays, self._capacity(sizes))

    def _sample(self, df: pd.DataFrame, primary_month: float):
        o = self.options
        data, sizes, meta = self._arrays(df, primary_month)
        cap = self._capacity(sizes)
        seed = data_seed(data, o["seed"])
        chains = int(o["chains"])
        cores = int(o["cores"] or min(chains, os.cpu_count() or 1))
        t0 = time.perf_counter()
        if o["sampler"] == "nutpie":
            import nutpie

            _, compiled = self._compiled(data, cap)
            kw = {"low_rank_modified_mass_matrix": bool(o["low_rank"])}
            if o["target_accept"] is not None:
                kw["target_accept"] = float(o["target_accept"])
            idata = nutpie.sample(compiled.with_data(**data), draws=int(o["draws"]),
                                  tune=int(o["tune"]), chains=chains, cores=cores,
                                  seed=seed, progress_bar=False, save_warmup=False, **kw)
        else:
            import pymc as pm

            # the naive path: a fresh model every fit, sampled by PyMC's own NUTS
            with self._build(data, cap):
                idata = pm.sample(draws=int(o["draws"]), tune=int(o["tune"]), chains=chains,
                                  cores=cores, random_seed=seed, progressbar=False,
                                  target_accept=float(o["target_accept"] or 0.8),
                                  compute_convergence_checks=False)
        return idata, meta, time.perf_counter() - t0

    def _estimate(self, idata, meta, seconds: float) -> tuple[Estimate, np.ndarray]:
        effect, extra = self._summarize(idata, meta)
        effect = np.asarray(effect, dtype=float).reshape(int(self.options["chains"]), -1)
        diag = diagnose(idata, list(self.monitor), effect, self.options, seconds)
        est = Estimate(estimator=self.name, estimand=self.estimand,
                       **summarize_draws(effect, self.plan.alpha), extra=extra,
                       diagnostics=diag)
        return est, effect

    def posterior(self, data: pd.DataFrame) -> Posterior:
        """Fit one data set and keep everything: Estimate, ArviZ data, estimand draws."""
        df = self.prepare(data)
        idata, meta, seconds = self._sample(df, df.attrs["primary_month"])
        est, effect = self._estimate(idata, meta, seconds)
        return Posterior(est, idata, effect.ravel(), df)

    def _fit(self, df: pd.DataFrame, primary_month: float) -> Estimate:
        return self._estimate(*self._sample(df, primary_month))[0]

    def posterior_predictive(self, fit: Posterior, draws: int = 200,
                             seed: int = 0) -> np.ndarray:
        """Replicated outcomes for the rows of ``fit.data``: shape ``(draws, rows)``.

        Models whose likelihood is a ``pm.Potential`` (the CACE mixture, the marginal
        model) have no ``obs`` and raise ``ValueError``.
        """
        import pymc as pm

        df = fit.data
        data, sizes, _ = self._arrays(df, df.attrs["primary_month"])
        model, _ = self._compiled(data, self._capacity(sizes))
        if "obs" not in model.named_vars:
            raise ValueError(f"{self.name} has no observed variable 'obs' to replicate")
        idata = fit.idata
        n_chain, n_draw = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
        step = max(1, (n_chain * n_draw) // max(draws, 1))
        thin = idata.posterior.isel(draw=slice(None, None, step))
        with model:
            pm.set_data(data)
            pp = pm.sample_posterior_predictive(thin, var_names=["obs"], progressbar=False,
                                                random_seed=seed)
        obs = np.asarray(pp.posterior_predictive["obs"])
        return obs.reshape(-1, obs.shape[-1])


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


def post(idata, name: str) -> np.ndarray:
    """Posterior draws of ``name`` stacked over chains: shape ``(samples, ...)``."""
    a = np.asarray(idata.posterior[name])
    return a.reshape((-1,) + a.shape[2:])


def random_effect(name: str, size: int, sigma_scale: float, index):
    """Non-centred random intercepts ``sigma * z`` with a trailing structural zero.

    Creates ``sigma_<name> ~ HalfNormal(sigma_scale)`` and ``z_<name> ~ N(0, 1)`` of length
    ``size`` inside the current model and returns ``(values[index], sigma)``, where index
    ``-1`` selects the appended zero (no such level). Must be called in a model context.
    """
    import pymc as pm
    import pytensor.tensor as pt

    sigma = pm.HalfNormal(f"sigma_{name}", sigma_scale)
    z = pm.Normal(f"z_{name}", 0.0, 1.0, shape=size)
    values = pt.concatenate([sigma * z, pt.zeros(1)])
    return values[index], sigma


def variance_components(idata, names: dict[str, str]) -> dict[str, float]:
    """Posterior means of variances (``var_<key>``) from SD parameters, with intake ICCs.

    ``names`` maps a component (``unit``, ``therapist``, ``client``, ``slope``,
    ``resid``, ...) to the name of its SD parameter in ``idata``.
    """
    out: dict[str, float] = {}
    draws = {}
    for k, v in names.items():
        if v in idata.posterior:
            draws[k] = post(idata, v) ** 2
            out[f"var_{k}"] = float(draws[k].mean())
    total = sum(draws[k] for k in ("unit", "therapist", "client", "resid") if k in draws)
    if not isinstance(total, int):
        for k in ("unit", "therapist", "client"):
            if k in draws:
                out[f"icc_{k}"] = float(np.mean(draws[k] / total))
    return out
