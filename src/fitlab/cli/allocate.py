"""``fitlab allocate``: the allocation list of a real trial, and its verification.

The command takes a scenario and a seed, never personal data: the list's entries are
used in order as clients arrive, and the trial keeps the link from code to person apart.
"""

from __future__ import annotations

import sys

from fitlab.cli.common import EXIT_FAILED, command, scenario

__all__ = ["add_parser", "cmd_allocate"]

#: Seeds below this can be found by trying them all against a code seen on an envelope.
GUESSABLE = 2**32


def add_parser(sub) -> None:
    s = command(sub, "allocate", "write (or --verify) the allocation list of a real trial",
                ["allocate params/ips_2to1.yaml --out allocation/ips",
                 "allocate params/fit_stepped_wedge.yaml --out allocation/sw --seed 123456789",
                 "allocate --verify allocation/ips"],
                "Write the allocation list of SCENARIO, reproducibly from a seed, to --out "
                "DIR; or check DIR with --verify. Takes no personal data.")
    s.add_argument("scenario", nargs="?",
                   help='scenario YAML or "default" (default: none, required unless '
                   "--verify; e.g. params/ips_2to1.yaml)")
    s.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed, 0 to 2**128-1 (default: a secret 64-bit seed drawn and stored "
                   "in DIR/manifest.json; e.g. 18446744073709551557)")
    s.add_argument("--out", metavar="DIR",
                   help="folder to write, refused if it already holds a list (default: none, "
                   "required unless --verify; e.g. allocation/ips)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a list already in --out, never for a real trial's list "
                   "(default: refuse)")
    s.add_argument("--verify", metavar="DIR",
                   help="recompute the list in DIR from its manifest and report differences "
                   "(default: off; e.g. allocation/ips)")
    s.set_defaults(func=cmd_allocate)


def cmd_allocate(args) -> int:
    """Write a list, or verify one (exit 1 when it differs)."""
    from fitlab.errors import UsageError

    if args.verify:
        if args.scenario or args.out or args.seed is not None:
            raise UsageError("--verify DIR takes no scenario, --seed or --out: the manifest "
                             "in DIR has them")
        return _verify(args.verify)
    if not args.scenario or not args.out:
        raise UsageError("give a scenario and --out DIR (or --verify DIR)")
    return _write(args)


def _write(args) -> int:
    import secrets

    from fitlab.allocate import write_allocation

    sc = scenario(args.scenario)
    seed = args.seed
    if seed is None:
        seed = secrets.randbits(64)
        print(f"drew a secret 64-bit seed; it is stored in {args.out}/manifest.json: keep "
              "that file apart from those who recruit", file=sys.stderr)
    elif 0 <= seed < GUESSABLE:
        print("warning: a seed below 2**32 can be found by trying them all; fine for an "
              "example, not for a real trial (omit --seed to draw one)", file=sys.stderr)
    man = write_allocation(sc, seed, args.out, source=args.scenario, overwrite=args.overwrite)
    what = (f"{man['entries']} entries in {len(man['strata'])} strata, blocks of "
            f"{' or '.join(map(str, sorted(set(man['block_sizes']))))}"
            if man["block_sizes"] else f"{man['entries']} units")
    print(f"wrote the {man['design']} allocation list of {man['scenario_name']} "
          f"(scenario {man['scenario_hash']}): {what}")
    print(f"  {args.out}/ {', '.join([*man['files'], *man['figures'], 'manifest.json'])}")
    print(f"  checksum (SHA-256 of allocation.csv) {man['checksum']}")
    return 0


def _verify(folder: str) -> int:
    from fitlab.allocate import verify_allocation
    from fitlab.manifest import read_json

    problems = verify_allocation(folder)
    man = read_json(f"{folder}/manifest.json")
    if problems:
        print(f"DIFFERENT: {folder} does not match the list recomputed from its manifest:")
        for p in problems:
            print(f"  - {p}")
        return EXIT_FAILED
    print(f"verified: {folder} matches the list recomputed from its seed and scenario "
          f"{man['scenario_name']} ({man['scenario_hash']}); {man['entries']} entries, "
          f"checksum {man['checksum']}")
    return 0
