"""The workshop (notebook 00): a teacher moves sliders and sees, live, what a design choice
does to the schedule, the trajectories and the power.

The controls change a few fields of a base scenario (:func:`workshop_scenario`): the
design, clients per unit, the effect size, treatment dropout, missing follow-ups, FIT
uptake and the share of FIT therapists at high fidelity. For each setting the view shows

- the design's schedule and the observed trajectories of one simulated trial (the
  scenario's own seed, so a change of setting redraws the same clients);
- the analytic power (:func:`simulate.power.power`: the primary month only, and adjusted
  for baseline) and a quick simulated power
  (:func:`quick_power`): a few dozen trials, each fitted by the design's fast estimator
  (:mod:`models.defaults`), seeded as the study layer seeds replicates
  (:func:`fitlab.replicates.replicate_seed`), so every setting sees the same random
  numbers and a change in power is the setting's, not noise's. Seconds per setting. The
  fast estimators use every follow-up, so the simulated power is usually above the
  analytic one, which uses the primary month only.

:func:`show` draws one setting (the static notebook under papermill); :func:`workshop_app`
builds the ipywidgets version. Treatment dropout does not move the power of an
intention-to-treat analysis much in this simulator: dropouts are still measured unless
they also miss their follow-ups, which is the "missing at follow-up" slider.

Examples
--------
>>> sc = workshop_scenario(design="cluster", clients_per_unit=30, fidelity_high=0.5)
>>> sc.design.kind, sc.size.clients_per_unit, sc.compliance.fidelity_shares[2]
('cluster', 30.0, 0.5)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Control", "CONTROLS", "DESIGNS", "workshop_scenario", "settings_of",
           "quick_power", "power_summary", "power_figure", "show", "workshop_app",
           "analytic_table"]

DESIGNS = ("individual", "cluster", "stepped_wedge")


@dataclass(frozen=True)
class Control:
    """One slider: its label, range, step, the scenario field it sets, whole numbers."""

    label: str
    low: float
    high: float
    step: float
    field: str
    integer: bool = False


#: The sliders, in the order shown. ``fidelity_high`` sets the share of FIT therapists at
#: high fidelity; the rest keep the default 1:2 split between low and medium.
CONTROLS: dict[str, Control] = {
    "clients_per_unit": Control("clients per unit", 5, 100, 5, "size.clients_per_unit", True),
    "effect": Control("effect size d", 0.0, 0.6, 0.05, "effect.d"),
    "dropout": Control("treatment dropout", 0.0, 0.6, 0.05, "missingness.dropout_rate"),
    "attrition": Control("missing at follow-up", 0.0, 0.6, 0.05, "missingness.attrition_rate"),
    "uptake": Control("FIT uptake", 0.1, 1.0, 0.05, "compliance.uptake"),
    "fidelity_high": Control("high-fidelity share", 0.0, 1.0, 0.05,
                             "compliance.fidelity_shares"),
}


def _fidelity_shares(high: float) -> list[float]:
    rest = 1.0 - float(high)
    return [rest / 3.0, 1.0 - float(high) - rest / 3.0, float(high)]


def settings_of(scenario) -> dict[str, Any]:
    """The workshop's settings of a scenario (the sliders' starting positions)."""
    sc = scenario
    return {"design": sc.design.kind, "clients_per_unit": float(sc.size.clients_per_unit),
            "effect": float(sc.effect.d), "dropout": float(sc.missingness.dropout_rate),
            "attrition": float(sc.missingness.attrition_rate),
            "uptake": float(sc.compliance.uptake),
            "fidelity_high": float(sc.compliance.fidelity_shares[2])}


def workshop_scenario(base=None, **settings):
    """``base`` (a scenario, a YAML path or ``None``: FIT design A) with the workshop's
    settings applied: ``design`` and the keys of :data:`CONTROLS`.

    Raises
    ------
    ScenarioError
        For an unknown setting or a value the scenario refuses (named by its field).
    """
    from simulate.scenario import ScenarioError, load_scenario

    sc = load_scenario(base)
    unknown = sorted(set(settings) - set(CONTROLS) - {"design"})
    if unknown:
        raise ScenarioError("workshop", [f"{k}: unknown setting; allowed: design, "
                                         f"{', '.join(CONTROLS)}" for k in unknown])
    changes: dict[str, Any] = {}
    if "design" in settings:
        changes["design.kind"] = settings["design"]
    for key, value in settings.items():
        if key == "fidelity_high":
            changes[CONTROLS[key].field] = _fidelity_shares(value)
        elif key in CONTROLS:
            changes[CONTROLS[key].field] = float(value)
    if "effect" in settings and sc.effect.not_on_track_d is not None:
        # keep the scenario's ratio of the not-on-track effect to the average effect
        ratio = sc.effect.not_on_track_d / sc.effect.d if sc.effect.d else 2.0
        changes["effect.not_on_track_d"] = float(settings["effect"]) * ratio
    return sc.replace(changes) if changes else sc


def quick_power(scenario, reps: int = 40, estimator: str | None = None) -> dict[str, Any]:
    """Simulated power from ``reps`` trials fitted by a fast estimator.

    Returns
    -------
    dict
        ``power, mcse`` (``sqrt(p (1 - p) / reps)``), ``reps``, ``failed`` (fits that
        raised, counted as not significant), ``estimator``, ``seconds``.
    """
    from fitlab.replicates import replicate_seed
    from models import get_estimator
    from models.defaults import default_estimators
    from simulate import simulate_trial

    name = estimator or default_estimators(scenario)[0]
    est = get_estimator(name, scenario)
    a = scenario.analysis
    t0 = time.perf_counter()
    hits = failed = 0
    for r in range(int(reps)):
        trial = simulate_trial(scenario, replicate_seed(scenario.seed, "effect", r))
        try:
            hits += bool(est.fit(trial.data).significant(a.alpha, a.sides))
        except Exception:  # noqa: BLE001 - a failed fit of a tiny design counts as a miss
            failed += 1
    p = hits / reps
    return {"power": p, "mcse": math.sqrt(p * (1 - p) / reps), "reps": int(reps),
            "failed": failed, "estimator": name, "seconds": time.perf_counter() - t0}


def power_summary(scenario, reps: int = 40) -> dict[str, Any]:
    """Analytic and quick simulated power of one setting, and a one-line description."""
    from simulate.power import power

    formula = power(scenario)
    analytic = float(formula["power"])
    adjusted = float(formula.get("power_baseline_adjusted", math.nan))
    sim = quick_power(scenario, reps)
    line = (f"analytic power: {analytic:.3f} (baseline-adjusted {adjusted:.3f}) | "
            f"simulated power: {sim['power']:.3f} ± {sim['mcse']:.3f} ({sim['reps']} trials, "
            f"{sim['estimator']}, {sim['seconds']:.1f} s)")
    return {"analytic": analytic, "analytic_adjusted": adjusted, "simulated": sim,
            "line": line}


def power_figure(summary: dict[str, Any]):
    """Two bars: analytic and simulated power (with 2 Monte Carlo SEs), 80% marked."""
    import matplotlib.pyplot as plt

    sim = summary["simulated"]
    fig, ax = plt.subplots(figsize=(5.5, 2.0))
    ax.barh([1, 0], [summary["analytic"], sim["power"]], color=["#1f77b4", "#ff7f0e"],
            xerr=[0, 2 * sim["mcse"]], capsize=4)
    ax.set_yticks([1, 0], ["analytic", f"simulated ({sim['reps']})"])
    ax.axvline(0.8, color="grey", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("power")
    for y, v, err in ((1, summary["analytic"], 0.0), (0, sim["power"], 2 * sim["mcse"])):
        ax.text(min(v + err + 0.02, 0.92), y, f"{v:.2f}", va="center")
    fig.tight_layout()
    return fig


def _design_figures(scenario, fast: bool):
    from simulate import plots, simulate_trial

    trial = simulate_trial(scenario)
    return [plots.plot_schedule(trial), plots.plot_trajectories(trial, 15 if fast else 30)]


def show(scenario, reps: int = 40, fast: bool = False) -> dict[str, Any]:
    """Display one setting: the power line and figure, the schedule, the trajectories."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    summary = power_summary(scenario, reps)
    print(summary["line"])
    for fig in [power_figure(summary), *_design_figures(scenario, fast)]:
        display(fig)
        plt.close(fig)
    return summary


def analytic_table(scenario, values=(10, 20, 40, 80)):
    """Analytic power of each design at several clients per unit (instant)."""
    import pandas as pd

    from simulate.power import power

    rows = {d: {v: power(workshop_scenario(scenario, design=d, clients_per_unit=v))["power"]
                for v in values} for d in DESIGNS}
    out = pd.DataFrame(rows).T
    out.columns.name = "clients per unit"
    return out.round(3)


def workshop_app(base=None, reps: int = 40, fast: bool = False):
    """The interactive workshop: controls and live outputs (an ipywidgets ``VBox``).

    Every change of a control redraws the power (line and figure) and the design's
    pictures; a setting the scenario refuses shows its message instead.
    """
    import ipywidgets as w
    from IPython.display import display

    from simulate.errors import FitlabError
    from simulate.scenario import load_scenario

    start = settings_of(load_scenario(base))
    design = w.ToggleButtons(options=list(DESIGNS), value=start["design"], description="design")
    style = {"description_width": "140px"}
    sliders = {k: (w.IntSlider if c.integer else w.FloatSlider)(
                   value=int(start[k]) if c.integer else start[k], min=c.low, max=c.high,
                   step=c.step, description=c.label, continuous_update=False, style=style,
                   layout=w.Layout(width="420px"))
               for k, c in CONTROLS.items()}
    n_reps = w.IntSlider(value=int(reps), min=10, max=200, step=10, continuous_update=False,
                         description="simulated trials", style=style,
                         layout=w.Layout(width="420px"))
    power_out, design_out = w.Output(), w.Output()

    def redraw(*_):
        import matplotlib.pyplot as plt

        values = {k: s.value for k, s in sliders.items()}
        try:
            sc = workshop_scenario(base, design=design.value, **values)
        except FitlabError as exc:
            power_out.clear_output()
            with power_out:
                print(f"this setting is not possible: {exc}")
            return
        summary = power_summary(sc, n_reps.value)
        figs = [power_figure(summary)]
        power_out.clear_output(wait=True)
        with power_out:
            print(summary["line"])
            display(figs[0])
        design_figs = _design_figures(sc, fast)
        design_out.clear_output(wait=True)
        with design_out:
            for fig in design_figs:
                display(fig)
        for fig in figs + design_figs:
            plt.close(fig)

    for control in [design, n_reps, *sliders.values()]:
        control.observe(redraw, names="value")
    left = list(sliders.values())[:3]
    right = list(sliders.values())[3:]
    controls = w.VBox([design, w.HBox([w.VBox(left), w.VBox(right)]), n_reps])
    redraw()
    return w.VBox([controls, power_out, design_out])
