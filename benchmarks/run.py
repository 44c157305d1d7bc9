"""``make bench``: the analysis routes side by side on the same replicates, with ratios.

For each default design (``individual``: ``Scenario()``, 12 units x ~20 clients x 5
occasions; ``stepped_wedge``: ``params/fit_stepped_wedge.yaml``) every route fits the same
simulated replicates in this one process, interleaved replicate by replicate so that a change
in machine load hits every route alike. Compiled routes get one warm-up fit on an extra
replicate first; its time is reported as ``compile_s`` and the per-replicate medians are over
the timed replicates only (a power study amortizes the compile over thousands of fits).

Routes (per design; the stepped-wedge names in brackets)
---------------------------------------------------------
- ``naive_pm_sample``: the NUTS twin's model rebuilt and sampled by ``pm.sample`` for every
  replicate (PyMC's own NUTS, 4 chains x 1000 draws); few replicates.
- ``bayes_trajectory_nuts`` (``bayes_stepped_wedge_nuts``): the same model and priors as
  the fast route, every random effect explicit, compiled once by nutpie.
- ``bayes_trajectory`` (``bayes_stepped_wedge``): the integrated route
  (:mod:`models.bayes.integrated`): exact integration of the fixed effects and sigma^2,
  importance sampling over the variance parameters, its own integration-error check.
- ``mixedlm``: statsmodels MixedLM of the same mean model (:mod:`models.reference`).
- ``reml_trajectory`` (``reml_stepped_wedge``): the exact REML fast path.
- agreement of the fast route with a long NUTS run on 20 replicates per model
  (:mod:`agreement`; skipped with ``--no-agreement``).
- power engines: MCPower vs the vectorized ``nested_power`` (:mod:`models.fastpower`) on
  MCPower's design (12 units x 4 therapists x 5 clients), per replicate
  (:mod:`mcpower_compare`).
- ``simulate_trial``: one default trial.
- memory: a 10,000-replicate batch streamed to parquet by ``fitlab`` in a child process,
  its peak resident memory.

A route whose module is missing is reported ``missing``; one that fails, ``error``. The
table prints costs relative to MixedLM (the targets: the fast Bayesian route at most 0.1x,
with 10/10 fits passing its own check).

Usage: ``python benchmarks/run.py [--quick] [--reps N]``; writes
``outputs/benchmarks/<YYYY-MM-DD>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

# One BLAS thread, as in `make` and in every batch worker: on 2 shared cores a second
# OpenBLAS thread spins against the NUTS chains and makes small dense fits 3-5x slower at
# random (measured: bayes_stepped_wedge 0.02 s quiet, 0.1 s beside another process).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PYTENSOR_FLAGS", f"compiledir={ROOT / '.pytensor'}")

#: agreement tolerance in posterior SDs of ``bayes_marginal`` (justified in README.md)
AGREE_SD = 0.25
MISSING = (ImportError, KeyError, ModuleNotFoundError)


def machine_info() -> dict:
    import importlib.metadata as md

    def ver(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except Exception:  # no git: not a reason to fail a benchmark
            return None

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        **{pkg: ver(pkg) for pkg in ("numpy", "pymc", "pytensor", "nutpie", "statsmodels",
                                     "mcpower")},
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "load_average_start": list(os.getloadavg()),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


# -- routes fitted replicate by replicate --------------------------------------------------
DESIGNS = {"individual": (None, "trajectory"), "stepped_wedge": ("fit_stepped_wedge.yaml",
                                                                  "stepped_wedge")}


def fit_routes(model: str) -> dict:
    """Estimator routes by name: ``(name, options)`` for ``get_estimator``."""
    return {
        "naive_pm_sample": (f"bayes_{model}_nuts", {"sampler": "pymc", "cores": 2}),
        f"bayes_{model}_nuts": (f"bayes_{model}_nuts", {"cores": 2}),
        f"bayes_{model}": (f"bayes_{model}", {}),
        "mixedlm": ("mixedlm", {"model": model}),
        f"reml_{model}": (f"reml_{model}", {}),
    }


def run_fits(scenario, model, trials, warm, naive_reps: int) -> dict:
    from models import get_estimator

    out: dict[str, dict] = {}
    ests = {}
    for route, (name, opts) in fit_routes(model).items():
        rec = out[route] = {"status": "ok", "times": [], "estimates": [], "ses": [],
                            "converged": [], "ess_bulk_min": []}
        try:
            est = get_estimator(name, scenario, **opts)
            if route != "naive_pm_sample":  # the naive route pays its build every time
                t0 = time.perf_counter()
                est.fit(warm.data)  # compile / warm-up, not timed as a replicate
                rec["compile_s"] = time.perf_counter() - t0
            ests[route] = est
        except MISSING as exc:
            rec["status"] = f"missing ({type(exc).__name__}: {exc})"
        except Exception as exc:  # a broken route is reported, not fatal
            rec["status"] = f"error ({type(exc).__name__}: {exc})"
            traceback.print_exc()
        print(f"  {route}: {rec['status']}"
              + (f", warm-up {rec['compile_s']:.1f} s" if "compile_s" in rec else ""),
              flush=True)

    for i, trial in enumerate(trials):
        for route, est in ests.items():
            rec = out[route]
            if not rec["status"].startswith("ok") or (route == "naive_pm_sample"
                                                      and i >= naive_reps):
                continue
            try:
                t0 = time.perf_counter()
                e = est.fit(trial.data)
                rec["times"].append(time.perf_counter() - t0)
                rec["estimates"].append(e.estimate)
                rec["ses"].append(e.se)
                rec["converged"].append(bool(e.converged))
                rec["ess_bulk_min"].append(e.diagnostics.get("ess_bulk_min"))
                rec.setdefault("warnings", []).append(e.diagnostics.get("warnings"))
            except Exception as exc:
                rec["status"] = f"error ({type(exc).__name__}: {exc})"
                traceback.print_exc()
        print(f"  replicate {i + 1}/{len(trials)}: " + ", ".join(
            f"{r}={out[r]['times'][-1]:.3g}s" for r in out
            if out[r]["times"] and len(out[r]["times"]) == i + 1), flush=True)
    return out


# -- other routes ---------------------------------------------------------------------------
def run_simulation(scenario, n: int) -> dict:
    from simulate import simulate_trial

    simulate_trial(scenario, 0)  # warm caches
    times = []
    for s in range(n):
        t0 = time.perf_counter()
        simulate_trial(scenario, s + 1)
        times.append(time.perf_counter() - t0)
    return {"status": "ok", "times": times}


def run_power(quick: bool) -> dict:
    """MCPower vs the vectorized engine, same design, seconds per replicate."""
    out = {}
    try:
        from mcpower_compare import mcpower_power, time_per_replicate
        from models.fastpower import icc_to_variance, nested_power
    except MISSING as exc:
        return {"mcpower": {"status": f"missing ({exc})"},
                "vectorized_power": {"status": f"missing ({exc})"}}
    design = {"delta": 0.3, "units": 12, "therapists_per_unit": 4, "clients_per_therapist": 5}
    for name, fn, kw, n_reps, repeats in (
        ("mcpower", mcpower_power, {"icc_unit": 0.1, "icc_therapist": 0.1},
         50 if quick else 200, 1 if quick else 2),
        ("vectorized_power", nested_power,
         {"var_unit": icc_to_variance(0.1), "var_therapist": icc_to_variance(0.1)},
         1000 if quick else 5000, 3),
    ):
        try:
            out[name] = {"status": "ok",
                         **time_per_replicate(fn, n_reps, repeats, **design, **kw)}
        except MISSING as exc:
            out[name] = {"status": f"missing ({type(exc).__name__}: {exc})"}
        except Exception as exc:
            out[name] = {"status": f"error ({type(exc).__name__}: {exc})"}
            traceback.print_exc()
    return out


MEMORY_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
reps, estimator = int(sys.argv[1]), sys.argv[2]
from simulate import Scenario
from fitlab.grid import scenario_job
from fitlab.batch import run_jobs
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    run_jobs([scenario_job(Scenario(), reps=reps, estimators=[estimator], null=False)], tmp,
             workers=1, progress=False)
    sec = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
# VmHWM, not getrusage: Linux carries ru_maxrss across fork and exec, so getrusage would
# report the (large) benchmark parent's peak instead of this batch's own.
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": hwm_kb / 1024, "seconds": sec, "disk_mb": disk / 2**20}))
"""


def run_memory(reps: int, estimator: str) -> dict:
    """Peak RSS of a child process running a ``reps``-replicate fitlab batch."""
    try:
        import fitlab.batch  # noqa: F401
        import fitlab.grid  # noqa: F401
    except MISSING as exc:
        return {"status": f"missing ({exc})"}
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(reps), estimator],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"status": f"error ({proc.stderr.strip().splitlines()[-1:]})"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"status": "ok", "reps": reps, "estimator": estimator, **res,
            "under_2gb": res["peak_rss_mb"] < 2048}


# -- table ------------------------------------------------------------------------------------
def median(rec) -> float | None:
    return float(np.median(rec["times"])) if rec.get("times") else None


def agreement(fits: dict, route: str, ref_route: str) -> float | None:
    """max |estimate - reference| / reference posterior SD over shared replicates."""
    ref = fits.get(ref_route, {})
    a, b = fits[route].get("estimates", []), ref.get("estimates", [])
    k = min(len(a), len(b))
    if route == ref_route or k == 0:
        return None
    return float(max(abs(a[i] - b[i]) / ref["ses"][i] for i in range(k)))


def build_table(all_fits, sim, power, memory) -> list[dict]:
    rows = []
    for design, fits in all_fits.items():
        model = DESIGNS[design][1]
        mixed = median(fits.get("mixedlm", {}))
        naive = median(fits.get("naive_pm_sample", {}))
        for route in fit_routes(model):
            rec = fits.get(route, {"status": "missing"})
            m = median(rec)
            ag = agreement(fits, route, f"bayes_{model}_nuts")
            ess = [x for x in rec.get("ess_bulk_min", []) if x is not None]
            rows.append({
                "design": design, "route": route, "status": rec["status"],
                "n": len(rec.get("times", [])), "median_s": m, "compile_s": rec.get("compile_s"),
                "speedup_vs_naive": naive / m if (naive and m) else None,
                "cost_vs_mixedlm": m / mixed if (mixed and m) else None,
                "ess_bulk_min_median": float(np.median(ess)) if ess else None,
                "converged": f"{sum(rec.get('converged', []))}/{len(rec.get('converged', []))}",
                "agree_max_sd": ag, "estimates": rec.get("estimates", []),
            })
    mcp = median(power.get("mcpower", {}))
    for name in ("mcpower", "vectorized_power"):
        rec = power.get(name, {"status": "missing"})
        m = median(rec)
        rows.append({"route": name, "status": rec["status"], "n": rec.get("n_reps", 0),
                     "median_s": m, "cost_vs_mcpower": m / mcp if (m and mcp) else None,
                     "speedup_vs_mcpower": mcp / m if (m and mcp) else None,
                     "power": rec.get("power"), "mcse": rec.get("mcse")})
    rows.append({"route": "simulate_trial", "status": sim["status"], "n": len(sim["times"]),
                 "median_s": median(sim), "within_5ms": (median(sim) or 1) <= 0.005})
    rows.append({"route": "memory_batch", **memory})
    return rows


def fmt(x, spec=".3g", none="-"):
    if x is None:
        return none
    if isinstance(x, bool):
        return "yes" if x else "NO"
    return format(x, spec)


def print_table(rows, info, agree=None) -> str:
    lines = [
        f"Machine: {info.get('cpu_model', info['processor'])}, {info['cpu_count']} cores, "
        f"{info.get('memory_gb', '?')} GB; {info['platform']}; Python {info['python']}, "
        f"numpy {info['numpy']}, PyMC {info['pymc']}, nutpie {info['nutpie']}; "
        f"commit {str(info['git_commit'])[:10]}{' (dirty)' if info['git_dirty'] else ''}; "
        f"load average {info['load_average_start'][0]:.1f} at start",
        "",
        "| design | route | n | median s/replicate | warm-up s | x faster than naive "
        "pm.sample | cost / MixedLM | passes its own check | max diff from NUTS twin (SD) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "design" not in r:
            continue
        if r["status"] != "ok":
            lines.append(f"| {r['design']} | {r['route']} | {r['status']} | | | | | | |")
            continue
        lines.append(
            f"| {r['design']} | {r['route']} | {r['n']} | {fmt(r['median_s'])} "
            f"| {fmt(r['compile_s'], '.1f')} | {fmt(r['speedup_vs_naive'], '.0f')} "
            f"| {fmt(r['cost_vs_mixedlm'], '.3f')} | {r['converged']} "
            f"| {fmt(r['agree_max_sd'], '.2f')} |")
    if agree:
        from agreement import table as agreement_table

        lines += ["", "Agreement with a long NUTS run of the same model and priors "
                  "(benchmarks/agreement.py; targets: mean 0.1 SD, SD 10%, ends 0.15 SD):", "",
                  agreement_table(agree)]
    lines += ["", "| power engine (12 x 4 x 5 design) | replicates | median s/replicate "
              "| x faster than MCPower | power (MCSE) |", "|---|---|---|---|---|"]
    for r in rows:
        if r["route"] in ("mcpower", "vectorized_power"):
            if r["status"] != "ok":
                lines.append(f"| {r['route']} | {r['status']} | | | |")
            else:
                lines.append(
                    f"| {r['route']} | {r['n']} | {fmt(r['median_s'], '.2e')} "
                    f"| {fmt(r['speedup_vs_mcpower'], '.0f')} "
                    f"| {fmt(r['power'], '.3f')} ({fmt(r['mcse'], '.3f')}) |")
    for r in rows:
        if r["route"] == "simulate_trial" and r["status"] == "ok":
            lines.append(f"\nsimulate_trial (default size): median {1e3 * r['median_s']:.2f} ms "
                         f"per trial over {r['n']} trials (target <= 5 ms: "
                         f"{fmt(r['within_5ms'])})")
        if r["route"] == "memory_batch":
            if r["status"] == "ok":
                lines.append(
                    f"memory: {r['reps']}-replicate batch ({r['estimator']}) streamed to "
                    f"parquet: peak RSS {r['peak_rss_mb']:.0f} MB (target < 2048: "
                    f"{fmt(r['under_2gb'])}), {r['seconds']:.0f} s, {r['disk_mb']:.1f} MB "
                    "on disk")
            else:
                lines.append(f"memory: {r['status']}")
    text = "\n".join(lines)
    print(text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few replicates (development)")
    p.add_argument("--reps", type=int, help="timed replicates per fast route (default 10)")
    p.add_argument("--naive-reps", type=int, help="replicates of naive pm.sample (default 2)")
    p.add_argument("--memory-reps", type=int, help="replicates of the memory batch (10000)")
    p.add_argument("--agree-reps", type=int, help="replicates per model of the agreement "
                                                   "with long NUTS runs (default 20)")
    p.add_argument("--no-agreement", action="store_true",
                   help="skip the agreement with long NUTS runs (about 20 minutes)")
    p.add_argument("--memory-estimator", default="diff_means",
                   help="estimator of the memory batch (default diff_means: the batch "
                        "machinery, not the fit, is what is measured)")
    p.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks"))
    a = p.parse_args(argv)
    reps = a.reps or (3 if a.quick else 10)
    naive_reps = a.naive_reps if a.naive_reps is not None else (1 if a.quick else 2)
    memory_reps = a.memory_reps or (500 if a.quick else 10_000)

    from simulate import Scenario, load_scenario, simulate_trial

    info = machine_info()
    t_start = time.perf_counter()
    fits = {}
    for design, (path, model) in DESIGNS.items():
        sc = load_scenario(ROOT / "params" / path) if path else Scenario()
        seeds = np.random.SeedSequence(sc.seed).spawn(reps + 1)
        trials = [simulate_trial(sc, s) for s in seeds[:reps]]
        warm = simulate_trial(sc, seeds[reps])
        print(f"{design}: {reps} replicates ({len(trials[0].data)} rows each before "
              "attrition)", flush=True)
        fits[design] = run_fits(sc, model, trials, warm, naive_reps)
    agree = None
    if not a.no_agreement:
        from agreement import run as run_agreement

        print("agreement with long NUTS runs ...", flush=True)
        agree = run_agreement(reps=a.agree_reps or (3 if a.quick else 20),
                              draws=500 if a.quick else 2000, tune=500 if a.quick else 1000,
                              log=lambda line: print(line, flush=True))
    print("power engines ...", flush=True)
    power = run_power(a.quick)
    print("simulation ...", flush=True)
    sim = run_simulation(Scenario(), 50 if a.quick else 300)
    print(f"memory batch ({memory_reps} replicates) ...", flush=True)
    memory = run_memory(memory_reps, a.memory_estimator)
    info["load_average_end"] = list(os.getloadavg())
    info["bench_seconds"] = time.perf_counter() - t_start

    rows = build_table(fits, sim, power, memory)
    text = print_table(rows, info, agree)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dt.date.today().isoformat()}{'-quick' if a.quick else ''}.json"
    path.write_text(json.dumps({"machine": info, "quick": a.quick, "replicates": reps,
                                "table": rows, "text": text,
                                "raw": {"fits": fits, "power": power, "agreement": agree}},
                               indent=1, default=float))
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
