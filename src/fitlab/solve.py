"""The size a design needs, by simulation: a sequential search along one size factor.

:func:`solve_size` runs replicates of a scenario at several values of one size factor
(``size.clients_per_unit``, ``size.units``, ...) through the batch engine
(:func:`fitlab.batch.run_jobs`: seeded, resumable, parallel), fits a smooth power curve to
the rejections, and reports the size at which the curve reaches the target power, with a
confidence interval. It spends its replicates where the curve crosses the target: a first
round spreads sizes over a wide bracket, and each later round places new sizes around the
current estimate of the crossing, within its interval.

The power curve
---------------
For a Wald test of an effect whose standard error shrinks with the size ``n``, power is
``Phi(lambda(n) - c) + Phi(-lambda(n) - c)`` with the noncentrality ``lambda = effect / SE``
and the critical value ``c = z_{1-alpha/2}`` (``z_{1-alpha}`` one-sided, with no second
term). :func:`fit_power_curve` models the noncentrality as a power of the size,
``lambda(n) = exp(a + b log n)``, and fits ``(a, b)`` to the replicates' rejections by
binomial maximum likelihood. The form is exact for the two-sample test (``b = 1/2``) and
bends the right way for clustered designs, whose noncentrality grows ever more slowly with
clients per unit; near the crossing, where the later rounds put their sizes, any smooth
curve through the points is close. The size reaching power ``target`` is
``log n* = (log(c + z_target) - a) / b`` (the second tail is negligible there), and its
interval comes from the delta method on ``log n*`` with the covariance of ``(a, b)`` (the
inverse Fisher information); the pointwise band of the curve likewise.

Seeds
-----
Each size is its own scenario with its own seed, drawn from the base scenario's seed and
the size (:func:`size_seed`), so that the points of the curve are independent binomial
draws as the fit assumes (one shared seed would correlate neighbouring sizes). The whole
search is deterministic: run it again and every finished replicate is reused.

Examples
--------
>>> import numpy as np
>>> curve = fit_power_curve([20, 40, 80], [30, 55, 88], [100, 100, 100])
>>> round(curve.solve(0.8)["size"])
66
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from fitlab.errors import UsageError

__all__ = ["PowerCurve", "fit_power_curve", "solve_size", "size_seed", "SIZE_FACTORS",
           "SolveResult", "analytic_answer", "REPS"]

#: Size factors a search may vary, and whether their values are whole numbers.
SIZE_FACTORS: dict[str, bool] = {
    "size.clients_per_unit": True,
    "size.units": True,
    "size.therapists_per_unit": True,
}
#: Replicates added at each size of a round, unless the caller says otherwise.
REPS = 100
# noncentrality exponent bounds: 1/2 for a two-sample test; smaller when clustering caps
# the information; the bounds only keep a fit on flat data (all or no rejections) finite
_B_BOUNDS = (0.02, 1.5)


def _critical(alpha: float, sides: int) -> float:
    return float(special.ndtri(1 - alpha / 2 if sides == 2 else 1 - alpha))


@dataclass
class PowerCurve:
    """A fitted power curve ``power(n) = Phi(exp(a + b log n) - c) [+ Phi(-... - c)]``.

    Attributes
    ----------
    a, b : float
        Log-noncentrality intercept and slope on ``log n``.
    cov : ndarray
        2 x 2 covariance of ``(a, b)`` (inverse Fisher information).
    alpha, sides : float, int
        The test's level and sides (setting the critical value ``c``).
    level : float
        Confidence level of intervals and bands.
    """

    a: float
    b: float
    cov: np.ndarray
    alpha: float = 0.05
    sides: int = 2
    level: float = 0.95

    @property
    def c(self) -> float:
        return _critical(self.alpha, self.sides)

    def _z(self) -> float:
        return float(special.ndtri(0.5 + self.level / 2))

    def power(self, n) -> np.ndarray:
        """Fitted power at sizes ``n``."""
        return _power(self.a, self.b, np.log(np.asarray(n, dtype=float)), self.c, self.sides)

    def band(self, n) -> pd.DataFrame:
        """Fitted power at ``n`` with its pointwise delta-method interval."""
        logn = np.log(np.asarray(n, dtype=float))
        p = _power(self.a, self.b, logn, self.c, self.sides)
        g = _grad(self.a, self.b, logn, self.c, self.sides)
        se = np.sqrt(np.einsum("ij,jk,ik->i", g, self.cov, g))
        # on the probit scale, so the band stays inside (0, 1)
        q = special.ndtri(np.clip(p, 1e-12, 1 - 1e-12))
        dq = se / np.maximum(_phi(q), 1e-300)
        z = self._z()
        return pd.DataFrame({"size": np.asarray(n, dtype=float), "power": p, "se": se,
                             "lower": special.ndtr(q - z * dq),
                             "upper": special.ndtr(q + z * dq)})

    def solve(self, target: float = 0.8) -> dict[str, float]:
        """The size at which the fitted curve reaches ``target``, with its interval.

        Returns
        -------
        dict
            ``size``, ``lower``, ``upper`` (delta method on ``log n*``) and ``log_se``.
        """
        if not 0 < target < 1:
            raise UsageError(f"target power must be in (0, 1), got {target!r}")
        k = math.log(self.c + float(special.ndtri(target)))
        log_n = (k - self.a) / self.b
        g = np.array([-1.0 / self.b, -(k - self.a) / self.b**2])
        log_se = float(math.sqrt(max(g @ self.cov @ g, 0.0)))
        z = self._z()
        return {"size": _exp(log_n), "lower": _exp(log_n - z * log_se),
                "upper": _exp(log_n + z * log_se), "log_se": log_se}

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "cov": self.cov.tolist(), "alpha": self.alpha,
                "sides": self.sides, "level": self.level}


def _exp(x: float) -> float:
    """``exp`` that gives ``inf`` rather than raising, for a crossing far off the data."""
    return math.exp(x) if x < 700 else math.inf


def _phi(x):
    return np.exp(-0.5 * np.square(x)) / math.sqrt(2 * math.pi)


def _power(a, b, logn, c, sides):
    lam = np.exp(a + b * logn)
    p = special.ndtr(lam - c)
    return p + special.ndtr(-lam - c) if sides == 2 else p


def _grad(a, b, logn, c, sides):
    """d power / d (a, b), one row per size."""
    lam = np.exp(a + b * logn)
    dp = _phi(lam - c) - (_phi(-lam - c) if sides == 2 else 0.0)
    return np.column_stack([dp * lam, dp * lam * logn])


def fit_power_curve(sizes, rejections, reps, *, alpha: float = 0.05, sides: int = 2,
                    level: float = 0.95, slope: float | None = None) -> PowerCurve:
    """Fit the power curve of the module docstring to rejection counts.

    Parameters
    ----------
    sizes : array_like
        The size at each point (positive).
    rejections, reps : array_like
        Rejections of no effect, and replicates, at each point.
    alpha, sides : float, int
        The test's level and sides.
    level : float
        Confidence level of the curve's intervals.
    slope : float, optional
        Fix ``b`` (e.g. ``1`` for power against the effect size, whose noncentrality is
        proportional to it); then one size suffices.

    Returns
    -------
    PowerCurve

    Raises
    ------
    UsageError
        With fewer than two distinct sizes (one with ``slope``), or counts that do not fit.
    """
    n = np.asarray(sizes, dtype=float)
    k = np.asarray(rejections, dtype=float)
    m = np.asarray(reps, dtype=float)
    if n.shape != k.shape or n.shape != m.shape or n.ndim != 1:
        raise UsageError("sizes, rejections and reps must be 1-d and of equal length")
    if len(np.unique(n)) < (1 if slope is not None else 2) or (n <= 0).any() or (m <= 0).any() or (k < 0).any() or (k > m).any():
        raise UsageError("a power curve needs two or more distinct positive sizes and "
                         "0 <= rejections <= reps at each")
    logn, c = np.log(n), _critical(alpha, sides)

    def nll(theta):
        p = np.clip(_power(theta[0], theta[1], logn, c, sides), 1e-12, 1 - 1e-12)
        return -float(np.sum(k * np.log(p) + (m - k) * np.log1p(-p)))

    # start from b = 1/2 (the two-sample test) and a through the pooled power
    p_all = np.clip(k.sum() / m.sum(), 0.05, 0.95)
    a0 = math.log(max(c + float(special.ndtri(p_all)), 0.1)) - 0.5 * float(np.mean(logn))
    fixed = slope is not None
    b_bounds = (float(slope), float(slope)) if fixed else _B_BOUNDS
    b0 = float(slope) if fixed else 0.5
    a0 += (0.5 - b0) * float(np.mean(logn))
    res = optimize.minimize(nll, np.array([a0, b0]), method="L-BFGS-B",
                            bounds=[(None, None), b_bounds])
    a, b = (float(v) for v in res.x)
    # inverse expected Fisher information of the binomial likelihood
    p = np.clip(_power(a, b, logn, c, sides), 1e-9, 1 - 1e-9)
    g = _grad(a, b, logn, c, sides)
    w = m / (p * (1 - p))
    if fixed:  # only a is free
        cov = np.array([[1.0 / max(float(np.sum(w * g[:, 0] ** 2)), 1e-300), 0.0], [0.0, 0.0]])
    else:
        cov = np.linalg.pinv((g * w[:, None]).T @ g)
    return PowerCurve(a, b, cov, alpha, sides, level)


def size_seed(seed: int, factor: str, value: float) -> int:
    """The seed of the scenario at ``factor = value`` in a search from base ``seed``."""
    key = [int(seed), *factor.encode(), int(round(float(value) * 1000))]
    return int(np.random.SeedSequence(key).generate_state(1)[0] % (2**31 - 1))


@dataclass
class SolveResult:
    """What :func:`solve_size` found: the size, its interval, the points and the curve."""

    factor: str
    target: float
    estimator: str
    size: float
    lower: float
    upper: float
    needed: float
    points: pd.DataFrame
    curve: PowerCurve
    rounds: list[dict] = field(default_factory=list)
    folder: Path | None = None
    analytic: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from simulate.conventions import json_native

        return json_native({
            "factor": self.factor, "target": self.target, "estimator": self.estimator,
            "size": self.size, "lower": self.lower, "upper": self.upper,
            "needed": self.needed, "level": self.curve.level,
            "replicates": int(self.points["reps"].sum()), "rounds": self.rounds,
            "curve": self.curve.to_dict(), "points": self.points.to_dict("records"),
            "analytic": self.analytic, "folder": str(self.folder) if self.folder else None,
        })


def _round_size(value: float, whole: bool) -> float:
    return float(max(1, round(value))) if whole else float(round(value, 3))


def _first_bracket(scenario, factor: str, target: float, bounds) -> tuple[float, float]:
    if bounds is not None:
        lo, hi = (float(v) for v in bounds)
        if not 0 < lo < hi:
            raise UsageError(f"--range must be two sizes 0 < low < high, got {bounds}")
        return lo, hi
    guess = analytic_answer(scenario, factor, target).get("size")
    if guess is None or not math.isfinite(guess) or guess <= 0:
        guess = float(_get(scenario, factor))
    return max(2.0, guess / 3), guess * 3


def _get(scenario, factor: str):
    obj = scenario
    for part in factor.split("."):
        obj = getattr(obj, part)
    return obj


def analytic_answer(scenario, factor: str, target: float) -> dict[str, Any]:
    """The analytic sizes for the same question, where :mod:`simulate.power` offers them.

    Calls ``simulate.power.solve_size(scenario, factor, target=..., method=...)`` for the
    ``"fitted"`` (the model actually fitted) and ``"textbook"`` methods; returns an empty
    dict when the solver is absent or does not cover the design. ``size`` is the fitted
    method's answer, else the textbook one.
    """
    try:
        from simulate.power import solve_size as analytic_solve
    except ImportError:
        return {}
    out: dict[str, Any] = {}
    for method in ("fitted", "textbook"):
        try:
            out[method] = answer_value(analytic_solve(scenario, factor, target=target,
                                                      method=method), factor)
        except Exception as exc:  # an analytic gap is reported, not fatal
            out[f"{method}_error"] = f"{type(exc).__name__}: {exc}"
    for method in ("fitted", "textbook"):
        if out.get(method) is not None and math.isfinite(out[method]):
            out["size"] = out[method]
            break
    return out


def answer_value(res, key: str | None = None) -> float:
    """A number from an analytic solver's answer: a number, or a dict holding one."""
    if isinstance(res, dict):
        for k in (key, key.rsplit(".", 1)[-1] if key else None, "size", "value", "mde",
                  "d", "n"):
            if k is not None and isinstance(res.get(k), int | float):
                return float(res[k])
        raise TypeError(f"no number among the keys {sorted(res)}")
    return float(res)


def solve_size(
    scenario,
    factor: str = "size.clients_per_unit",
    target: float = 0.8,
    *,
    root: str | Path = "outputs",
    estimator: str | None = None,
    reps: int = REPS,
    rounds: int = 3,
    first: int = 5,
    later: int = 3,
    bounds: tuple[float, float] | None = None,
    level: float = 0.95,
    workers: int = 1,
    progress: bool = False,
    **batch,
) -> SolveResult:
    """The value of ``factor`` at which the design reaches power ``target``, by simulation.

    Parameters
    ----------
    scenario : Scenario
        The design (its effect is the one to detect).
    factor : str
        The size factor to vary (:data:`SIZE_FACTORS`).
    target : float
        The power wanted.
    root : path
        Output root; the search writes ``root/solve-<scenario_id>-<factor>/`` (one scenario
        folder per size, ``points.csv``, ``solve.json``).
    estimator : str, optional
        Default: :func:`models.defaults.default_estimators` of the scenario.
    reps : int
        Replicates added at each size chosen in a round.
    rounds : int
        Rounds: the first spreads ``first`` sizes over the bracket, each later one puts
        ``later`` sizes around the current crossing.
    bounds : (float, float), optional
        The first round's bracket; default a factor 3 either side of the analytic answer
        (where :mod:`simulate.power` gives one), else of the scenario's own value.
    level : float
        Confidence level of the interval.
    workers : int
        Processes for the replicates.
    **batch
        Passed on to :func:`fitlab.batch.run_jobs` (``chunk``, ``scheduler``, ``dask``).

    Returns
    -------
    SolveResult
        ``size`` (the crossing, continuous), ``lower``/``upper`` (its interval), ``needed``
        (the crossing rounded up to a whole size), the points and the fitted curve.

    Raises
    ------
    UsageError
        An unknown factor, a target outside (0, 1), or too few rounds, sizes or reps.
    """
    from fitlab.batch import run_jobs
    from fitlab.diagnosands import power as power_of
    from fitlab.grid import scenario_job
    from fitlab.store import ScenarioStore, atomic_write, atomic_write_text
    from models.defaults import default_estimators

    if factor not in SIZE_FACTORS:
        raise UsageError(f"--factor must be one of {sorted(SIZE_FACTORS)}, got {factor!r}")
    if not 0 < target < 1:
        raise UsageError(f"--target must be in (0, 1), got {target!r}")
    for name, v, least in (("--reps", reps, 2), ("--rounds", rounds, 1), ("first", first, 2),
                           ("later", later, 1)):
        if not isinstance(v, int) or v < least:
            raise UsageError(f"{name} must be an integer >= {least}, got {v!r}")
    est = estimator or default_estimators(scenario)[0]
    whole = SIZE_FACTORS[factor]
    alpha, sides = scenario.analysis.alpha, getattr(scenario.analysis, "sides", 2)
    folder = Path(root) / f"solve-{scenario.scenario_id}-{factor.rsplit('.', 1)[-1]}"
    lo, hi = _first_bracket(scenario, factor, target, bounds)
    planned: dict[float, int] = {}
    jobs: dict[float, Any] = {}
    history: list[dict] = []
    curve = None
    for r in range(rounds):
        if r == 0:
            sizes = np.exp(np.linspace(math.log(lo), math.log(hi), first))
        else:
            s = curve.solve(target)
            # within the interval, at least 10% either side so the slope stays identified
            w = max(math.log(s["upper"] / s["size"]), math.log(s["size"] / s["lower"]), 0.1)
            sizes = s["size"] * np.exp(np.linspace(-w, w, later)) if later > 1 \
                else np.array([s["size"]])
            # a crossing far outside the sizes run so far is approached in steps of at
            # most 4x per round, not jumped to on an extrapolation
            have = np.array(sorted(planned))
            sizes = np.clip(sizes, have.min() / 4, have.max() * 4)
        chosen = sorted({_round_size(v, whole) for v in sizes})
        for v in chosen:
            planned[v] = planned.get(v, 0) + reps
            sc = _scenario_at(scenario, factor, v)
            jobs[v] = scenario_job(sc, planned[v], [est], null=False)
        run_jobs(list(jobs.values()), folder, workers=workers, progress=progress, **batch)
        rows = []
        for v, job in sorted(jobs.items()):
            table = ScenarioStore(folder / job.scenario_id).table()
            # the replicates planned so far only: a rerun, whose store already holds
            # later rounds' replicates, then retraces the same search
            table = table[(table["role"] == "effect") & (table["estimator"] == est)
                          & (table["replicate"] < planned[v])]
            p, mcse, m = power_of(table)
            rows.append({"size": v, "reps": m, "rejections": int(round(p * m)), "power": p,
                         "mcse": mcse, "scenario_id": job.scenario_id})
        points = pd.DataFrame(rows)
        curve = fit_power_curve(points["size"], points["rejections"], points["reps"],
                                alpha=alpha, sides=sides, level=level)
        history.append({"round": r + 1, "sizes": chosen, **curve.solve(target)})
    s = curve.solve(target)
    points["fitted"] = curve.power(points["size"])
    res = SolveResult(factor=factor, target=target, estimator=est, size=s["size"],
                      lower=s["lower"], upper=s["upper"],
                      needed=float(math.ceil(s["size"] - 1e-9)) if whole else s["size"],
                      points=points, curve=curve, rounds=history, folder=folder,
                      analytic=analytic_answer(scenario, factor, target))
    atomic_write(folder / "points.csv", lambda tmp: points.to_csv(tmp, index=False))
    atomic_write_text(folder / "solve.json", json.dumps(res.to_dict(), indent=1))
    return res


def _scenario_at(scenario, factor: str, value: float):
    """The scenario with ``factor = value`` and that size's own seed."""
    from simulate.scenario import ScenarioError

    v = int(value) if SIZE_FACTORS[factor] and factor != "size.clients_per_unit" else value
    try:
        return scenario.replace({factor: v, "seed": size_seed(scenario.seed, factor, value)})
    except ScenarioError as exc:
        raise UsageError(
            f"the search reached {factor} = {value:g}, where the scenario is not valid: "
            f"{'; '.join(exc.problems)}. The target power is out of reach within the "
            f"scenario's other constraints (or give --range to search elsewhere)") from None
