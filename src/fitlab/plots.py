"""Pictures and table helpers for the design-comparison report (notebook 04).

They read the grid's ``summary.csv`` (one row per scenario and estimator, see
:func:`fitlab.batch.summary_table`) and return matplotlib figures or DataFrames.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["DESIGN_ORDER", "pm", "varying", "condition_label", "main_estimator", "power_panels",
           "analytic_vs_simulated", "bias_coverage_panels", "DECISION_COLUMNS", "decision_table",
           "plot_bayes_vs_freq"]

DESIGN_ORDER = ("individual", "stepped_wedge", "cluster")


def pm(value, mcse, digits: int = 3) -> str:
    """``'value ± MCSE'`` for a table cell ('' for a missing value)."""
    if pd.isna(value):
        return ""
    return f"{value:.{digits}f} ± {mcse:.{digits}f}" if pd.notna(mcse) else f"{value:.{digits}f}"


def varying(df: pd.DataFrame, candidates) -> list[str]:
    """The candidate columns of ``df`` that take more than one value."""
    return [c for c in candidates if c in df and df[c].nunique(dropna=False) > 1]


def condition_label(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One readable label per row from the varying columns, e.g. ``attrition 0.1 · d 0.5``."""
    short = {"attrition_rate": "attrition", "dropout_rate": "dropout", "effect_d": "d",
             "clients_per_unit": "clients/unit"}
    if not columns:
        return pd.Series("all", index=df.index)
    parts = [df[c].map(lambda v, c=c: f"{short.get(c, c)} {v:g}" if isinstance(v, float)
                       else f"{short.get(c, c)} {v}") for c in columns]
    out = parts[0]
    for p in parts[1:]:
        out = out + " · " + p
    return out


def main_estimator(summary: pd.DataFrame, family: str | None = None) -> dict[str, str]:
    """Per design, the estimator run on the most scenarios (the grid's main analysis).

    On a tie a frequentist estimator comes first. ``family="bayes"`` (or ``"freq"``)
    picks among the Bayesian (frequentist) estimators only.
    """
    counts = summary.groupby(["design", "estimator"]).size().rename("n").reset_index()
    counts["bayes"] = counts["estimator"].str.startswith("bayes")
    if family is not None:
        counts = counts[counts["bayes"] == (family == "bayes")]
    counts = counts.sort_values(["design", "n", "bayes"], ascending=[True, False, True])
    return counts.drop_duplicates("design").set_index("design")["estimator"].to_dict()


def power_panels(summary: pd.DataFrame, x: str, hue: list[str], title: str,
                 analytic: str = "analytic_power", target: float | None = 0.8,
                 family: str | None = None):
    """Power against ``x``: one panel per design, side by side on a shared axis.

    Each panel draws its design's main (fast) estimator, one line per combination of the
    ``hue`` columns, with ±2 MCSE error bars; the ``analytic`` column dashed in the same
    colour. Estimators run on fewer scenarios (a confirmation) are drawn as black
    diamonds; ``family`` ("bayes" or "freq") draws that family's main estimator instead
    of the overall one. With ``target``, the target power is a grey line, and for each line
    the fitted power curve (:func:`fitlab.answers.crossing`) marks where it crosses the
    target (a triangle with the 95% interval), or says by an arrow at the edge that it
    crosses beyond the sizes simulated.
    """
    import matplotlib.pyplot as plt

    designs = [d for d in DESIGN_ORDER if d in set(summary["design"])]
    main = main_estimator(summary, family)
    designs = [d for d in designs if d in main]
    fig, axes = plt.subplots(1, len(designs), squeeze=False, sharey=True,
                             figsize=(4.4 * len(designs), 3.8))
    df = summary.assign(_hue=condition_label(summary, hue))
    levels = sorted(df["_hue"].unique())
    for j, design in enumerate(designs):
        ax = axes[0][j]
        d = df[df["design"] == design]
        fast = d[d["estimator"] == main[design]]
        for k, level in enumerate(levels):
            g = fast[fast["_hue"] == level].sort_values(x)
            if g.empty:
                continue
            ax.errorbar(g[x], g["power"], yerr=2 * g["power_mcse"], marker="o",
                        color=f"C{k}", label=level, capsize=3)
            if analytic in g and g[analytic].notna().any():
                ax.plot(g[x], g[analytic], ls="--", color=f"C{k}", alpha=0.8)
            if target is not None:
                _mark_crossing(ax, g, x, target, f"C{k}")
        for est, g in d[d["estimator"] != main[design]].groupby("estimator"):
            if g["scenario_id"].nunique() >= fast["scenario_id"].nunique():
                continue  # a second main analysis, drawn in its own panels
            ax.errorbar(g[x], g["power"], yerr=2 * g["power_mcse"], fmt="D", color="k",
                        ms=6, capsize=3, label=f"{est} ({', '.join(g['_hue'].unique())})")
        ax.axhline(0.8 if target is None else target, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, 1)
        ax.set_title(f"{design} · {main[design]}", fontsize=10)
        ax.set_xlabel(x.replace("_", " "))
        if j == 0:
            ax.set_ylabel("power")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _mark_crossing(ax, g: pd.DataFrame, x: str, target: float, colour: str) -> None:
    """The fitted curve through ``g``'s points and where it crosses ``target``."""
    import numpy as np

    from fitlab.answers import crossing

    if g[x].nunique() < 2 or g[x].min() <= 0:
        return
    cr = crossing(g, x, target)
    grid = np.geomspace(g[x].min(), g[x].max(), 60)
    ax.plot(grid, cr["curve"].power(grid), color=colour, lw=0.8, alpha=0.6)
    if cr["extrapolated"] is None:
        ax.errorbar([cr["size"]], [target], xerr=[[cr["size"] - cr["lower"]],
                                                  [cr["upper"] - cr["size"]]],
                    fmt="v", color=colour, ms=8, capsize=2, lw=1)
    elif cr["extrapolated"] == "above":
        text = f"{target:.0%} at ≈ {cr['size']:.0f} →" if cr["size"] < 4 * g[x].max() \
            else f"{target:.0%} far beyond →"
        ax.annotate(text, xy=(g[x].max(), target), fontsize=7, color=colour, ha="right",
                    xytext=(0, 3 + 9 * int(colour[1:])), textcoords="offset points")


def analytic_vs_simulated(summary: pd.DataFrame):
    """Simulated power (±2 MCSE) against analytic power, one colour per design."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ok = summary[summary["analytic_power"].notna()]
    for k, design in enumerate(d for d in DESIGN_ORDER if d in set(ok["design"])):
        d = ok[ok["design"] == design]
        ax.errorbar(d["analytic_power"], d["power"], yerr=2 * d["power_mcse"], fmt="o",
                    color=f"C{k}", label=design, alpha=0.8)
    ax.plot([0, 1], [0, 1], color="grey", lw=1)
    ax.set_xlabel("analytic power")
    ax.set_ylabel("simulated power")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    if len(ok):
        ax.legend()
    else:
        ax.set_title("no analytic power available")
    return fig


def bias_coverage_panels(table: pd.DataFrame, title: str = ""):
    """Bias and coverage (±2 MCSE) of each method across the compliance settings.

    ``table`` has one row per setting and method (:func:`fitlab.answers.cace_study`):
    ``uptake``, ``fidelity``, ``method``, ``bias``, ``bias_mcse``, ``coverage``,
    ``coverage_mcse``. Bias is against each method's own estimand (ITT or CACE); the
    nominal 95% coverage is a grey line.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    t = table.assign(setting="uptake " + table["uptake"].map("{:.1f}".format)
                     + "\nfidelity " + table["fidelity"].astype(str))
    settings = list(dict.fromkeys(t["setting"]))
    methods = list(dict.fromkeys(t["method"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.55 * len(settings) * len(methods) / 2),
                             sharey=True)
    for k, m in enumerate(methods):
        d = t[t["method"] == m]
        y = np.array([settings.index(s) for s in d["setting"]]) + 0.8 * (k / max(len(methods) - 1, 1) - 0.5) * 0.8
        axes[0].errorbar(d["bias"], y, xerr=2 * d["bias_mcse"], fmt="o", color=f"C{k}",
                         label=m, capsize=2, ms=5)
        axes[1].errorbar(d["coverage"], y, xerr=2 * d["coverage_mcse"], fmt="o",
                         color=f"C{k}", capsize=2, ms=5)
    axes[0].axvline(0, color="grey", lw=1)
    axes[1].axvline(0.95, color="grey", lw=1, ls=":")
    axes[0].set_yticks(range(len(settings)), settings, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("bias (estimate − own estimand), ±2 MCSE")
    axes[1].set_xlabel("coverage of the 95% interval, ±2 MCSE")
    axes[1].set_xlim(max(0.0, float(t["coverage"].min()) - 0.1), 1.0)
    axes[0].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


#: Decision diagnosands of the report's table: summary column -> heading.
DECISION_COLUMNS = {
    "power": "power (test)",
    "bayes_power": "power (P(effect>0) > threshold)",
    "type_i_error": "type I error (test)",
    "bayes_type_i_error": "type I error (Bayes rule)",
    "assurance": "assurance (test)",
    "bayes_assurance": "assurance (Bayes rule)",
    "interval_width": "mean 95% width",
    "width_below_target": "P(width < target)",
    "coverage": "coverage",
}


def decision_table(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """One row per (scenario, estimator): the decision diagnosands as ``value ± MCSE``.

    Columns present in ``summary`` only (a grid without assurance replicates has no
    assurance columns; a frequentist estimator shows blanks for the Bayes rule). The
    scenario is labelled by its varying factors, and the rule's threshold and target
    width are shown when they vary or are set.
    """
    keys = [c for c in ("name", "design", "estimator") if c in summary]
    label = condition_label(summary, varying(summary, ("clients_per_unit", "attrition_rate",
                                                       "dropout_rate", "effect_d", "units")))
    out = summary[keys].copy()
    out.insert(len(keys) - 1 if "estimator" in keys else len(keys), "condition", label)
    for col in ("decision_threshold", "target_width", "design_prior_mean", "design_prior_sd"):
        if col in summary and summary[col].notna().any():
            out[col] = summary[col]
    for col, head in DECISION_COLUMNS.items():
        if col in summary and summary[col].notna().any():
            mcse = summary.get(f"{col}_mcse", pd.Series(float("nan"), index=summary.index))
            out[head] = [pm(v, e, digits) for v, e in zip(summary[col], mcse)]
    return out.reset_index(drop=True)


def plot_bayes_vs_freq(summary: pd.DataFrame, reference: str | None = None):
    """Bayesian decisions against the frequentist test, scenario by scenario.

    Three panels (power, type I error, coverage), ±2 MCSE bars both ways. Each Bayesian
    estimator (one with ``bayes_power``) is paired with the frequentist estimator of the
    same scenario (``reference``, default the design's main estimator when it is not
    Bayesian), x the test's rate, y the Bayes rule's (coverage: the credible intervals'
    against the confidence intervals'). Without a frequentist partner the Bayesian
    estimator's own test decision is the x value.
    """
    import matplotlib.pyplot as plt

    panels = [("power", "bayes_power", "power"),
              ("type_i_error", "bayes_type_i_error", "type I error"),
              ("coverage", "coverage", "coverage")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    bayes = summary[summary.get("bayes_power", pd.Series(dtype=float)).notna()] \
        if "bayes_power" in summary else summary.iloc[:0]
    freq = summary.drop(bayes.index)
    for ax, (xcol, ycol, title) in zip(axes, panels):
        for k, (est, b) in enumerate(bayes.groupby("estimator")):
            if reference is not None:
                ref = freq[freq["estimator"] == reference]
            else:
                ref = freq
            pairs = b.merge(ref, on="scenario_id", suffixes=("", "_ref"), how="left")
            xname = f"{xcol}_ref" if f"{xcol}_ref" in pairs and pairs[f"{xcol}_ref"].notna().any() \
                else xcol
            if xname not in pairs or ycol not in pairs:
                continue
            ok = pairs[pairs[xname].notna() & pairs[ycol].notna()]
            if ok.empty:
                continue
            partner = "own test" if xname == xcol else ", ".join(
                sorted(set(ok.get("estimator_ref", pd.Series(["?"])).dropna())))
            ax.errorbar(ok[xname], ok[ycol], xerr=2 * ok.get(f"{xname}_mcse", 0),
                        yerr=2 * ok.get(f"{ycol}_mcse", 0), fmt="o", color=f"C{k}",
                        capsize=2, label=f"{est} vs {partner}")
        lims = (0, 1) if xcol != "type_i_error" else (0, 0.2)
        ax.plot(lims, lims, color="grey", lw=1)
        if xcol == "type_i_error":
            ax.axhline(0.025, color="grey", lw=0.8, ls=":")
        ax.set_xlim(*lims)
        ax.set_ylim(*lims)
        ax.set_title(title)
        ax.set_xlabel("frequentist")
        ax.set_ylabel("Bayesian")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
