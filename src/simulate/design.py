"""Randomization: clients to arms, units to arms, units to stepped-wedge steps.

All functions are vectorized over clients or units and take a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulate.compliance import fidelity_ramp

__all__ = [
    "permuted_blocks",
    "allocate_clients",
    "allocate_units",
    "assign_steps",
    "units_per_step",
    "crossover_months",
    "exposed",
    "step_length",
    "schedule_matrix",
    "mean_exposure_matrix",
]


def permuted_blocks(block_sizes, share: float, rng) -> np.ndarray:
    """Consecutive permuted blocks: the one rule of blocked randomization.

    A block of size b holds exactly ``round(b * share)`` treated (1) and the rest
    untreated (0), in a uniformly random order; blocks are independent. One row of
    uniform keys per block, as wide as the largest block, is drawn and sorted, so blocks
    that all have the same size use the generator exactly as a fixed-size scheme would.

    Parameters
    ----------
    block_sizes : sequence of int
        Size of each block, in order.
    share : float
        Share treated, e.g. 2/3 for a 2:1 allocation.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of int8
        ``sum(block_sizes)`` allocations, block after block.

    Examples
    --------
    >>> arm = permuted_blocks([3, 6, 3], 2 / 3, np.random.default_rng(1))
    >>> [int(arm[a:b].sum()) for a, b in ((0, 3), (3, 9), (9, 12))]
    [2, 4, 2]
    """
    sizes = np.asarray(block_sizes, dtype=int)
    width = int(sizes.max())
    keys = rng.random((len(sizes), width))
    used = np.arange(width)[None, :] < sizes[:, None]
    keys[~used] = np.inf  # slots beyond a block's size sort last and are dropped
    order = np.argsort(keys, axis=1)
    treated = np.rint(sizes * share).astype(int)
    # slot j of the template "treated first" is treated when j < treated count
    return (order < treated[:, None])[used].astype(np.int8)


def _blocked(n_per_group: np.ndarray, share: float, block_size: int, rng) -> np.ndarray:
    """Permuted-block allocation, blocks restarting within each group.

    ``n_per_group[g]`` items of group g get consecutive blocks of ``block_size``
    (:func:`permuted_blocks`); the last block of a group is cut short.
    """
    n_per_group = np.asarray(n_per_group, dtype=int)
    n_blocks = -(-n_per_group // block_size)  # ceil
    total = int(n_blocks.sum())
    flat = permuted_blocks(np.full(total, block_size), share, rng)
    # position of item j of group g inside the flat block sequence
    block_start = np.concatenate([[0], np.cumsum(n_blocks)[:-1]]) * block_size
    group = np.repeat(np.arange(len(n_per_group)), n_per_group)
    within = np.arange(n_per_group.sum()) - np.repeat(
        np.concatenate([[0], np.cumsum(n_per_group)[:-1]]), n_per_group
    )
    return flat[block_start[group] + within].astype(np.int8)


def allocate_clients(n_per_unit: np.ndarray, design, rng) -> np.ndarray:
    """Randomize clients (ordered by unit, then recruitment) to FIT (1) or usual care (0).

    ``simple``: independent draws with P(FIT) = r/(1+r). ``blocked`` and ``stratified``:
    permuted blocks within unit (the unit is the stratum).
    """
    share = design.treated_share
    if design.randomization == "simple":
        return (rng.random(int(np.sum(n_per_unit))) < share).astype(np.int8)
    return _blocked(n_per_unit, share, design.block_size, rng)


def allocate_units(sizes: np.ndarray, design, rng) -> np.ndarray:
    """Randomize units to FIT (1) or usual care (0) for the parallel cluster design.

    ``simple``: independent draws, redrawn if every unit lands in one arm (a trial with one
    arm cannot be analysed). ``blocked``: permuted blocks over units in random order.
    ``stratified``: permuted blocks over units sorted by size, so arms are balanced on size.
    """
    n = len(sizes)
    share = design.treated_share
    if design.randomization == "simple":
        for _ in range(1000):
            arm = (rng.random(n) < share).astype(np.int8)
            if 0 < arm.sum() < n:
                return arm
        raise RuntimeError("could not draw a cluster allocation with both arms present")
    if design.randomization == "blocked":
        order = rng.permutation(n)
    else:
        # ties broken at random so equal-sized units are not always in index order
        order = np.lexsort((rng.random(n), np.asarray(sizes)))
    arm = np.empty(n, dtype=np.int8)
    arm[order] = _blocked(np.array([n]), share, design.block_size, rng)
    if arm.sum() in (0, n):
        arm[order[-1]] = 1 - arm[order[-1]]
    return arm


def assign_steps(sizes: np.ndarray, design, rng) -> np.ndarray:
    """Randomize units to stepped-wedge steps 1..S, as equal in number as possible.

    ``stratified`` sorts units by size and spreads each run of S similar-sized units over
    distinct steps, so every step gets a similar mix of small and large units.
    """
    n, s = len(sizes), design.steps
    counts = units_per_step(n, s)
    if design.randomization != "stratified":
        labels = np.repeat(np.arange(1, s + 1), counts)
        return labels[rng.permutation(n)].astype(np.int16)
    order = np.lexsort((rng.random(n), np.asarray(sizes)))
    steps = np.empty(n, dtype=np.int16)
    pos = 0
    for r in range(int(counts.max())):
        labels = np.arange(1, s + 1)[counts > r]
        chunk = order[pos : pos + len(labels)]
        steps[chunk] = rng.permutation(labels)
        pos += len(labels)
    return steps


def units_per_step(units: int, steps: int) -> np.ndarray:
    """Units crossing over at each step 1..S: as equal as possible, the first steps get
    the extra ones.

    Examples
    --------
    >>> units_per_step(10, 4).tolist()
    [3, 3, 2, 2]
    """
    return np.array([len(a) for a in np.array_split(np.arange(units), steps)])


def step_length(scenario) -> float:
    """Months between stepped-wedge steps: recruitment spread over S + 1 periods."""
    return scenario.size.recruitment_months / (scenario.design.steps + 1)


def crossover_months(scenario) -> np.ndarray:
    """Calendar month at which step s = 1..S starts FIT (index 0 is unused: -inf)."""
    length = step_length(scenario)
    return np.concatenate([[-np.inf], np.arange(1, scenario.design.steps + 1) * length])


def exposed(start, crossover, lag_months: float) -> np.ndarray:
    """FIT offered (1) or not (0) to clients by their start month, in a stepped wedge.

    A client gets FIT when they start at least ``lag_months`` after their unit's
    crossover: the lag is the time a unit takes to begin offering FIT once it has
    crossed over. ``crossover = -inf`` offers FIT to everyone.
    """
    return (np.asarray(start) >= np.asarray(crossover) + lag_months).astype(np.int8)


def schedule_matrix(step_of_unit: np.ndarray, scenario) -> pd.DataFrame:
    """Units x step periods: 1 exposed, 0 control, NaN not recruiting (incomplete design).

    Period k covers calendar months ``[k L, (k+1) L)`` with L = :func:`step_length`.
    """
    s = scenario.design.steps
    k = np.arange(s + 1)
    step = np.asarray(step_of_unit)[:, None]
    x = (k[None, :] >= step).astype(float)
    w = scenario.design.window_periods
    if w is not None:
        x[(k[None, :] < step - w) | (k[None, :] >= step + w)] = np.nan
    return pd.DataFrame(x, index=pd.Index(np.arange(len(step_of_unit)), name="unit"),
                        columns=pd.Index(k, name="period"))


def mean_exposure_matrix(step_of_unit: np.ndarray, scenario, points: int = 400) -> pd.DataFrame:
    """Units x step periods: mean FIT exposure of the clients who start in each cell.

    The rule is the simulator's: a client who starts within the cell is offered FIT only
    after the unit's crossover plus ``design.lag_months`` (:func:`exposed`), and then gets
    the share :func:`simulate.compliance.fidelity_ramp` of the therapist's fidelity. Starts
    are uniform within a period (as recruitment is), so the mean is taken over ``points``
    evenly spaced start times (midpoint rule). Cells before crossover are 0; with no lag
    and no ramp every later cell is 1, i.e. :func:`schedule_matrix`. NaN where a unit
    does not recruit.

    Examples
    --------
    >>> from simulate import Scenario
    >>> sc = Scenario().replace({"design.kind": "stepped_wedge", "design.steps": 2,
    ...                          "size.recruitment_months": 24, "compliance.ramp_months": 8})
    >>> mean_exposure_matrix([1, 2], sc).round(2).to_numpy()
    array([[0. , 0.5, 1. ],
           [0. , 0. , 0.5]])
    """
    schedule = schedule_matrix(step_of_unit, scenario)
    length = step_length(scenario)
    period = schedule.columns.to_numpy()
    start = (period[:, None] + (np.arange(points) + 0.5) / points) * length  # periods x points
    cross = crossover_months(scenario)[np.asarray(step_of_unit)][:, None, None]
    dose = (exposed(start, cross, scenario.design.lag_months)
            * fidelity_ramp(start, cross, scenario.compliance.ramp_months))
    return schedule.where(schedule.isna(), dose.mean(axis=2))
