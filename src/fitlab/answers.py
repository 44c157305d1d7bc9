"""Answers to the design question, from a grid's replicates and the analytic solvers.

The report (notebook 04) opens with, for each design: the power at the planned size, the
smallest effect detectable with 80% power there (MDE), and the size needed for 80% power,
each by simulation (from the grid's power curve, :mod:`fitlab.solve`) and analytically
(``simulate.power.solve_size`` / ``simulate.power.mde`` where they exist). Notebook 03's
replicate study of ITT, per-protocol and CACE estimators as uptake and fidelity vary is
built and summarised here too (:func:`cace_study`).

Simulated answers
-----------------
- *size for the target*: the power curve ``Phi(exp(a + b log n) - c)`` fitted to the
  grid's points along clients per unit (:func:`fitlab.solve.fit_power_curve`), solved for
  the target, with its delta-method interval. A crossing beyond the sizes simulated is an
  extrapolation and is marked so (``>``/``<`` the range, with the extrapolated value).
- *MDE*: at the planned size, power against the effect ``d`` with the noncentrality
  proportional to ``d`` (the same curve with ``b = 1``), fitted to the grid's effect sizes
  and solved for the target. ``d`` is the scenario's full FIT effect, before the dilution
  by uptake and fidelity that the ITT estimand carries.

Examples
--------
>>> import pandas as pd
>>> pts = pd.DataFrame({"clients_per_unit": [10, 20, 40, 80], "power": [0.3, 0.5, 0.75, 0.95],
...                     "reps": 150})
>>> round(crossing(pts, "clients_per_unit")["size"])
46
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["crossing", "effect_crossing", "design_answers", "planned_sizes",
           "answer_cell", "answers_table", "cace_study_jobs", "cace_study",
           "cace_confirmation", "CACE_METHODS"]

def _curve(x, power, reps, alpha, sides, slope=None):
    from fitlab.solve import fit_power_curve

    x, p, m = (np.asarray(v, dtype=float) for v in (x, power, reps))
    return fit_power_curve(x, np.round(p * m), m, alpha=alpha, sides=sides, slope=slope)


def crossing(points: pd.DataFrame, x: str, target: float = 0.8, *, alpha: float = 0.05,
             sides: int = 2) -> dict[str, Any]:
    """Where the power curve fitted to ``points`` (columns ``x``, ``power``, ``reps``)
    reaches ``target``.

    Returns
    -------
    dict
        ``size``, ``lower``, ``upper``, ``extrapolated`` (``"above"``, ``"below"`` or
        ``None``), ``curve`` (the :class:`~fitlab.solve.PowerCurve`); ``size`` NaN with
        fewer than two sizes.
    """
    pts = points.dropna(subset=[x, "power", "reps"])
    if pts[x].nunique() < 2:
        return {"size": math.nan, "lower": math.nan, "upper": math.nan,
                "extrapolated": None, "curve": None}
    curve = _curve(pts[x], pts["power"], pts["reps"], alpha, sides)
    s = curve.solve(target)
    lo, hi = float(pts[x].min()), float(pts[x].max())
    where = "above" if s["size"] > hi else "below" if s["size"] < lo else None
    return {**s, "extrapolated": where, "curve": curve}


def effect_crossing(points: pd.DataFrame, d: str = "effect_d", target: float = 0.8, *,
                    alpha: float = 0.05, sides: int = 2) -> dict[str, Any]:
    """The effect ``d`` detectable with power ``target``: power against ``d`` at one size,
    noncentrality proportional to ``d`` (see the module docstring)."""
    pts = points.dropna(subset=[d, "power", "reps"])
    pts = pts[pts[d] > 0]
    if pts.empty:
        return {"size": math.nan, "lower": math.nan, "upper": math.nan, "extrapolated": None}
    curve = _curve(pts[d], pts["power"], pts["reps"], alpha, sides, slope=1.0)
    s = curve.solve(target)
    where = "above" if s["size"] > pts[d].max() else "below" if s["size"] < pts[d].min() else None
    return {**s, "extrapolated": where, "curve": curve}


def answer_cell(res: dict, digits: int = 0) -> str:
    """``'49 [41, 58]'``; an extrapolated crossing as ``'> 80 (≈ 140, extrapolated)'``,
    and as ``'> 80 (far beyond)'`` past four times the sizes simulated."""
    if res is None or not np.isfinite(res.get("size", math.nan)):
        return ""
    f = f"{{:.{digits}f}}"
    if res.get("extrapolated") and res.get("bound") is not None:
        above = res["extrapolated"] == "above"
        bound = res["bound"]
        if (res["size"] > 4 * bound) if above else (res["size"] < bound / 4):
            return f"{'>' if above else '<'} {bound:g} (far beyond the sizes simulated)"
        return f"{'>' if above else '<'} {bound:g} (≈ {f.format(res['size'])}, extrapolated)"
    return f"{f.format(res['size'])} [{f.format(res['lower'])}, {f.format(res['upper'])}]"


def planned_sizes(results_dir: str | Path, x: str = "clients_per_unit") -> dict[str, float]:
    """The planned value of ``x`` of each base scenario of a grid (by base name).

    Read from the base scenarios named in ``grid.json`` (or the single scenario's
    manifest); empty where they cannot be found (then :func:`design_answers` takes the
    size simulated nearest the middle of the grid).
    """
    from fitlab import manifest as mf
    from fitlab.grid import resolve_scenario
    from fitlab.study import notebooks_dir

    folder = Path(results_dir)
    spec = mf.read_json(folder / "grid.json") or {}
    bases = spec.get("base", [])
    bases = bases if isinstance(bases, list) else [bases]
    params = notebooks_dir().parent / "params"
    out: dict[str, float] = {}
    for b in bases:
        try:
            sc = resolve_scenario(b, params)
        except Exception:  # a base moved since the run: no planned size, not an error
            continue
        out[sc.name] = float(getattr(sc.size, x))
    if not out and (folder / "manifest.json").is_file():
        m = mf.read_json(folder / "manifest.json") or {}
        size = (m.get("scenario") or {}).get("size") or {}
        if x in size:
            out[m["scenario"].get("name", "scenario")] = float(size[x])
    return out


def _analytic(scenario, target: float, x: str) -> dict[str, float]:
    """The analytic answers of ``simulate.power`` for one scenario (NaN where absent)."""
    from fitlab.solve import analytic_answer, answer_value

    field = f"size.{x}"
    size = analytic_answer(scenario, field, target)
    out = {f"size_{k}": size.get(k, math.nan) for k in ("fitted", "textbook")}
    try:
        from simulate.power import mde
    except ImportError:
        mde = None
    for method in ("fitted", "textbook"):
        try:
            out[f"mde_{method}"] = answer_value(mde(scenario, target=target, method=method), "d")
        except Exception:  # no analytic MDE for this design or method: left empty
            out[f"mde_{method}"] = math.nan
    return out


def design_answers(results_dir: str | Path, target: float = 0.8,
                   x: str = "clients_per_unit") -> pd.DataFrame:
    """One row per design, base and condition (attrition, effect ``d``): power at the
    planned size, the size needed for ``target`` power and the MDE there, simulated (with
    MCSE or interval) and analytic.

    Parameters
    ----------
    results_dir : path
        A grid folder written by ``fitlab batch`` (``summary.csv``, scenario folders).
    target : float
        The power wanted.
    x : str
        The size column of the grid's power curves.

    Returns
    -------
    DataFrame
        Columns ``design``, ``base``, the condition columns, ``estimator``, ``planned``,
        ``power``, ``power_mcse``, ``analytic_power``, ``size``, ``size_lower``,
        ``size_upper``, ``size_extrapolated``, ``mde``, ``mde_lower``, ``mde_upper``, and
        ``size_fitted``, ``size_textbook``, ``mde_fitted``, ``mde_textbook`` (analytic;
        NaN where ``simulate.power`` has no solver).
    """
    from fitlab.plots import main_estimator
    from fitlab.study import jobs_from_dir

    folder = Path(results_dir)
    summary = pd.read_csv(folder / "summary.csv")
    jobs = {j.scenario_id: j.scenario for j in jobs_from_dir(folder)}
    planned = planned_sizes(folder, x)
    summary["base"] = summary["f_base"] if "f_base" in summary else summary["name"]
    main = main_estimator(summary)
    summary = summary[summary["estimator"] == summary["design"].map(main)]
    cond = [c for c in ("attrition_rate", "dropout_rate", "units", "uptake")
            if c in summary and summary[c].nunique() > 1]
    has_d = "effect_d" in summary
    rows = []
    for key, g in summary.groupby(["design", "base", *cond], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(["design", "base", *cond], key))
        sc0 = jobs.get(g["scenario_id"].iloc[0])
        alpha = sc0.analysis.alpha if sc0 is not None else 0.05
        sides = getattr(sc0.analysis, "sides", 2) if sc0 is not None else 2
        sizes = np.sort(g[x].unique())
        # no planned size on record: the size simulated nearest the middle (the lower of two)
        plan = planned.get(base["base"], float(sizes[np.argmin(np.abs(sizes - np.median(sizes)))]))
        at_plan = g[np.isclose(g[x], plan)]
        mde = effect_crossing(at_plan, target=target, alpha=alpha, sides=sides) if has_d \
            else {"size": math.nan, "lower": math.nan, "upper": math.nan}
        for d, gd in (g.groupby("effect_d") if has_d else [(None, g)]):
            row = {**base, "effect_d": d, "estimator": gd["estimator"].iloc[0],
                   "planned": plan}
            here = gd[np.isclose(gd[x], plan)]
            r0 = here.iloc[0] if len(here) else None
            row["power"] = r0["power"] if r0 is not None else math.nan
            row["power_mcse"] = r0["power_mcse"] if r0 is not None else math.nan
            row["analytic_power"] = r0.get("analytic_power", math.nan) if r0 is not None \
                else math.nan
            cr = crossing(gd, x, target, alpha=alpha, sides=sides)
            row.update(size=cr["size"], size_lower=cr["lower"], size_upper=cr["upper"],
                       size_extrapolated=cr["extrapolated"],
                       size_bound=gd[x].max() if cr["extrapolated"] == "above" else gd[x].min(),
                       mde=mde["size"], mde_lower=mde["lower"], mde_upper=mde["upper"])
            sc = jobs.get(r0["scenario_id"]) if r0 is not None else None
            row.update(_analytic(sc, target, x) if sc is not None else {})
            rows.append(row)
    return pd.DataFrame(rows)


def answers_table(answers: pd.DataFrame, design: str, target: float = 0.8) -> pd.DataFrame:
    """The readable table of one design: one row per condition, simulated and analytic."""
    from fitlab.plots import pm

    a = answers[answers["design"] == design]
    pct = f"{target:.0%}"
    out = pd.DataFrame(index=a.index)
    out["base"] = a["base"]
    for c in ("attrition_rate", "dropout_rate", "units", "uptake"):
        if c in a:
            out[c.replace("_", " ")] = a[c]
    out["effect d"] = a["effect_d"]
    out["planned clients/unit"] = a["planned"]
    out["power at planned (sim ± MCSE)"] = [pm(v, s) for v, s in zip(a["power"], a["power_mcse"])]
    out["power at planned (analytic)"] = a["analytic_power"].round(3)
    out[f"clients/unit for {pct} (sim [95% CI])"] = [
        answer_cell({"size": r.size, "lower": r.size_lower, "upper": r.size_upper,
                     "extrapolated": r.size_extrapolated, "bound": r.size_bound})
        for r in a.itertuples()]
    for m in ("fitted", "textbook"):
        col = f"size_{m}"
        if col in a and a[col].notna().any():
            out[f"clients/unit for {pct} (analytic, {m})"] = a[col].round(0)
    out[f"MDE d at planned, {pct} (sim [95% CI])"] = [
        answer_cell({"size": r.mde, "lower": r.mde_lower, "upper": r.mde_upper}, 2)
        for r in a.itertuples()]
    for m in ("fitted", "textbook"):
        col = f"mde_{m}"
        if col in a and a[col].notna().any():
            out[f"MDE d (analytic, {m})"] = a[col].round(2)
    return out.reset_index(drop=True)


# -- notebook 03: ITT, per-protocol and CACE over replicates ----------------------------
#: The estimators of the compliance study and what each targets.
CACE_METHODS = {"iv_cace": "CACE (IV)", "per_protocol": "per-protocol",
                "bayes_cace": "CACE (Bayes)"}


def cace_study_jobs(base, uptakes, fidelity_multipliers, complier_shift: float, reps: int,
                    *, itt: str | None = None, bayes_reps: int = 0,
                    bayes_where: list[dict] | None = None):
    """The jobs of the compliance study: uptake x fidelity settings of ``base``.

    Each setting runs the fast ITT estimator (``itt``; default the design's fast one),
    ``iv_cace`` and ``per_protocol`` on ``reps`` replicates, and ``bayes_cace`` on
    ``bayes_reps`` replicates of the settings matched by ``bayes_where`` (all when None).
    Every setting is validated by the scenario schema.
    """
    from fitlab.grid import expand_grid
    from models.defaults import default_estimators

    itt = itt or default_estimators(base)[0]
    spec: dict[str, Any] = {
        "name": "cace_study", "base": {**base.to_dict(),
                                       "compliance": {**base.compliance.model_dump(),
                                                      "complier_shift": float(complier_shift)}},
        "factors": {"compliance.uptake": [float(u) for u in uptakes],
                    "compliance.fidelity_multipliers": [list(map(float, m))
                                                        for m in fidelity_multipliers]},
        "reps": int(reps), "estimators": [itt, "iv_cace", "per_protocol"],
        "type_i_error": False,
    }
    if bayes_reps:
        spec["confirm"] = {"estimators": ["bayes_cace"], "reps": int(bayes_reps),
                           "where": bayes_where or "all"}
    return expand_grid(spec, source="compliance study")


def cace_study(jobs, output_dir: str | Path, *, workers: int = 1,
               progress: bool = False) -> pd.DataFrame:
    """Run (or resume) the compliance study's jobs and return one row per setting and
    estimator: bias, coverage and power with their MCSEs, against each estimator's own
    estimand (ITT for the ITT estimator, CACE for the others).

    The replicates live in ``output_dir/replicates/``; a second call reuses them.
    """
    from fitlab.batch import run_jobs, summary_table

    root = Path(output_dir) / "replicates"
    run_jobs(jobs, root, workers=workers, progress=progress)
    s = summary_table(jobs, root)
    s["fidelity"] = s["f_compliance.fidelity_multipliers"].map(
        lambda m: "/".join(f"{v:g}" for v in m))
    s["method"] = s["estimator"].map(lambda e: CACE_METHODS.get(e, f"ITT ({e})"))
    keep = ["uptake", "fidelity", "method", "estimator", "estimand", "reps", "mean_truth",
            "bias", "bias_mcse", "coverage", "coverage_mcse", "power", "power_mcse",
            "empirical_se", "failed", "not_converged"]
    return s[[c for c in keep if c in s]].sort_values(["uptake", "fidelity", "method"],
                                                       ignore_index=True)


def cace_confirmation(jobs, output_dir: str | Path, confirm: str = "bayes_cace",
                      against: str = "iv_cace") -> pd.DataFrame:
    """Trial by trial, the confirming estimator next to ``against`` and the truth.

    A handful of Bayesian fits cannot show a bias by themselves; on the same simulated
    trials as the IV estimate they show whether the two agree. One row per replicate
    where ``confirm`` ran: setting, replicate, truth, both estimates and the confirming
    fit's interval and convergence.
    """
    from fitlab.store import ScenarioStore

    root = Path(output_dir) / "replicates"
    rows = []
    for job in jobs:
        if confirm not in job.plan.get("effect", {}):
            continue
        t = ScenarioStore(root / job.scenario_id).table()
        t = t[(t["role"] == "effect") & t["estimator"].isin([confirm, against])]
        c = t[t["estimator"] == confirm].set_index("replicate")
        a = t[t["estimator"] == against].set_index("replicate")
        sc = job.scenario
        for r, row in c.iterrows():
            rows.append({"uptake": sc.compliance.uptake,
                         "fidelity": "/".join(f"{v:g}" for v in sc.compliance.fidelity_multipliers),
                         "replicate": int(r), "truth": row["truth"],
                         confirm: row["estimate"], f"{confirm} lower": row["lower"],
                         f"{confirm} upper": row["upper"],
                         "converged": bool(row["converged"]),
                         against: a["estimate"].get(r, math.nan)})
    return pd.DataFrame(rows)
