"""``fitlab simulate``: one trial of a scenario to a csv or parquet file."""

from __future__ import annotations

from pathlib import Path

from fitlab.cli.common import add_force, print_json, scenario

__all__ = ["add_parser", "cmd_simulate"]

#: Output suffix -> how a long DataFrame is written there.
WRITERS = {".csv": lambda df, p: df.to_csv(p, index=False),
           ".parquet": lambda df, p: df.to_parquet(p, index=False)}


def add_parser(sub) -> None:
    s = sub.add_parser("simulate", help="simulate one trial to a csv or parquet file")
    s.add_argument("scenario", help='scenario YAML or "default"')
    s.add_argument("--seed", type=int, default=None, help="seed (default: the scenario's)")
    s.add_argument("--out", required=True, help="output file, .csv or .parquet")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
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
