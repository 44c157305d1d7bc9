"""The integrated Bayesian route against a long NUTS run of the same model and priors.

For each model and design (``bayes_trajectory`` on the default individual design,
``bayes_stepped_wedge`` on ``params/fit_stepped_wedge.yaml``, and the logit model
``bayes_binary`` on the default design with a binary outcome and on the IPS pre-study,
``params/ips_2to1.yaml``) and each of ``--reps`` replicates, the fast route and its NUTS
twin (``*_nuts``: every random effect explicit, 4 chains x ``--draws`` draws after
``--tune`` tuning steps) fit the same data. The targets
are: posterior mean within 0.1 posterior SD, posterior SD within 10%,
95% interval endpoints within 0.15 SD, in units of the NUTS posterior SD. NUTS's own Monte
Carlo error at a bulk ESS of several thousand is a few hundredths of an SD.

Usage: ``python benchmarks/agreement.py [--reps 20] [--draws 2000] [--tune 1000] [--model
LABEL ...]``; prints
a table and returns the records (``run`` is called by ``benchmarks/run.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOL = {"mean": 0.10, "sd": 0.10, "ends": 0.15}
#: label -> (estimator, scenario file in params/ or None for the default, changes)
MODELS = {
    "bayes_trajectory": ("bayes_trajectory", None, {}),
    "bayes_stepped_wedge": ("bayes_stepped_wedge", "fit_stepped_wedge.yaml", {}),
    "bayes_binary (default, binary outcome)": ("bayes_binary", None,
                                               {"outcome": {"kind": "binary"}}),
    "bayes_binary (ips_2to1)": ("bayes_binary", "ips_2to1.yaml", {}),
}


def run(reps: int = 20, draws: int = 2000, tune: int = 1000, log=print,
        models: list[str] | None = None) -> dict:
    """Fit ``reps`` replicates per model with both routes; return per-model records
    (``models``: labels of :data:`MODELS`, default all)."""
    from models import get_estimator
    from simulate import Scenario, load_scenario, simulate_trial

    out = {}
    for label in models or list(MODELS):
        name, path, changes = MODELS[label]
        sc = (load_scenario(ROOT / "params" / path) if path else Scenario()).replace(changes)
        fast = get_estimator(name, sc)
        nuts = get_estimator(f"{name}_nuts", sc, draws=draws, tune=tune, chains=4, cores=2)
        seeds = np.random.SeedSequence([sc.seed, 7]).spawn(reps)
        rows = []
        for i, ss in enumerate(seeds):
            data = simulate_trial(sc, ss).data
            t0 = time.perf_counter()
            a = fast.fit(data)
            ta = time.perf_counter() - t0
            t0 = time.perf_counter()
            b = nuts.fit(data)
            tb = time.perf_counter() - t0
            sd = b.se
            row = {"replicate": i, "fast_s": ta, "nuts_s": tb, "fast_ok": a.converged,
                   "nuts_rhat": b.diagnostics["rhat_max"],
                   "nuts_ess": b.diagnostics["ess_bulk_estimand"],
                   "nuts_divergences": b.diagnostics["divergences"],
                   "d_mean": (a.estimate - b.estimate) / sd, "sd_ratio": a.se / sd,
                   "d_lower": (a.lower - b.lower) / sd, "d_upper": (a.upper - b.upper) / sd}
            row["agrees"] = (abs(row["d_mean"]) <= TOL["mean"]
                             and abs(row["sd_ratio"] - 1) <= TOL["sd"]
                             and max(abs(row["d_lower"]), abs(row["d_upper"])) <= TOL["ends"])
            rows.append(row)
            log(f"  {label} {i + 1}/{reps}: mean {row['d_mean']:+.3f} SD, sd ratio "
                f"{row['sd_ratio']:.3f}, ends {row['d_lower']:+.3f}/{row['d_upper']:+.3f}, "
                f"fast {1e3 * ta:.0f} ms, NUTS {tb:.0f} s (R-hat {row['nuts_rhat']:.3f})")
        out[label] = rows
    return out


def table(records: dict) -> str:
    lines = ["| model | replicates | agree | max abs mean diff (SD) | max abs SD ratio - 1 "
             "| max abs end diff (SD) | NUTS R-hat max | NUTS ESS min | fast ms median "
             "| NUTS s median |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, rows in records.items():
        if not rows:
            continue
        def get(k, rows=rows):
            return np.array([r[k] for r in rows])

        ends = np.maximum(np.abs(get("d_lower")), np.abs(get("d_upper")))
        lines.append(
            f"| {name} | {len(rows)} | {int(get('agrees').sum())}/{len(rows)} "
            f"| {np.abs(get('d_mean')).max():.3f} | {np.abs(get('sd_ratio') - 1).max():.3f} "
            f"| {ends.max():.3f} | {get('nuts_rhat').max():.3f} | {get('nuts_ess').min():.0f} "
            f"| {1e3 * np.median(get('fast_s')):.0f} | {np.median(get('nuts_s')):.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=20, help="replicates per model (default 20)")
    p.add_argument("--draws", type=int, default=2000, help="NUTS draws per chain (2000)")
    p.add_argument("--tune", type=int, default=1000, help="NUTS tuning steps (1000)")
    p.add_argument("--json", default=None, help="also write the records to this file")
    p.add_argument("--model", action="append", choices=list(MODELS),
                   help="models to compare (default all)")
    a = p.parse_args(argv)
    rec = run(a.reps, a.draws, a.tune, models=a.model)
    print(table(rec))
    if a.json:
        Path(a.json).write_text(json.dumps(rec, indent=1, default=float))
    bad = sum(not r["agrees"] for rows in rec.values() for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
