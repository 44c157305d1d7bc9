"""A mixed model from an lme4/brms formula, by Bambi (estimator ``bambi``).

Real trial data come with the model a user already knows how to write::

    outcome ~ arm * time + (1|unit) + (1|therapist) + (time|client)

Bambi (Capretto et al. 2022, J Stat Softw 103(15)) reads the formula with ``formulae``,
builds the design matrices and chooses weakly informative default priors scaled to the
data. The columns are the long format's standard names (after any ``columns`` mapping;
``time`` is the analysis plan's model time, 0 at baseline and 1 at the primary month) and
any other column of the data by its own name. The estimand is one coefficient, ``target``
(default ``arm:time``, the FIT - usual care difference at the primary month as
``reml_trajectory`` reports it, else ``arm``).

Two routes to the same posterior
--------------------------------
Bambi's own fit (``engine="bambi"``: ``bambi.Model.fit(inference_method="nutpie")``)
embeds the data as constants, so every new data set pays a fresh compilation. The
default route (``engine="auto"``) takes the model Bambi specifies (its terms, design
matrices, default priors and non-centred group effects) and rebuilds it with every data
array and every prior scale as a ``pm.Data`` container, each group-effect vector padded to
a capacity on the ladder of :func:`models.bayes.base.capacity`; the compiled model is then
reused for any data set of the same structure and capacities (nutpie ``with_data``), as
the lab's other Bayesian models are. Padded group levels receive no data and are sampled
from their prior, which leaves the other parameters' posterior unchanged. The rebuilt
model covers Gaussian models with Bambi's default priors (normal coefficients, half-normal
group SDs, half-Student-t residual SD); anything else (another family, user priors) goes
by Bambi's own fit.

A grouping level ``-1`` means "no such group" (the lab's convention for a client with no
therapist): such rows get no effect of that term, instead of sharing one pseudo-therapist.

Examples
--------
>>> from models import get_estimator
>>> est = get_estimator("bambi", None, primary_month=12.0,
...                     formula="outcome ~ arm * time + (1|unit) + (time|client)")
>>> est.target
'arm:time'
"""

from __future__ import annotations

import time as _time
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from models.base import Estimate, EstimatorError, LongFormatError, register
from models.bayes.base import BayesEstimator, capacity, data_seed, diagnose, summarize_draws

__all__ = ["BambiFormula", "parse_formula", "DEFAULT_FORMULA"]

#: The lab's trajectory model as a formula (client intercepts and slopes uncorrelated).
DEFAULT_FORMULA = "outcome ~ arm * time + (1|unit) + (1|therapist) + (time|client)"
_ENGINES = ("auto", "compiled", "bambi")
#: Bambi's default degrees of freedom of the residual SD's half-Student-t prior
_NU = 4.0


def parse_formula(formula: str) -> tuple[str, list[str], list[str], list[str]]:
    """Check a model formula's syntax; return its response, variables, fixed terms and
    group terms (``1|unit``, ``time|client``, ...).

    Raises
    ------
    EstimatorError
        A formula ``formulae`` cannot read, or one without a response.
    """
    import formulae

    if not isinstance(formula, str) or "~" not in formula:
        raise EstimatorError(f"formula must look like 'outcome ~ arm * time + (1|client)', "
                             f"got {formula!r}")
    try:
        desc = formulae.model_description(formula)
    except Exception as exc:  # formulae's parser raises its own exception types
        raise EstimatorError(f"cannot read the formula {formula!r}: {exc}") from None
    if desc.response is None:
        raise EstimatorError(f"the formula {formula!r} has no response (left of '~')")
    response = desc.response.term.name
    fixed = [t.name for t in desc.terms if type(t).__name__ == "Term"]
    groups = [t.name for t in desc.terms if type(t).__name__ == "GroupSpecificTerm"]
    return response, sorted(desc.var_names), fixed, groups


@register
class BambiFormula(BayesEstimator):
    """A Gaussian mixed model given as a formula, specified by Bambi, sampled by nutpie.

    Options
    -------
    formula : str
        The model, lme4/brms syntax (default :data:`DEFAULT_FORMULA`).
    target : str, optional
        The coefficient reported (default ``arm:time`` if in the formula, else ``arm``).
    engine : {"auto", "compiled", "bambi"}
        ``compiled``: Bambi's model rebuilt on ``pm.Data`` and compiled once per structure
        and capacity; ``bambi``: Bambi's own ``fit`` (a compilation per data set);
        ``auto``: compiled where the model allows it.

    plus the sampler options of :class:`models.bayes.base.BayesEstimator`. ``extra`` holds
    the posterior means of every fixed coefficient (``b_<name>``) and the variance of each
    group term (``var_<term>``) and of the residual (``var_resid``).
    """

    name = "bambi"
    estimand = "itt"
    outcome_kinds = ("ors",)
    exact: ClassVar[tuple[str, ...]] = ()
    model_defaults = {"formula": DEFAULT_FORMULA, "target": None, "engine": "auto"}

    def __init__(self, plan=None, columns=None, **options):
        super().__init__(plan, columns, **options)
        o = self.options
        if o["engine"] not in _ENGINES:
            raise EstimatorError(f"engine must be one of {_ENGINES}, got {o['engine']!r}")
        self.formula = o["formula"]
        response, self.variables, fixed, self.groups = parse_formula(self.formula)
        if response != "outcome":
            raise EstimatorError(f"the formula's response must be 'outcome' (map your "
                                 f"column with columns={{'outcome': ...}}), got {response!r}")
        target = o["target"] or next((t for t in ("arm:time", "time:arm", "arm") if t in fixed),
                                     None)
        if target is None:
            raise EstimatorError(f"the formula has no term 'arm:time' or 'arm' to report "
                                 f"(the randomized comparison); name one with the option "
                                 f"target; its fixed terms: {fixed}")
        if target not in fixed:
            raise EstimatorError(f"target {target!r} is not a term of the formula; its "
                                 f"fixed terms: {fixed}")
        self.target = target
        from models.base import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

        std = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
        # the standard columns the formula uses are required; the others are kept
        self.required = tuple(dict.fromkeys(["client", "arm", "month", "outcome",
                                             *(v for v in self.variables
                                               if v in std and v != "time")]))
        self.keep = tuple(v for v in self.variables if v not in std)

    # -- Bambi's specification ---------------------------------------------------------
    def _bambi_model(self, df: pd.DataFrame):
        import bambi as bmb

        cols = [c for c in self.variables if c in df.columns]
        try:
            return bmb.Model(self.formula, df[cols].reset_index(drop=True))
        except Exception as exc:  # Bambi/formulae complain about the data in their words
            raise LongFormatError(f"Bambi cannot build {self.formula!r} on these data: "
                                  f"{type(exc).__name__}: {exc}") from None

    @staticmethod
    def _compilable(m) -> str | None:
        """Why Bambi's model ``m`` cannot take the compiled route (None if it can)."""
        if m.family.name != "gaussian" or m.family.link["mu"].name != "identity":
            return f"family {m.family.name}"
        c = m.components["mu"]
        if c.intercept_term is None:
            return "no intercept"
        if c.intercept_term.prior.name != "Normal":
            return "intercept prior"
        for t in c.common_terms.values():
            if t.prior.name != "Normal":
                return f"prior of {t.name}"
        for t in c.group_specific_terms.values():
            s = t.prior.args.get("sigma")
            if t.prior.name != "Normal" or getattr(s, "name", None) != "HalfNormal":
                return f"prior of {t.name}"
        sp = m.components.get("sigma")
        if set(m.components) != {"mu", "sigma"} or sp.prior.name != "HalfStudentT" \
                or float(sp.prior.args["nu"]) != _NU:
            return "residual SD prior"
        if c.offset_terms or getattr(c, "hsgp_terms", None):
            return "offset or HSGP terms"
        return None

    def _arrays(self, df, primary_month):
        m = self._bambi_model(df)
        why = self._compilable(m)
        engine = self.options["engine"]
        if engine == "compiled" and why is not None:
            raise EstimatorError(f"engine 'compiled' does not cover this model ({why}); "
                                 "use engine 'bambi' or 'auto'")
        if engine == "bambi" or why is not None:
            return {}, {}, {"route": "bambi", "model": m}
        c = m.components["mu"]
        names, cols, mus, sds = [], [], [], []
        for t in c.common_terms.values():
            x = np.asarray(t.data, dtype=float).reshape(len(df), -1)
            labels = [t.name] if x.shape[1] == 1 else [f"{t.name}[{lv}]" for lv in
                                                       (t.levels or range(x.shape[1]))]
            names += labels
            cols.append(x)
            mus.append(np.broadcast_to(np.asarray(t.prior.args["mu"], float), x.shape[1]))
            sds.append(np.broadcast_to(np.asarray(t.prior.args["sigma"], float), x.shape[1]))
        X = np.column_stack(cols) if cols else np.zeros((len(df), 0))
        X = X - X.mean(0)  # centred, as Bambi does under an intercept
        ip = c.intercept_term.prior.args
        sp = m.components["sigma"].prior.args
        data: dict[str, np.ndarray] = {
            "y": np.asarray(m.response_component.term.data, dtype=float).ravel(),
            "X": X, "b_mu": np.concatenate(mus) if mus else np.zeros(0),
            "b_sd": np.concatenate(sds) if sds else np.zeros(0),
            "icept": np.array([float(ip["mu"]), float(ip["sigma"])]),
            "resid": np.array([float(sp["sigma"])]),
        }
        sizes: dict[str, int] = {"common": X.shape[1]}
        zs, idxs, scales, groups = [], [], [], []
        for j, t in enumerate(c.group_specific_terms.values()):
            z = np.asarray(t.predictor, dtype=float).reshape(len(df), -1)
            levels = list(next(iter(t.coords.values())))
            idx = np.asarray(t.group_index, dtype=np.int64)
            if "-1" in levels:  # "no such group": a structural zero, not a level
                none = levels.index("-1")
                idx = np.where(idx == none, -1, idx - (idx > none))
                levels.remove("-1")
            zs.append(z)
            idxs.append(idx)
            scales.append(np.broadcast_to(np.asarray(t.prior.args["sigma"].args["sigma"],
                                                     float), z.shape[1]))
            sizes[f"e{j}"], sizes[f"g{j}"] = z.shape[1], len(levels)
            groups.append(t.name)
        if groups:
            # every group effect in one vector (level-major within a term), so the model
            # has one gather whatever the number of terms: it compiles twice as fast
            cap = self._capacity(sizes)
            cols, base = [], 0
            for j, idx in enumerate(idxs):
                e, n_cap = cap[f"e{j}"], cap[f"g{j}"]
                cols += [base + idx * e + k for k in range(e)]
                base += n_cap * e
            G = np.column_stack(cols)
            G[np.repeat(np.column_stack(idxs), [cap[f"e{j}"] for j in range(len(zs))],
                        axis=1) < 0] = base  # the trailing structural zero
            data.update(G=G.astype(np.int64), Z=np.column_stack(zs),
                        group_scale=np.concatenate(scales))
        meta = {"route": "compiled", "names": names, "groups": groups,
                "widths": [z.shape[1] for z in zs],
                "monitor": ["Intercept", "b", "sigma"] + (["group_sigma"] if groups else [])}
        return data, sizes, meta

    def _capacity(self, sizes: dict[str, int]) -> dict[str, int]:
        """Common columns and group-term widths exactly; group levels on the ladder, at
        least the ``capacity`` option's minimum for the term (e.g. ``{"1|client": 512}``,
        to compile once for data sets of several sizes)."""
        least = self.options["capacity"] or {}
        out = {}
        for k, n in sizes.items():
            if k.startswith("g"):
                term = self.groups[int(k[1:])]
                out[k] = max(capacity(n), int(least.get(term, least.get(k, 0))))
            else:
                out[k] = n
        return out

    def _build(self, data, cap):
        import pymc as pm
        import pytensor.tensor as pt

        n_groups = sum(1 for k in cap if k.startswith("g"))
        with pm.Model() as model:
            y = pm.Data("y", data["y"])
            icept = pm.Data("icept", data["icept"])
            resid = pm.Data("resid", data["resid"])
            mu = pm.Normal("Intercept", icept[0], icept[1])
            if cap["common"]:
                b = pm.Normal("b", pm.Data("b_mu", data["b_mu"]),
                              pm.Data("b_sd", data["b_sd"]), shape=cap["common"])
                mu = mu + pt.dot(pm.Data("X", data["X"]), b)
            if n_groups:
                widths = [cap[f"e{j}"] for j in range(n_groups)]
                # element -> its term column's SD (constant for this capacity)
                col = np.concatenate([
                    sum(widths[:j]) + np.tile(np.arange(widths[j]), cap[f"g{j}"])
                    for j in range(n_groups)])
                sd = pm.HalfNormal("group_sigma", pm.Data("group_scale", data["group_scale"]),
                                   shape=sum(widths))
                off = pm.Normal("group_offset", 0.0, 1.0, shape=len(col))
                u = pt.concatenate([off * sd[col], pt.zeros(1)])
                G = pm.Data("G", data["G"])
                mu = mu + (u[G] * pm.Data("Z", data["Z"])).sum(axis=1)
            # nu a constant: a symbolic one costs a quarter more compile time
            sigma = pm.HalfStudentT("sigma", nu=_NU, sigma=resid[0])
            pm.Normal("obs", mu, sigma, observed=y)
        return model

    # -- sampling and summary ----------------------------------------------------------
    def _sample(self, df, primary_month):
        o = self.options
        data, sizes, meta = self._arrays(df, primary_month)
        if meta["route"] == "compiled":
            if meta["groups"] != self.groups:  # Bambi and formulae name terms alike
                raise EstimatorError(f"group terms {meta['groups']} differ from the "
                                     f"formula's {self.groups}")
            return self._sample_compiled(data, sizes, meta)
        m = meta["model"]
        chains = int(o["chains"])
        seed = data_seed({"y": df["outcome"].to_numpy(float)}, o["seed"])
        kw = {} if o["target_accept"] is None else {"target_accept": float(o["target_accept"])}
        t0 = _time.perf_counter()
        idata = m.fit(draws=int(o["draws"]), tune=int(o["tune"]), chains=chains,
                      cores=int(o["cores"] or chains), random_seed=seed, progressbar=False,
                      inference_method=o["sampler"], **kw)
        meta["monitor"] = ["Intercept", "sigma", *m.components["mu"].common_terms,
                           *(f"{g}_sigma" for g in m.components["mu"].group_specific_terms)]
        meta["names"] = list(m.components["mu"].common_terms)
        meta["groups"] = list(m.components["mu"].group_specific_terms)
        meta["model"] = None
        return idata, meta, _time.perf_counter() - t0

    def _sample_compiled(self, data, sizes, meta):
        import os

        import nutpie

        o = self.options
        cap = self._capacity(sizes)
        seed = data_seed(data, o["seed"])
        chains = int(o["chains"])
        cores = int(o["cores"] or min(chains, os.cpu_count() or 1))
        t0 = _time.perf_counter()
        if o["sampler"] != "nutpie":
            import pymc as pm

            with self._build(data, cap):
                idata = pm.sample(draws=int(o["draws"]), tune=int(o["tune"]), chains=chains,
                                  cores=cores, random_seed=seed, progressbar=False,
                                  compute_convergence_checks=False)
            return idata, meta, _time.perf_counter() - t0
        _, compiled = self._compiled(data, cap)
        kw = {"low_rank_modified_mass_matrix": bool(o["low_rank"])}
        if o["target_accept"] is not None:
            kw["target_accept"] = float(o["target_accept"])
        idata = nutpie.sample(compiled.with_data(**data), draws=int(o["draws"]),
                              tune=int(o["tune"]), chains=chains, cores=cores, seed=seed,
                              progress_bar=False, save_warmup=False, **kw)
        return idata, meta, _time.perf_counter() - t0

    def _summarize(self, idata, meta) -> tuple[np.ndarray, dict[str, Any]]:
        p = idata.posterior
        if meta["route"] == "compiled":
            b = np.asarray(p["b"])
            coefs = {n: b[..., i] for i, n in enumerate(meta["names"])}
            sd = np.asarray(p["group_sigma"]) if meta["groups"] else None
            first = np.cumsum([0, *meta["widths"]])
            sds = {g: sd[..., first[j]:first[j + 1]] for j, g in enumerate(meta["groups"])}
        else:
            coefs = {n: np.asarray(p[n]) for n in meta["names"]}
            sds = {g: np.asarray(p[f"{g}_sigma"]) for g in meta["groups"]}
        key = self.target if self.target in coefs else next(
            (n for n in coefs if set(n.split(":")) == set(self.target.split(":"))), None)
        if key is None:
            raise EstimatorError(f"target {self.target!r} not among the model's "
                                 f"coefficients {list(coefs)}")
        extra: dict[str, Any] = {f"b_{n}": float(v.mean()) for n, v in coefs.items()}
        for g, v in sds.items():
            extra[f"var_{g}"] = float((v**2).mean())
        extra["var_resid"] = float((np.asarray(p["sigma"]) ** 2).mean())
        extra.update(formula=self.formula, target=self.target, route=meta["route"])
        return coefs[key], extra

    def _estimate(self, idata, meta, seconds: float) -> tuple[Estimate, np.ndarray]:
        effect, extra = self._summarize(idata, meta)
        effect = np.asarray(effect, dtype=float).reshape(int(self.options["chains"]), -1)
        diag = diagnose(idata, meta["monitor"], effect, self.options, seconds)
        diag["compiled_models"] = self.n_compiles
        est = Estimate(estimator=self.name, estimand=self.estimand,
                       **summarize_draws(effect, self.plan.alpha), extra=extra,
                       diagnostics=diag)
        return est, effect
