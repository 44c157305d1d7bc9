"""Will a scenario fit this machine? Memory and time estimated before anything is allocated.

A scenario can be valid and still impossible to run: 1e9 therapists per unit, follow-up
months up to 1e12 (a unit x calendar-period table of 1e11 columns), or a stepped wedge of
2,000 steps whose analytic power needs 2,000 solves of 2,001 x 2,001 systems. Allocating
first ends in a ``MemoryError`` traceback or a command that never returns; the command line
therefore calls :func:`check_resources` first and refuses, naming the fields that drive the
cost, unless ``--force`` is given.

The constants are measured (Python 3.11, numpy 2, one core): ``simulate_trial`` peaks at
about 270 bytes and 0.5-3 microseconds per row of the long table; the stepped-wedge GLS
variance takes about 0.7-8 ns per unit x period^3 and its mean-exposure matrix 10 kB per
unit x period. Each limit below is a generous multiple of those.

Examples
--------
>>> from simulate import Scenario
>>> costs = estimate(Scenario(), ["simulate"])
>>> costs[0].what
'the long table (clients x occasions)'
>>> check_resources(Scenario(), ["simulate", "power"])  # the default fits anywhere
[]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from simulate.errors import ProblemsError

__all__ = ["Cost", "estimate", "check_resources", "available_memory", "TooLargeError",
           "MAX_SECONDS"]

#: Peak bytes per row of the long table while ``simulate_trial`` runs (measured ~270).
BYTES_PER_ROW = 400
#: Seconds per row of the long table (measured 0.5-3 us).
SECONDS_PER_ROW = 3e-6
#: Seconds per unit x period^3 of the stepped-wedge GLS variance (measured 0.7-8 ns).
SW_SECONDS = 2e-9
#: Bytes per unit x period of the stepped-wedge mean-exposure matrix (measured 10 kB).
SW_BYTES = 12_000
#: Longest single computation run without ``--force`` (seconds).
MAX_SECONDS = 600.0
#: Share of the available memory a command may plan to use.
MEMORY_SHARE = 0.8


class TooLargeError(ProblemsError):
    """A valid scenario that would not fit this machine's memory or a sensible time."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__("scenario", source, problems)
        lines = self.problems[0] if len(self.problems) == 1 else \
            "\n" + "\n".join(f"  - {p}" for p in self.problems)
        self.args = (f"scenario {source} is too large for this machine (--force runs it "
                     f"anyway): {lines}",)


@dataclass(frozen=True)
class Cost:
    """The memory and time of one part of a command, and the fields that drive it."""

    what: str
    bytes: float
    seconds: float
    fields: tuple[str, ...]


def estimate(scenario, commands: Iterable[str]) -> list[Cost]:
    """Memory and time of the parts of ``commands`` (``"simulate"``, ``"power"``).

    Sizes are taken as floats, so absurd values (``units: 1e30``) are estimated, not
    overflowed.
    """
    sc, commands = scenario, set(commands)
    d, s, f = sc.design, sc.size, sc.followup
    units = float(s.units)
    out: list[Cost] = []
    if "simulate" in commands:
        clients = units * float(s.clients_per_unit)
        rows = clients * len(f.months)
        out.append(Cost("the long table (clients x occasions)", rows * BYTES_PER_ROW,
                        rows * SECONDS_PER_ROW,
                        ("size.units", "size.clients_per_unit", "followup.months")))
        periods = (float(s.recruitment_months) + float(f.months[-1])) / float(f.period_months)
        out.append(Cost("the unit x calendar-period effects", units * (periods + 2) * 16,
                        units * (periods + 2) * 1e-8,
                        ("followup.months", "followup.period_months",
                         "size.recruitment_months")))
        therapists = units * float(s.therapists_per_unit)
        out.append(Cost("the therapists", therapists * 24, therapists * 5e-8,
                        ("size.therapists_per_unit",)))
        if d.randomization != "simple" and d.kind != "stepped_wedge":
            blocks = (units if d.kind == "individual" else 1.0) * float(d.block_size)
            out.append(Cost("the randomization blocks", (clients + blocks) * 24,
                            (clients + blocks) * 1e-7, ("design.block_size",)))
        if d.kind == "stepped_wedge":
            cells = units * (float(d.steps) + 1)
            out.append(Cost("the stepped-wedge schedule", cells * 40, cells * 1e-7,
                            ("design.steps", "size.units")))
    if "power" in commands and d.kind == "stepped_wedge":
        periods = float(d.steps) + 1
        out.append(Cost("the stepped-wedge analytic power", units * periods * SW_BYTES,
                        units * periods**3 * SW_SECONDS + units * periods * 1e-6,
                        ("design.steps", "size.units")))
    return out


def check_resources(scenario, commands: Iterable[str], *, source: str = "scenario",
                    workers: int = 1, force: bool = False) -> list[str]:
    """Refuse a scenario whose ``commands`` would not fit this machine.

    Parameters
    ----------
    scenario : Scenario
    commands : iterable of str
        ``"simulate"`` (one trial; also what ``fit`` and each replicate of ``run`` do) and
        ``"power"`` (the analytic power).
    source : str
        The scenario's file, for the message.
    workers : int
        Processes that each simulate a trial at the same time.
    force : bool
        Return the problems instead of raising.

    Returns
    -------
    list of str
        The problems found (only when ``force``; otherwise an empty list).

    Raises
    ------
    TooLargeError
        Naming the fields that drive each cost over the limit and the estimate.
    """
    memory = available_memory()
    problems = []
    for c in estimate(scenario, commands):
        need = c.bytes * (max(1, workers) if c.what != "the stepped-wedge analytic power"
                          else 1)
        if memory is not None and need > MEMORY_SHARE * memory:
            per = f" ({workers} workers)" if workers > 1 and need != c.bytes else ""
            problems.append(f"{', '.join(c.fields)}: {c.what} would need about "
                            f"{_bytes(need)} of memory{per}; {_bytes(memory)} is available")
        elif c.seconds > MAX_SECONDS:
            problems.append(f"{', '.join(c.fields)}: {c.what} would take about "
                            f"{_seconds(c.seconds)}; the limit without --force is "
                            f"{_seconds(MAX_SECONDS)}")
    if problems and not force:
        raise TooLargeError(source, problems)
    return problems


def available_memory() -> float | None:
    """Bytes of memory available to this process (the smaller of the machine's and a
    container's limit), or ``None`` when it cannot be told."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(float(line.split()[1]) * 1024)
    except OSError:
        try:
            found.append(float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")))
        except (ValueError, OSError, AttributeError):
            pass
    for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(p).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and float(text) < 1 << 60:
            found.append(float(text))
    return min(found) if found else None


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def _seconds(s: float) -> str:
    if not math.isfinite(s) or s > 3.2e10:
        return "more than a thousand years"
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= 2 * size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"
