"""``fitlab simulate``: one trial of a scenario to a csv or parquet file."""

from __future__ import annotations

from pathlib import Path

from fitlab.cli.common import SCENARIO_HELP, add_force, command, print_json, scenario

__all__ = ["add_parser", "cmd_simulate"]

#: Output suffix -> how a long DataFrame is written there.
WRITERS = {".csv": lambda df, p: df.to_csv(p, index=False),
           ".parquet": lambda df, p: df.to_parquet(p, index=False)}


def add_parser(sub) -> None:
    s = command(sub, "simulate", "simulate one trial to a csv or parquet file",
                ["simulate default --seed 1 --out trial.csv",
                 "simulate params/fit_stepped_wedge.yaml --out trial.parquet"],
                "One row per client and occasion (the long format of docs/ARCHITECTURE.md); "
                "prints what was written, with the trial's true estimands, as JSON.")
    s.add_argument("scenario", help=SCENARIO_HELP)
    s.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed of the trial (default: the scenario's seed field; e.g. 7)")
    s.add_argument("--out", required=True, metavar="FILE",
                   help="output file ending in .csv or .parquet (default: none, required; "
                   "e.g. trial.parquet)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (default: refuse)")
    add_force(s)
    s.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    """Simulate, write the long table atomically, print what was written as JSON."""
    from fitlab.errors import UsageError
    from fitlab.store import atomic_write
    from simulate import simulate_trial

    out = Path(args.out)
    if out.suffix not in WRITERS:
        raise UsageError(f"--out must end in .csv or .parquet, got {out.name!r}")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; name a .csv or .parquet file")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; --overwrite replaces it")
    sc = scenario(args.scenario, ("simulate",), args)
    seed = sc.seed if args.seed is None else args.seed
    trial = simulate_trial(sc, seed)
    atomic_write(out, lambda tmp: WRITERS[out.suffix](trial.data, tmp))
    print_json({"out": str(out), "rows": len(trial.data), "seed": seed,
                "scenario_id": sc.scenario_id, "truth": trial.truth})
    return 0
