"""Simulation-based calibration of the Bayesian estimators (Talts et al. 2018).

For each replicate: draw the parameters from the model's prior, simulate a data set from
the model itself on a small fixed design, fit, and record the rank of each true value
among ``L`` nearly independent posterior draws. If the fitted posterior is the exact
posterior of the model that generated the data, every rank is uniform on ``0..L``;
a wrong prior, a bug in the likelihood or a sampler that does not reach the posterior
shows as a histogram outside its band.

The design (units, therapists, clients, occasions, arms, periods) comes from one small
simulated trial (:func:`sbc_design`); only its outcomes (and, for the CACE model, the
uptake) are replaced by the model's own draws. The estimators provide the draws through
``prior_predictive`` and ``posterior_draws`` (contract in :mod:`models.bayes.base`), so
the NUTS models and the fast integrated route are calibrated by the same code.

Seeds: replicates come in blocks of :data:`BLOCK`; block ``b`` draws its parameters and
data with the seed ``SeedSequence([seed, b])``, so replicate ``i`` is the same whatever
``reps`` is, and a run can be resumed or extended (its parts are written atomically to
``out/parts/``). Results: ``ranks.parquet`` (one row per replicate and parameter),
``sbc_summary.csv`` (uniformity tests per parameter), ``sbc.png`` (rank histograms with
the 99% band of a uniform histogram) and ``sbc.json`` (the settings).

Examples
--------
>>> from fitlab.sbc import run_sbc                                   # doctest: +SKIP
>>> res = run_sbc("bayes_binary", reps=500, workers=2, out="outputs/sbc/bayes_binary")
>>> res.summary[["parameter", "chi2_p", "ks_p"]]                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fitlab.errors import UsageError
from fitlab.store import atomic_write, atomic_write_text, clean_temporary

__all__ = ["SBC_DESIGNS", "BLOCK", "DESIGN_SEED", "SbcResult", "sbc_scenario", "sbc_design",
           "run_sbc", "uniformity", "rank_bins", "plot_ranks"]

#: replicates per block of prior draws (one seed each)
BLOCK = 25
#: the seed of the small trial whose design every replicate shares
DESIGN_SEED = 1
#: the small design of each model: changes to ``Scenario()``; others get DEFAULT_DESIGN
DEFAULT_DESIGN = {"size.units": 4, "size.clients_per_unit": 12.0,
                  "size.therapists_per_unit": 2}
SBC_DESIGNS: dict[str, dict[str, Any]] = {
    "bayes_binary": {**DEFAULT_DESIGN, "outcome": {"kind": "binary"}},
    "bayes_binary_nuts": {**DEFAULT_DESIGN, "outcome": {"kind": "binary"}},
    "bayes_cace": {**DEFAULT_DESIGN, "size.clients_per_unit": 16.0},
    "bayes_stepped_wedge": {**DEFAULT_DESIGN, "design.kind": "stepped_wedge",
                            "design.steps": 2},
    "bayes_stepped_wedge_nuts": {**DEFAULT_DESIGN, "design.kind": "stepped_wedge",
                                 "design.steps": 2},
}


@dataclass
class SbcResult:
    """Ranks, uniformity tests and where they were written."""

    model: str
    ranks: pd.DataFrame
    summary: pd.DataFrame
    draws: int
    bins: int
    out: Path | None
    seconds: float


def sbc_scenario(model: str, scenario=None):
    """The scenario of the small design (``scenario`` replaces the default one)."""
    import models  # noqa: F401  (importing the package registers every estimator)
    from models.base import ESTIMATORS
    from simulate.scenario import Scenario

    if scenario is not None:
        return scenario
    changes = SBC_DESIGNS.get(model)
    if changes is None:
        kinds = getattr(ESTIMATORS.get(model), "outcome_kinds", ("ors",))
        changes = {**DEFAULT_DESIGN, **({} if "ors" in kinds else {"outcome": {"kind": kinds[0]}})}
    return Scenario().replace(changes)


def sbc_design(scenario) -> pd.DataFrame:
    """The long table of the small trial whose design every replicate uses."""
    from simulate import simulate_trial

    return simulate_trial(scenario, DESIGN_SEED).data


# -- the work of one block (runs in a worker process) --------------------------------------
_CACHE: dict[str, Any] = {}


def _estimator(model: str, scenario, options: dict):
    key = json.dumps([model, scenario.hash(), options], sort_keys=True, default=str)
    if key not in _CACHE:
        from models import ESTIMATORS, get_estimator
        from models.plan import AnalysisPlan

        plan = AnalysisPlan.from_scenario(scenario)
        if ESTIMATORS[model].outcome_kinds == ("ors",):
            # data drawn from a Gaussian model's prior are not ORS scores: no 0-40 check
            plan = plan.replace(outcome=None)
        _CACHE[key] = get_estimator(model, plan, **options)
    return _CACHE[key]


def _block_seed(seed: int, block: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(block)]).generate_state(1)[0])


def run_block(task: dict) -> list[dict]:
    """Prior draws of one block, then fit its replicates; one row per replicate and name."""
    from fitlab.replicates import setup_worker
    from simulate.scenario import Scenario

    if task.get("worker"):
        setup_worker()
    sc = Scenario.from_dict(task["scenario"])
    est = _estimator(task["model"], sc, task["options"])
    gen = est if not task["generate_priors"] else _estimator(
        task["model"], sc, {**task["options"], "priors": task["generate_priors"]})
    template = est.prepare(sbc_design(sc))
    b, size = task["block"], task["block_size"]
    params, columns = gen.prior_predictive(template, size, _block_seed(task["seed"], b))
    rows = []
    for i in task["replicates"]:
        j = i - b * size
        data = template.assign(**{c: v[j] for c, v in columns.items()})
        t0 = time.perf_counter()
        base = {"replicate": int(i), "block": int(b)}
        try:
            fit = est.posterior(data) if hasattr(est, "posterior") else data
            post = est.posterior_draws(fit, task["draws"], seed=int(task["seed"]) + int(i))
            diag = getattr(getattr(fit, "estimate", None), "diagnostics", {}) or {}
            error = None
        except Exception as exc:  # recorded, never dropped
            post, diag, error = {}, {}, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        for name, truth in params.items():
            truth = float(truth[j])
            d = post.get(name)
            ok = d is not None and math.isfinite(truth)
            rows.append({**base, "parameter": name, "truth": truth,
                         "rank": int(np.sum(np.asarray(d) < truth)) if ok else -1,
                         "posterior_mean": float(np.mean(d)) if d is not None else math.nan,
                         "converged": bool(diag.get("converged", True)) and error is None,
                         "divergences": int(diag.get("divergences", 0) or 0),
                         "ess_bulk_min": float(diag.get("ess_bulk_min", math.nan)),
                         "fit_seconds": seconds, "error": error})
    return rows


# -- the driver -------------------------------------------------------------------------
def run_sbc(model: str, reps: int = 100, draws: int = 99, *, scenario=None,
            options: dict | None = None, generate_priors: dict | None = None,
            seed: int = 0, workers: int = 1, out: str | Path | None = None,
            progress: bool = True, bins: int | None = None) -> SbcResult:
    """Run (or resume) simulation-based calibration of one Bayesian estimator.

    Parameters
    ----------
    model : str
        A registered Bayesian estimator with ``prior_predictive`` and
        ``posterior_draws``.
    reps : int
        Replicates (prior draws, each simulated and fitted once).
    draws : int
        ``L``, the posterior draws each true value is ranked among (ranks ``0..L``).
    scenario : Scenario, optional
        The design's scenario (default: the model's small design, :data:`SBC_DESIGNS`).
    options : dict, optional
        Estimator options for the fits (e.g. sampler draws).
    generate_priors : dict, optional
        Prior scales for the *simulation* only (the option ``priors`` of the generating
        estimator): a deliberately wrong prior, which SBC should detect.
    seed : int
        Seeds the prior draws (by block) and the choice of posterior draws.
    workers : int
        Processes (each compiles the model once).
    out : path, optional
        Folder for the parts and results; ``None`` keeps everything in memory.
    progress : bool
        A progress bar over replicates.
    bins : int, optional
        Histogram bins (default :func:`rank_bins`).

    Returns
    -------
    SbcResult

    Raises
    ------
    UsageError
        Bad counts, an estimator without the SBC methods, or an ``out`` folder holding a
        run with other settings.
    """
    from models import ESTIMATORS

    t0 = time.perf_counter()
    for value, name in ((reps, "reps"), (draws, "draws"), (workers, "workers")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    cls = ESTIMATORS.get(model)
    if cls is None or not all(hasattr(cls, m) for m in ("prior_predictive", "posterior_draws")):
        known = sorted(n for n, c in ESTIMATORS.items() if hasattr(c, "prior_predictive"))
        raise UsageError(f"{model!r} is not a Bayesian estimator with prior_predictive and "
                         f"posterior_draws; choose one of {known}")
    sc = sbc_scenario(model, scenario)
    options = dict(options or {})
    # the estimator's effective options (its defaults included): a run resumed after the
    # defaults changed must not mix two samplers
    from models import get_estimator

    effective = json.loads(json.dumps(get_estimator(model, sc, **options).options,
                                      default=str))
    settings = {"model": model, "draws": draws, "seed": seed, "options": effective,
                "generate_priors": generate_priors or None, "scenario": sc.to_dict(),
                "block": BLOCK, "design_seed": DESIGN_SEED}
    done: dict[int, list[dict]] = {}
    root = Path(out) if out is not None else None
    if root is not None:
        done = _resume(root, settings)
    todo = [i for i in range(reps) if i not in done]
    tasks = []
    for b in sorted({i // BLOCK for i in todo}):
        tasks.append({"model": model, "scenario": sc.to_dict(), "options": options,
                      "generate_priors": generate_priors or None, "block": b,
                      "block_size": BLOCK, "seed": seed, "draws": draws,
                      "replicates": [i for i in todo if i // BLOCK == b],
                      "worker": workers > 1})
    rows = [r for i in range(reps) if i in done for r in done[i]]
    for task, part in _execute(tasks, workers, progress, len(todo)):
        rows += part
        if root is not None:
            frame = pd.DataFrame(part)
            atomic_write(root / "parts" / f"block-{task['block']:05d}-"
                         f"{task['replicates'][0]:06d}.parquet",
                         lambda tmp, f=frame: f.to_parquet(tmp, index=False))
    ranks = pd.DataFrame(rows)
    if len(ranks):
        ranks = ranks[ranks["replicate"] < reps].sort_values(["parameter", "replicate"])
        ranks = ranks.reset_index(drop=True)
    nbins = bins or rank_bins(draws, reps)
    summary = uniformity(ranks, draws, nbins, seed=seed)
    res = SbcResult(model, ranks, summary, draws, nbins, root, time.perf_counter() - t0)
    if root is not None:
        _write(res, settings)
    return res


def _resume(root: Path, settings: dict) -> dict[int, list[dict]]:
    """Rows already in ``root/parts`` by replicate (refusing other settings)."""
    clean_temporary(root)
    clean_temporary(root / "parts")
    old = root / "sbc.json"
    if old.is_file():
        before = json.loads(old.read_text()).get("settings")
        if before is not None and before != json.loads(json.dumps(settings)):
            raise UsageError(f"{root} holds an SBC run with other settings (see "
                             f"{old}); choose another --out or remove it")
    atomic_write_text(old, json.dumps({"settings": settings}, indent=1))
    done: dict[int, list[dict]] = {}
    for p in sorted((root / "parts").glob("block-*.parquet")):
        for r in pd.read_parquet(p).to_dict("records"):
            done.setdefault(int(r["replicate"]), []).append(r)
    return done


def _execute(tasks: list[dict], workers: int, progress: bool, total: int):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="rep", desc="sbc", disable=not progress, file=sys.stderr)
    try:
        if workers <= 1:
            for t in tasks:
                rows = run_block(t)
                bar.update(len(t["replicates"]))
                yield t, rows
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(run_block, t): t for t in tasks}
            for fut in as_completed(futures):
                t = futures[fut]
                bar.update(len(t["replicates"]))
                yield t, fut.result()
    finally:
        bar.close()


def _write(res: SbcResult, settings: dict) -> None:
    root = res.out
    atomic_write(root / "ranks.parquet", lambda tmp: res.ranks.to_parquet(tmp, index=False))
    atomic_write(root / "sbc_summary.csv", lambda tmp: res.summary.to_csv(tmp, index=False))
    fig = plot_ranks(res.ranks, res.draws, res.bins, title=_title(res, settings))
    atomic_write(root / "sbc.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    atomic_write_text(root / "sbc.json", json.dumps(
        {"settings": settings, "reps": int(res.ranks["replicate"].nunique())
         if len(res.ranks) else 0, "bins": res.bins, "seconds": res.seconds,
         "summary": res.summary.to_dict("records")}, indent=1, default=float))


def _title(res: SbcResult, settings: dict) -> str:
    wrong = settings.get("generate_priors")
    n = res.ranks["replicate"].nunique() if len(res.ranks) else 0
    return (f"SBC of {res.model}: {n} replicates, L = {res.draws}"
            + (f"; data from priors {wrong}" if wrong else ""))


# -- uniformity ---------------------------------------------------------------------------
def rank_bins(draws: int, reps: int) -> int:
    """Bins for ranks ``0..draws``: the largest divisor of ``draws + 1`` up to 20 that
    leaves at least 5 replicates per bin (at least 2 bins)."""
    values = draws + 1
    ok = [b for b in range(2, min(20, values) + 1) if values % b == 0 and reps / b >= 5]
    return max(ok) if ok else 2 if values % 2 == 0 else 1


def _usable(ranks: pd.DataFrame) -> pd.DataFrame:
    if not len(ranks):
        return ranks
    return ranks[(ranks["rank"] >= 0) & ranks["error"].isna()]


def uniformity(ranks: pd.DataFrame, draws: int, bins: int, seed: int = 0) -> pd.DataFrame:
    """Per parameter: a chi-square test on ``bins`` equal rank bins and a KS test.

    The KS test compares ``(rank + U) / (draws + 1)``, ``U ~ Uniform(0, 1)`` (seeded), with
    the uniform distribution: exact for uniform ranks. ``outside_band`` counts bins outside
    the 99% band of a uniform histogram (binomial quantiles, per bin). Failed fits are left
    out (``n`` says how many ranks count); ``converged`` is the share that converged.
    """
    from scipy import stats

    cols = ["parameter", "n", "bins", "chi2", "chi2_p", "ks", "ks_p", "outside_band",
            "mean_rank", "converged", "failed"]
    if not len(ranks):
        return pd.DataFrame(columns=cols)
    out = []
    rng = np.random.default_rng(seed)
    for name, g in ranks.groupby("parameter", sort=False):
        ok = _usable(g)
        r = ok["rank"].to_numpy(int)
        n = len(r)
        counts = np.bincount(r * bins // (draws + 1), minlength=bins)
        expect = n / bins
        chi2 = float(((counts - expect) ** 2 / expect).sum()) if n else math.nan
        chi2_p = float(stats.chi2.sf(chi2, bins - 1)) if n and bins > 1 else math.nan
        u = (r + rng.uniform(size=n)) / (draws + 1)
        ks = stats.kstest(u, "uniform") if n else None
        lo, hi = stats.binom.ppf([0.005, 0.995], max(n, 1), 1 / bins)
        out.append({"parameter": name, "n": n, "bins": bins, "chi2": chi2, "chi2_p": chi2_p,
                    "ks": float(ks.statistic) if ks else math.nan,
                    "ks_p": float(ks.pvalue) if ks else math.nan,
                    "outside_band": int(((counts < lo) | (counts > hi)).sum()) if n else 0,
                    "mean_rank": float(r.mean()) / draws if n else math.nan,
                    "converged": float(ok["converged"].mean()) if n else math.nan,
                    "failed": int(len(g) - n)})
    return pd.DataFrame(out, columns=cols)


def plot_ranks(ranks: pd.DataFrame, draws: int, bins: int, title: str = ""):
    """Rank histograms, one panel per parameter, with the 99% band of uniform ranks."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy import stats

    names = list(dict.fromkeys(ranks["parameter"])) if len(ranks) else []
    ncol = min(3, max(1, len(names)))
    nrow = max(1, math.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
    summary = uniformity(ranks, draws, bins)
    for ax, name in zip(axes.ravel(), names):
        r = _usable(ranks[ranks["parameter"] == name])["rank"].to_numpy(int)
        n = len(r)
        counts = np.bincount(r * bins // (draws + 1), minlength=bins)
        lo, hi = stats.binom.ppf([0.005, 0.995], max(n, 1), 1 / bins)
        ax.axhspan(lo, hi, color="grey", alpha=0.25, lw=0, label="99% band")
        ax.axhline(n / bins, color="grey", lw=1)
        ax.bar(np.arange(bins), counts, width=0.9, color="C0")
        s = summary[summary["parameter"] == name].iloc[0]
        ax.set_title(f"{name}\nchi2 p = {s['chi2_p']:.3g}, KS p = {s['ks_p']:.3g}",
                     fontsize=9)
        ax.set_xticks([0, bins - 1], ["0", str(draws)])
        ax.set_xlabel("rank (bins)")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
