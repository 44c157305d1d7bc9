"""Grids: a YAML file that expands factors into validated scenarios and their work plans.

A grid file::

    name: fit_default                 # folder under outputs/
    description: ...
    base: fit_individual.yaml         # scenario path (relative to the grid file, params/,
                                      # or cwd), "default", an inline mapping, or a list of
                                      # these (then "base" is a factor: one per scenario)
    factors:                          # dotted scenario field -> values; full product
      size.clients_per_unit: [10, 20, 40]
      missingness.attrition_rate: [0.1, 0.25]
    zip: [[a.b, c.d]]                 # optional: factors that vary together, not crossed
    exclude: [{design.kind: cluster, size.clients_per_unit: 10}]   # optional
    reps: 200                         # with target_mcse: the first round (optional)
    target_mcse: 0.01                 # optional: run in rounds until every MCSE is this small
    target_on: [power, coverage]      # optional: what the target applies to (default power;
                                      # name=value sets its own target, e.g. bias=0.1)
    max_reps: 5000                    # optional: the cap of a target run (default 10000)
    estimators: [reml_trajectory]     # or by design kind: {individual: [...], ...};
                                      # default: models.defaults (the fast one per design)
    type_i_error: true                # also run each scenario's null twin (default true)
    assurance: false                  # also run assurance replicates: effects drawn from
                                      # each scenario's effect.design_prior (default false)
    confirm:                          # optional: slower estimators on a few scenarios
      estimators: [bayes_trajectory]  # list or by design kind
      where: [{size.clients_per_unit: 20}]   # scenarios whose factors match one entry
      reps: 20
      type_i_error: false             # null twins for these too (default false)
      assurance: false                # assurance replicates for these too (default false)

With ``target_mcse`` the grid's estimators run in rounds (:mod:`fitlab.precision`) and the
``confirm`` estimators keep their fixed ``confirm.reps``.

Everything is validated before anything is written: unknown keys (with the allowed keys),
every expanded scenario, every estimator name and its outcome kind.

Examples
--------
>>> from fitlab.grid import expand_grid
>>> jobs = expand_grid({"name": "g", "base": "default", "reps": 5,
...                     "estimators": ["diff_means"],
...                     "factors": {"size.units": [6, 12]}})
>>> [j.factors["size.units"] for j in jobs]
[6, 12]
>>> jobs[0].plan
{'effect': {'diff_means': 5}, 'null': {'diff_means': 5}}
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulate.errors import MissingFileError, ProblemsError

__all__ = ["Job", "GridError", "load_grid", "expand_grid", "scenario_job", "resolve_scenario"]

# "type_i_error", not "null": YAML reads a key spelt null as None
GRID_KEYS = ("name", "description", "base", "factors", "zip", "exclude", "reps",
             "estimators", "type_i_error", "assurance", "confirm", "target_mcse", "target_on",
             "max_reps")
CONFIRM_KEYS = ("estimators", "where", "reps", "type_i_error", "assurance")
DESIGN_KINDS = ("individual", "cluster", "stepped_wedge")


class GridError(ProblemsError):
    """A grid that cannot be used; ``problems`` lists one message per problem."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__("grid", source, problems)


@dataclass
class Job:
    """One scenario and the fits to run for it.

    Attributes
    ----------
    scenario : Scenario
    factors : dict
        The factor values that produced it (empty for a single scenario).
    plan : dict
        ``role -> {estimator: reps}``, roles ``"effect"``, ``"null"`` and
        ``"assurance"`` (see :mod:`fitlab.replicates`).
    """

    scenario: Any
    factors: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def scenario_id(self) -> str:
        return self.scenario.scenario_id


def resolve_scenario(spec, where: Path | None = None):
    """A scenario from ``"default"``, a mapping, or a YAML path (tried relative to ``where``,
    its parent, ``params/`` of the current directory, then as given)."""
    from simulate.scenario import Scenario, ScenarioError, load_scenario

    if spec is None or spec == "default":
        return Scenario()
    if isinstance(spec, dict):
        return load_scenario(spec)
    if not isinstance(spec, str):
        raise ScenarioError(str(spec), [f"expected a path, 'default' or a mapping, got {type(spec).__name__}"])
    candidates = [Path(spec)]
    if where is not None:
        candidates = [where / spec, where.parent / spec, *candidates]
    candidates.append(Path("params") / spec)
    for c in candidates:
        if c.exists():  # a folder or an unreadable file is refused by load_scenario
            return load_scenario(c)
    raise MissingFileError(f"scenario file not found: {spec!r} (looked in "
                            f"{', '.join(str(c.parent) for c in candidates)})")


def load_grid(path: str | Path) -> tuple[dict, list[Job]]:
    """Read and expand a grid file.

    Returns
    -------
    spec : dict
        The grid as read (with ``name`` filled in from the file name if missing).
    jobs : list of Job
        One per distinct scenario, every one validated.

    Raises
    ------
    MissingFileError, GridError
    """
    from simulate.safe_yaml import read_yaml

    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"grid file not found: {p}")
    spec = read_yaml(p, "grid", GridError)  # the same safe reading as a scenario's
    if not isinstance(spec, dict):
        raise GridError(str(p), ["(top level): expected a mapping"])
    spec.setdefault("name", p.stem)
    return spec, expand_grid(spec, where=p.parent.resolve(), source=str(p))


def expand_grid(spec: dict, where: Path | None = None, source: str = "grid") -> list[Job]:
    """Expand a grid mapping into validated jobs (see the module docstring)."""
    from models import ESTIMATORS
    from simulate.scenario import ScenarioError

    problems: list[str] = []
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {[str(k) for k in unknown]}; allowed keys: {', '.join(GRID_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name or ""):
        problems.append(f"name: must be a folder-safe name (letters, digits, _ and -), got {name!r}")
    reps = spec.get("reps", 100)
    if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
        problems.append(f"reps: must be a positive integer, got {reps!r}")
    problems += _precision_problems(spec)
    if not isinstance(spec.get("type_i_error", True), bool):
        problems.append(f"type_i_error: must be true or false, got {spec.get('type_i_error')!r}")
    if not isinstance(spec.get("assurance", False), bool):
        problems.append(f"assurance: must be true or false, got {spec.get('assurance')!r}")
    factors = spec.get("factors") or {}
    if not isinstance(factors, dict) or not all(
        isinstance(v, list) and v for v in factors.values()
    ):
        problems.append("factors: must map dotted scenario fields to non-empty lists")
        factors = {}
    confirm = spec.get("confirm") or {}
    if not isinstance(confirm, dict):
        problems.append("confirm: must be a mapping")
        confirm = {}
    bad = sorted(set(confirm) - set(CONFIRM_KEYS))
    if bad:
        problems.append(f"confirm: unknown key(s) {bad}; allowed keys: {', '.join(CONFIRM_KEYS)}")
    if confirm and not confirm.get("estimators"):
        problems.append("confirm.estimators: required when confirm is given")
    if not isinstance(confirm.get("assurance", False), bool):
        problems.append(f"confirm.assurance: must be true or false, got "
                        f"{confirm.get('assurance')!r}")
    creps = confirm.get("reps", 20)
    if not isinstance(creps, int) or isinstance(creps, bool) or creps < 1:
        problems.append(f"confirm.reps: must be a positive integer, got {creps!r}")
    where_list = confirm.get("where", "all")
    if where_list != "all" and not (isinstance(where_list, list)
                                    and all(isinstance(w, dict) for w in where_list)):
        problems.append("confirm.where: must be 'all' or a list of {factor: value} mappings")
        where_list = []
    combos, combo_problems = _combinations(spec, factors)
    problems += combo_problems
    if problems:
        raise GridError(source, problems)

    bases = spec.get("base", "default")
    base_list = bases if isinstance(bases, list) else [bases]
    base_scenarios = []
    for b in base_list:
        try:
            base_scenarios.append(resolve_scenario(b, where))
        except (ScenarioError, MissingFileError) as exc:
            problems.append(f"base: {exc}")
    if problems:
        raise GridError(source, problems)

    jobs: dict[str, Job] = {}
    for base in base_scenarios:
        for combo in combos:
            factors_here = ({"base": base.name} if isinstance(bases, list) else {}) | combo
            if any(all(_match(factors_here.get(k), v) for k, v in e.items())
                   for e in spec.get("exclude") or []):
                continue
            try:
                sc = base.replace(combo)
            except ScenarioError as exc:
                problems.append(f"scenario {factors_here}: " + "; ".join(exc.problems))
                continue
            plan = {"effect": {}}
            for est in _estimators_for(spec.get("estimators"), sc, "estimators", problems):
                plan["effect"][est] = reps
            if confirm and (where_list == "all" or any(
                all(_match(factors_here.get(k), v) for k, v in w.items()) for w in where_list
            )):
                for est in _estimators_for(confirm["estimators"], sc, "confirm.estimators",
                                           problems):
                    plan["effect"][est] = max(plan["effect"].get(est, 0), creps)
                    if confirm.get("type_i_error", False):
                        plan.setdefault("null", {})[est] = creps
                    if confirm.get("assurance", False):
                        plan.setdefault("assurance", {})[est] = creps
            for role, key, default in (("null", "type_i_error", True),
                                       ("assurance", "assurance", False)):
                if spec.get(key, default):
                    have = plan.setdefault(role, {})
                    for est in spec_list(spec.get("estimators"), sc):
                        have[est] = max(have.get(est, 0), reps)
            if "assurance" in plan and sc.effect.design_prior is None:
                problems.append(f"assurance: scenario {factors_here or sc.name} has no "
                                "effect.design_prior (set it in the base scenario or as a "
                                "factor)")
            for role in plan:
                for est in plan[role]:
                    cls = ESTIMATORS.get(est)
                    if cls is not None and sc.outcome.kind not in cls.outcome_kinds:
                        problems.append(f"estimator {est!r} does not fit a {sc.outcome.kind} "
                                        f"outcome (scenario {factors_here})")
            if sc.scenario_id in jobs:  # two combinations, one scenario: run it once
                for role, ests in plan.items():
                    for est, n in ests.items():
                        have = jobs[sc.scenario_id].plan.setdefault(role, {})
                        have[est] = max(have.get(est, 0), n)
                continue
            jobs[sc.scenario_id] = Job(sc, factors_here, plan)
    if not jobs and not problems:
        problems.append("exclude: every combination is excluded")
    if where_list not in ("all", []) and confirm:
        for w in where_list:
            if not any(all(_match(j.factors.get(k), v) for k, v in w.items())
                       for j in jobs.values()):
                problems.append(f"confirm.where: {w} matches no scenario of the grid")
    if problems:
        raise GridError(source, sorted(set(problems), key=problems.index))
    return list(jobs.values())


def _precision_problems(spec: dict) -> list[str]:
    """The precision keys of a grid (:mod:`fitlab.precision`), checked."""
    from fitlab.precision import precision_problems

    if "target_mcse" not in spec:
        given = [k for k in ("target_on", "max_reps") if k in spec]
        return [f"{k}: needs target_mcse" for k in given]
    reps = spec.get("reps")  # checked with the other keys; here only against max_reps
    ok = isinstance(reps, int) and not isinstance(reps, bool) and reps >= 1
    return precision_problems(spec["target_mcse"], spec.get("target_on"),
                              spec.get("max_reps"), reps if ok else None)


def scenario_job(scenario, reps: int, estimators: list[str] | None = None,
                 null: bool = True, assurance: bool = False) -> Job:
    """A one-scenario job (what ``fitlab run`` does).

    Raises
    ------
    EstimatorError
        For an unknown estimator.
    GridError
        For ``assurance=True`` on a scenario without ``effect.design_prior``.
    """
    from models.base import EstimatorError
    from models.defaults import default_estimators

    ests = list(estimators) if estimators else default_estimators(scenario)
    unknown = _unknown_estimators(ests)
    if unknown:
        raise EstimatorError(unknown[0])
    plan = {"effect": dict.fromkeys(ests, reps)}
    if null:
        plan["null"] = dict.fromkeys(ests, reps)
    if assurance:
        if scenario.effect.design_prior is None:
            raise GridError(scenario.name, ["assurance needs effect.design_prior in the "
                                            "scenario, e.g. {distribution: normal, mean: "
                                            "0.15, sd: 0.1}"])
        plan["assurance"] = dict.fromkeys(ests, reps)
    return Job(scenario, {}, plan)


def spec_list(value, scenario) -> list[str]:
    """Estimator names from a list, a ``design kind -> list`` mapping, or None (the default
    of :mod:`models.defaults`)."""
    if value is None:
        from models.defaults import default_estimators

        return default_estimators(scenario)
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        got = value.get(scenario.design.kind, [])
        return [got] if isinstance(got, str) else list(got)
    return list(value)


def _estimators_for(value, scenario, key: str, problems: list[str]) -> list[str]:
    from models import ESTIMATORS

    if isinstance(value, dict):
        bad = sorted(set(value) - set(DESIGN_KINDS))
        if bad:
            problems.append(f"{key}: unknown design kind(s) {bad}; allowed: {', '.join(DESIGN_KINDS)}")
    names = spec_list(value, scenario)
    problems += [f"{key}: {msg}" for msg in _unknown_estimators(names)]
    return [n for n in names if n in ESTIMATORS]


def _unknown_estimators(names) -> list[str]:
    """One message per name that is not a registered estimator, with the known ones."""
    from models import ESTIMATORS

    return [f"unknown estimator {n!r}; known: {sorted(ESTIMATORS)}"
            for n in names if n not in ESTIMATORS]


def _match(have, want) -> bool:
    if isinstance(have, float) or isinstance(want, float):
        try:
            return abs(float(have) - float(want)) < 1e-12
        except (TypeError, ValueError):
            return False
    return have == want


def _combinations(spec: dict, factors: dict) -> tuple[list[dict], list[str]]:
    problems: list[str] = []
    zips = spec.get("zip") or []
    if not isinstance(zips, list) or not all(isinstance(z, list) for z in zips):
        return [], ["zip: must be a list of lists of factor names"]
    zipped: set[str] = set()
    axes: list[list[dict]] = []
    for group in zips:
        missing = [f for f in group if f not in factors]
        if missing:
            problems.append(f"zip: {missing} not among factors {sorted(factors)}")
            continue
        lengths = {len(factors[f]) for f in group}
        if len(lengths) != 1:
            problems.append(f"zip: factors {group} must have lists of equal length")
            continue
        zipped |= set(group)
        axes.append([dict(zip(group, vals)) for vals in zip(*(factors[f] for f in group))])
    for f, values in factors.items():
        if f not in zipped:
            axes.append([{f: v} for v in values])
    combos = [dict(kv for part in prod for kv in part.items())
              for prod in itertools.product(*axes)] if axes else [{}]
    excl = spec.get("exclude") or []
    if not isinstance(excl, list) or not all(isinstance(e, dict) for e in excl):
        return combos, problems + ["exclude: must be a list of {factor: value} mappings"]
    for e in excl:
        unknown = [k for k in e if k not in factors and not (k == "base" and isinstance(spec.get("base"), list))]
        if unknown:
            problems.append(f"exclude: {unknown} not among factors {sorted(factors)}")
    return combos, problems
