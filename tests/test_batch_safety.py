"""Batches lose nothing and duplicate nothing: kills, signals, concurrent runs, folder locks,
an interrupted finish, and an exit status that tells the truth.

Each run is compared with an uninterrupted in-process run of the same replicates, bit for
bit (timing columns aside). "Duplicated" is counted on the raw part files, before the
reader's de-duplication, so a second writer could not hide.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fitlab.batch import run_jobs
from fitlab.cli import main
from fitlab.grid import scenario_job
from fitlab.store import KEY, ScenarioStore
from models.base import Estimate, Estimator, register
from simulate import Scenario

TIMING = ["sim_seconds", "fit_seconds", "diag_fit_seconds"]
SMALL = {"size.units": 6, "size.clients_per_unit": 10}
REPS = 40
ESTS = "diff_means,reml_trajectory"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small scenario's file, and its uninterrupted table (REPS replicates, both
    estimators, both roles), run in this process."""
    folder = tmp_path_factory.mktemp("small")
    path = folder / "small.yaml"
    path.write_text("size: {units: 6, clients_per_unit: 10}\n")
    sc = Scenario().replace(SMALL)
    job = scenario_job(sc, REPS, ESTS.split(","))
    run_jobs([job], folder / "ref", progress=False)
    return path, sc, _clean(ScenarioStore(folder / "ref" / sc.scenario_id).table())


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "fitlab.cli", *args]


def _run_argv(scenario, out: Path, est: str = "diff_means", *extra) -> list[str]:
    return _cli("run", str(scenario), "--reps", str(REPS), "--estimators", est, "--chunk",
                "2", "--out", str(out), "--no-progress", *extra)


def _clean(t: pd.DataFrame) -> pd.DataFrame:
    return t.drop(columns=[c for c in TIMING if c in t.columns]).reset_index(drop=True)


def _raw_keys(folder: Path) -> pd.DataFrame:
    files = sorted(p for p in (folder / "parts").glob("*.parquet") if not p.name.startswith("."))
    return pd.concat([pd.read_parquet(p, columns=KEY) for p in files], ignore_index=True)


def _figures(folder: Path, ref: pd.DataFrame, est: str = "diff_means") -> dict:
    """Rows expected, lost and duplicated (on the raw parts), and equality with ``ref``."""
    # the reference also has the other estimator's columns (empty for these rows)
    ref = ref[ref["estimator"].isin(est.split(","))].dropna(axis=1, how="all")
    ref = ref.reset_index(drop=True)
    raw = _raw_keys(folder)
    want = set(map(tuple, ref[KEY].astype(str).to_numpy()))
    have = set(map(tuple, raw.astype(str).to_numpy()))
    got = _clean(pd.read_parquet(folder / "replicates.parquet")).dropna(axis=1, how="all")
    same = set(got.columns) == set(ref.columns)
    if same:
        for c in got.columns:  # dtypes may differ between the two tables
            same &= bool(((got[c] == ref[c]) | (got[c].isna() & ref[c].isna())).all())
    return {"expected": len(ref), "lost": len(want - have),
            "duplicated": int(raw.duplicated().sum()), "same": same}


def _finished_parts(parts: Path) -> int:
    return sum(not p.name.startswith(".") for p in parts.glob("*.parquet"))


def _wait_for_parts(parts: Path, n: int, proc, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if _finished_parts(parts) >= n:
            return
        time.sleep(0.01)


def test_kills_at_random_moments_then_resume(tmp_path, small):
    # SIGKILL at random moments (start-up, fits, the finish), then the same command again
    path, sc, ref = small
    argv = _run_argv(path, tmp_path, ESTS)
    rng = random.Random(9)
    for _ in range(3):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 3.0))
        proc.kill()
        proc.wait()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fig = _figures(tmp_path / sc.scenario_id, ref, ESTS)
    print(f"\nkill/resume {ESTS}: {fig}")
    assert fig == {"expected": 2 * 2 * REPS, "lost": 0, "duplicated": 0, "same": True}


def test_two_concurrent_runs(tmp_path, small):
    path, sc, ref = small
    argv = _run_argv(path, tmp_path)
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    # normally one is refused while the other runs; if the first was done before the second
    # started, the second finds nothing left to do
    assert codes in ([0, 2], [0, 0])
    for code, err in results:
        if code == 2:
            assert "in use by another fitlab run" in err and err.count("\n") == 1
    fig = _figures(tmp_path / sc.scenario_id, ref)
    print(f"\nconcurrent runs (exit codes {codes}): {fig}")
    assert fig == {"expected": 2 * REPS, "lost": 0, "duplicated": 0, "same": True}


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the parent's pid follows the state
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead, only not yet reaped
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_and_sighup_stop_workers_and_leave_it_resumable(tmp_path, small):
    path, sc, ref = small
    folder = tmp_path / sc.scenario_id
    before = 0
    for sig, workers in ((signal.SIGTERM, 2), (signal.SIGHUP, 1)):
        argv = _run_argv(path, tmp_path, "diff_means", "--workers", str(workers))
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        _wait_for_parts(folder / "parts", before + 1, proc)
        kids = _children(proc.pid)
        assert proc.poll() is None and len(kids) >= (workers if workers > 1 else 0)
        proc.send_signal(sig)
        code, err = proc.wait(timeout=60), proc.stderr.read()
        assert code == 130 and err.count("\n") == 1 and f"interrupted ({sig.name})" in err
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.05)
        assert not any(_alive(k) for k in kids)  # no orphan keeps computing
        assert not list((folder / "parts").glob(".tmp-*"))
        before = _finished_parts(folder / "parts")
        assert 0 < len(ScenarioStore(folder).done()) < 2 * REPS
    subprocess.run(_run_argv(path, tmp_path), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    fig = _figures(folder, ref)
    assert fig == {"expected": 2 * REPS, "lost": 0, "duplicated": 0, "same": True}


def test_busy_folder_refused_and_stale_lock_taken(tmp_path, capsys, small):
    path, sc, _ = small
    folder = tmp_path / sc.scenario_id
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fitlab.lock import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
         str(folder)], stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert holder.stdout.readline().strip() == "held"
    argv = ["run", str(path), "--reps", "2", "--estimators", "diff_means", "--no-progress",
            "--out", str(tmp_path)]
    try:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "in use by another fitlab run" in err and f"process {holder.pid}" in err
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock file is stale and is taken over
    assert (folder / ".lock").is_file()
    assert main(argv) == 0
    assert "taking over the lock" in capsys.readouterr().err
    assert not (folder / ".lock").exists()


def test_interrupted_finish_is_rebuilt(tmp_path, monkeypatch):
    import fitlab.batch as batch

    sc = Scenario().replace(SMALL)
    job = scenario_job(sc, 4, ["diff_means"])
    folder = tmp_path / sc.scenario_id
    real = batch.atomic_write

    def killed_after_replicates(path, write):
        if Path(path).name == "diagnosands.csv":
            raise KeyboardInterrupt  # killed between the two tables
        return real(path, write)

    monkeypatch.setattr(batch, "atomic_write", killed_after_replicates)
    with pytest.raises(KeyboardInterrupt):
        run_jobs([job], tmp_path, progress=False)
    monkeypatch.setattr(batch, "atomic_write", real)
    assert not (folder / "diagnosands.csv").exists()
    res = run_jobs([job], tmp_path, progress=False)  # nothing to fit, but not finished
    assert res.fits_run == 0 and (folder / "diagnosands.csv").is_file()
    assert batch.is_finished(folder, 8)
    (folder / "replicates.parquet").unlink()  # a lost table is rebuilt from the parts
    run_jobs([job], tmp_path, progress=False)
    assert len(pd.read_parquet(folder / "replicates.parquet")) == 8


@register
class _AlwaysFails(Estimator):
    """Raises on every fit."""

    name = "_test_always_fails"

    def _fit(self, df, primary_month):
        raise RuntimeError("singular (on purpose)")


@register
class _NeverConverges(Estimator):
    """Returns an estimate flagged as not converged."""

    name = "_test_never_converges"

    def _fit(self, df, primary_month):
        return Estimate(self.name, "itt", 1.0, 0.5, 0.0, 2.0, p_value=0.04,
                        extra={"var_unit": 1.0},
                        diagnostics={"converged": False, "warnings": ["hessian singular"]})


def test_exit_status_says_when_every_fit_failed(tmp_path, capsys, small):
    path = small[0]
    argv = ["run", str(path), "--reps", "3", "--no-progress", "--out", str(tmp_path / "o"),
            "--estimators", "diff_means,_test_always_fails,_test_never_converges"]
    assert main(argv) == 1
    cap = capsys.readouterr()
    assert "not_converged" in cap.out and "failed" in cap.out
    assert "every fit failed: _test_always_fails" in cap.err and "singular (on purpose)" in cap.err
    assert main(argv) == 1  # the same on a re-run that has nothing left to fit
    assert main(argv[:-1] + ["diff_means,_test_never_converges"]) == 0
