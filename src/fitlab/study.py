"""The study layer's front door: run a scenario or a grid, then render its report.

Output layout::

    outputs/<grid name>/                   a grid (``run_grid``)
        grid.json                          the grid as read
        summary.csv                        one row per (scenario, estimator)
        <scenario_id>/                     see fitlab.store (parts, manifest, diagnosands)
        04_compare_designs.ipynb/.html     the report
        runs.json                          notebook run records
    outputs/<scenario_id>/                 a single scenario (``run_scenario``)

Examples
--------
>>> from fitlab.study import run_grid                                # doctest: +SKIP
>>> out = run_grid("params/grids/fit_default.yaml", workers=2)  # doctest: +SKIP
>>> out["report"]["html"]                                          # doctest: +SKIP
'outputs/fit_default/04_compare_designs.html'
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fitlab import manifest as mf
from fitlab.batch import run_jobs, summary_table
from fitlab.grid import Job, load_grid, scenario_job
from fitlab.runner import run_notebooks
from fitlab.store import atomic_write, clean_temporary
from simulate.errors import MissingFileError

__all__ = ["run_grid", "run_scenario", "render_report", "jobs_from_dir", "notebooks_dir",
           "REPORT_NOTEBOOK"]

REPORT_NOTEBOOK = "04_compare_designs.ipynb"


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` (next to ``src/``), else ``./notebooks``."""
    here = Path(__file__).resolve().parents[2] / "notebooks"
    return here if here.is_dir() else Path("notebooks").resolve()


def run_grid(path: str | Path, out_root: str | Path = "outputs", *, report: bool = True,
             fast: bool = False, **batch) -> dict:
    """Validate and run a grid file, write its summary, and render report 04.

    Parameters
    ----------
    path : path
        Grid YAML (see :mod:`fitlab.grid`).
    out_root : path
        Parent folder; results go to ``out_root/<grid name>/``.
    report : bool
        Execute the report notebook after the replicates.
    fast : bool
        Passed to the report notebook.
    **batch
        Passed to :func:`fitlab.batch.run_jobs` (``workers``, ``scheduler``, ``dask``,
        ``chunk``, ``progress``, ``max_tasks``, ``simulator``).

    Returns
    -------
    dict
        ``dir``, ``batch`` (BatchResult), ``summary`` (DataFrame), ``report`` (record or None).
    """
    spec, jobs = load_grid(path)  # raises before anything is written
    root = Path(out_root) / spec["name"]
    root.mkdir(parents=True, exist_ok=True)
    clean_temporary(root)  # left by a killed run (grid.json, summary.csv, the report)
    mf.write_json(root / "grid.json", spec)
    res = run_jobs(jobs, root, grid=spec, **batch)
    summary = _write_summary(jobs, root)
    rec = render_report(root, fast=fast)[0] if report and not res.task_errors else None
    return {"dir": root, "batch": res, "summary": summary, "report": rec}


def run_scenario(scenario, reps: int, out_root: str | Path = "outputs", *,
                 estimators: list[str] | None = None, null: bool = True,
                 assurance: bool = False, report: bool = False, fast: bool = False,
                 **batch) -> dict:
    """Run one scenario (its null twin, its assurance replicates) into
    ``out_root/<scenario_id>/``."""
    job = scenario_job(scenario, reps, estimators, null=null, assurance=assurance)
    res = run_jobs([job], out_root, **batch)
    folder = Path(out_root) / job.scenario_id
    summary = _write_summary([job], folder)
    rec = render_report(folder, fast=fast)[0] if report else None
    return {"dir": folder, "batch": res, "summary": summary, "report": rec}


def jobs_from_dir(folder: str | Path) -> list[Job]:
    """Rebuild jobs from the manifests under ``folder`` (a grid or one scenario folder)."""
    from simulate.scenario import Scenario

    folder = Path(folder)
    manifests = [folder / "manifest.json"] if (folder / "manifest.json").is_file() else \
        sorted(folder.glob("*/manifest.json"))
    jobs = []
    for m in manifests:
        data = mf.read_json(m)
        jobs.append(Job(Scenario.from_dict(data["scenario"]), data.get("factors") or {},
                        data.get("plan") or {}))
    return jobs


def render_report(folder: str | Path, *, fast: bool = False, log=None) -> list[dict]:
    """(Re-)write ``summary.csv`` from the scenario folders and execute report 04 there.

    The notebook reads its results from, and writes into, its ``output_dir`` parameter:
    ``folder``.

    Raises
    ------
    MissingFileError
        When ``folder`` holds no scenario results.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"results folder not found: {folder}")
    jobs = jobs_from_dir(folder)
    if not jobs:
        raise MissingFileError(f"no scenario results (*/manifest.json) under {folder}")
    _write_summary(jobs, folder)
    nb = notebooks_dir() / REPORT_NOTEBOOK
    return run_notebooks([(nb, {"output_dir": str(folder.resolve()), "fast": bool(fast)})],
                         folder, log=log)


def _write_summary(jobs: list[Job], folder: Path) -> pd.DataFrame:
    # a single scenario's folder holds its own results; a grid's holds one folder each
    root = folder.parent if (folder / "manifest.json").is_file() and len(jobs) == 1 \
        and folder.name == jobs[0].scenario_id else folder
    summary = summary_table(jobs, root)
    atomic_write(folder / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    return summary
