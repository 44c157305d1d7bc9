"""Closed-form power and variance for FIT trial designs, to cross-check simulations.

- :mod:`~simulate.power.formulas`: textbook formulas, plain numbers in and out (two
  samples, therapist clustering, cluster randomization, binary outcomes).
- :mod:`~simulate.power.stepped_wedge`: the stepped-wedge schedule and its variance
  (Hussey & Hughes 2007, Hooper et al. 2016, GLS for any design).
- :mod:`~simulate.power.scenario`: :func:`power` and :func:`power_curve` for a scenario.
- :mod:`~simulate.power.fitted`: :func:`fitted_power`, the power of the mixed model
  actually fitted, from its expected information (with :mod:`~simulate.power.moments`,
  the expected design and the moments of the recorded scores).
- :mod:`~simulate.power.solve`: :func:`solve_size` and :func:`mde`, sample size and
  minimum detectable effect by either analytic power.
- :mod:`~simulate.power.claims`: published power statements recomputed.

Examples
--------
>>> from simulate.power import power_two_sample
>>> round(power_two_sample(0.5, 1.0, 64, 64), 3)
0.807
"""

from simulate.power.checks import PowerInputError
from simulate.power.claims import check_power_claim, ips_power_claim
from simulate.power.fitted import fitted_power
from simulate.power.formulas import (
    clipped_normal_moments,
    d_from_odds_ratio,
    design_effect,
    n_for_power,
    observed_icc,
    odds_ratio_from_d,
    power_cluster_randomized,
    power_clustered_arms,
    power_from_variance,
    power_two_proportions,
    power_two_sample,
    variance_clustered_arms,
)
from simulate.power.scenario import (
    baseline_adjusted,
    baseline_correlation,
    individual_autocorrelation,
    ors_variance_at_primary,
    power,
    power_curve,
)
from simulate.power.solve import mde, solve_size
from simulate.power.stepped_wedge import (
    hooper_variance,
    hussey_hughes_variance,
    stepped_wedge_gls_variance,
    stepped_wedge_schedule,
)

__all__ = [
    "PowerInputError",
    "power_from_variance",
    "power_two_sample",
    "n_for_power",
    "design_effect",
    "variance_clustered_arms",
    "power_clustered_arms",
    "power_cluster_randomized",
    "stepped_wedge_schedule",
    "hussey_hughes_variance",
    "hooper_variance",
    "stepped_wedge_gls_variance",
    "power_two_proportions",
    "odds_ratio_from_d",
    "d_from_odds_ratio",
    "observed_icc",
    "clipped_normal_moments",
    "check_power_claim",
    "ips_power_claim",
    "ors_variance_at_primary",
    "baseline_correlation",
    "baseline_adjusted",
    "power",
    "power_curve",
    "individual_autocorrelation",
    "fitted_power",
    "solve_size",
    "mde",
]
