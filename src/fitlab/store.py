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
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

__all__ = ["ScenarioStore", "KEY", "SORT", "TMP_PREFIX", "atomic_write", "atomic_write_text",
           "clean_temporary"]

#: The columns that identify one fit.
KEY = ["role", "replicate", "estimator"]
#: Canonical row order of a replicate table.
SORT = ["role", "estimator", "replicate"]
#: Names of files being written start with this; readers skip them, ``clean`` removes them.
TMP_PREFIX = ".tmp-"
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
    path.parent.mkdir(parents=True, exist_ok=True)
    # a token per writer: two processes writing the same file never share a temporary
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clean_temporary(folder: str | os.PathLike) -> None:
    """Remove the temporary files a killed writer left in ``folder`` (not below it)."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(f"{TMP_PREFIX}*"):
            p.unlink(missing_ok=True)


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
        frames = [pd.read_parquet(p) for p in files]
        df = pd.concat([f for f in frames if len(f)], ignore_index=True)
        return _tidy(df).sort_values(SORT, kind="stable").reset_index(drop=True)

    def done(self) -> set[tuple[str, int, str]]:
        """The (role, replicate, estimator) fits already on disk."""
        files = self.part_files()
        if not files:
            return set()
        keys = pd.concat([pd.read_parquet(p, columns=KEY) for p in files])
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
