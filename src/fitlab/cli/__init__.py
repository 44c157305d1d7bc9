"""The ``fitlab`` command line.

Examples
--------
::

    fitlab simulate default --seed 1 --out trial.csv
    fitlab power params/fit_individual.yaml --json
    fitlab fit default --seed 1 --json --estimator diff_means
    fitlab fit data.csv --columns outcome=ors,client=id --json --primary-month 12
    fitlab run default --reps 200 --estimators diff_means,diff_means_naive --workers 2
    fitlab batch params/grids/fit_default.yaml --workers 2
    fitlab report outputs/fit_default
    fitlab demo

User mistakes (every :class:`fitlab.FitlabError`: an invalid scenario, grid or flag, a
missing file, an unknown estimator, data not in the long format) print one clear message on
stderr and exit with status 2, without a traceback and without writing anything. Any other
exception is a bug and keeps its traceback; ``FITLAB_DEBUG=1`` shows tracebacks for user
mistakes too.

Adding a command: write ``fitlab/cli/<name>.py`` with ``add_parser(subparsers)``, which
adds the sub-command(s) and sets ``func`` to the function that runs them, and add
``"<name>"`` to :data:`COMMAND_MODULES`. Command modules import heavy packages inside
their functions, so that ``fitlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from fitlab.cli.common import EXIT_USER, fail

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Modules of ``fitlab.cli`` that add sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = ("simulate", "power", "fit", "batch", "demo", "sbc")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every sub-command."""
    p = argparse.ArgumentParser(prog="fitlab", description="FIT Trial Design Lab")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(f"fitlab.cli.{name}").add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fitlab``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from fitlab import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER
    from fitlab.errors import FitlabError

    try:
        return args.func(args)
    except FitlabError as exc:
        if os.environ.get("FITLAB_DEBUG", "") not in ("", "0"):  # tracebacks when debugging
            raise
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted; run the same command again to resume", 130)
    except BrokenPipeError:
        # the reader (e.g. `| head`) closed the pipe: not an error of ours; silence the
        # interpreter's own complaint when it flushes stdout at exit
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
