"""Allocation lists for the real trial, drawn from a scenario and a seed before recruitment.

- **Individual designs**: a blocked, stratified list. Within each stratum (a district or a
  unit) clients are allocated in consecutive permuted blocks whose sizes are drawn at
  random from ``allocation.block_sizes``; every block holds the allocation ratio exactly
  (:func:`simulate.design.permuted_blocks`, the simulator's rule). Each entry has a
  pseudonymous sequence code: random characters from an independent stream (so a code
  says nothing about the arm) plus a check character that catches typing mistakes.
- **Cluster designs**: units to arms (:func:`simulate.design.allocate_units`).
- **Stepped-wedge designs**: units to steps, with the calendar month each step starts
  (:func:`simulate.design.assign_steps`, :func:`simulate.design.crossover_months`).

No personal data is ever an input. A list is a function of the scenario (design, ratio,
stratum or unit names with their expected numbers of clients) and the seed only; the
entries are filled in order as clients arrive, and the link from a sequence code to a
person is kept by the trial, apart from the list. Stratum names that look like a personal
identity number are refused. Without the seed the list cannot be regenerated, so for a
real trial the seed must be secret and hard to guess (``fitlab allocate`` draws a 64-bit
one when none is given).

Random streams: ``SeedSequence(seed, spawn_key=(stream, i))`` with stream 0 for the
allocation of stratum ``i`` (strata in name order) and stream 1 for the codes.

Examples
--------
>>> from simulate import load_scenario
>>> sc = load_scenario({"design": {"allocation_ratio": 2.0, "block_size": 3},
...                     "allocation": {"strata": {"north": 6, "south": 6}, "reserve": 0}})
>>> lst = allocation_list(sc, seed=7)
>>> lst.table.groupby("stratum")["arm"].agg(["size", "sum"]).to_dict("list")
{'size': [6, 6], 'sum': [4, 4]}
>>> all(is_valid_code(c) for c in lst.table["code"])
True
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from simulate.conventions import luhn_total
from simulate.design import (
    allocate_units,
    assign_steps,
    crossover_months,
    permuted_blocks,
    schedule_matrix,
)
from simulate.errors import FitlabError
from simulate.section import Section

__all__ = [
    "Allocation",
    "AllocationField",
    "AllocationError",
    "AllocationList",
    "allocation_list",
    "resolved_strata",
    "resolved_block_sizes",
    "sequence_codes",
    "check_character",
    "is_valid_code",
    "list_csv",
    "sha256_text",
    "ALPHABET",
]

#: Characters of a sequence code: Crockford's base 32 (no I, L, O, U: they are misread).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
#: Random streams spawned from the seed.
STREAM_ARMS, STREAM_CODES = 0, 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")
# a Swedish personal identity number: (YY)YYMMDD, optional - or +, four digits
_PERSONAL_NUMBER = re.compile(r"(?<!\d)(\d{2})?\d{6}[-+]?\d{4}(?!\d)")
_MAX_BLOCK = 100


class AllocationError(FitlabError, ValueError):
    """A seed or scenario from which no allocation list can be drawn."""


class Allocation(Section):
    """The allocation list of the real trial (``fitlab allocate``).

    Attributes
    ----------
    block_sizes : list of int or None
        Block sizes to draw from, each equally likely (repeat a size to weight it). Each
        must hold ``design.allocation_ratio`` exactly. ``None``: ``design.block_size``
        (or the smallest block holding the ratio) and twice it, e.g. 3 and 6 for 2:1.
        Random block sizes keep the end of a block from being predictable (Schulz &
        Grimes 2002). Not used by the stepped wedge.
    strata : dict of str to int, or None
        Individual designs: the strata (districts or units) the list is drawn within,
        each with its expected number of clients. Cluster and stepped-wedge designs: the
        units randomized, each with its expected number of clients (orders units for
        ``design.randomization: stratified``); one per ``size.units``. Names are
        letters, digits, ``_`` and ``-`` (at most 40), never anything personal.
        ``None``: ``size.units`` strata ``unit_01, unit_02, ...`` of
        ``size.clients_per_unit`` clients each.
    reserve : float
        Extra share of entries beyond the expected clients of each stratum, for
        over-recruitment (0.2, a judgement; the IPS plan allows "ett visst överintag").
        Each stratum's list ends with a complete block.
    arm_labels : list of str
        Labels of the arms, usual care first (``["usual care", "FIT"]``).
    code_prefix : str
        Optional study prefix of every sequence code (capital letters and digits, at most
        6), e.g. ``IPS``.
    code_length : int
        Random characters of a sequence code before its check character (6: 32^6, about
        10^9 possible codes).
    """

    block_sizes: list[Annotated[int, Field(ge=2, le=_MAX_BLOCK)]] | None = Field(
        None, min_length=1, max_length=10)
    strata: dict[str, int] | None = None
    reserve: float = Field(0.2, ge=0.0, le=2.0)
    arm_labels: list[str] = Field(default_factory=lambda: ["usual care", "FIT"])
    code_prefix: str = Field("", pattern=r"^[A-Z0-9]{0,6}$")
    code_length: int = Field(6, ge=4, le=12)

    @field_validator("strata", mode="before")
    @classmethod
    def _strata(cls, v: Any) -> Any:
        # checked here, before pydantic's own checks, so that no message ever echoes a
        # name (it could be a personal identity number typed by mistake)
        if v is None:
            return v
        if not isinstance(v, dict) or not v:
            raise ValueError("must be a non-empty mapping of stratum name to expected clients")
        if len(v) > 500:
            raise ValueError(f"at most 500 strata, got {len(v)}")
        for i, (name, n) in enumerate(v.items(), start=1):
            if not isinstance(name, str) or _PERSONAL_NUMBER.search(name):
                raise ValueError(
                    f"stratum {i} has a name that is not allowed (it looks like a personal "
                    "identity number, or is not text); allocation lists never take personal "
                    "data: name districts or units")
            if not _NAME.match(name):
                raise ValueError(
                    f"stratum {i}: names are letters, digits, '_' and '-' (at most 40, "
                    "starting with a letter or digit)")
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
                raise ValueError(f"stratum {name}: expected clients must be a whole number "
                                 "from 1 to 100000")
        return v

    @field_validator("arm_labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        if len(v) != 2 or len(set(v)) != 2 or not all(0 < len(x) <= 40 for x in v):
            raise ValueError("needs two different labels of 1-40 characters, usual care first")
        return v


def _holds(block: int, share: float) -> bool:
    k = block * share
    return abs(k - round(k)) < 1e-9 and 0 < round(k) < block


def _against_design(value: Allocation, info: ValidationInfo) -> Allocation:
    """Checks of the allocation section against ``design`` and ``size``."""
    design, size = info.data.get("design"), info.data.get("size")
    if design is None or size is None:  # those failed themselves; reported there
        return value
    if value.block_sizes and design.kind != "stepped_wedge":
        bad = [b for b in value.block_sizes if not _holds(b, design.treated_share)]
        if bad:
            raise ValueError(
                f"block_sizes {bad} do not hold design.allocation_ratio "
                f"{design.allocation_ratio:g} exactly (block size x r/(1+r) must be a whole "
                "number with both arms in the block)")
    if value.strata is not None and design.kind != "individual" and len(value.strata) != size.units:
        raise ValueError(
            f"strata: a {design.kind} design randomizes units, so strata lists each of the "
            f"size.units = {size.units} units; got {len(value.strata)}")
    return value


#: The scenario field type: the section, checked against the design.
AllocationField = Annotated[Allocation, AfterValidator(_against_design)]


# -- resolved settings -------------------------------------------------------------------
def resolved_strata(scenario) -> dict[str, int]:
    """Strata (or units) and their expected clients, in name order."""
    strata = scenario.allocation.strata
    if strata is None:
        n = math.ceil(scenario.size.clients_per_unit)
        strata = {f"unit_{u + 1:02d}": n for u in range(scenario.size.units)}
    return dict(sorted(strata.items()))


def resolved_block_sizes(scenario) -> list[int]:
    """The block sizes to draw from (see :attr:`Allocation.block_sizes`)."""
    a, d = scenario.allocation, scenario.design
    if a.block_sizes:
        return list(a.block_sizes)
    share = d.treated_share
    block = d.block_size if _holds(d.block_size, share) else next(
        (b for b in range(2, _MAX_BLOCK + 1) if _holds(b, share)), None)
    if block is None:
        raise AllocationError(
            f"allocation.block_sizes: no block of up to {_MAX_BLOCK} holds "
            f"design.allocation_ratio {d.allocation_ratio:g} exactly; use a ratio of small "
            "whole numbers (e.g. 2 or 1.5) or set allocation.block_sizes")
    return [block, 2 * block]


# -- sequence codes ----------------------------------------------------------------------
def check_character(body: str) -> str:
    """The Luhn mod 32 check character of ``body`` (characters of :data:`ALPHABET`).

    It catches every single mistyped character and nearly every swap of two adjacent
    characters.

    Examples
    --------
    >>> check_character("7K3MQ9")
    'X'
    """
    total = luhn_total([_INDEX[ch] for ch in body], 32, factor=2)
    return ALPHABET[(32 - total % 32) % 32]


def is_valid_code(code: str, prefix: str = "") -> bool:
    """Whether ``code`` is well formed and its check character is right.

    Examples
    --------
    >>> is_valid_code("7K3MQ9X"), is_valid_code("7K3MQ8X"), is_valid_code("IPS-7K3MQ9X", "IPS")
    (True, False, True)
    """
    code = code.strip().upper()
    if prefix:
        if not code.startswith(prefix + "-"):
            return False
        code = code[len(prefix) + 1:]
    if len(code) < 2 or any(c not in _INDEX for c in code):
        return False
    return check_character(code[:-1]) == code[-1]


def sequence_codes(n: int, seed: int, length: int = 6, prefix: str = "") -> list[str]:
    """``n`` distinct random sequence codes from the seed's code stream.

    Parameters
    ----------
    n : int
    seed : int
    length : int
        Random characters before the check character.
    prefix : str
        Written before the code with a hyphen, e.g. ``IPS-7K3MQ9X``.

    Returns
    -------
    list of str
    """
    if n > 32**length // 100:
        raise AllocationError(f"allocation.code_length: {length} characters are too few for "
                              f"{n} distinct codes; use more")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM_CODES,)))
    seen: set[str] = set()
    bodies: list[str] = []
    while len(bodies) < n:
        for row in rng.integers(0, 32, size=(n - len(bodies), length)):
            body = "".join(ALPHABET[j] for j in row)
            if body not in seen:  # a repeat is drawn again, in order: still reproducible
                seen.add(body)
                bodies.append(body)
    lead = f"{prefix}-" if prefix else ""
    return [lead + b + check_character(b) for b in bodies]


# -- the list ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AllocationList:
    """An allocation list and what it was drawn from.

    Attributes
    ----------
    kind : str
        ``design.kind``.
    table : pandas.DataFrame
        Individual: ``stratum, sequence, code, block, block_size, arm, allocation``.
        Cluster: ``unit, expected_clients, arm, allocation``. Stepped wedge: ``unit,
        expected_clients, step, crossover_month``.
    schedule : pandas.DataFrame or None
        Stepped wedge: units x step periods, 1 when the unit offers the intervention.
    seed : int
    scenario : Scenario
    """

    kind: str
    table: pd.DataFrame
    schedule: pd.DataFrame | None
    seed: int
    scenario: Any

    def csv(self) -> str:
        """The list as CSV text (the canonical form its checksum is taken of)."""
        return list_csv(self.table)

    def checksum(self) -> str:
        """SHA-256 of :meth:`csv`."""
        return sha256_text(self.csv())


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def allocation_list(scenario, seed: int) -> AllocationList:
    """Draw the allocation list of ``scenario`` from ``seed``.

    The same scenario (same :meth:`Scenario.hash`) and seed always give the same list.

    Parameters
    ----------
    scenario : Scenario
    seed : int
        0 to 2**128 - 1. For a real trial a secret, randomly drawn seed.

    Returns
    -------
    AllocationList
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**128:
        raise AllocationError(f"seed must be a whole number from 0 to 2**128 - 1, got {seed!r}")
    seed = int(seed)
    d, a = scenario.design, scenario.allocation
    strata = resolved_strata(scenario)
    names = list(strata)
    sizes = np.array(list(strata.values()))
    labels = np.array(a.arm_labels, dtype=object)
    if d.kind == "individual":
        table = _individual(strata, resolved_block_sizes(scenario), d.treated_share, a, seed)
        table["allocation"] = labels[table["arm"].to_numpy()]
        return AllocationList(d.kind, table, None, seed, scenario)
    rng = _stream(seed, STREAM_ARMS, 0)
    if d.kind == "cluster":
        arm = allocate_units(sizes, d, rng)
        table = pd.DataFrame({"unit": names, "expected_clients": sizes, "arm": arm,
                              "allocation": labels[arm]})
        return AllocationList(d.kind, table, None, seed, scenario)
    step = assign_steps(sizes, d, rng)
    table = pd.DataFrame({"unit": names, "expected_clients": sizes, "step": step,
                          "crossover_month": crossover_months(scenario)[step]})
    schedule = schedule_matrix(step, scenario)
    schedule.index = pd.Index(names, name="unit")
    return AllocationList(d.kind, table, schedule, seed, scenario)


def _individual(strata: dict[str, int], block_sizes: list[int], share: float,
                a: Allocation, seed: int) -> pd.DataFrame:
    frames = []
    choices = np.asarray(block_sizes)
    for i, (name, expected) in enumerate(strata.items()):
        rng = _stream(seed, STREAM_ARMS, i)
        target = math.ceil(expected * (1.0 + a.reserve) - 1e-9)
        drawn = rng.choice(choices, size=-(-target // int(choices.min())))
        # complete blocks until the target is reached
        sizes = drawn[: int(np.searchsorted(np.cumsum(drawn), target)) + 1]
        arm = permuted_blocks(sizes, share, rng)
        block = np.repeat(np.arange(1, len(sizes) + 1), sizes)
        frames.append(pd.DataFrame({"stratum": name, "sequence": np.arange(1, len(arm) + 1),
                                    "block": block, "block_size": np.repeat(sizes, sizes),
                                    "arm": arm.astype(int)}))
    table = pd.concat(frames, ignore_index=True)
    table.insert(2, "code", sequence_codes(len(table), seed, a.code_length, a.code_prefix))
    return table


def list_csv(table: pd.DataFrame) -> str:
    """A table as CSV text with fixed formatting (``\\n`` line ends, floats to 4 decimals)."""
    return table.to_csv(index=False, lineterminator="\n", float_format="%.4f")


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
