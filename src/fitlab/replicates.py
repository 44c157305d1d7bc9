"""One replicate: simulate a trial, fit each requested estimator, return one row per fit.

The unit of work is a *task*: a scenario, a role (``"effect"`` or ``"null"``) and a list of
``(replicate, [estimators])`` items. :func:`run_task` is a plain top-level function of a
plain dict, so it runs the same in the calling process, in a process pool or on a Dask
worker, and its rows depend only on (scenario, role, replicate, estimator): results do not
depend on how the work is split or how many workers there are.

Seeds
-----
Replicate ``r`` of a scenario is simulated from
``SeedSequence(entropy=scenario.seed, spawn_key=(stream, r))`` where ``stream`` is 0 for the
scenario itself, 1 for its null twin (``scenario.null()``, for type I error) and 2 for
assurance. That is ``SeedSequence(scenario.seed).spawn(3)[stream].spawn(n)[r]``:
independent streams, and replicate ``r`` is the same trial whatever ``n`` is.

Assurance
---------
An ``"assurance"`` replicate first draws the effect from the scenario's design prior
(``effect.design_prior``: ``d`` for ORS, the log risk ratio for a binary outcome), then
simulates and fits the scenario with that effect (:func:`assurance_scenario`). Its seed
``s`` is split in two, ``s.spawn(2)``: the first child draws the effect, the second
simulates the trial. Assurance is then the decision rate on this role (O'Hagan, Stevens &
Campbell 2005).

Examples
--------
>>> from fitlab.replicates import replicate_seed
>>> replicate_seed(1, "effect", 3).spawn_key
(0, 3)
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

__all__ = [
    "STREAMS",
    "DEFAULT_SIMULATOR",
    "replicate_seed",
    "run_task",
    "role_scenario",
    "assurance_scenario",
    "with_effect",
]

#: Seed stream of each role.
STREAMS: dict[str, int] = {"effect": 0, "null": 1, "assurance": 2}
#: ``module:function`` of the simulator; a string so that worker processes can import it.
DEFAULT_SIMULATOR = "simulate:simulate_trial"

# Per-process caches: building an estimator can compile a model (Bayesian estimators), so
# each process builds it once per (estimator, scenario hash) and reuses it.
_ESTIMATOR_CACHE: dict[tuple[str, str], Any] = {}
_SCENARIO_CACHE: dict[str, Any] = {}
_WORKER_READY = False


def replicate_seed(seed: int, role: str, replicate: int) -> np.random.SeedSequence:
    """The seed sequence of replicate ``replicate`` of a scenario's ``role`` stream."""
    if role not in STREAMS:
        raise ValueError(f"role must be one of {sorted(STREAMS)}, got {role!r}")
    return np.random.SeedSequence(entropy=int(seed), spawn_key=(STREAMS[role], int(replicate)))


def role_scenario(scenario, role: str):
    """The scenario simulated for ``role``: itself, or its no-effect twin for ``"null"``.

    (An ``"assurance"`` replicate draws its own effect: :func:`assurance_scenario`.)
    """
    return scenario.null() if role == "null" else scenario


def with_effect(scenario, value: float):
    """The scenario with its effect set to ``value``, on the design prior's scale.

    ORS: ``effect.d = value``; a not-on-track effect keeps its ratio to ``d`` (none when
    ``d`` is 0). Binary: ``effect.risk_ratio = exp(value)``, capped just below
    ``1 / outcome.control_rate`` so that the treated risk stays below 1.
    """
    eff = scenario.effect
    if scenario.outcome.kind == "binary":
        cap = 0.999 / scenario.outcome.control_rate
        return scenario.replace({"effect.risk_ratio": min(math.exp(float(value)), cap)})
    not_on_track = None
    if eff.not_on_track_d is not None and eff.d != 0:
        not_on_track = eff.not_on_track_d * float(value) / eff.d
    return scenario.replace({"effect.d": float(value), "effect.not_on_track_d": not_on_track})


def assurance_scenario(scenario, seed: np.random.SeedSequence):
    """Draw the effect of one assurance replicate from the design prior.

    Returns
    -------
    scenario : Scenario
        ``scenario`` with the drawn effect (:func:`with_effect`).
    value : float
        The drawn effect (``d``, or the log risk ratio).
    sim_seed : SeedSequence
        The seed that simulates the trial.

    Raises
    ------
    ValueError
        When the scenario has no ``effect.design_prior``.
    """
    prior = scenario.effect.design_prior
    if prior is None:
        raise ValueError(f"scenario {scenario.name!r} has no effect.design_prior: "
                         "assurance needs one")
    effect_seed, sim_seed = seed.spawn(2)
    value = float(prior.mean + prior.sd * np.random.default_rng(effect_seed).standard_normal())
    return with_effect(scenario, value), value, sim_seed


def _scenario(data: dict):
    from simulate.scenario import Scenario

    key = repr(sorted(data.items()))
    if key not in _SCENARIO_CACHE:
        _SCENARIO_CACHE[key] = Scenario.from_dict(data)
    return _SCENARIO_CACHE[key]


def _estimator(name: str, scenario):
    key = (name, scenario.hash())
    if key not in _ESTIMATOR_CACHE:
        from models import get_estimator

        _ESTIMATOR_CACHE[key] = get_estimator(name, scenario)
    return _ESTIMATOR_CACHE[key]


def _simulator(path: str):
    module, _, func = path.partition(":")
    return getattr(importlib.import_module(module), func or "simulate_trial")


def setup_worker(base: str | None = None) -> None:
    """Give this worker process its own PyTensor compile directory.

    PyTensor compilation is not safe across processes sharing one directory, so each
    worker takes the first free *slot* directory ``<base>/worker-<k>`` (held by an
    ``flock`` for the life of the process). Slots are reused by later runs, so the compile
    cache survives between batches. Does nothing once PyTensor is imported.
    """
    global _WORKER_READY
    if _WORKER_READY or "pytensor" in sys.modules:
        _WORKER_READY = True
        return
    import fcntl
    import tempfile

    flags = os.environ.get("PYTENSOR_FLAGS", "")
    parts = [p for p in flags.split(",") if p.strip()]
    current = [p.split("=", 1)[1] for p in parts if p.strip().startswith("compiledir=")]
    root = base or (current[0] if current else os.path.join(tempfile.gettempdir(), "fitlab-pytensor"))
    os.makedirs(root, exist_ok=True)
    for k in range(256):
        lock = open(os.path.join(root, f"worker-{k}.lock"), "w")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        globals()["_SLOT_LOCK"] = lock
        rest = [p for p in parts if not p.strip().startswith("compiledir=")]
        os.environ["PYTENSOR_FLAGS"] = ",".join(rest + [f"compiledir={root}/worker-{k}"])
        break
    _WORKER_READY = True


def run_task(task: dict) -> list[dict]:
    """Run one task and return its rows (never raises for a failing simulation or fit).

    Parameters
    ----------
    task : dict
        ``scenario`` (dict), ``role`` (``"effect"``/``"null"``), ``items`` (list of
        ``[replicate, [estimator, ...]]``), optional ``simulator`` (``module:function``),
        ``worker`` (bool: set up a per-process compile directory).

    Returns
    -------
    list of dict
        One row per (replicate, estimator); a failure is a row with ``error`` set.
    """
    if task.get("worker"):
        setup_worker()
    base = _scenario(task["scenario"])
    role = task["role"]
    scenario = role_scenario(base, role)
    # the estimator depends on the analysis plan only: assurance replicates (one scenario
    # each) share the base scenario's, so a Bayesian model compiles once
    fit_scenario = base if role == "assurance" else scenario
    simulate = _simulator(task.get("simulator") or DEFAULT_SIMULATOR)
    alpha = scenario.analysis.alpha
    rows: list[dict] = []
    for replicate, names in task["items"]:
        seed = replicate_seed(base.seed, role, replicate)
        common = {
            "scenario_id": base.scenario_id,
            "role": role,
            "replicate": int(replicate),
            "seed": int(base.seed),
            "stream": STREAMS[role],
            "decision_threshold": float(base.analysis.decision_threshold),
            "target_width": _float(base.analysis.target_width),
        }
        t0 = time.perf_counter()
        try:
            if role == "assurance":
                sim_scenario, common["design_effect"], seed = assurance_scenario(base, seed)
            else:
                sim_scenario = scenario
            trial = simulate(sim_scenario, seed)
            truth, data = dict(trial.truth), trial.data
            sim_error = None
        except Exception as exc:  # recorded in every row of this replicate
            truth, data = {}, None
            sim_error = f"simulate: {_describe(exc)}"
        sim_seconds = time.perf_counter() - t0
        for name in names:
            row = {**common, "estimator": name, "sim_seconds": sim_seconds}
            row.update({f"truth_{k}": _float(truth.get(k)) for k in ("itt", "cace")})
            if sim_error is not None:
                rows.append(_failed(row, sim_error))
                continue
            t1 = time.perf_counter()
            try:
                est = _estimator(name, fit_scenario)
                e = est.fit(data)
            except Exception as exc:
                row["fit_seconds"] = time.perf_counter() - t1
                rows.append(_failed(row, f"fit: {_describe(exc)}"))
                continue
            row["fit_seconds"] = time.perf_counter() - t1
            row.update(e.to_row())
            t = _float(truth.get(e.estimand))
            row["truth"] = t
            row["significant"] = bool(e.significant(alpha))
            row["covered"] = bool(e.lower <= t <= e.upper) if math.isfinite(t) else None
            row["error"] = None
            rows.append(row)
    return rows


def _failed(row: dict, error: str) -> dict:
    row.update({"estimand": None, "estimate": math.nan, "se": math.nan, "lower": math.nan,
                "upper": math.nan, "p_value": math.nan, "p_positive": math.nan,
                "truth": math.nan, "significant": False, "covered": None,
                "converged": False, "error": error})
    row.setdefault("fit_seconds", 0.0)
    return row


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)
    loc = f" [{os.path.basename(where[-1].filename)}:{where[-1].lineno}]" if where else ""
    return f"{type(exc).__name__}: {exc}{loc}"


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
