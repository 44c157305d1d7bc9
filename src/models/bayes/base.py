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

Draws for simulation-based calibration
--------------------------------------
Every Bayesian estimator (NUTS here, and the fast integrated route) offers the same two
methods, which :mod:`fitlab.sbc` uses (Talts et al. 2018):

- ``prior_predictive(data, n, seed) -> (params, columns)``: ``n`` draws from the model's
  prior for the design of ``data`` (its units, therapists, clients, occasions, arms and
  periods; the outcomes of ``data`` are not used). ``params`` maps names to arrays of
  shape ``(n,)``; ``columns`` maps long-format columns (``"outcome"``, and for a model
  that also generates it, ``"uptake"``) to arrays ``(n, rows)`` of simulated values for
  the rows of ``est.prepare(data)``, in that order.
- ``posterior_draws(data_or_fit, n, seed) -> params``: ``n`` posterior draws of the same
  names, thinned evenly over the chains so that they are nearly independent.

The names are ``"effect"`` (the estimand, as the fit reports it) and ``"var_<component>"``
for every variance component (``var_resid`` for a residual variance).
"""

from __future__ import annotations

import dataclasses
import logging
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
    "prior_scales",
    "check_integer_options",
    "resampled_posterior",
    "post",
    "random_effect",
    "fused_callback",
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


def resampled_posterior(estimator, data: pd.DataFrame, draws: int) -> Posterior:
    """The Posterior of an integrated (non-MCMC) estimator: its Estimate and ``draws``
    draws resampled by importance weight, seeded by the data, as ArviZ data (one "chain":
    these are not MCMC draws). ``estimator._estimate(df)`` returns the Estimate and a
    result with ``draws(n, rng)``."""
    import arviz as az

    df = estimator.prepare(data)
    est, res = estimator._estimate(df)
    rng = np.random.default_rng(data_seed({"y": df["outcome"].to_numpy(float)},
                                          int(estimator.options["seed"])))
    sample = res.draws(int(draws), rng)
    idata = az.from_dict(posterior={k: v[None, :] for k, v in sample.items()})
    return Posterior(est, idata, sample["effect"], df)


def check_integer_options(options: dict, minimums: dict[str, int]) -> None:
    """Refuse an option of ``minimums`` that is not an integer at least its minimum (a
    boolean is not a number)."""
    for key, low in minimums.items():
        v = options[key]
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
            raise EstimatorError(f"{key} must be an integer >= {low}, got {v!r}")


def prior_scales(model: str, given: dict | None, defaults: dict[str, float]) -> dict[str, float]:
    """A model's prior scales: ``defaults`` updated by ``given`` (the option ``priors``).

    Raises
    ------
    EstimatorError
        For an unknown name or a scale that is not a positive number.
    """
    given = given or {}
    if not isinstance(given, dict):
        raise EstimatorError(f"priors must be a mapping of prior scales, got {given!r}")
    bad = sorted(set(given) - set(defaults))
    if bad:
        raise EstimatorError(f"unknown prior(s) {bad} for {model}; allowed: {sorted(defaults)}")
    for k, v in given.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < np.inf:
            raise EstimatorError(f"priors.{k} must be a positive number, got {v!r}")
    return {**defaults, **{k: float(v) for k, v in given.items()}}


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
                fused = self._fused_logp(compiled, cap) if self.options.get("fused") else None
                if fused is not None:
                    compiled = dataclasses.replace(compiled, compiled_logp_func=fused)
            self._models[key] = (model, compiled)
        return self._models[key]

    def _fused_logp(self, compiled, cap):
        """A hand-fused log density for nutpie (:func:`fused_callback`), or None.

        Models that have one accept the option ``fused`` (default True) and override this;
        it must be the PyMC graph's density, value and gradient (checked in the tests).
        """
        return None

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

    def prior_scales(self, defaults: dict[str, float]) -> dict[str, float]:
        """The model's prior scales: ``defaults`` updated by the option ``priors``
        (:func:`prior_scales`)."""
        return prior_scales(self.name, self.options.get("priors"), defaults)

    # -- draws for simulation-based calibration (see the module docstring) -------------
    def _prior_model(self, data: dict[str, np.ndarray], capacity: dict[str, int], meta):
        """The generative twin of ``_build`` (same priors, an observed ``obs`` to draw).

        Models whose likelihood is a ``pm.Potential`` override it.
        """
        return self._build(data, capacity)

    def _prior_columns(self, df: pd.DataFrame, idata, meta) -> dict[str, np.ndarray]:
        """Long-format columns ``(n, rows)`` from ``sample_prior_predictive``'s ``obs``."""
        obs = np.asarray(idata.prior_predictive["obs"])
        return {"outcome": obs.reshape((-1,) + obs.shape[2:]).astype(float)}

    def _prior_effect(self, idata, meta, columns: dict[str, np.ndarray]) -> np.ndarray:
        """The estimand of each prior draw (``idata.posterior`` holds the prior draws).

        The default is the fit's own summary; a model whose estimand depends on the
        simulated data (e.g. on who took up FIT) overrides it.
        """
        return np.asarray(self._summarize(idata, meta)[0], dtype=float).ravel()

    def variance_draws(self, idata) -> dict[str, np.ndarray]:
        """``var_<component>`` draws from every ``sigma_<component>`` (``sigma``: resid)."""
        out = {}
        for name in idata.posterior.data_vars:
            if name == "sigma" or (name.startswith("sigma_") and
                                   np.asarray(idata.posterior[name]).ndim == 2):
                key = "resid" if name == "sigma" else name.removeprefix("sigma_")
                out[f"var_{key}"] = post(idata, name) ** 2
        return out

    def prior_predictive(self, data: pd.DataFrame, n: int, seed: int = 0):
        """``n`` draws of the parameters and data from the prior, for the design of ``data``.

        Returns
        -------
        params : dict
            ``"effect"`` and ``"var_<component>"``, arrays of shape ``(n,)``.
        columns : dict
            Long-format columns (``"outcome"``, ...) of shape ``(n, rows)`` for the rows
            of ``self.prepare(data)``.
        """
        import arviz as az
        import pymc as pm

        df = self.prepare(data)
        arrays, sizes, meta = self._arrays(df, df.attrs["primary_month"])
        model = self._prior_model(arrays, self._capacity(sizes), meta)
        quiet = logging.getLogger("pymc")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # not "Sampling: [...]" for every block
        try:
            with model:
                idata = pm.sample_prior_predictive(draws=int(n), random_seed=int(seed))
        finally:
            quiet.setLevel(level)
        fake = az.InferenceData(posterior=idata.prior)
        columns = self._prior_columns(df, idata, meta)
        params = {"effect": self._prior_effect(fake, meta, columns)}
        params.update(self.variance_draws(fake))
        return params, columns

    def posterior_draws(self, data_or_fit, n: int, seed: int = 0) -> dict[str, np.ndarray]:
        """``n`` posterior draws of ``"effect"`` and ``"var_<component>"``.

        ``data_or_fit`` is a long table (fitted here) or a :class:`Posterior`. The draws
        are spaced evenly over the pooled chains from a random start (``seed``), so that
        with ``n`` well below the ESS they are nearly independent.
        """
        fit = data_or_fit if isinstance(data_or_fit, Posterior) else self.posterior(data_or_fit)
        draws = {"effect": np.asarray(fit.effect_draws, dtype=float).ravel()}
        draws.update(self.variance_draws(fit.idata))
        total = len(draws["effect"])
        step = total / int(n)
        start = np.random.default_rng(seed).uniform(0, step)
        pick = np.minimum((start + step * np.arange(int(n))).astype(int), total - 1)
        return {k: np.asarray(v, dtype=float)[pick] for k, v in draws.items()}

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


def fused_callback(kernel, compiled, names: tuple[str, ...]):
    """A nutpie log-density callback around a numba kernel, reading the model's data.

    ``kernel(x, grad, *arrays) -> logp`` is a ``numba.njit`` function of the unconstrained
    parameters ``x`` (nutpie's layout: ``compiled.shape_info``) that fills ``grad``;
    ``arrays`` are the ``pm.Data`` containers ``names``, read from nutpie's ``user_data``
    record of ``compiled``, so that ``with_data`` swaps them as it does for the graph.
    Replacing ``compiled.compiled_logp_func`` by the result is all it takes: nutpie calls
    it without the GIL, like its own. Returns a ``numba.cfunc``.
    """
    import numba
    from nutpie.compile_pymc import address_as_void_pointer

    @numba.njit(inline="always")
    def arr(ptr, size, dtype):
        return numba.carray(address_as_void_pointer(ptr), size, dtype)

    env = {"numba": numba, "np": np, "arr": arr, "kernel": kernel, "n_dim": int(compiled.n_dim),
           "record": compiled.user_data.dtype}
    reads = []
    for i, name in enumerate(names):
        # PyMC keeps integer data as int32 or int64, whichever holds it
        env[f"t{i}"] = compiled.shared_data[name].dtype.type
        reads.append(f"    a{i} = arr(d[{name!r}][()], n[{name!r}][()], t{i})")
    src = "\n".join([
        "def fused(dim, x_, out_, logp_, user_data_):",
        "    if dim != n_dim:",
        "        return -1",
        "    x = numba.carray(x_, (n_dim,))",
        "    g = numba.carray(out_, (n_dim,))",
        "    sh = numba.carray(user_data_, (), record)['shared']",
        "    d, n = sh['data'], sh['size']",
        *reads,
        f"    lp = kernel(x, g, {', '.join(f'a{i}' for i in range(len(names)))})",
        "    numba.carray(logp_, ())[()] = lp",
        "    if not np.isfinite(lp):",
        "        return 4",
        "    for i in range(n_dim):",
        "        if not np.isfinite(g[i]):",
        "            return 3",
        "    return 0",
    ])
    exec(compile(src, "<fused_callback>", "exec"), env)  # noqa: S102 (code built above)
    f64 = numba.types.float64
    sig = numba.types.int64(numba.types.uint64, numba.types.CPointer(f64),
                            numba.types.CPointer(f64), numba.types.CPointer(f64),
                            numba.types.voidptr)
    return numba.cfunc(sig)(env["fused"])


def parameter_offsets(compiled) -> dict[str, int]:
    """Where each unconstrained parameter starts in nutpie's flat vector."""
    names, slices, _ = compiled.shape_info
    return {n: int(sl.start) for n, sl in zip(names, slices)}
