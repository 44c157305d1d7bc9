"""Which estimator to use when the user names none: one policy for CLI, grids and notebooks.

Two families: ``"fast"`` (exact REML for ORS, cluster-robust risk difference for a binary
outcome; what a grid runs on every scenario) and ``"bayes"`` (the Bayesian hierarchical
model of the same design). The choice depends on the outcome kind and the design only.

Examples
--------
>>> default_estimator("ors", "stepped_wedge")
'reml_stepped_wedge'
>>> default_estimator("binary", "individual", family="bayes")
'bayes_binary'
"""

from __future__ import annotations

__all__ = ["FAMILIES", "default_estimator", "default_estimators"]

_DESIGNS = ("individual", "cluster", "stepped_wedge")

#: family -> (outcome kind, design kind) -> estimator name
FAMILIES: dict[str, dict[tuple[str, str], str]] = {
    "fast": {
        **{("ors", d): "reml_trajectory" for d in ("individual", "cluster")},
        ("ors", "stepped_wedge"): "reml_stepped_wedge",
        **{("binary", d): "glm_binary" for d in _DESIGNS},
    },
    "bayes": {
        **{("ors", d): "bayes_trajectory" for d in ("individual", "cluster")},
        ("ors", "stepped_wedge"): "bayes_stepped_wedge",
        **{("binary", d): "bayes_binary" for d in _DESIGNS},
    },
}


def default_estimator(outcome: str | None, design: str | None, family: str = "fast") -> str:
    """The default estimator for an outcome kind and a design kind.

    Parameters
    ----------
    outcome : {"ors", "binary"} or None
        ``None`` is read as ORS.
    design : {"individual", "cluster", "stepped_wedge"} or None
        ``None`` is read as individual randomization.
    family : {"fast", "bayes"}
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    key = (outcome or "ors", design or "individual")
    if key not in FAMILIES[family]:
        raise ValueError(f"no {family} estimator for outcome {key[0]!r} and design {key[1]!r}")
    return FAMILIES[family][key]


def default_estimators(plan_or_scenario, family: str = "fast") -> list[str]:
    """``[default_estimator(...)]`` for a scenario or an analysis plan."""
    if hasattr(plan_or_scenario, "outcome") and hasattr(plan_or_scenario.outcome, "kind"):
        outcome, design = plan_or_scenario.outcome.kind, plan_or_scenario.design.kind
    else:
        outcome = getattr(plan_or_scenario, "outcome", None)
        design = getattr(plan_or_scenario, "design", None)
    return [default_estimator(outcome, design, family)]
