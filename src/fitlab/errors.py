"""The user mistakes of the study layer, next to the lab's shared ones.

Every error a user can fix derives from :class:`simulate.errors.FitlabError` (also
``fitlab.FitlabError``); the command line reports those in one line and exit status 2, and
lets anything else (a bug) keep its traceback. Raised in ``fitlab``:

- :class:`UsageError`: a command-line flag or an argument outside what is allowed
  (``--reps 0``, ``--out t.txt``, ``--columns outcome``, ``suggest_reps(0)``);
- :class:`MissingFileError`: a scenario, grid, data file or results folder not found;
- :class:`ProblemsError`: a data file that cannot be read; ``fitlab.grid.GridError`` (a
  ``ProblemsError``): a grid that cannot be used;
- :class:`StorageError`: a file or folder that cannot be written or read (a full disk, no
  permission, a file where a folder should be, a damaged part file); raised at the I/O
  boundary, :mod:`fitlab.store`;
- :class:`FolderBusyError`: a results folder another run is writing (:mod:`fitlab.lock`).
"""

from __future__ import annotations

from simulate.errors import FitlabError, MissingFileError, ProblemsError

__all__ = ["FitlabError", "MissingFileError", "ProblemsError", "UsageError",
           "StorageError", "FolderBusyError"]


class UsageError(FitlabError, ValueError):
    """A flag or an argument with a value outside what is allowed; the message names both."""


class StorageError(FitlabError, OSError):
    """A file or folder the lab cannot write or read; the message names it and why."""


class FolderBusyError(FitlabError):
    """A results folder that another running ``fitlab`` process is writing."""
