"""The study layer's front door: run a scenario or a grid, then render its report.

Output layout::

    outputs/<grid name>/                   a grid (``run_grid``)
        grid.json                          the grid as read
        summary.csv                        one row per (scenario, estimator)
        precision.csv                      a target run: achieved MCSE, replicates, met
        <scenario_id>/                     see fitlab.store (parts, manifest, diagnosands)
        04_compare_designs.ipynb/.html     the report
        runs.json                          notebook run records
    outputs/<scenario_id>/                 a single scenario (``run_scenario``): its own
                                           files, summary.csv and (target run) precision.csv

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
from fitlab.grid import Job, load_grid, scenario_job, spec_list
from fitlab.lock import folder_lock
from fitlab.precision import Precision, run_to_precision
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
             fast: bool = False, precision: dict | None = None, **batch) -> dict:
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
    precision : dict, optional
        ``target_mcse``, ``target_on``, ``max_reps`` overriding the grid's (``None``
        values ignored). With a target (here or in the grid) the grid's estimators run in
        rounds to it (:func:`fitlab.precision.run_to_precision`); ``confirm`` estimators
        keep their fixed replicates.
    **batch
        Passed to :func:`fitlab.batch.run_jobs` (``workers``, ``scheduler``, ``dask``,
        ``chunk``, ``progress``, ``max_tasks``, ``simulator``), and ``log`` (one line
        per round of a target run).

    Returns
    -------
    dict
        ``dir``, ``batch`` (BatchResult), ``summary`` (DataFrame), ``report`` (record or None),
        ``precision`` (:class:`fitlab.precision.PrecisionRun` or None).
    """
    spec, jobs = load_grid(path)  # raises before anything is written
    prec = Precision.from_settings(spec, precision, spec.get("reps"), names=FLAG_NAMES)
    root = Path(out_root) / spec["name"]
    with folder_lock(root):  # one run per grid folder
        clean_temporary(root)  # left by a killed run (grid.json, summary.csv, the report)
        mf.write_json(root / "grid.json", spec)

        def main_estimators(job: Job) -> set[tuple[str, str]]:
            return {(role, e) for e in spec_list(spec.get("estimators"), job.scenario)
                    for role in ("effect", "null")}

        # the grid folder's lock covers its scenario folders
        res, jobs, run = _run(jobs, root, prec, main_estimators, grid=spec, lock=False,
                              **batch)
        summary = _write_summary(jobs, root)
        rec = render_report(root, fast=fast)[0] if report and not res.task_errors else None
    return {"dir": root, "batch": res, "summary": summary, "report": rec, "precision": run}


def run_scenario(scenario, reps: int | None, out_root: str | Path = "outputs", *,
                 estimators: list[str] | None = None, null: bool = True,
                 assurance: bool = False, report: bool = False, fast: bool = False,
                 precision: Precision | None = None, **batch) -> dict:
    """Run one scenario (its null twin, its assurance replicates) into
    ``out_root/<scenario_id>/``.

    ``reps`` replicates of each estimator, or with ``precision`` rounds until its target
    is met (``precision.first_reps`` is the first round; ``reps`` is then unused). The
    scenario folder is locked for the run. Returns the dict of :func:`run_grid`.
    """
    job = scenario_job(scenario, reps or 1, estimators, null=null, assurance=assurance)
    folder = Path(out_root) / job.scenario_id
    with folder_lock(folder):
        res, jobs, run = _run([job], out_root, precision, None, **batch)
        summary = _write_summary(jobs, folder)
        rec = render_report(folder, fast=fast)[0] if report else None
    return {"dir": folder, "batch": res, "summary": summary, "report": rec, "precision": run}


#: Labels of the precision settings in messages: the command-line flags.
FLAG_NAMES = {"target_mcse": "--target-mcse", "target_on": "--target-on",
              "max_reps": "--max-reps", "reps": "--reps (the first round)"}


def _run(jobs: list[Job], root: Path, precision: Precision | None, targeted, log=None,
         **batch):
    """Run the jobs to a count, or to a precision; ``(BatchResult, jobs, PrecisionRun)``."""
    if precision is None:
        return run_jobs(jobs, root, **batch), jobs, None
    run = run_to_precision(jobs, root, precision, targeted=targeted, log=log, **batch)
    folder = Path(root) / jobs[0].scenario_id if targeted is None else Path(root)
    achieved = run.achieved
    atomic_write(folder / "precision.csv", lambda tmp: achieved.to_csv(tmp, index=False))
    return run.batch, run.jobs, run


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
    with folder_lock(folder):  # not while a run writes the folder
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
