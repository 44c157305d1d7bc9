"""MCPower 1.4.1 against the vectorized power engine (:mod:`models.fastpower`).

A benchmark, not part of the lab: the lab never calls MCPower (an optional ``bench``
dependency). :func:`mcpower_power` runs MCPower on the design of
:func:`models.fastpower.nested_power`, and :func:`time_per_replicate` times either engine
the same way. ``benchmarks/run.py`` reports both; ``tests/test_fastpower.py`` checks that
the two engines agree on power.

Examples
--------
>>> from models.fastpower import nested_power                       # doctest: +SKIP
>>> time_per_replicate(nested_power, n_reps=1000)["n_reps"]  # doctest: +SKIP
1000
"""

from __future__ import annotations

import math
import time

import numpy as np

from models.fastpower import PowerResult

__all__ = ["mcpower_power", "time_per_replicate"]


def mcpower_power(delta: float = 0.3, icc_unit: float = 0.1, icc_therapist: float = 0.1,
                  units: int = 12, therapists_per_unit: int = 4, clients_per_therapist: int = 5,
                  n_reps: int = 800, seed: int = 2137, alpha: float = 0.05,
                  threads: int | None = None) -> PowerResult:
    """MCPower 1.4.1 on the same design: ``y ~ arm + (1|unit/therapist)``, family "lme".

    MCPower draws ``arm`` ~ Bernoulli(1/2) per observation, assigns rows to units round
    robin and therapists nested in units (``n_per_parent``), with random-intercept
    variances ``icc / (1 - icc)`` per grouping and residual variance 1 (its "optimistic"
    scenario: no perturbations). It fits by maximum likelihood and tests with
    Satterthwaite df for nested groupings. So :func:`models.fastpower.nested_power` with
    ``arm_level="client"``, ``var_unit = icc_to_variance(icc_unit)`` and likewise for the
    therapist is the same design; MCPower only accepts non-zero ICCs in [0.1, 0.9] (and
    checks its own arguments).

    Returns
    -------
    PowerResult
        ``extra`` has MCPower's own Wilson interval and convergence rate.
    """
    from mcpower import MCPower, _engine

    if threads is not None:
        _engine.set_n_threads(int(threads))
    t0 = time.perf_counter()
    mdl = MCPower("y ~ arm + (1|unit/therapist)", family="lme")
    mdl.set_variable_type("arm=binary")
    mdl.set_effects(f"arm={delta}")
    mdl.set_alpha(alpha)
    mdl.set_cluster("unit", ICC=icc_unit, n_clusters=units)
    mdl.set_cluster("unit:therapist", ICC=icc_therapist, n_per_parent=therapists_per_unit)
    mdl.set_simulations(n_reps)
    n = units * therapists_per_unit * clients_per_therapist
    res = mdl.find_power(n, target_test="arm", seed=seed, verbose=False,
                         progress_callback=False)
    sec = time.perf_counter() - t0
    p = float(res["power_uncorrected"][0][0])
    if p > 1.0:  # percent in some versions
        p /= 100.0
    return PowerResult(power=p, mcse=math.sqrt(p * (1 - p) / n_reps), n_reps=n_reps,
                       seconds=sec, extra={"ci": res["ci_uncorrected"][0][0],
                                           "convergence_rate": res["convergence_rate"][0],
                                           "engine": "mcpower"})


def time_per_replicate(fn, n_reps: int, repeats: int = 3, first_seed: int = 100,
                       **kwargs) -> dict:
    """Wall time per replicate of a power engine, over ``repeats`` calls.

    Parameters
    ----------
    fn : callable
        ``nested_power`` or ``mcpower_power`` (anything returning a PowerResult and
        taking ``n_reps`` and ``seed``).
    n_reps : int
        Replicates per call.
    repeats : int
        Calls, with seeds ``first_seed``, ``first_seed + 1``, ...
    first_seed : int
    **kwargs
        Passed to ``fn``.

    Returns
    -------
    dict
        ``times`` (seconds per replicate of each call), ``us_per_rep_min`` (the usual
        benchmark statistic), ``us_per_rep_median``, and ``power``, ``mcse`` of the last
        call, ``n_reps``.
    """
    times, last = [], None
    for r in range(repeats):
        t0 = time.perf_counter()
        last = fn(n_reps=n_reps, seed=first_seed + r, **kwargs)
        times.append((time.perf_counter() - t0) / n_reps)
    return {"times": times, "us_per_rep_min": 1e6 * min(times),
            "us_per_rep_median": 1e6 * float(np.median(times)),
            "power": last.power, "mcse": last.mcse, "n_reps": n_reps}
