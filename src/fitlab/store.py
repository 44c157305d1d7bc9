"""Where a scenario's replicate rows live, and how they are written so a kill never corrupts.

Layout of one scenario folder::

    <dir>/parts/<role>-<first replicate>-<token>.parquet   replicate rows, one file per task
    <dir>/manifest.json                                     provenance (see fitlab.manifest)
    <dir>/diagnosands.csv                                   diagnosands with MCSEs
    <dir>/replicates.parquet                                all rows, sorted (when finished)

A part file is written under a hidden temporary name and renamed into place, so it either
exists whole or not at all. Resuming means: read which (role, replicate, estimator) rows
exist and run only the missing ones.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

__all__ = ["ScenarioStore", "KEY", "SORT"]

#: The columns that identify one fit.
KEY = ["role", "replicate", "estimator"]
#: Canonical row order of a replicate table.
SORT = ["role", "estimator", "replicate"]
_NUMERIC = ["estimate", "se", "lower", "upper", "p_value", "p_positive", "truth",
            "truth_itt", "truth_cace", "fit_seconds", "sim_seconds"]


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
        """Remove temporary files left by a killed writer."""
        if self.parts.is_dir():
            for p in self.parts.glob(".tmp-*"):
                p.unlink(missing_ok=True)

    def write_part(self, rows: list[dict], role: str, first: int) -> Path | None:
        """Write rows atomically as one part file; returns its path (None if no rows)."""
        if not rows:
            return None
        self.parts.mkdir(parents=True, exist_ok=True)
        df = _tidy(pd.DataFrame(rows))
        name = f"{role}-{first:06d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.parts / f".tmp-{name}"
        df.to_parquet(tmp, index=False)
        # flush to disk before the rename makes the file visible
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.parts / name)
        return self.parts / name

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
