"""Provenance of a run: scenario, seed, package versions, git commit, time per replicate."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from fitlab.store import atomic_write_text, read_file

__all__ = ["versions", "git_commit", "now", "write_json", "read_json", "timing"]

_PACKAGES = ("fitlab", "numpy", "pandas", "scipy", "statsmodels", "pyarrow", "pydantic",
             "pymc", "pytensor", "nutpie", "arviz", "papermill", "distributed")


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape results (from metadata; no imports)."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(where: str | os.PathLike | None = None) -> str:
    """``git rev-parse HEAD`` of the repository holding ``where`` (default: this package)."""
    cwd = Path(where) if where else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def now() -> str:
    """UTC time stamp, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (:func:`fitlab.store.atomic_write_text`)."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str, allow_nan=True))


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, or ``None`` if the file does not exist (a damaged one: StorageError)."""
    path = Path(path)
    return read_file(path, lambda p: json.loads(p.read_text(encoding="utf-8"))) \
        if path.is_file() else None


def timing(table) -> dict[str, Any]:
    """Mean seconds per replicate: simulation, and fit per estimator (failed fits included)."""
    if table is None or len(table) == 0 or "fit_seconds" not in table.columns:
        return {}
    sim = table.drop_duplicates(["role", "replicate"])["sim_seconds"].mean()
    fits = table.groupby("estimator")["fit_seconds"].mean()
    return {"simulate_seconds": round(float(sim), 4),
            "fit_seconds": {k: round(float(v), 4) for k, v in fits.items()}}
