"""What the command modules share: exit codes, error lines, scenarios, JSON, flag checks,
sub-command parsers with examples."""

from __future__ import annotations

import json
import os
import re
import sys

__all__ = ["EXIT_USER", "EXIT_FAILED", "fail", "scenario", "check_size", "add_force",
           "print_json", "at_least", "workers_default", "command", "SCENARIO_HELP"]

#: Help of every positional scenario argument.
SCENARIO_HELP = ('scenario YAML file, or "default" for the embedded FIT design A '
                 "(e.g. params/fit_stepped_wedge.yaml)")

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
                        help="run even if the scenario looks too large for this machine "
                        "(default: refuse it)")


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


def command(sub, name: str, summary: str, examples: list[str], description: str = ""):
    """A sub-command parser whose ``--help`` ends with worked examples.

    Parameters
    ----------
    sub : argparse subparsers action
    name : str
    summary : str
        One line, shown in ``fitlab --help``.
    examples : list of str
        Command lines (without the leading ``fitlab``), shown under "examples".
    description : str
        More text under the summary in the command's own ``--help``.
    """
    import argparse
    import textwrap

    epilog = "examples:\n" + "\n".join(f"  fitlab {e}" for e in examples)
    # raw, so the examples keep their lines; the prose is wrapped here instead
    text = "\n\n".join(textwrap.fill(t, 79) for t in (summary, description) if t)
    return sub.add_parser(name, help=summary, description=text, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
