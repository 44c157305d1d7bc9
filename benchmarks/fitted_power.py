"""Analytic power of the fitted mixed model against its simulated power.

For each default design (``params/fit_individual.yaml``, ``fit_cluster.yaml``,
``fit_stepped_wedge.yaml``) at its planned size, the scenario's effect is scaled
(:func:`simulate.power.mde`) to three sizes at which the analytic power of the estimator
actually fitted (``reml_trajectory``; ``reml_stepped_wedge``) is 0.5, 0.7 and 0.9. Each
is simulated ``--reps`` times and fitted; the simulated power (the share of replicates
whose test rejects at the scenario's ``alpha`` and ``sides``) must lie within 2 Monte
Carlo standard errors, ``sqrt(p (1 - p) / R)``, of the analytic value. The table also
compares the estimator's mean, its SD and the mean reported SE with their analytic
counterparts (``effect_fitted``, ``se_fitted``, ``se_fitted_model``).

Usage::

    python benchmarks/fitted_power.py --reps 2000 --workers 2
    python benchmarks/fitted_power.py --quick        # 200 replicates, for development

Writes ``outputs/benchmarks/fitted_power-<date>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DESIGNS = ("fit_individual", "fit_cluster", "fit_stepped_wedge")
TARGETS = (0.5, 0.7, 0.9)


def estimator_name(sc) -> str:
    from simulate.power.fitted import ESTIMATOR_OF

    return ESTIMATOR_OF[sc.design.kind]


def _chunk(args) -> list[tuple[float, float, float]]:
    """Simulate and fit replicates ``lo..hi`` of a scenario: (estimate, se, df) each."""
    sc_dict, lo, hi, entropy = args
    from models import get_estimator
    from simulate import Scenario, simulate_trial

    sc = Scenario.from_dict(sc_dict)
    est = get_estimator(estimator_name(sc), sc)
    out = []
    for r in range(lo, hi):
        trial = simulate_trial(sc, np.random.SeedSequence(entropy, spawn_key=(r,)))
        e = est.fit(trial.data)
        out.append((e.estimate, e.se, e.extra["df"]))
    return out


def simulated_power(sc, reps: int, entropy: int, workers: int) -> dict:
    """Simulated power of the fitted estimator with its MCSE, and the estimates' summary."""
    from scipy import special

    step = max(1, reps // (4 * workers))
    jobs = [(sc.to_dict(), lo, min(lo + step, reps), entropy) for lo in range(0, reps, step)]
    with ProcessPoolExecutor(workers) as pool:
        rows = [r for part in pool.map(_chunk, jobs) for r in part]
    x = np.array(rows)
    b, se, df = x[:, 0], x[:, 1], x[:, 2]
    a, sides = sc.analysis.alpha, sc.analysis.sides
    crit = special.stdtrit(df, 1 - a / sides) * se
    reject = (b > crit) if sides == 1 else (np.abs(b) > crit)
    p = float(reject.mean())
    return {"power": p, "mcse": math.sqrt(max(p * (1 - p), 1e-12) / reps), "reps": reps,
            "mean": float(b.mean()), "mean_mcse": float(b.std(ddof=1) / math.sqrt(reps)),
            "sd": float(b.std(ddof=1)), "mean_se": float(se.mean())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="200 replicates")
    ap.add_argument("--designs", default=",".join(DESIGNS))
    ap.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks"))
    a = ap.parse_args(argv)
    reps = 200 if a.quick else a.reps
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from simulate import load_scenario
    from simulate.power import mde, power

    t0 = time.time()
    results = []
    for name in a.designs.split(","):
        base = load_scenario(ROOT / "params" / f"{name}.yaml")
        for i, target in enumerate(TARGETS):
            t1 = time.time()
            m = mde(base, target, method="fitted")
            sc = base.replace({"effect.d": m["d"], "effect.not_on_track_d": m["not_on_track_d"]})
            an = power(sc)
            sim = simulated_power(sc, reps, entropy=20261123 + 97 * i + len(name), workers=a.workers)
            z = (sim["power"] - an["power_fitted"]) / sim["mcse"]
            row = {"design": name, "target": target, "d": m["d"],
                   "not_on_track_d": m["not_on_track_d"],
                   "analytic": an["power_fitted"], "textbook": an["power_textbook"],
                   "simulated": sim["power"], "mcse": sim["mcse"], "z": z,
                   "within_2_mcse": abs(z) <= 2,
                   "effect_fitted": an["effect_fitted"], "itt_recorded": an["itt_recorded"],
                   "mean_estimate": sim["mean"], "mean_mcse": sim["mean_mcse"],
                   "se_fitted": an["se_fitted"], "sd_estimate": sim["sd"],
                   "se_fitted_model": an["se_fitted_model"], "mean_se": sim["mean_se"],
                   "reps": reps, "seconds": time.time() - t1}
            results.append(row)
            print(f"{name} target {target}: analytic {row['analytic']:.3f}, simulated "
                  f"{row['simulated']:.3f} ({row['mcse']:.3f}), z {z:+.2f}, "
                  f"{row['seconds']:.0f} s", flush=True)
    total = time.time() - t0
    print()
    print("| design | d | analytic (fitted) | simulated (MCSE) | z | textbook | E[b] analytic / simulated | SD analytic / simulated | SE analytic / mean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['design']} | {r['d']:.3f} | {r['analytic']:.3f} | {r['simulated']:.3f} "
              f"({r['mcse']:.3f}) | {r['z']:+.2f} | {r['textbook']:.3f} | "
              f"{r['effect_fitted']:.3f} / {r['mean_estimate']:.3f} | "
              f"{r['se_fitted']:.3f} / {r['sd_estimate']:.3f} | "
              f"{r['se_fitted_model']:.3f} / {r['mean_se']:.3f} |")
    ok = all(r["within_2_mcse"] for r in results)
    print(f"\nall within 2 MCSE: {ok}; {total:.0f} s with {a.workers} workers, {reps} replicates each")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"fitted_power-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps({"results": results, "seconds": total, "reps": reps,
                                "workers": a.workers}, indent=1))
    print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
