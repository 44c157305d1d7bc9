"""Run the replicates of many scenarios: resumable, seeded, local processes or Dask.

:func:`run_jobs` takes jobs (scenario + plan), finds the (role, replicate, estimator) fits
missing from each scenario folder, splits them into tasks of a few replicates, runs the
tasks (in this process, a process pool, or on Dask), and writes each finished task's rows
as one atomic part file. A killed batch therefore resumes where it stopped, with no fit
lost or repeated, and a scenario with nothing missing is skipped. When a scenario's fits
are all there, its ``replicates.parquet``, ``diagnosands.csv`` and, last, its finished
``manifest.json`` are written: the finished manifest is the commit mark, so a run killed
between these writes is finished by the next one, which rebuilds the tables from the parts.

Each scenario folder is locked for the run (:mod:`fitlab.lock`): a second run into a folder
in use is refused. Worker processes die with the main process, however it stops.

Examples
--------
>>> from simulate import Scenario
>>> from fitlab.grid import scenario_job
>>> from fitlab.batch import run_jobs
>>> job = scenario_job(Scenario(), reps=50, estimators=["diff_means"])
>>> result = run_jobs([job], "outputs/try", workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fitlab import manifest as mf
from fitlab.diagnosands import diagnose, read_diagnosands, wide
from fitlab.grid import Job
from fitlab.lock import folder_lock
from fitlab.replicates import DEFAULT_SIMULATOR, run_task
from fitlab.store import ScenarioStore, atomic_write

__all__ = ["run_jobs", "plan_tasks", "finalize", "BatchResult", "summary_table"]


@dataclass
class BatchResult:
    """What a batch did: fits run, skipped scenarios, task errors, seconds, summary.

    ``all_failed`` lists each (scenario, role, estimator) none of whose fits succeeded,
    with the first error: a batch that reports it is not a success.
    """

    root: Path
    fits_run: int = 0
    skipped: list[str] = field(default_factory=list)
    task_errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    summary: pd.DataFrame | None = None
    all_failed: list[dict] = field(default_factory=list)


def plan_tasks(job: Job, done: set, chunk: int) -> list[dict]:
    """Tasks for the fits of ``job`` not in ``done``; replicates grouped ``chunk`` at a time.

    The rows of replicate ``r`` only depend on ``r``, so the split affects speed, not
    results.
    """
    tasks = []
    for role, ests in job.plan.items():
        todo: dict[int, list[str]] = {}
        for est, reps in ests.items():
            for r in range(reps):
                if (role, r, est) not in done:
                    todo.setdefault(r, []).append(est)
        items = sorted(todo.items())
        for i in range(0, len(items), chunk):
            part = items[i:i + chunk]
            tasks.append({"role": role, "items": [[r, names] for r, names in part],
                          "n_fits": sum(len(n) for _, n in part)})
    return tasks


def run_jobs(
    jobs: list[Job],
    root: str | Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    dask: bool = False,
    chunk: int | None = None,
    simulator: str = DEFAULT_SIMULATOR,
    progress: bool = True,
    grid: dict | None = None,
    max_tasks: int | None = None,
    lock: bool = True,
) -> BatchResult:
    """Run every missing fit of ``jobs`` under ``root/<scenario_id>/``.

    Parameters
    ----------
    jobs : list of Job
    root : path
        Output folder; each scenario gets ``root/<scenario_id>/``.
    workers : int
        Processes. 1 runs in this process (no pool).
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    dask : bool
        Use a Dask ``LocalCluster`` of ``workers`` processes when no scheduler is given.
    chunk : int, optional
        Replicates per task (default: about four tasks per worker, at most 25).
    simulator : str
        ``module:function`` of the simulator.
    progress : bool
        Show one tqdm bar (with ETA) over every fit of the batch.
    grid : dict, optional
        The grid spec, recorded in each manifest.
    max_tasks : int, optional
        Stop after this many tasks (to test interruption and resumption).
    lock : bool
        Lock each scenario folder for the run (:mod:`fitlab.lock`); ``False`` when the
        caller holds the lock of ``root`` already (a grid: one lock, not one per scenario).

    Returns
    -------
    BatchResult
    """
    root = Path(root)
    with contextlib.ExitStack() as locks:
        for job in jobs if lock else []:  # refused here, before writing, if one is in use
            locks.enter_context(folder_lock(root / job.scenario_id))
        return _run_jobs(jobs, root, workers=workers, scheduler=scheduler, dask=dask,
                         chunk=chunk, simulator=simulator, progress=progress, grid=grid,
                         max_tasks=max_tasks)


def _run_jobs(jobs, root: Path, *, workers, scheduler, dask, chunk, simulator, progress,
              grid, max_tasks) -> BatchResult:
    t_start = time.perf_counter()
    result = BatchResult(root=root)
    use_pool = workers > 1 or scheduler is not None or dask
    pending: dict[str, int] = {}
    all_tasks: list[dict] = []
    for job in jobs:
        sid = job.scenario_id
        store = ScenarioStore(root / sid)
        store.clean()
        most = max((n for e in job.plan.values() for n in e.values()), default=1)
        per_task = chunk or max(1, min(25, math.ceil(most / (4 * max(workers, 1)))))
        done = store.done()
        tasks = plan_tasks(job, done, per_task)
        if not tasks:
            result.skipped.append(sid)
            if not is_finished(store.root, len(done)):  # killed while finishing: rebuild
                _start_manifest(job, store.root, grid, simulator)
                finalize(job, store.root, simulator)
            continue
        _start_manifest(job, store.root, grid, simulator)
        for t in tasks:
            t.update(scenario=job.scenario.to_dict(), simulator=simulator, worker=use_pool,
                     sid=sid)
        pending[sid] = len(tasks)
        all_tasks += tasks
    # slow (Bayesian) tasks first, so their compile and sampling overlap the fast ones
    # instead of trailing at the end of the batch (stable: otherwise in plan order)
    all_tasks.sort(key=lambda t: not any(n.startswith("bayes") for _, ns in t["items"]
                                         for n in ns))
    if max_tasks is not None:
        all_tasks = all_tasks[:max_tasks]
    job_of = {j.scenario_id: j for j in jobs}
    bar = _bar(sum(t["n_fits"] for t in all_tasks), progress)
    try:
        for task, rows, error in _execute(all_tasks, workers, scheduler, dask):
            sid = task["sid"]
            if error is not None:
                result.task_errors.append({"scenario_id": sid, "role": task["role"],
                                           "replicates": [r for r, _ in task["items"]],
                                           "error": error})
            else:
                ScenarioStore(root / sid).write_part(rows, task["role"], task["items"][0][0])
                result.fits_run += len(rows)
            bar.update(task["n_fits"])
            pending[sid] -= 1
            if pending[sid] == 0:
                finalize(job_of[sid], root / sid, simulator,
                         [e for e in result.task_errors if e["scenario_id"] == sid])
    finally:
        bar.close()
    result.seconds = time.perf_counter() - t_start
    result.summary = summary_table(jobs, root)
    for job in jobs:
        m = mf.read_json(root / job.scenario_id / "manifest.json") or {}
        result.all_failed += [{"scenario_id": job.scenario_id, **f}
                              for f in m.get("all_failed", [])
                              if f["estimator"] in job.plan.get(f["role"], {})]
    return result


def is_finished(folder: Path, rows: int) -> bool:
    """Whether ``folder`` holds the finished tables of its ``rows`` fits.

    The manifest is written last (:func:`finalize`), so a finished manifest counting the
    rows on disk, next to both tables, means the last finish was not interrupted.
    """
    m = mf.read_json(folder / "manifest.json") or {}
    return (m.get("finished") is not None and m.get("rows") == rows
            and (folder / "diagnosands.csv").is_file()
            and (folder / "replicates.parquet").is_file())


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="fit", desc="replicates", disable=not progress,
                file=sys.stderr, smoothing=0.1, dynamic_ncols=True)


def _execute(tasks: list[dict], workers: int, scheduler: str | None,
             dask: bool) -> Iterator[tuple[dict, list | None, str | None]]:
    """Yield ``(task, rows, error)`` as tasks finish, whatever runs them."""
    if not tasks:
        return
    if scheduler is not None or dask:
        yield from _execute_dask(tasks, workers, scheduler)
    elif workers <= 1:
        for t in tasks:
            try:
                yield t, run_task(t), None
            except Exception as exc:  # a bug in run_task itself; fits never raise
                yield t, None, f"{type(exc).__name__}: {exc}"
    else:
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                   initializer=die_with_parent)
        futures = {pool.submit(run_task, t): t for t in tasks}
        try:
            for fut in as_completed(futures):
                t = futures[fut]
                try:
                    yield t, fut.result(), None
                except Exception as exc:  # a worker died: leave the fits missing
                    yield t, None, f"{type(exc).__name__}: {exc}"
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM, SIGHUP): stop the workers now rather than wait
            # for their tasks; what they computed is not written, so resuming redoes it
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to end this worker when the main
    process dies (even by SIGKILL), so that no orphan keeps computing."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _execute_dask(tasks: list[dict], workers: int, scheduler: str | None):
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=max(workers, 1), threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = [client.submit(run_task, t, pure=False) for t in tasks]
        index = {f.key: t for f, t in zip(futures, tasks)}
        for fut in dask_completed(futures):
            t = index[fut.key]
            try:
                yield t, fut.result(), None
            except Exception as exc:
                yield t, None, f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _start_manifest(job: Job, folder: Path, grid: dict | None, simulator: str) -> None:
    path = folder / "manifest.json"
    old = mf.read_json(path) or {}
    mf.write_json(path, {
        "scenario_id": job.scenario_id,
        "scenario": job.scenario.to_dict(),
        "null_scenario_id": job.scenario.null().scenario_id,
        "seed": job.scenario.seed,
        "seeds": "replicate r of role s: SeedSequence(entropy=seed, spawn_key=(s, r)); "
                 "s = 0 effect, 1 null, 2 assurance",
        "factors": job.factors,
        "plan": job.plan,
        "grid": (grid or {}).get("name"),
        "simulator": simulator,
        "versions": mf.versions(),
        "git_commit": mf.git_commit(),
        "created": old.get("created", mf.now()),
        "finished": None,
        "history": old.get("history", []) + [mf.now()],
        # a target run's record (fitlab.precision) outlives its rounds
        **({"precision": old["precision"]} if "precision" in old else {}),
    })


def finalize(job: Job, folder: Path, simulator: str = DEFAULT_SIMULATOR,
             task_errors: list[dict] | None = None) -> pd.DataFrame:
    """Write ``replicates.parquet``, ``diagnosands.csv`` and, last, the finished manifest.

    Each file is written atomically; the manifest marks the three as one finished whole
    (:func:`is_finished`), and a run killed before it rebuilds them from the parts.
    """
    folder = Path(folder)
    table = ScenarioStore(folder).table()
    diag = diagnose(table)
    diag.insert(0, "scenario_id", job.scenario_id)
    atomic_write(folder / "replicates.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    atomic_write(folder / "diagnosands.csv", lambda tmp: diag.to_csv(tmp, index=False))
    m = mf.read_json(folder / "manifest.json") or {}
    missing = sum(len(t["replicates"]) for t in task_errors or [])
    m.update({
        "finished": mf.now() if not task_errors else None,
        "rows": int(len(table)),
        "failed_fits": int(table["error"].notna().sum()) if "error" in table else 0,
        "all_failed": _all_failed(table),
        "task_errors": task_errors or [],
        "missing_replicates": missing,
        "time_per_replicate": mf.timing(table),
    })
    mf.write_json(folder / "manifest.json", m)
    return diag


def _all_failed(table: pd.DataFrame) -> list[dict]:
    """Each (role, estimator) none of whose fits succeeded, with its first error."""
    if not len(table) or "error" not in table.columns:
        return []
    out = []
    for (role, est), t in table.groupby(["role", "estimator"], sort=True):
        if t["error"].notna().all():
            out.append({"role": str(role), "estimator": str(est), "fits": int(len(t)),
                        "error": str(t["error"].iloc[0])})
    return out


def summary_table(jobs: Iterable[Job], root: str | Path) -> pd.DataFrame:
    """One row per (scenario, estimator): factors, diagnosands + MCSEs, analytic power."""
    rows = []
    for job in jobs:
        path = Path(root) / job.scenario_id / "diagnosands.csv"
        if not path.is_file():
            continue
        w = wide(read_diagnosands(path))
        sc = job.scenario
        meta = {"scenario_id": job.scenario_id, "name": sc.name, "design": sc.design.kind,
                "outcome": sc.outcome.kind, "units": sc.size.units,
                "clients_per_unit": sc.size.clients_per_unit,
                "dropout_rate": sc.missingness.dropout_rate,
                "attrition_rate": sc.missingness.attrition_rate,
                "effect_d": sc.effect.d, "uptake": sc.compliance.uptake,
                "decision_threshold": sc.analysis.decision_threshold,
                "target_width": sc.analysis.target_width,
                **design_prior_columns(sc), **analytic_power(sc)}
        meta.update({f"f_{k}": v for k, v in job.factors.items()})
        for r in w.to_dict("records"):
            rows.append({**meta, **r})
    return pd.DataFrame(rows)


def design_prior_columns(scenario) -> dict[str, float]:
    """The design prior's mean and SD (NaN without one), for the summary table."""
    prior = scenario.effect.design_prior
    if prior is None:
        return {"design_prior_mean": math.nan, "design_prior_sd": math.nan}
    return {"design_prior_mean": prior.mean, "design_prior_sd": prior.sd}


def analytic_power(scenario) -> dict[str, float]:
    """Analytic power of the scenario (:func:`simulate.power.power`).

    ``analytic_power`` is the textbook comparison of primary-month outcomes;
    ``analytic_power_adjusted`` adjusts it for baseline (ANCOVA);
    ``analytic_power_fitted`` is the power of the mixed model actually fitted
    (``reml_trajectory`` / ``reml_stepped_wedge``; ORS only). NaN where a formula does
    not cover the design, recorded rather than failing the summary.
    """
    from simulate.limits import check_resources
    from simulate.power import power

    nan = {"analytic_power": math.nan, "analytic_power_adjusted": math.nan,
           "analytic_power_fitted": math.nan}
    if check_resources(scenario, ["power"], force=True):  # would not fit: not attempted
        return nan
    try:
        out = power(scenario)
    except (ValueError, NotImplementedError):
        return nan

    def num(key):
        v = out.get(key)
        return math.nan if v is None else float(v)

    return {"analytic_power": num("power"), "analytic_power_adjusted": num("power_baseline_adjusted"),
            "analytic_power_fitted": num("power_fitted")}
