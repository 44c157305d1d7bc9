"""The scenario: one validated, immutable value that describes a FIT trial design.

Every default is the FIT trial's design A (individual randomization; the parameters and
their sources are collected in ``docs/MODEL.md``); ``Scenario()`` is therefore the
embedded default scenario. Each field's comment gives its source or says that the number
is a judgement.

A scenario is refused, with a message that names the field and what is allowed, when it
has an unknown key, a value of the wrong type or an impossible value. See
:func:`load_scenario` and :class:`ScenarioError`.

Examples
--------
>>> from simulate.scenario import Scenario
>>> sc = Scenario()
>>> sc.design.kind
'individual'
>>> sc.replace({"size.units": 20}).size.units
20
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, get_args

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from simulate.allocation import AllocationField
from simulate.conventions import therapist_split
from simulate.economics import Economics
from simulate.errors import ProblemsError
from simulate.safe_yaml import read_yaml
from simulate.section import Section as _Section
from simulate.sections import (
    Analysis,
    BinaryOutcome,
    Compliance,
    Design,
    DesignPrior,
    Effect,
    Followup,
    Missingness,
    OrsOutcome,
    Outcome,
    Size,
)

__all__ = [
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "Design",
    "Size",
    "Followup",
    "OrsOutcome",
    "BinaryOutcome",
    "Effect",
    "Missingness",
    "Compliance",
    "DesignPrior",
]


class Scenario(_Section):
    """A complete trial scenario. ``Scenario()`` is FIT design A with its defaults."""

    name: str = Field("fit_individual", pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=80)
    description: str = ""
    # numpy seeds and the replicate tables hold 64-bit signed integers
    seed: int = Field(20261123, ge=0, lt=2**63)
    design: Design = Field(default_factory=Design)
    size: Size = Field(default_factory=Size)
    followup: Followup = Field(default_factory=Followup)
    outcome: Outcome = Field(default_factory=OrsOutcome)
    effect: Effect = Field(default_factory=Effect)
    missingness: Missingness = Field(default_factory=Missingness)
    compliance: Compliance = Field(default_factory=Compliance)
    analysis: Analysis = Field(default_factory=Analysis)
    allocation: AllocationField = Field(default_factory=dict)  # in simulate/allocation.py
    economics: Economics = Field(default_factory=Economics)  # in simulate/economics.py

    @model_validator(mode="before")
    @classmethod
    def _outcome_kind_defaults_to_ors(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("outcome"), dict):
            if "kind" not in data["outcome"]:
                data = {**data, "outcome": {"kind": "ors", **data["outcome"]}}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> Scenario:
        d, s = self.design, self.size
        if d.kind in ("cluster", "stepped_wedge") and s.units < 2:
            raise ValueError(f"size.units must be at least 2 for a {d.kind} design")
        if d.kind == "cluster":
            treated = round(s.units * d.treated_share)
            if not 1 <= treated <= s.units - 1:
                raise ValueError(
                    f"size.units ({s.units}) and design.allocation_ratio "
                    f"({d.allocation_ratio:g}) leave an arm without units "
                    f"(round(units * r/(1+r)) = {treated} FIT units)"
                )
        if d.kind == "stepped_wedge" and d.steps > s.units:
            raise ValueError(
                f"design.steps ({d.steps}) cannot exceed size.units ({s.units}): "
                "each step needs at least one unit"
            )
        if d.kind == "individual":
            min_t = 2 if d.control_clustered else 1
            if s.therapists_per_unit < min_t:
                raise ValueError(
                    f"size.therapists_per_unit must be at least {min_t} for individual "
                    "randomization (one FIT and one usual-care therapist per unit)"
                )
        if d.randomization == "blocked" and d.kind != "stepped_wedge":
            treated = d.block_size * d.treated_share
            if abs(treated - round(treated)) > 1e-9:
                raise ValueError(
                    f"design.block_size ({d.block_size}) must hold allocation_ratio "
                    f"{d.allocation_ratio:g} exactly (block_size * r/(1+r) a whole number)"
                )
        load = self.expected_caseload()
        if load > s.caseload_cap:
            raise ValueError(
                f"size.caseload_cap ({s.caseload_cap}) is below the expected concurrent "
                f"caseload of {load:.1f} clients per therapist; add therapists "
                "(size.therapists_per_unit), lengthen size.recruitment_months or shorten "
                "size.episode_months"
            )
        if isinstance(self.outcome, BinaryOutcome):
            if self.outcome.control_rate * self.effect.risk_ratio >= 1.0:
                raise ValueError(
                    "outcome.control_rate * effect.risk_ratio must be below 1, got "
                    f"{self.outcome.control_rate} * {self.effect.risk_ratio}"
                )
        return self

    def expected_caseload(self) -> float:
        """Expected concurrent clients per therapist of the busiest arm."""
        d, s = self.design, self.size
        overlap = min(1.0, s.episode_months / s.recruitment_months)
        if d.kind != "individual":
            return s.clients_per_unit * overlap / s.therapists_per_unit
        n_fit, n_ctrl = therapist_split(s.therapists_per_unit, d.treated_share,
                                        d.control_clustered)
        per = d.treated_share / n_fit
        if n_ctrl:
            per = max(per, (1 - d.treated_share) / n_ctrl)
        return s.clients_per_unit * per * overlap

    # -- conveniences ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-native dict of every field (defaults included)."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """Stable 12-hex-digit hash of the scenario's content (name and description aside)."""
        content = self.to_dict()
        content.pop("description", None)
        blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def scenario_id(self) -> str:
        """``<name>-<hash>``: the folder name of this scenario's outputs."""
        return f"{self.name}-{self.hash()}"

    def replace(self, changes: dict[str, Any] | None = None, **kw: Any) -> Scenario:
        """Same scenario with some fields changed ("redesign").

        Parameters
        ----------
        changes : dict
            Dotted paths to new values, e.g. ``{"size.units": 20, "effect.d": 0.0}``.
        **kw
            Top-level fields, e.g. ``name="x"``.

        Returns
        -------
        Scenario
            A new, validated scenario; raises :class:`ScenarioError` if invalid.
        """
        data = self.to_dict()
        for path, value in {**(changes or {}), **kw}.items():
            _set_dotted(data, path, value)
        return Scenario.from_dict(data)

    def null(self) -> Scenario:
        """The same scenario with no effect of FIT (for type I error)."""
        return self.replace({"effect.d": 0.0, "effect.not_on_track_d": None,
                             "effect.risk_ratio": 1.0}, name=f"{self.name}_null"[:80])

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "scenario") -> Scenario:
        """Validate a dict, raising :class:`ScenarioError` with readable messages."""
        if not isinstance(data, dict):
            raise ScenarioError(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(source, _readable(exc)) from None


class ScenarioError(ProblemsError):
    """A scenario that cannot be used; ``problems`` lists one message per field."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__("scenario", source, problems)


def load_scenario(path: str | Path | dict | Scenario | None = None) -> Scenario:
    """Read and validate a scenario from YAML, a dict, or return the default.

    Parameters
    ----------
    path : str, Path, dict, Scenario or None
        A YAML file, a mapping, an existing scenario, or ``None`` for ``Scenario()``.

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        If the file cannot be read or the content is invalid; the message names every
        offending field and what is allowed.
    """
    if path is None:
        return Scenario()
    if isinstance(path, Scenario):
        return path
    if isinstance(path, dict):
        return Scenario.from_dict(copy.deepcopy(path))
    p = Path(path)
    # missing, unreadable, not UTF-8, aliases, duplicate keys, empty: see simulate.safe_yaml
    return Scenario.from_dict(read_yaml(p, "scenario", ScenarioError), source=str(p))


# -- helpers ---------------------------------------------------------------------------
def _set_dotted(data: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            raise ScenarioError("replace", [f"{path}: '{k}' is not a section of the scenario"])
        node = node[k]
    node[keys[-1]] = value


def _allowed_keys(loc: tuple, outcome_kind: str | None = None) -> list[str]:
    """Field names allowed at the location of an unknown key."""
    if outcome_kind is not None and len(loc) == 2 and loc[0] == "outcome":
        model_of = {"ors": OrsOutcome, "binary": BinaryOutcome}[outcome_kind]
        return sorted(model_of.model_fields)
    model: Any = Scenario
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        # an optional section (``Section | None``) is that section
        models = [a for a in get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1 and type(None) in get_args(ann):
            ann = models[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            # the discriminated outcome union: list the fields of both kinds
            names: set[str] = set()
            for m in (OrsOutcome, BinaryOutcome):
                names |= set(m.model_fields)
            return sorted(names)
    return sorted(model.model_fields)


def _readable(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        tags = [x for x in err["loc"] if x in ("ors", "binary")]
        loc = tuple(str(x) for x in err["loc"] if x not in ("ors", "binary"))
        field = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc, tags[0] if tags else None)
            msg = f"unknown key; allowed keys here: {', '.join(allowed)}"
        elif err["type"] in ("literal_error", "union_tag_invalid"):
            msg = f"{msg} (got {err.get('input')!r})"
        elif "input" in err and loc and err["type"] not in ("missing", "value_error", "bool_number"):
            msg = f"{msg} (got {err['input']!r})"
        msg = msg.removeprefix("Value error, ")
        out.append(f"{field}: {msg}")
    return out
