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
    fitlab run default --target-mcse 0.01 --estimators diff_means
    fitlab doctor
    fitlab completion bash > ~/.local/share/bash-completion/completions/fitlab

User mistakes (every :class:`fitlab.FitlabError`: an invalid scenario, grid or flag, a
missing file, an unknown estimator, data not in the long format, a folder that cannot be
written or is in use) print one clear message on stderr and exit with status 2, without a
traceback and without writing anything. Any other exception is a bug and keeps its
traceback; ``FITLAB_DEBUG=1`` shows tracebacks for user mistakes too. Ctrl-C, SIGTERM and
SIGHUP stop the command (and its worker processes) with one line and exit status 130; a
batch resumes where it stopped when run again.

Adding a command: write ``fitlab/cli/<name>.py`` with ``add_parser(subparsers)``, which
adds the sub-command(s) and sets ``func`` to the function that runs them, and add
``"<name>"`` to :data:`COMMAND_MODULES`. Command modules import heavy packages inside
their functions, so that ``fitlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from importlib import import_module

from fitlab.cli.common import EXIT_USER, fail

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Modules of ``fitlab.cli`` that add sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = ("simulate", "power", "fit", "batch", "solve", "sbc", "demo", "allocate",
                   "economics", "predict", "doctor", "completion")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every sub-command."""
    p = argparse.ArgumentParser(
        prog="fitlab", description="FIT Trial Design Lab: simulate, analyse and compare "
        "designs for trials of Feedback-Informed Treatment.",
        epilog="`fitlab COMMAND --help` shows each command's options, defaults and examples; "
        "docs/MODEL.md describes the model and its sources.")
    p.add_argument("--version", action="store_true",
                   help="print the version and the git commit, then exit (default: off)")
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
        from fitlab.manifest import git_commit

        print(f"fitlab {__version__} (git commit {git_commit()})")
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER
    from fitlab.errors import FitlabError

    try:
        with _signals_interrupt():
            return args.func(args)
    except FitlabError as exc:
        if os.environ.get("FITLAB_DEBUG", "") not in ("", "0"):  # tracebacks when debugging
            raise
        return fail(str(exc))
    except KeyboardInterrupt as exc:
        how = f" ({exc.args[0]})" if exc.args else ""
        return fail(f"interrupted{how}; run the same command again to resume", 130)
    except MemoryError:
        return fail("out of memory; use a smaller scenario or fewer --workers", EXIT_USER)
    except BrokenPipeError:
        # the reader (e.g. `| head`) closed the pipe: not an error of ours; silence the
        # interpreter's own complaint when it flushes stdout at exit
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


@contextlib.contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP stop the command as Ctrl-C does (a ``KeyboardInterrupt``), so
    that worker processes are stopped and the results folder is left resumable; the
    previous handlers are restored afterwards (``main`` also runs inside tests)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
