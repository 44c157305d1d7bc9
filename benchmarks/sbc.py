"""Simulation-based calibration of every Bayesian model: >= 500 replicates each.

Runs :func:`fitlab.sbc.run_sbc` (the same as ``fitlab sbc MODEL --reps N``) for each model
on its small design (:data:`fitlab.sbc.SBC_DESIGNS`), writes ``outputs/sbc/<model>/``
(``ranks.parquet``, ``sbc_summary.csv``, ``sbc.png``, ``sbc.json``) and prints one table
of uniformity p-values per model and parameter. Runs resume: a killed run started again
with the same settings fits only the missing replicates. With ``--wrong`` each model is
also calibrated against data simulated from a deliberately wrong prior (the table should
then show p-values near 0).

Usage: ``python benchmarks/sbc.py [--reps 500] [--workers 2] [--model NAME ...]
[--wrong]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"compiledir={ROOT / '.pytensor'}")

#: models calibrated by default, with the wrong prior each is also tested against; the
#: fast integrated route adds its names here
MODELS = {
    "bayes_trajectory": {"unit": 0.02},
    "bayes_stepped_wedge": {"unit": 0.02},
    "bayes_binary": {"sigma_unit": 4.0},
    "bayes_binary_nuts": {"sigma_unit": 4.0},
    "bayes_cace": {"sigma_unit": 0.1},
}


def main(argv=None) -> int:
    from fitlab.sbc import run_sbc

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=500)
    p.add_argument("--draws", type=int, default=99)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--model", action="append", help="models (default: all of MODELS)")
    p.add_argument("--wrong", action="store_true", help="also the wrong-prior runs")
    p.add_argument("--out", default=str(ROOT / "outputs" / "sbc"))
    a = p.parse_args(argv)
    lines = ["| model | prior of the data | parameter | n | chi2 p | KS p | bins outside "
             "99% band | converged | s |", "|---|---|---|---|---|---|---|---|---|"]
    for model in a.model or list(MODELS):
        runs = [("own", None)] + ([("wrong", MODELS.get(model))] if a.wrong else [])
        for label, priors in runs:
            if label == "wrong" and not priors:
                continue
            t0 = time.perf_counter()
            out = Path(a.out) / (model if label == "own" else f"{model}-wrong")
            res = run_sbc(model, a.reps, a.draws, generate_priors=priors, workers=a.workers,
                          out=out)
            s = time.perf_counter() - t0
            for r in res.summary.itertuples(index=False):
                lines.append(f"| {model} | {label if not priors else priors} | {r.parameter} "
                             f"| {r.n} | {r.chi2_p:.3g} | {r.ks_p:.3g} | {r.outside_band}/"
                             f"{r.bins} | {r.converged:.2f} | {s:.0f} |")
            print("\n".join(lines), flush=True, file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
