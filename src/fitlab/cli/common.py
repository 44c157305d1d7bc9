"""What the command modules share: exit codes, error lines, scenarios, JSON, flag checks."""

from __future__ import annotations

import json
import os
import re
import sys

__all__ = ["EXIT_USER", "EXIT_FAILED", "fail", "scenario", "check_size", "add_force",
           "print_json", "at_least", "workers_default"]

#: Exit status of a user mistake (as argparse uses for a bad flag).
EXIT_USER = 2
#: Exit status when the command ran but some of its work failed (a task, a notebook).
EXIT_FAILED = 1


def fail(msg: str, code: int = EXIT_USER) -> int:
    """Print ``fitlab: error: msg`` on stderr and return ``code``.

    Anything in ``msg`` that looks like a personal identity number is masked: a last
    guard, since the lab's messages never quote data values that could be one.
    """
    if re.search(r"\d{6}", msg):  # cheap test first: importing models takes a second
        from models.privacy import redact

        msg = redact(msg)
    print(f"fitlab: error: {msg}", file=sys.stderr)
    return code


def scenario(spec: str, commands=(), args=None, workers: int = 1):
    """The scenario named on the command line: ``"default"`` or a YAML path.

    With ``commands`` (``"simulate"``, ``"power"``), also refuse a scenario that would
    not fit this machine (:func:`simulate.limits.check_resources`) unless ``args.force``;
    when forced, each problem is printed as a warning.
    """
    from fitlab.grid import resolve_scenario

    sc = resolve_scenario(spec)
    if commands:
        check_size(sc, commands, spec, args, workers)
    return sc


def check_size(sc, commands, source: str, args=None, workers: int = 1) -> None:
    """Refuse (or, with ``--force``, warn about) a scenario too large for this machine."""
    from simulate.limits import check_resources

    force = bool(getattr(args, "force", False))
    for p in check_resources(sc, commands, source=str(source), workers=workers, force=force):
        print(f"fitlab: warning: {p} (--force: running anyway)", file=sys.stderr)


def add_force(parser) -> None:
    """The ``--force`` flag of the commands that simulate or compute power."""
    parser.add_argument("--force", action="store_true",
                        help="run even if the scenario looks too large for this machine")


def print_json(obj) -> None:
    """One JSON object on stdout (numpy values as plain ones, NaN as null)."""
    from simulate.conventions import json_native

    print(json.dumps(json_native(obj, finite=True)))


def at_least(value: int | None, flag: str, minimum: int = 1) -> None:
    """Refuse ``flag``'s ``value`` below ``minimum`` (``None`` means not given)."""
    from fitlab.errors import UsageError

    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}, got {value}")


def workers_default() -> int:
    """Worker processes when not given: one per CPU."""
    return max(1, os.cpu_count() or 1)
