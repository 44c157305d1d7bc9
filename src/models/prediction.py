"""Does ORS/SRS predict dropout and outcome? Discrimination, calibration and the
not-on-track signal, judged against the simulator's truth where there is one.

For each target (treatment ``dropout``, ``reliable_improvement`` and
``clinically_significant`` change at the primary month; :mod:`models.clinical_change`)
:func:`predict` fits the hierarchical logistic model of
:class:`models.prediction_model.BayesPrediction` to every client and, in ``folds``-fold
cross-validation by client (stratified by the target, folds from ``fold_seed``), to each
training part, predicting the held-out clients. From the held-out predictions:

- **discrimination**: the AUC with a percentile bootstrap interval over clients; the
  fitted model's in-sample AUC comes with its posterior interval;
- **calibration**: the calibration slope and calibration-in-the-large with standard
  errors, and a calibration curve in quantile bins.

The **not-on-track signal** (:func:`not_on_track_signal`) compares each client's early ORS
with the expected trajectory: the least-squares line of early ORS on intake ORS over the
clients with an early score (the trial is its own norm sample), flagging clients more
than ``threshold`` residual SDs below it (0.5: about the lowest 30%, the share of clients
thought not to be on track; Lambert). Its sensitivity and specificity are given against
the simulator's latent class and against the observed lack of reliable improvement.

**The simulator's truth** (:func:`simulation_truth`): each client's latent
``not_on_track`` class; the data-generating dropout probability where the mechanism
depends on observed data only (MCAR, MAR: :func:`simulate.missingness.dropout_probability`;
under MNAR it depends on the unobserved progress and is not available); and the true
change categories from the outcomes as they would have been measured without attrition.
Under MAR the intake-ORS coefficient of the dropout model is known: ``-strength`` per SD.

Examples
--------
>>> from simulate import Scenario                                  # doctest: +SKIP
>>> report = predict_scenario(Scenario(), seed=1, folds=3,         # doctest: +SKIP
...                           sampler={"draws": 200, "tune": 200, "chains": 2})
>>> report.summary_table()                                         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.base import LongFormatError
from models.clinical_change import TARGETS, Instrument, change_categories
from models.prediction_metrics import (
    auc,
    bootstrap_auc,
    calibration_curve,
    calibration_slope,
    signal_accuracy,
)
from models.prediction_model import BayesPrediction, model_rows
from simulate.conventions import json_native

__all__ = [
    "PredictionResult",
    "PredictionReport",
    "predict",
    "predict_scenario",
    "simulation_truth",
    "not_on_track_signal",
    "fold_ids",
]


@dataclass
class PredictionResult:
    """One target's model, held-out predictions and their quality.

    Attributes
    ----------
    target : str
    estimate : Estimate
        The full fit (estimate: the intake-ORS log odds ratio per SD; ``extra``: every
        coefficient and the in-sample AUC).
    coefficients : DataFrame
        ``name, mean, lower, upper`` and ``truth`` (NaN where unknown).
    clients : DataFrame
        The modelled clients: their client-table columns, ``y``, ``fold``, ``p_fit``
        (full fit, posterior mean), ``p_cv`` (held out), and the truth's columns.
    auc : dict
        ``in_sample`` (posterior mean and interval), ``cv`` (bootstrap interval),
        ``truth`` (the data-generating probabilities' AUC, where known) and
        ``truth_all_clients`` (out-of-sample predictions of every eligible client, those
        lost to follow-up included, against their change category without attrition).
    calibration : dict
        :func:`models.prediction_metrics.calibration_slope` of the held-out predictions,
        with ``curve`` (DataFrame) and ``truth`` (the same for the true probabilities).
    """

    target: str
    estimate: Any
    coefficients: pd.DataFrame
    clients: pd.DataFrame
    auc: dict[str, dict[str, float]]
    calibration: dict[str, Any]
    truth: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-native summary (no per-client rows)."""
        cal = {k: v for k, v in self.calibration.items() if k not in ("curve", "truth_curve")}
        return json_native({
            "target": self.target, "n": int(len(self.clients)),
            "events": int(self.clients["y"].sum()),
            "coefficients": self.coefficients.to_dict(orient="records"),
            "auc": self.auc, "calibration": cal, "truth": self.truth,
            "diagnostics": self.estimate.diagnostics,
        }, finite=True)


@dataclass
class PredictionReport:
    """Every target's :class:`PredictionResult`, the not-on-track signal, the settings.

    ``clients`` is the whole client table with the signal's columns (``expected``,
    ``residual``, ``signal``) and, for a simulated trial, the truth's.
    """

    results: dict[str, PredictionResult]
    clients: pd.DataFrame
    signal_accuracy: dict[str, dict[str, float]]
    settings: dict[str, Any]
    trial: Any = None  # the simulated trial, when there is one

    def summary_table(self) -> pd.DataFrame:
        """One row per target: sizes, intake-ORS coefficient, AUCs, calibration."""
        rows = []
        for t, r in self.results.items():
            c = r.coefficients.set_index("name").loc["ors0"]
            a, cal = r.auc, r.calibration
            rows.append({
                "target": t, "n": len(r.clients), "events": int(r.clients["y"].sum()),
                "ors0_log_or": c["mean"], "ors0_lower": c["lower"], "ors0_upper": c["upper"],
                "ors0_truth": c["truth"],
                "auc_in_sample": a["in_sample"]["auc"],
                "auc_cv": a["cv"]["auc"], "auc_cv_lower": a["cv"]["lower"],
                "auc_cv_upper": a["cv"]["upper"],
                "auc_truth": a.get("truth", {}).get("auc", np.nan),
                "auc_all_vs_true_status": a.get("truth_all_clients", {}).get("auc", np.nan),
                "calibration_slope": cal["slope"], "slope_lower": cal["slope_lower"],
                "slope_upper": cal["slope_upper"], "calibration_intercept": cal["intercept"],
                "slope_truth": cal.get("truth", {}).get("slope", np.nan),
                "converged": r.estimate.converged,
            })
        return pd.DataFrame(rows).set_index("target")

    def to_dict(self) -> dict[str, Any]:
        """JSON-native: settings, each target's summary and the signal's accuracy."""
        return json_native({"settings": self.settings,
                            "targets": {t: r.summary() for t, r in self.results.items()},
                            "not_on_track_signal": self.signal_accuracy}, finite=True)


def fold_ids(y, folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each row, ``0..folds-1``: a seeded permutation within each class of ``y``,
    so every fold holds about the same share of events."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    out = np.empty(y.size, dtype=np.int64)
    offset = 0
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        out[rng.permutation(idx)] = (np.arange(idx.size) + offset) % folds
        offset += idx.size
    return out


def simulation_truth(trial) -> pd.DataFrame:
    """What the simulator knows about each client (index ``client``).

    Columns: ``not_on_track`` (latent class), ``p_dropout`` (the data-generating dropout
    probability; NaN under MNAR), and, when the trial was simulated with
    ``complete=True``, ``true_reliable_improvement`` and ``true_clinically_significant``
    (change categories of the outcome as measured without attrition).
    """
    from simulate import missingness as miss

    sc = trial.scenario
    df = trial.data
    first = df.drop_duplicates("client").set_index("client").sort_index()
    out = pd.DataFrame({"not_on_track": first["not_on_track"].astype(int)}, index=first.index)
    m = sc.missingness
    if m.mechanism in ("mcar", "mar"):
        base = first["baseline"].to_numpy(dtype=float)
        z = miss.missingness_score(m.mechanism, base, np.zeros_like(base))
        out["p_dropout"] = miss.dropout_probability(z, first["uptake"].to_numpy(), m)
    else:
        out["p_dropout"] = np.nan
    if "outcome_complete" in df.columns and sc.outcome.kind == "ors":
        prim = df[df["month"] == sc.followup.primary].set_index("client").sort_index()
        cats = change_categories(first["baseline"], prim["outcome_complete"],
                                 Instrument.from_scenario(sc))
        out["true_reliable_improvement"] = cats["reliable_improvement"].to_numpy(dtype=bool)
        out["true_clinically_significant"] = cats["clinically_significant"].to_numpy(dtype=bool)
    return out


def true_coefficients(scenario) -> dict[str, dict[str, float]]:
    """Known data-generating log odds ratios per SD: intake ORS for dropout (MCAR: 0,
    MAR: ``-strength``; SRS and early change do not drive dropout in the simulator)."""
    m = scenario.missingness
    if m.mechanism == "mnar":
        return {}
    return {"dropout": {"ors0": -m.strength if m.mechanism == "mar" else 0.0,
                        "srs0": 0.0, "early_change": 0.0, "srs_early": 0.0}}


def not_on_track_signal(clients: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Flag clients whose early ORS lies below the expected trajectory.

    Parameters
    ----------
    clients : DataFrame
        A client table (:func:`models.clinical_change.client_outcomes`).
    threshold : float
        Residual SDs below the expected early score that raise the signal.

    Returns
    -------
    DataFrame
        ``client, expected, residual`` (in residual SDs) and ``signal`` (nullable
        boolean; missing without an early score).
    """
    c = clients
    seen = c["ors_early"].notna().to_numpy()
    if seen.sum() < 3:
        raise LongFormatError("the not-on-track signal needs early scores of at least 3 "
                              "clients")
    x, y = c["ors0"].to_numpy(float)[seen], c["ors_early"].to_numpy(float)[seen]
    slope, icept = np.polyfit(x, y, 1)
    expected = icept + slope * c["ors0"].to_numpy(float)
    resid = c["ors_early"].to_numpy(float) - expected
    sd = float(np.std(resid[seen], ddof=2))
    z = resid / sd
    signal = pd.array(np.where(seen, z < -threshold, False), dtype="boolean")
    signal[~seen] = pd.NA
    return pd.DataFrame({"client": c["client"].to_numpy(), "expected": expected,
                         "residual": z, "signal": signal})


def _coefficients(est, truth: dict[str, float]) -> pd.DataFrame:
    x = est.extra
    names = x["predictors"].split(",")
    return pd.DataFrame({"name": names,
                         "mean": [x[f"beta_{n}"] for n in names],
                         "lower": [x[f"beta_{n}_lower"] for n in names],
                         "upper": [x[f"beta_{n}_upper"] for n in names],
                         "truth": [truth.get(n, np.nan) for n in names]})


def _one_target(est: BayesPrediction, data, table, target, folds, seed, truth, true_coef,
                boot_reps) -> PredictionResult:
    rows = model_rows(table, target).copy()
    rows["y"] = rows[target].to_numpy(dtype=int)
    fit = est.posterior(data)
    rows["p_fit"] = est.predict_draws(fit, rows).mean(axis=0)
    rows["fold"] = fold_ids(rows["y"], folds, seed) if folds > 1 else 0
    rows["p_cv"] = np.nan
    client_col = est.columns.get("client", "client") if est.columns else "client"
    for k in range(folds if folds > 1 else 0):
        held = rows["fold"] == k
        train = data[~data[client_col].isin(rows.loc[held, "client"])]
        part = est.posterior(train)
        rows.loc[held, "p_cv"] = est.predict_draws(part, rows[held]).mean(axis=0)
    p = rows["p_cv"] if folds > 1 else rows["p_fit"]  # in-sample only when no folds
    e = fit.estimate
    aucs = {"in_sample": {"auc": e.extra["auc"], "lower": e.extra["auc_lower"],
                          "upper": e.extra["auc_upper"]},
            "cv": bootstrap_auc(rows["y"], p, reps=boot_reps, seed=seed)}
    cal = calibration_slope(rows["y"], p)
    cal["curve"] = calibration_curve(rows["y"], p)
    cal["out_of_sample"] = folds > 1
    out_truth: dict[str, Any] = {}
    if truth is not None:
        rows = rows.join(truth, on="client")
        if target == "dropout" and rows["p_dropout"].notna().all():
            aucs["truth"] = bootstrap_auc(rows["y"], rows["p_dropout"], reps=boot_reps,
                                          seed=seed)
            cal["truth"] = calibration_slope(rows["y"], rows["p_dropout"])
            cal["truth_curve"] = calibration_curve(rows["y"], rows["p_dropout"])
            out_truth["mean_abs_error_vs_true_p"] = float(np.mean(np.abs(p - rows["p_dropout"])))
            out_truth["corr_vs_true_p"] = float(np.corrcoef(p, rows["p_dropout"])[0, 1])
        col = f"true_{target}"
        if col in truth.columns:
            # every eligible client, all out of sample: the held-out predictions of the
            # modelled clients and the full fit's for those missing at the primary month
            every = table[table["below_cutoff"]] if target == "clinically_significant" \
                else table
            lost = every[~every["client"].isin(rows["client"])]
            p_all = np.r_[p.to_numpy(), est.predict_draws(fit, lost).mean(axis=0)]
            status = truth.loc[np.r_[rows["client"], lost["client"]], col].to_numpy(bool)
            aucs["truth_all_clients"] = {"auc": auc(status, p_all), "n": int(status.size),
                                         "n_lost": int(len(lost))}
            out_truth["observed_rate"] = float(rows["y"].mean())
            out_truth["true_rate_all_clients"] = float(status.mean())
    return PredictionResult(target, e, _coefficients(e, true_coef), rows, aucs, cal, out_truth)


def predict(data: pd.DataFrame, plan=None, *, targets=TARGETS, instrument: Instrument | None = None,
            predictors: str = "early", early_month: float | None = None, folds: int = 5,
            fold_seed: int = 0, sampler: dict | None = None, columns: dict | None = None,
            truth: pd.DataFrame | None = None, true_coef: dict | None = None,
            signal_threshold: float = 0.5, boot_reps: int = 1000) -> PredictionReport:
    """Fit, cross-validate and judge the prediction of each target.

    Parameters
    ----------
    data : DataFrame
        A long table (simulated, or real in the long format).
    plan : AnalysisPlan or Scenario, optional
    targets : sequence of str
        Some of :data:`models.clinical_change.TARGETS` (``dropout`` needs a ``dropout``
        column).
    instrument : Instrument, optional
        Reliable-change constants (default: ORS, sd 7.5, reliability .87, cutoff 25).
    predictors : {"baseline", "early"}
    early_month : float, optional
        Last follow-up month of the early scores (default: the first follow-up).
    folds : int
        Cross-validation folds (1: in-sample only).
    fold_seed : int
        Seed of the folds and the bootstrap (the sampler is seeded from the data).
    sampler : dict, optional
        Sampler options (``draws``, ``tune``, ``chains``, ...).
    columns : dict, optional
        Column mapping of real data (:func:`models.base.check_long`).
    truth : DataFrame, optional
        :func:`simulation_truth` of a simulated trial.
    true_coef : dict, optional
        Known coefficients per target (:func:`true_coefficients`).
    signal_threshold : float
        See :func:`not_on_track_signal`.
    boot_reps : int
        Bootstrap resamples of the AUC intervals.

    Returns
    -------
    PredictionReport
    """
    if not isinstance(folds, int | np.integer) or folds < 1:
        raise LongFormatError(f"folds must be a positive integer, got {folds!r}")
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise LongFormatError(f"targets must be among {list(TARGETS)}, got {list(targets)}")
    inst = instrument or Instrument()
    opts = {"predictors": predictors, "early_month": early_month, "sd": inst.sd,
            "reliability": inst.reliability, "cutoff": inst.cutoff, **(sampler or {})}
    ests = BayesPrediction.for_targets(plan, list(targets), columns=columns, **opts)
    first = next(iter(ests.values()))
    df = first.prepare(data)
    table = first.clients(df, df.attrs["primary_month"])
    results = {t: _one_target(e, data, table, t, int(folds), fold_seed, truth,
                              (true_coef or {}).get(t, {}), boot_reps)
               for t, e in ests.items()}
    merged = table.merge(not_on_track_signal(table, signal_threshold), on="client")
    acc = {"no_reliable_improvement": signal_accuracy(
        merged["signal"], ~merged["reliable_improvement"])}
    if truth is not None:
        merged = merged.join(truth, on="client")
        acc = {"latent_not_on_track": signal_accuracy(merged["signal"],
                                                      merged["not_on_track"].astype(bool)),
               **acc}
    settings = {"targets": list(targets), "predictors": predictors,
                "early_month": table.attrs["early_month"],
                "primary_month": df.attrs["primary_month"], "folds": int(folds),
                "fold_seed": int(fold_seed), "instrument": inst.to_dict(),
                "signal_threshold": signal_threshold, "sampler": dict(sampler or {}),
                "n_clients": int(len(table)), "compiles": first.n_compiles}
    return PredictionReport(results, merged, acc, settings)


def predict_scenario(scenario=None, seed: int | None = None, **options) -> PredictionReport:
    """Simulate a trial of ``scenario`` (with its complete outcomes) and :func:`predict` it
    with the simulator's truth attached; ``options`` are :func:`predict`'s."""
    from simulate import load_scenario, simulate_trial

    sc = load_scenario(scenario)
    trial = simulate_trial(sc, sc.seed if seed is None else seed, complete=True)
    options.setdefault("instrument", Instrument.from_scenario(sc))
    report = predict(trial.data, sc, truth=simulation_truth(trial),
                     true_coef=true_coefficients(sc), **options)
    report.settings.update(scenario=sc.scenario_id, trial_seed=trial.seed,
                           mechanism=sc.missingness.mechanism)
    report.trial = trial
    return report
