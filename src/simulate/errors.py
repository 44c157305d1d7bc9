"""The one base class of every user mistake the lab reports.

A :class:`FitlabError` is something the user can fix: an invalid scenario, grid or data
file, an unknown estimator, a folder that cannot be written. The command line prints its
message on one line (or one line per problem) and exits with status 2; anything else is a
bug and keeps its traceback. It lives in ``simulate`` because that is the lowest layer:
``models`` and ``fitlab`` subclass it (``fitlab.FitlabError`` is the same class).
"""

from __future__ import annotations

__all__ = ["FitlabError", "ProblemsError", "MissingFileError"]


class FitlabError(Exception):
    """A user mistake; the message says what is wrong and what is allowed."""


class ProblemsError(FitlabError, ValueError):
    """A file or value with one or more problems, each named on its own line.

    Parameters
    ----------
    kind : str
        What was refused, e.g. ``"scenario"`` or ``"grid"``.
    source : str
        Where it came from (a file name, or a short description).
    problems : list of str
        One message per problem, each naming the field and what is allowed.
    """

    def __init__(self, kind: str, source: str, problems: list[str]):
        self.kind = kind
        self.source = source
        self.problems = list(problems)
        # one problem, one line; several, one line each
        lines = self.problems[0] if len(self.problems) == 1 else \
            "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {kind} {source}: {lines}")


class MissingFileError(FitlabError, FileNotFoundError):
    """An input file or folder the user named does not exist."""
