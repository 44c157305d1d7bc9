"""The prediction study for ``fitlab predict`` and notebook 05: run it on a scenario or a
data file, write its results, and draw them.

:func:`run_prediction` simulates a trial of a scenario (with the simulator's truth) or
reads a long-format file, and calls :func:`models.prediction.predict`;
:func:`write_prediction` writes ``prediction.json`` (settings, coefficients, AUCs,
calibration, the signal's accuracy) and ``prediction_clients.csv`` (one row per modelled
client and target, with its predictions). The pictures take a
:class:`models.prediction.PredictionReport` and return a matplotlib ``Figure``, with the
simulator's truth marked where it is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["run_prediction", "write_prediction", "plot_coefficients", "plot_roc",
           "plot_calibration", "plot_signal", "TARGET_LABELS", "FAST_SAMPLER"]

#: Sampler settings of a quick look (tests, ``fast=True``): enough for predictions, not
#: for the convergence rule.
FAST_SAMPLER = {"draws": 200, "tune": 200, "chains": 2}

TARGET_LABELS = {"dropout": "treatment dropout",
                 "reliable_improvement": "reliable improvement",
                 "clinically_significant": "clinically significant change"}
LABELS = {"ors0": "intake ORS", "srs0": "intake SRS", "early_change": "early ORS change",
          "srs_early": "early SRS", "exposure": "offered FIT", "early_missing": "early score missing"}
TRUTH = "firebrick"


def run_prediction(source=None, *, seed: int | None = None, scenario=None,
                   columns: dict | None = None, primary_month: float | None = None,
                   instrument: dict | None = None, **options):
    """The prediction report of a scenario or of a long-format data file.

    Parameters
    ----------
    source : str, Path, Scenario or None
        A scenario (``"default"``, a YAML path, a Scenario, ``None``) to simulate, or a
        ``.csv``/``.parquet`` long-format data file.
    seed : int, optional
        Simulated trial: its seed (default: the scenario's).
    scenario : str, optional
        Data file: a scenario whose analysis plan and instrument to assume.
    columns : dict, optional
        Data file: column mapping (standard -> yours).
    primary_month : float, optional
        Overrides the primary month (data without a scenario: default the last month).
    instrument : dict, optional
        Overrides of the reliable-change constants (``sd``, ``reliability``, ``cutoff``).
    **options
        :func:`models.prediction.predict`'s (``targets``, ``predictors``, ``folds``,
        ``sampler``, ...).

    Returns
    -------
    PredictionReport
    """
    from fitlab.cli.common import scenario as resolve
    from fitlab.store import DATA_SUFFIXES, read_long
    from models.clinical_change import Instrument
    from models.plan import AnalysisPlan
    from models.prediction import predict, predict_scenario
    from simulate.scenario import Scenario

    is_file = isinstance(source, str | Path) and Path(source).suffix in DATA_SUFFIXES
    if not is_file:
        if columns or scenario:
            from fitlab.errors import UsageError

            raise UsageError("columns and scenario apply to a data file, not a scenario")
        sc = source if isinstance(source, Scenario) else resolve(source or "default")
        inst = Instrument(**{**_inst(Instrument.from_scenario(sc)), **(instrument or {})})
        if primary_month is not None:
            sc = sc.replace({"followup.primary_month": float(primary_month)})
        return predict_scenario(sc, seed, instrument=inst, **options)
    data = read_long(Path(source))
    sc = resolve(scenario) if scenario else None
    plan = AnalysisPlan.from_scenario(sc) if sc is not None else AnalysisPlan()
    if primary_month is not None:
        plan = plan.replace(primary_month=float(primary_month))
    base = _inst(Instrument.from_scenario(sc)) if sc is not None else {}
    inst = Instrument(**{**base, **(instrument or {})})
    report = predict(data, plan, instrument=inst, columns=columns, **options)
    report.settings["data"] = str(source)
    return report


def _inst(instrument) -> dict:
    return {k: getattr(instrument, k) for k in ("sd", "reliability", "cutoff", "z")}


def write_prediction(report, out_dir) -> list[Path]:
    """Write ``prediction.json`` and ``prediction_clients.csv`` into ``out_dir``."""
    from fitlab.store import atomic_write, atomic_write_text

    out = Path(out_dir)
    parts = []
    for t, r in report.results.items():
        keep = [c for c in ("client", "unit", "therapist", "fold", "y", "p_fit", "p_cv",
                            "p_dropout", "not_on_track") if c in r.clients.columns]
        parts.append(r.clients[keep].assign(target=t))
    clients = pd.concat(parts, ignore_index=True)
    return [atomic_write_text(out / "prediction.json",
                              json.dumps(report.to_dict(), indent=2) + "\n"),
            atomic_write(out / "prediction_clients.csv",
                         lambda tmp: clients.to_csv(tmp, index=False))]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _axes(n: int, width: float = 4.2, height: float = 3.6):
    plt = _plt()
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def plot_coefficients(report):
    """Posterior means and 95% intervals of every log odds ratio, per target; the
    data-generating value (where the simulator knows it) as a red cross."""
    fig, axes = _axes(len(report.results), height=3.2)
    for ax, (t, r) in zip(axes, report.results.items()):
        c = r.coefficients.iloc[::-1].reset_index(drop=True)
        y = np.arange(len(c))
        ax.errorbar(c["mean"], y, xerr=[c["mean"] - c["lower"], c["upper"] - c["mean"]],
                    fmt="o", color="k", capsize=3, label="posterior (95%)")
        known = c["truth"].notna()
        if known.any():
            ax.scatter(c.loc[known, "truth"], y[known.to_numpy()], marker="x", s=70,
                       color=TRUTH, zorder=3, label="simulator's truth")
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(y, [LABELS.get(n, n) for n in c["name"]])
        ax.set_xlabel("log odds ratio (per SD)")
        ax.set_title(TARGET_LABELS[t])
        if known.any():
            ax.legend(frameon=False, fontsize=8, loc="best")
    fig.suptitle("What predicts each outcome (hierarchical logistic model)")
    fig.tight_layout()
    return fig


def plot_roc(report):
    """ROC curves of the held-out predictions; dashed red: the data-generating
    probabilities (the best any model could do) where the simulator knows them."""
    from models.prediction_metrics import roc_curve

    fig, axes = _axes(len(report.results))
    for ax, (t, r) in zip(axes, report.results.items()):
        c = r.clients
        p = c["p_cv"] if r.calibration.get("out_of_sample") else c["p_fit"]
        roc = roc_curve(c["y"], p)
        a = r.auc["cv"]
        ax.plot(roc["fpr"], roc["tpr"], color="k",
                label=f"model: AUC {a['auc']:.2f} [{a['lower']:.2f}, {a['upper']:.2f}]")
        if "truth" in r.auc:
            tr = roc_curve(c["y"], c["p_dropout"])
            ax.plot(tr["fpr"], tr["tpr"], color=TRUTH, ls="--",
                    label=f"truth: AUC {r.auc['truth']['auc']:.2f}")
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title(TARGET_LABELS[t])
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle("Discrimination of held-out clients (cross-validation)")
    fig.tight_layout()
    return fig


def plot_calibration(report):
    """Observed share against predicted risk in tenths of the prediction, with the
    calibration slope; dashed red: the same for the data-generating probabilities."""
    fig, axes = _axes(len(report.results))
    for ax, (t, r) in zip(axes, report.results.items()):
        cal = r.calibration
        cur = cal["curve"]
        ax.errorbar(cur["predicted"], cur["observed"],
                    yerr=[cur["observed"] - cur["lower"], cur["upper"] - cur["observed"]],
                    fmt="o-", color="k", capsize=2,
                    label=f"model: slope {cal['slope']:.2f} [{cal['slope_lower']:.2f}, "
                          f"{cal['slope_upper']:.2f}]")
        if "truth_curve" in cal:
            tc = cal["truth_curve"]
            ax.plot(tc["predicted"], tc["observed"], "s--", color=TRUTH,
                    label=f"truth: slope {cal['truth']['slope']:.2f}")
        hi = float(max(cur["upper"].max(), cur["predicted"].max(), 0.1))
        ax.plot([0, hi], [0, hi], color="grey", lw=1, ls=":")
        ax.set_xlabel("predicted risk")
        ax.set_ylabel("observed share")
        ax.set_title(TARGET_LABELS[t])
        ax.legend(frameon=False, fontsize=8, loc="upper left")
    fig.suptitle("Calibration of held-out clients")
    fig.tight_layout()
    return fig


def plot_signal(report):
    """The not-on-track signal: early ORS against intake with the expected trajectory,
    coloured by the simulator's latent class where known; and the signal's ROC against
    that class (or against no reliable improvement) with its operating point."""
    from models.prediction_metrics import auc, roc_curve

    plt = _plt()
    rows = report.clients
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    seen = rows["ors_early"].notna()
    latent = "not_on_track" in rows.columns
    flag = rows["not_on_track"] == 1 if latent else rows["signal"].fillna(False)
    colour = np.where(flag.to_numpy(dtype=bool), TRUTH, "#1f77b4")
    a1.scatter(rows.loc[seen, "ors0"], rows.loc[seen, "ors_early"], s=8, alpha=0.5,
               c=colour[seen.to_numpy()])
    line = rows.loc[seen].sort_values("ors0")
    a1.plot(line["ors0"], line["expected"], color="k", label="expected trajectory")
    a1.set_xlabel("intake ORS")
    a1.set_ylabel(f"ORS at month {report.settings['early_month']:g}")
    a1.set_title("red: not on track (simulator's latent class)" if latent
                 else "red: signal raised")
    a1.legend(frameon=False, fontsize=8)
    if latent:
        ref, name = rows["not_on_track"].astype(bool), "latent not-on-track class"
        acc = report.signal_accuracy["latent_not_on_track"]
    else:
        ref = ~rows["reliable_improvement"].astype("boolean")
        name = "no reliable improvement"
        acc = report.signal_accuracy["no_reliable_improvement"]
    ok = seen & ref.notna()
    score = -rows.loc[ok, "residual"]
    roc = roc_curve(ref[ok].astype(bool), score)
    a2.plot(roc["fpr"], roc["tpr"], color="k",
            label=f"AUC {auc(ref[ok].astype(bool), score):.2f}")
    a2.scatter([1 - acc["specificity"]], [acc["sensitivity"]], color=TRUTH, zorder=3,
               label=f"signal: sens {acc['sensitivity']:.2f}, spec {acc['specificity']:.2f}")
    a2.plot([0, 1], [0, 1], color="grey", lw=1, ls=":")
    a2.set_xlabel("1 - specificity")
    a2.set_ylabel("sensitivity")
    a2.set_title(f"Signal against the {name}")
    a2.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
