"""Run replicates to a precision, not a count: rounds until every Monte Carlo SE is small enough.

A user rarely knows how many replicates a scenario needs: the Monte Carlo standard error
(MCSE) of power is ``sqrt(p (1 - p) / n)``, so it depends on the power being estimated.
:func:`run_to_precision` runs a first round, reads the diagnosands, and plans the next
round's size from what it observed with :func:`fitlab.diagnosands.suggest_reps`, until the
MCSE of each targeted diagnosand (power, and if named bias or coverage) is at or below its
target for every scenario, role and estimator, or the cap ``max_reps`` is reached.

One rule, in one place, used by every caller (``fitlab run --target-mcse``, grids with
``target_mcse:``, and the simulation-based sample-size search):

- :func:`required_reps`: replicates one diagnosand needs, from its value, MCSE and count;
- :func:`reps_needed`: the most any (role, estimator) of a diagnosand table needs.

The rule, per diagnosand:

- proportions (power, type I error, coverage): ``n = p (1 - p) / target^2`` with the
  plug-in ``p = (x + 1) / (n + 2)`` (``x`` successes of ``n``), so that a round in which
  every replicate rejects, or none does, does not claim an MCSE of 0 and stop at once;
- means (bias): ``n = sd^2 / target^2`` with ``sd = mcse sqrt(n)`` as observed;
- failed fits count in power but not in bias or coverage, so their count ``n`` is scaled
  up to replicates by ``reps / n``.

Rounds: the first is ``first_reps`` (default a tenth of the worst case ``0.25 / target^2``,
at least :data:`MIN_FIRST_ROUND`); each later one brings a group to what the rule asks,
but at least 10% (and :data:`MIN_STEP` replicates) more, so that noise near the target
does not cost a string of tiny rounds, and at most twice what is there, so that a plan
made from a small noisy round does not overshoot. The state of a run is what is on disk: the rows,
and in each scenario's manifest the plans of the rounds that finished. A group's
replicates are counted as the unbroken run 0, 1, ..., k-1 of replicates present, capped at
the last finished round, and the diagnosands that plan the next round are computed from
those. A killed run, run again, therefore plans the same rounds as one that was not
killed, and adds only the missing fits.

Examples
--------
>>> import pandas as pd
>>> diag = pd.DataFrame({"role": ["effect"], "estimator": ["m"], "diagnosand": ["power"],
...                      "value": [0.5], "mcse": [0.05], "n": [100], "reps": [100]})
>>> reps_needed(diag, 0.01)   # p = (50 + 1) / 102 = 0.5: 0.25 / 0.01^2
2500
>>> Precision.make(0.01).first_round()
250
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fitlab.diagnosands import diagnose, suggest_reps
from fitlab.errors import UsageError

__all__ = ["Precision", "PrecisionRun", "TARGETABLE", "DEFAULT_MAX_REPS", "PRECISION_KEYS",
           "required_reps", "reps_needed", "requirements", "next_total", "prefix",
           "run_to_precision", "precision_problems", "parse_target_on", "describe"]

#: Diagnosands a target can name. ``power`` covers the null twin's type I error too.
TARGETABLE = ("power", "bias", "coverage")
#: Proportions: binomial MCSE. The others are means (MCSE ``sd / sqrt(n)``).
_PROPORTIONS = ("power", "type_i_error", "coverage")
#: Replicates per scenario and estimator when no cap is given.
DEFAULT_MAX_REPS = 10_000
#: Smallest first round, and smallest later round.
MIN_FIRST_ROUND = 20
MIN_STEP = 10
#: A later round adds at least this share of what is there,
MIN_GROWTH = 0.1
#: and at most doubles it: a plan made from few replicates is noisy, and running far past
#: the need costs more than one more round.
MAX_GROWTH = 2.0
#: Grid keys of a precision target (``reps`` is then the first round).
PRECISION_KEYS = ("target_mcse", "target_on", "max_reps")


@dataclass(frozen=True)
class Precision:
    """A precision target.

    Attributes
    ----------
    targets : dict
        Diagnosand (of :data:`TARGETABLE`) -> the MCSE wanted, on its own scale (power and
        coverage as proportions, bias in outcome units).
    max_reps : int
        Cap on replicates per scenario, role and estimator.
    first_reps : int or None
        Size of the first round; ``None``: :meth:`first_round`'s rule.
    """

    targets: dict[str, float] = field(default_factory=lambda: {"power": 0.01})
    max_reps: int = DEFAULT_MAX_REPS
    first_reps: int | None = None

    @classmethod
    def make(cls, target_mcse: float, on: Any = None, max_reps: int | None = None,
             first_reps: int | None = None, names: dict[str, str] | None = None) -> Precision:
        """A validated target; ``on`` as in :func:`parse_target_on`.

        Raises
        ------
        UsageError
            Naming each value that is not allowed (with ``names`` for the labels).
        """
        problems = precision_problems(target_mcse, on, max_reps, first_reps, names)
        if problems:
            raise UsageError("; ".join(problems))
        return cls(parse_target_on(on, target_mcse), max_reps or DEFAULT_MAX_REPS, first_reps)

    @classmethod
    def from_settings(cls, settings: dict, overrides: dict | None = None,
                      first_reps: int | None = None,
                      names: dict[str, str] | None = None) -> Precision | None:
        """The target of a grid's keys (:data:`PRECISION_KEYS`) with ``overrides`` applied.

        ``overrides`` (e.g. command-line flags) win where not ``None``. Returns ``None``
        when no ``target_mcse`` is given at all.

        Raises
        ------
        UsageError
            For a cap or ``target_on`` without a target, or a value not allowed.
        """
        given = {k: settings[k] for k in PRECISION_KEYS if settings.get(k) is not None}
        given |= {k: v for k, v in (overrides or {}).items() if v is not None}
        label = {"target_mcse": "target_mcse"} | (names or {})
        if "target_mcse" not in given:
            extra = [(names or {}).get(k, k) for k in given]
            if extra:
                raise UsageError(f"{' and '.join(extra)} need(s) {label['target_mcse']}")
            return None
        return cls.make(given["target_mcse"], given.get("target_on"), given.get("max_reps"),
                        first_reps, names)

    def first_round(self) -> int:
        """Replicates of the first round: ``first_reps``, else a tenth of the worst case.

        The worst case is power 0.5, ``0.25 / target^2`` (2,500 for 0.01), so the first
        round (250) already gives an MCSE of at most ``3.2 target`` to plan from.
        """
        if self.first_reps is not None:
            return min(self.first_reps, self.max_reps)
        worst = suggest_reps(self.targets.get("power", min(self.targets.values())))
        return min(self.max_reps, max(MIN_FIRST_ROUND, math.ceil(worst / 10)))

    def diagnosands(self, role: str) -> dict[str, float]:
        """The targeted diagnosands of a role with their targets (null: type I error)."""
        out = dict(self.targets)
        if role == "null" and "power" in out:
            out["type_i_error"] = out.pop("power")
        return out

    def to_dict(self) -> dict:
        return {"targets": dict(self.targets), "max_reps": self.max_reps,
                "first_reps": self.first_reps}


def parse_target_on(on: Any, default: float) -> dict[str, float]:
    """``"power,bias=0.1"``, ``["power", "coverage"]`` or ``{"bias": 0.1}`` -> targets.

    A name without a value gets ``default`` (the ``target_mcse``). ``None``: power only.
    Values are not checked here (:func:`precision_problems` does).
    """
    if on is None:
        return {"power": default}
    if isinstance(on, dict):
        return {str(k): (default if v is None else v) for k, v in on.items()}
    items = on.split(",") if isinstance(on, str) else list(on)
    out: dict[str, float] = {}
    for item in items:
        if isinstance(item, dict):
            out.update(parse_target_on(item, default))
            continue
        name, sep, value = str(item).partition("=")
        if name.strip():
            out[name.strip()] = _number(value) if sep else default
    return out


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def precision_problems(target_mcse: Any, on: Any = None, max_reps: Any = None,
                       first_reps: Any = None, names: dict[str, str] | None = None) -> list[str]:
    """One message per value of a precision target that is not allowed.

    ``names`` maps ``target_mcse``, ``target_on``, ``max_reps`` and ``reps`` to the labels
    the user typed (flags or grid keys).
    """
    label = {"target_mcse": "target_mcse", "target_on": "target_on", "max_reps": "max_reps",
             "reps": "reps"} | (names or {})
    problems = []
    if not _positive(target_mcse):
        problems.append(f"{label['target_mcse']}: must be a positive number, got {target_mcse!r}")
    elif target_mcse >= 0.5:
        problems.append(f"{label['target_mcse']}: must be below 0.5 (an MCSE of a proportion "
                        f"is at most 0.5), got {target_mcse!r}")
    if on is not None and not isinstance(on, str | list | tuple | dict):
        problems.append(f"{label['target_on']}: must be a list of names (or name=target), "
                        f"got {on!r}")
        on = None
    targets = parse_target_on(on, target_mcse if _positive(target_mcse) else 0.01)
    if on is not None and not targets:
        problems.append(f"{label['target_on']}: names no diagnosand; allowed: "
                        f"{', '.join(TARGETABLE)}")
    for name, value in targets.items():
        if name not in TARGETABLE:
            problems.append(f"{label['target_on']}: unknown diagnosand {name!r}; allowed: "
                            f"{', '.join(TARGETABLE)}")
        elif not _positive(value):
            problems.append(f"{label['target_on']}: the target of {name} must be a positive "
                            f"number, got {value!r}")
    for key, value in (("max_reps", max_reps), ("reps", first_reps)):
        if value is not None and not (_integer(value) and value >= 1):
            problems.append(f"{label[key]}: must be a positive integer, got {value!r}")
    if _integer(max_reps) and _integer(first_reps) and first_reps > max_reps:
        problems.append(f"{label['reps']}: the first round ({first_reps}) exceeds "
                        f"{label['max_reps']} ({max_reps})")
    return problems


def _positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# -- the rule ---------------------------------------------------------------------------------
def required_reps(diagnosand: str, value: float, mcse: float, n: int, reps: int,
                  target: float) -> int | None:
    """Replicates for the MCSE of one diagnosand to be at most ``target``.

    Parameters
    ----------
    diagnosand : str
        ``power``, ``type_i_error``, ``coverage`` (proportions) or ``bias`` (a mean).
    value, mcse : float
        As observed.
    n : int
        Replicates the diagnosand was computed from (fits that returned, for bias and
        coverage).
    reps : int
        Replicates run.
    target : float

    Returns
    -------
    int or None
        ``None`` when it cannot be told (no estimate yet, or a NaN MCSE).

    Examples
    --------
    >>> required_reps("power", 0.8, 0.04, 100, 100, 0.01)   # p = 81/102
    1635
    >>> required_reps("bias", 0.1, 0.2, 90, 100, 0.1)       # sd = 0.2 sqrt(90), 10 failed
    400
    """
    if not n or n <= 0 or not np.isfinite(value):
        return None
    if diagnosand in _PROPORTIONS:
        x = float(value) * n
        need = suggest_reps(target, proportion=(x + 1) / (n + 2))
    else:
        if not np.isfinite(mcse):
            return None
        need = suggest_reps(target, sd=float(mcse) * math.sqrt(n))
    return math.ceil(need * max(reps, n) / n - 1e-9)


def requirements(diag: pd.DataFrame, precision: Precision) -> pd.DataFrame:
    """Per (role, estimator, targeted diagnosand): value, MCSE, target, reps, needed, met.

    ``met``: the replicates run reach what the rule asks (which implies MCSE <= target),
    or the need cannot be told (``needed`` NaN: e.g. every fit failed).
    """
    cols = ["role", "estimator", "diagnosand", "value", "mcse", "target", "n", "reps",
            "needed", "met"]
    rows = []
    if diag is not None and len(diag):
        for r in diag.itertuples(index=False):
            wanted = precision.diagnosands(r.role)
            if r.diagnosand not in wanted:
                continue
            need = required_reps(r.diagnosand, r.value, r.mcse, int(r.n), int(r.reps),
                                 wanted[r.diagnosand])
            rows.append((r.role, r.estimator, r.diagnosand, r.value, r.mcse,
                         wanted[r.diagnosand], int(r.n), int(r.reps),
                         math.nan if need is None else need,
                         need is None or int(r.reps) >= need))
    return pd.DataFrame(rows, columns=cols)


def reps_needed(diag: pd.DataFrame, target_mcse: float | dict[str, float],
                on: Iterable[str] | str | None = None) -> int:
    """The most replicates any (role, estimator) of ``diag`` needs for the target.

    Parameters
    ----------
    diag : DataFrame
        A long diagnosand table (:func:`fitlab.diagnosands.diagnose`).
    target_mcse : float or dict
        The MCSE wanted, or diagnosand -> MCSE.
    on : str or list, optional
        Diagnosands the target applies to (default power, with type I error on the null
        role); see :func:`parse_target_on`.

    Returns
    -------
    int
        0 when nothing can be told from ``diag``.
    """
    targets = target_mcse if isinstance(target_mcse, dict) else parse_target_on(on, target_mcse)
    req = requirements(diag, Precision(targets))
    need = req["needed"].dropna()
    return int(need.max()) if len(need) else 0


def next_total(have: int, needed: int | None, precision: Precision) -> int:
    """Replicates a group should have after the next round (``have``: nothing to add)."""
    first = precision.first_round()
    if have < first:  # too few to plan from (or a smaller run before): the first round
        return first
    if needed is None or (isinstance(needed, float) and math.isnan(needed)) or needed <= have \
            or have >= precision.max_reps:
        return have
    step = max(MIN_STEP, math.ceil(MIN_GROWTH * have))
    target = min(max(needed, have + step), math.ceil(MAX_GROWTH * have))
    return int(min(precision.max_reps, max(target, have + step)))


# -- the driver -------------------------------------------------------------------------------
def prefix(table: pd.DataFrame, limit: dict[str, dict[str, int]] | None = None
           ) -> tuple[pd.DataFrame, dict[tuple[str, str], int]]:
    """Rows of the unbroken replicate run 0..k-1 of each (role, estimator), and each k.

    ``limit`` (``role -> {estimator: n}``, the last round that finished) caps ``k``: rows
    past it come from a round that was killed, and planning from them would differ from
    the run that was not killed. They are kept, and counted once the run reaches them.
    """
    if table is None or len(table) == 0 or "replicate" not in table.columns:
        return table, {}
    have, keep = {}, []
    for (role, est), t in table.groupby(["role", "estimator"], sort=False):
        reps = np.unique(t["replicate"].to_numpy(dtype=int))
        gaps = np.flatnonzero(reps != np.arange(reps.size))
        k = int(gaps[0]) if gaps.size else int(reps.size)
        k = min(k, (limit or {}).get(str(role), {}).get(str(est), k))
        have[(str(role), str(est))] = k
        keep.append(t[t["replicate"] < k])
    return pd.concat(keep, ignore_index=True), have


@dataclass
class PrecisionRun:
    """What :func:`run_to_precision` did.

    Attributes
    ----------
    batch : fitlab.batch.BatchResult
        Fits run over all rounds, seconds, task errors, the summary table.
    achieved : DataFrame
        :func:`requirements` of every scenario's final diagnosands, with ``scenario_id``:
        the achieved MCSE, the replicates, and whether the target was met.
    jobs : list of Job
        The jobs with their final replicate counts.
    rounds : int
        Rounds run by this call (0: everything was there already).
    precision : Precision
    """

    batch: Any
    achieved: pd.DataFrame
    jobs: list
    rounds: int
    precision: Precision

    @property
    def met(self) -> bool:
        """Every targeted diagnosand of every scenario reached its target."""
        return bool(len(self.achieved)) and bool(self.achieved["met"].all())

    def describe(self) -> str:
        """A short table: achieved MCSE, replicates and whether each target was met."""
        return describe(self.achieved, self.precision, self.rounds)


def run_to_precision(jobs: list, root: str | Path, precision: Precision, *,
                     targeted: Callable[[Any], set[tuple[str, str]]] | None = None,
                     grid: dict | None = None, log: Callable[[str], None] | None = None,
                     **batch) -> PrecisionRun:
    """Run ``jobs`` in rounds until ``precision`` is met (or the cap), resumably.

    Parameters
    ----------
    jobs : list of fitlab.grid.Job
        Their plans name the (role, estimator) groups; targeted groups get their replicate
        counts from the rounds, the others keep the plan's.
    root : path
        Output folder, as for :func:`fitlab.batch.run_jobs`.
    precision : Precision
    targeted : callable, optional
        ``job -> {(role, estimator)}`` held to the target (default: every group of the
        plan). A grid's ``confirm`` estimators keep their fixed count.
    grid : dict, optional
        Recorded in the manifests.
    log : callable, optional
        Receives one line per round.
    **batch
        Passed to :func:`fitlab.batch.run_jobs` (``workers``, ``chunk``, ``progress``, ...).

    Returns
    -------
    PrecisionRun
    """
    from fitlab import manifest as mf
    from fitlab.batch import BatchResult, finalize, plan_tasks, summary_table
    from fitlab.batch import run_jobs as run_round
    from fitlab.grid import Job
    from fitlab.store import KEY, ScenarioStore

    root = Path(root)
    log = log or (lambda line: None)
    total = BatchResult(root=root)
    rounds = 0
    current = list(jobs)
    tables: dict[str, pd.DataFrame] = {}  # read again only where a round added rows
    # the last round that finished, per scenario: what planning starts from on a resume
    finished = {}
    for job in jobs:
        m = mf.read_json(root / job.scenario_id / "manifest.json") or {}
        finished[job.scenario_id] = ((m.get("precision") or {}).get("rounds") or [None])[-1]
    groups_of = {job.scenario_id: targeted(job) if targeted else
                 {(r, e) for r, es in job.plan.items() for e in es} for job in jobs}
    while True:
        work, current, adds = [], [], 0
        for job in jobs:
            if job.scenario_id not in tables:
                tables[job.scenario_id] = ScenarioStore(root / job.scenario_id).table()
            table = tables[job.scenario_id]
            pre, have = prefix(table, finished[job.scenario_id])
            req = requirements(diagnose(pre) if have else None, precision)
            groups = groups_of[job.scenario_id]
            plan: dict[str, dict[str, int]] = {}
            for role, ests in job.plan.items():
                for est, fixed in ests.items():
                    if (role, est) in groups:
                        mine = req[(req["role"] == role) & (req["estimator"] == est)]
                        need = mine["needed"].max() if len(mine) else None
                        n = next_total(have.get((role, est), 0), need, precision)
                    else:
                        n = fixed
                    plan.setdefault(role, {})[est] = int(n)
            new = Job(job.scenario, job.factors, plan)
            current.append(new)
            done = {(str(r), int(i), str(e))
                    for r, i, e in table[KEY].itertuples(index=False)} if len(table) else set()
            missing = sum(t["n_fits"] for t in plan_tasks(new, done, 10**9))
            if missing:
                work.append(new)
                adds += missing
        if not work:
            break
        rounds += 1
        log(f"round {rounds}: {adds} fits to add in {len(work)} scenario(s)")
        res = run_round(work, root, grid=grid, **batch)
        for job in work:
            _record(root / job.scenario_id, rounds=job.plan)
            tables.pop(job.scenario_id, None)
            finished[job.scenario_id] = job.plan
        total.fits_run += res.fits_run
        total.seconds += res.seconds
        total.task_errors += res.task_errors
        if res.task_errors:  # a task failed: stop; running again resumes
            break
    achieved = []
    for job in current:
        folder = root / job.scenario_id
        if not ScenarioStore(folder).part_files():
            continue
        if rounds == 0:
            total.skipped.append(job.scenario_id)
        diag = finalize(job, folder, batch.get("simulator") or _default_simulator(),
                        [e for e in total.task_errors if e["scenario_id"] == job.scenario_id])
        m = mf.read_json(folder / "manifest.json") or {}
        total.all_failed += [{"scenario_id": job.scenario_id, **f}
                             for f in m.get("all_failed", [])
                             if f["estimator"] in job.plan.get(f["role"], {})]
        req = requirements(diag, precision)
        mine = [(r, e) in groups_of[job.scenario_id] for r, e in zip(req["role"],
                                                                   req["estimator"])]
        req = req[mine].reset_index(drop=True)
        req.insert(0, "scenario_id", job.scenario_id)
        achieved.append(req)
        _record(folder, plan=job.plan, **precision.to_dict(), met=bool(req["met"].all()),
                achieved=_records(req.drop(columns="scenario_id")))
    total.summary = summary_table(current, root)
    table = pd.concat(achieved, ignore_index=True) if achieved else requirements(None, precision)
    return PrecisionRun(total, table, current, rounds, precision)


def _record(folder: Path, rounds: dict | None = None, plan: dict | None = None,
            **facts) -> None:
    """Update the ``precision`` record of a scenario's manifest.

    ``rounds``: the plan a round ran, appended to ``precision.rounds`` unless it repeats
    the last one (a killed round run again); ``plan``: the manifest's final plan.
    """
    from fitlab import manifest as mf

    path = folder / "manifest.json"
    m = mf.read_json(path) or {}
    rec = m.setdefault("precision", {})
    if rounds is not None and (not rec.get("rounds") or rec["rounds"][-1] != rounds):
        rec.setdefault("rounds", []).append(rounds)
    if plan is not None:
        m["plan"] = plan
    rec.update(facts)
    mf.write_json(path, m)


def _default_simulator() -> str:
    from fitlab.replicates import DEFAULT_SIMULATOR

    return DEFAULT_SIMULATOR


def _records(df: pd.DataFrame) -> list[dict]:
    from simulate.conventions import json_native

    return json_native(df.to_dict("records"), finite=True)


def describe(achieved: pd.DataFrame, precision: Precision, rounds: int | None = None) -> str:
    """A short table of the achieved MCSEs, replicates and whether each target was met."""
    if achieved is None or not len(achieved):
        return "precision: no results"
    shown = achieved.assign(
        value=achieved["value"].map(lambda x: f"{x:.3f}"),
        mcse=achieved["mcse"].map(lambda x: f"{x:.4f}"),
        target=achieved["target"].map(lambda x: f"{x:g}"),
        met=achieved["met"].map({True: "yes", False: "no"}))
    cols = [c for c in ("scenario_id", "role", "estimator", "diagnosand", "value", "mcse",
                        "target", "reps", "met") if c in shown.columns]
    head = ("precision: target MCSE " + ", ".join(f"{k} {v:g}" for k, v in
                                                   precision.targets.items())
            + f"; cap {precision.max_reps} replicates"
            + (f"; {rounds} round(s) this run" if rounds is not None else ""))
    text = head + "\n" + shown[cols].to_string(index=False)
    short = achieved[~achieved["met"]]
    if len(short):
        capped = int((short["reps"] >= precision.max_reps).sum())
        text += (f"\n{len(short)} target(s) not met" + (f", {capped} at the cap of "
                 f"{precision.max_reps} replicates (raise max_reps)" if capped else "")
                 + "; running the same command again resumes")
    return text
