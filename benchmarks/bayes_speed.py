"""Cost and convergence of the binary and CACE models against statsmodels MixedLM.

Target: ``bayes_binary`` (the integrated route, on ``params/ips_2to1.yaml`` and on the
default scenario with a binary outcome) and ``bayes_cace`` (NUTS, ORS, default scenario)
cost at most 1x MixedLM per replicate, with 10/10 fits passing their checks: the
integration-error check of :mod:`models.bayes.logit_integrated` (Monte Carlo errors of
the posterior mean, SD and 95% ends at most 0.03 posterior SDs, Pareto k below its
threshold), and for the NUTS routes (``bayes_cace``, and ``bayes_binary_nuts`` beside the
integrated route) the convergence rule of :mod:`models.bayes.base` (R-hat < 1.01 on the
monitored parameters, bulk and tail ESS >= 400 on the estimand, bulk ESS >= 50 per chain
elsewhere, no divergences).

Every route fits its own scenario's replicates ``0..reps-1`` (seeds
``SeedSequence(scenario.seed).spawn(reps + 1)``, the last one for an untimed warm-up fit
that compiles), interleaved replicate by replicate in this one process so that a change in
machine load hits every route alike. MixedLM (``mixedlm``, the Gaussian nested model) fits
the default ORS scenario's replicates. Times are wall seconds of ``est.fit`` and the CPU
seconds of this process over the fit (the chains run in threads, so CPU can exceed wall).

Usage: ``python benchmarks/bayes_speed.py [--reps 10] [--route NAME ...] [--options
draws=1000,tune=300]``; writes
``outputs/benchmarks/bayes_speed-<date>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PYTENSOR_FLAGS", f"compiledir={ROOT / '.pytensor'}")


def scenarios() -> dict:
    from simulate import Scenario, load_scenario

    return {"ips": load_scenario(ROOT / "params" / "ips_2to1.yaml"),
            "default_binary": Scenario().replace({"outcome": {"kind": "binary"}}),
            "default": Scenario()}


#: route -> (estimator, scenario key, options)
ROUTES = {
    "mixedlm": ("mixedlm", "default", {}),
    "bayes_binary_ips": ("bayes_binary", "ips", {}),
    "bayes_binary_default": ("bayes_binary", "default_binary", {}),
    "bayes_binary_nuts_ips": ("bayes_binary_nuts", "ips", {}),
    "bayes_binary_nuts_default": ("bayes_binary_nuts", "default_binary", {}),
    "bayes_cace_default": ("bayes_cace", "default", {}),
}


#: the NUTS routes, which ``--options`` (sampler settings) apply to
NUTS = ("bayes_binary_nuts", "bayes_cace")


def run(reps: int, routes: list[str], options: dict | None = None) -> dict:
    from models import get_estimator
    from simulate import simulate_trial

    scs = scenarios()
    out = {}
    fits = {}
    trials = {}
    for route in routes:
        name, key, opts = ROUTES[route]
        if name in NUTS:
            opts = {**opts, **(options or {})}
        sc = scs[key]
        seeds = np.random.SeedSequence(sc.seed).spawn(reps + 1)
        trials[route] = [simulate_trial(sc, s).data for s in seeds]
        est = get_estimator(name, sc, **opts)
        t0 = time.perf_counter()
        est.fit(trials[route][reps])  # compile / warm-up, untimed
        out[route] = {"estimator": name, "scenario": key, "options": opts,
                      "settings": {k: v for k, v in getattr(est, "options", {}).items()
                                   if k in ("draws", "tune", "chains", "cores",
                                            "target_accept", "low_rank", "max_error",
                                            "inner", "nodes")},
                      "warmup_s": time.perf_counter() - t0, "wall": [], "cpu": [],
                      "converged": [], "warnings": [], "rows": []}
        fits[route] = est
        print(f"  {route}: warm-up {out[route]['warmup_s']:.1f} s", flush=True)
    for i in range(reps):
        line = []
        for route in routes:
            rec, est = out[route], fits[route]
            data = trials[route][i]
            c0, t0 = time.process_time(), time.perf_counter()
            e = est.fit(data)
            rec["wall"].append(time.perf_counter() - t0)
            rec["cpu"].append(time.process_time() - c0)
            rec["converged"].append(bool(e.converged))
            rec["warnings"].append(e.diagnostics.get("warnings"))
            rec["rows"].append(int(data["observed"].sum()))
            line.append(f"{route}={rec['wall'][-1]:.2f}s{'' if e.converged else '*'}")
        print(f"  replicate {i + 1}/{reps}: " + ", ".join(line), flush=True)
    return out


def table(out: dict) -> str:
    ref = out.get("mixedlm")
    ref_wall = float(np.median(ref["wall"])) if ref else None
    ref_cpu = float(np.median(ref["cpu"])) if ref else None
    lines = ["| route | settings | median wall s | x MixedLM (wall) | median CPU s "
             "| x MixedLM (CPU) | converged | warm-up s |", "|---|---|---|---|---|---|---|---|"]
    for route, rec in out.items():
        w, c = float(np.median(rec["wall"])), float(np.median(rec["cpu"]))
        s = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) or "-"
        lines.append(
            f"| {route} | {s} | {w:.3f} | {w / ref_wall if ref_wall else float('nan'):.2f} "
            f"| {c:.3f} | {c / ref_cpu if ref_cpu else float('nan'):.2f} "
            f"| {sum(rec['converged'])}/{len(rec['converged'])} | {rec['warmup_s']:.1f} |")
    fails = [f"- {r} replicate {i + 1}: {'; '.join(w or [])}" for r, rec in out.items()
             for i, (ok, w) in enumerate(zip(rec["converged"], rec["warnings"])) if not ok]
    return "\n".join(lines + (["", "Failed the convergence rule:", *fails] if fails else []))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--route", action="append", choices=sorted(ROUTES),
                   help="routes to run (default all; mixedlm is always included)")
    p.add_argument("--options", default=None,
                   help="sampler options of the NUTS routes, e.g. draws=1000,tune=300 "
                        "(default: each model's own defaults)")
    p.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks"))
    a = p.parse_args(argv)
    from fitlab.cli.sbc import parse_pairs
    routes = ["mixedlm"] + [r for r in (a.route or ROUTES) if r != "mixedlm"]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    out = run(a.reps, routes, parse_pairs(a.options, "--options"))
    text = table(out)
    head = (f"{a.reps} replicates per route, {os.cpu_count()} cores, load average "
            f"{load0[0]:.1f} at start and {os.getloadavg()[0]:.1f} at end, "
            f"{time.perf_counter() - t0:.0f} s")
    print(f"\n{head}\n\n{text}")
    path = Path(a.out)
    path.mkdir(parents=True, exist_ok=True)
    f = path / f"bayes_speed-{dt.date.today().isoformat()}.json"
    f.write_text(json.dumps({"head": head, "table": text, "routes": out}, indent=1,
                            default=str))
    print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
