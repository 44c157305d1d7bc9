"""Where a scenario's replicate rows live, and how they are written so a kill never corrupts.

Layout of one scenario folder::

    <dir>/parts/<role>-<first replicate>-<token>.parquet   replicate rows, one file per task
    <dir>/manifest.json                                     provenance (see fitlab.manifest)
    <dir>/diagnosands.csv                                   diagnosands with MCSEs
    <dir>/replicates.parquet                                all rows, sorted (when finished)

Every file of the lab is written by :func:`atomic_write`: under a hidden temporary name
(``.tmp-...``) in the same folder, flushed to disk, then renamed into place, so it either
exists whole or not at all, and a reader never sees half a file. Resuming means: read
which (role, replicate, estimator) rows exist and run only the missing ones.

This module is also the lab's I/O boundary: an ``OSError`` of a write (a full disk, a
folder that is not writable, a file where a folder should be) or of a read (a damaged
part file) becomes a :class:`fitlab.errors.StorageError` naming the path and the reason,
which the command line reports in one line (exit status 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from fitlab.errors import StorageError

__all__ = ["ScenarioStore", "KEY", "SORT", "TMP_PREFIX", "DATA_SUFFIXES", "atomic_write",
           "atomic_write_text", "clean_temporary", "ensure_folder", "read_file", "read_long",
           "storage_error"]

#: The columns that identify one fit.
KEY = ["role", "replicate", "estimator"]
#: Canonical row order of a replicate table.
SORT = ["role", "estimator", "replicate"]
#: Names of files being written start with this; readers skip them, ``clean`` removes them.
TMP_PREFIX = ".tmp-"
#: Suffixes of long-format data files (real trials), read by :func:`read_long`.
DATA_SUFFIXES = (".csv", ".parquet")
_NUMERIC = ["estimate", "se", "lower", "upper", "p_value", "p_positive", "truth",
            "truth_itt", "truth_cace", "fit_seconds", "sim_seconds", "decision_threshold",
            "target_width", "design_effect"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` whole or not at all.

    ``write`` is called with a temporary path in the same folder (same file system, so the
    rename is atomic; same suffix, so writers that infer the format from it still work).
    The file is flushed to disk before ``os.replace`` makes it visible: after a crash the
    new name never points at an empty file. On failure the temporary file is removed.

    Parameters
    ----------
    path : path
        The destination; its folder is created if missing.
    write : callable
        ``write(tmp_path)`` writes the content, e.g. ``lambda p: df.to_parquet(p)``.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = atomic_write(Path(d) / "a.txt", lambda tmp: tmp.write_text("hi"))
    ...     p.read_text(), sorted(q.name for q in Path(d).iterdir())
    ('hi', ['a.txt'])
    """
    path = Path(path)
    created = ensure_folder(path.parent)
    # a token per writer: two processes writing the same file never share a temporary
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        for folder in reversed(created):  # leave no empty folder behind either
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise storage_error(exc, path) from None
        raise
    return path


def ensure_folder(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` (and its parents) if missing; return the folders created.

    Raises
    ------
    StorageError
        When a file is in the way, the parent is not writable, or the disk is full.
    """
    folder = Path(folder)
    if folder.is_dir():
        return []
    missing, p = [], folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, folder, "create the folder") from None
    return missing[::-1]


def storage_error(exc: BaseException, path: str | os.PathLike,
                  action: str = "write") -> StorageError:
    """The one-line :class:`StorageError` of an ``OSError`` at ``path``."""
    path = Path(path)
    code = getattr(exc, "errno", None)
    if code is None:  # pyarrow puts the errno in its message only
        found = re.search(r"\[Errno (\d+)\]", str(exc))
        code = int(found.group(1)) if found else None
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()),
                       None)
        reason = f"{blocker} is a file, not a folder" if blocker else os.strerror(code)
    elif code == errno.ENOSPC:
        reason = "no space left on the device; free some space or write elsewhere"
    elif code in (errno.EACCES, errno.EPERM):
        reason = "permission denied" + ("; the folder is not writable"
                                        if action != "read" else "")
    elif code is not None:
        reason = os.strerror(code).lower()
    else:
        reason = str(exc) or type(exc).__name__
    err = StorageError(f"cannot {action} {path}: {reason}")
    err.errno = code
    return err


def read_file(path: str | os.PathLike, read: Callable[[Path], Any]) -> Any:
    """``read(path)``, with a damaged or unreadable file reported as a :class:`StorageError`.

    The parser's own message is not repeated: it can quote the file's content.
    """
    path = Path(path)
    try:
        return read(path)
    except OSError as exc:
        raise storage_error(exc, path, "read") from None
    except ValueError as exc:  # pyarrow's ArrowInvalid, json, csv parsers
        raise StorageError(f"cannot read {path}: damaged or not a {path.suffix} file "
                           f"({type(exc).__name__}); delete it and run the same command "
                           "again to redo its results") from None


def read_long(path: str | os.PathLike) -> pd.DataFrame:
    """A long-format data file (``.csv`` or ``.parquet``, a real trial's) as a DataFrame.

    Unlike :func:`read_file` (the lab's own files), the parser's complaint is shown, with
    anything that looks like a personal identity number redacted: the user needs it to
    mend their file.

    Raises
    ------
    MissingFileError, ProblemsError
    """
    from fitlab.errors import MissingFileError, ProblemsError

    path = Path(path)
    if path.is_dir():
        raise ProblemsError("data file", str(path), ["is a folder, not a file"])
    if not path.is_file():
        raise MissingFileError(f"data file not found: {path}")
    try:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # a parser's complaint about the user's file
        from models.privacy import redact

        raise ProblemsError("data file", str(path),
                            [f"cannot be read: {redact(str(exc))}"]) from None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clean_temporary(folder: str | os.PathLike) -> None:
    """Remove the temporary files a killed writer left in ``folder`` (not below it)."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(f"{TMP_PREFIX}*"):
            try:
                p.unlink(missing_ok=True)
            except OSError as exc:
                raise storage_error(exc, p, "remove") from None


class ScenarioStore:
    """The replicate rows of one scenario folder.

    Parameters
    ----------
    root : path
        The scenario's output folder (created on the first write).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.parts = self.root / "parts"

    def part_files(self) -> list[Path]:
        """Finished part files (temporary files of an interrupted write are ignored)."""
        if not self.parts.is_dir():
            return []
        return sorted(p for p in self.parts.glob("*.parquet") if not p.name.startswith("."))

    def clean(self) -> None:
        """Remove temporary files left by a killed writer (parts, tables, manifest)."""
        clean_temporary(self.root)
        clean_temporary(self.parts)

    def write_part(self, rows: list[dict], role: str, first: int) -> Path | None:
        """Write rows atomically as one part file; returns its path (None if no rows)."""
        if not rows:
            return None
        df = _tidy(pd.DataFrame(rows))
        # a token in the name: a re-run of the same replicates never overwrites a part
        name = f"{role}-{first:06d}-{uuid.uuid4().hex[:8]}.parquet"
        return atomic_write(self.parts / name, lambda tmp: df.to_parquet(tmp, index=False))

    def table(self) -> pd.DataFrame:
        """All rows, sorted by role, estimator, replicate."""
        files = self.part_files()
        if not files:
            return pd.DataFrame(columns=[*KEY, "error"])
        frames = [read_file(p, pd.read_parquet) for p in files]
        df = pd.concat([f for f in frames if len(f)], ignore_index=True)
        # a fit's row depends only on its key, so a repeat (two runs into one folder before
        # folders were locked) is the same row: keep one
        df = df.drop_duplicates(KEY, keep="first")
        return _tidy(df).sort_values(SORT, kind="stable").reset_index(drop=True)

    def done(self) -> set[tuple[str, int, str]]:
        """The (role, replicate, estimator) fits already on disk."""
        files = self.part_files()
        if not files:
            return set()
        keys = pd.concat([read_file(p, lambda q: pd.read_parquet(q, columns=KEY))
                          for p in files])
        return {(str(r), int(i), str(e)) for r, i, e in keys.itertuples(index=False)}


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    for col in _NUMERIC:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("significant", "converged"):
        if col in df.columns:
            df[col] = df[col].fillna(False).astype(bool)
    if "covered" in df.columns:
        df["covered"] = df["covered"].astype("boolean")
    if "error" in df.columns:
        df["error"] = df["error"].astype("string")
    return df
