"""A corpus of malformed scenario files, built from a short list of mutations.

Every case must be refused by ``fitlab power``, ``simulate`` and ``run`` (or the commands
it names) with exit status 2, one error and no traceback, and nothing written. Two parts:

- generated: every number of the scenario (found by walking the default scenario, so a
  section added later is covered too) set to NaN, +infinity, -infinity and ``true``;
- written out: files that break the reading itself (encodings, YAML tricks, empty files)
  and scenarios that are well-formed but impossible or too large for any machine.

``PYTHONPATH=src python tests/bad_scenarios.py --run`` runs it and counts tracebacks,
wrong exit codes and runs that wrote files.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import yaml

ALL = ("power", "simulate", "run")
SIMULATING = ("simulate", "run")


@dataclass(frozen=True)
class Case:
    """One malformed scenario file."""

    name: str
    content: bytes
    commands: tuple[str, ...] = ALL


def _yaml(data) -> bytes:
    return yaml.safe_dump(data, sort_keys=False).encode()


def _nested(path: tuple[str, ...], value):
    out = value
    for key in reversed(path):
        out = {key: out}
    return out


def _numbers(d: dict, prefix=()):
    """(path, value) of every number or list of numbers in a scenario dict."""
    for key, value in d.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            yield from _numbers(value, path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield path, value
        elif isinstance(value, list) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            yield path, value


def generated() -> list[Case]:
    """NaN, +inf, -inf and true in every numeric field of the ORS and binary scenarios."""
    from simulate import Scenario

    ors = Scenario().to_dict()
    binary = Scenario.from_dict({"outcome": {"kind": "binary"}}).to_dict()
    fields = list(_numbers(ors))
    fields.append((("design", "window_periods"), 2))  # None by default: still a number
    extra = {k: v for k, v in binary["outcome"].items() if k not in ors["outcome"]}
    fields += [(("outcome", *k), v) for k, v in _numbers(extra)]
    cases = []
    for path, value in fields:
        for label, bad in (("nan", float("nan")), ("inf", float("inf")),
                           ("-inf", float("-inf")), ("true", True)):
            new = [*value[:-1], bad] if isinstance(value, list) else bad
            data = _nested(path, new)
            if path[0] == "outcome" and path[1] in extra:
                data["outcome"] = {"kind": "binary", **data["outcome"]}
            cases.append(Case(f"{'.'.join(path)}={label}", _yaml(data)))
    return cases


def _bomb(levels: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def written() -> list[Case]:
    """Files that break the reading, and scenarios impossible or too large to run."""
    text = [
        ("empty", b""),
        ("only-comments", b"# nothing here\n# at all\n"),
        ("only-blank-lines", b"\n\n   \n"),
        ("top-level-list", b"- size\n- design\n"),
        ("top-level-number", b"42\n"),
        ("top-level-text", b"just some words\n"),
        ("duplicate-top-key", b"seed: 1\nseed: 2\n"),
        ("duplicate-nested-key", b"size:\n  units: 6\n  units: 60\n"),
        ("duplicate-section", b"size: {units: 6}\nsize: {units: 8}\n"),
        ("alias-bomb", _bomb()),
        ("one-alias", b"size: {units: &u 6, therapists_per_unit: *u}\n"),
        ("merge-key", b"base: &b {units: 6}\nsize:\n  <<: *b\n"),
        ("deep-nesting", b"description: " + b"[" * 500 + b"]" * 500 + b"\n"),
        ("python-tag", b"seed: !!python/object/apply:os.getpid []\n"),
        ("unclosed-list", b"size: [unclosed\n"),
        ("unclosed-mapping", b"size: {units: 3\n"),
        ("tab-indent", b"size:\n\tunits: 3\n"),
        ("latin-1", "name: bergström\nsize: {units: 6}\n".encode("latin-1")),
        ("windows-1252", "description: “smart quotes”\n".encode("cp1252")),
        ("utf-16-bom", "size: {units: 6}\n".encode("utf-16")),
        ("utf-16-no-bom", "size: {units: 6}\n".encode("utf-16-le")),
        ("utf-32-bom", codecs.BOM_UTF32_LE + "seed: 1\n".encode("utf-32-le")),
        ("binary", bytes(range(256))),
        ("png-header", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("too-large", b"description: '" + b"x" * (1 << 20) + b"'\n"),
        ("unknown-key", b"size: {unitz: 6}\n"),
        ("unknown-section", b"sise: {units: 6}\n"),
        ("units-text", b"size: {units: many}\n"),
        ("units-fraction", b"size: {units: 3.5}\n"),
        ("units-list", b"size: {units: [6]}\n"),
        ("units-mapping", b"size: {units: {n: 6}}\n"),
        ("units-null", b"size: {units: null}\n"),
        ("units-date", b"size: {units: 2024-01-01}\n"),
        ("units-true", b"size: {units: true}\n"),
        ("units-yes", b"size: {units: yes}\n"),
        ("therapists-false", b"size: {therapists_per_unit: false}\n"),
        ("sides-true", b"analysis: {sides: true}\n"),
        ("section-scalar", b"size: 6\n"),
        ("section-list", b"design: [cluster]\n"),
        ("seed-negative", b"seed: -1\n"),
        ("seed-2^63", b"seed: 9223372036854775808\n"),
        ("seed-2^64", b"seed: 18446744073709551616\n"),
        ("seed-exponent", b"seed: 1e30\n"),
        ("seed-text", b"seed: abc\n"),
        ("name-spaces", b"name: two words\n"),
        ("name-empty", b"name: ''\n"),
        ("name-number", b"name: 123\n"),
        ("kind-unknown", b"design: {kind: crossover}\n"),
        ("outcome-unknown", b"outcome: {kind: poisson}\n"),
        ("mechanism-unknown", b"missingness: {mechanism: maybe}\n"),
        ("months-empty", b"followup: {months: []}\n"),
        ("months-one", b"followup: {months: [0]}\n"),
        ("months-unsorted", b"followup: {months: [0, 3, 1]}\n"),
        ("months-no-baseline", b"followup: {months: [1, 3]}\n"),
        ("primary-baseline", b"followup: {months: [0, 6], primary_month: 0}\n"),
        ("primary-not-a-month", b"followup: {months: [0, 6], primary_month: 3}\n"),
        ("shares-sum", b"compliance: {fidelity_shares: [0.5, 0.5, 0.5]}\n"),
        ("multipliers-down", b"compliance: {fidelity_multipliers: [1, 0.5, 0]}\n"),
        ("iccs-sum", b"outcome: {unit_icc: 0.5, therapist_icc: 0.3, client_icc: 0.3}\n"),
        ("attrition-over-one", b"missingness: {attrition_rate: 0.6, attrition_ratio: 2}\n"),
        ("risk-over-one", b"outcome: {kind: binary, control_rate: 0.6}\neffect: {risk_ratio: 2}\n"),
        ("binary-field-on-ors", b"outcome: {baseline_rate: 0.1}\n"),
        ("block-ratio", b"design: {allocation_ratio: 2.0, block_size: 4}\n"),
        ("caseload", b"size: {caseload_cap: 1}\n"),
        ("cluster-one-unit", b"design: {kind: cluster}\nsize: {units: 1}\n"),
        ("cluster-arm-empty",
         b"design: {kind: cluster, allocation_ratio: 3, randomization: simple}\n"
         b"size: {units: 2, caseload_cap: 100}\n"),
        ("steps-over-units", b"design: {kind: stepped_wedge, steps: 20}\n"),
        ("one-therapist-individual", b"size: {therapists_per_unit: 1}\n"),
    ]
    cases = [Case(name, content) for name, content in text]
    # valid, but no machine runs them: refused by the size estimate (without --force)
    cases += [
        Case("therapists-1e9", b"size: {therapists_per_unit: 1000000000}\n", SIMULATING),
        Case("months-1e12", b"followup: {months: [0, 1000000000000]}\n", SIMULATING),
        Case("clients-1e12", b"size: {clients_per_unit: 1.0e12, caseload_cap: 100000000000000}\n",
             SIMULATING),
        Case("units-1e30", b"size: {units: 1000000000000000000000000000000}\n", SIMULATING),
        Case("block-1e12", b"design: {block_size: 1000000000000}\n", SIMULATING),
        Case("stepped-wedge-2000-steps",
             b"design: {kind: stepped_wedge, steps: 2000, randomization: simple}\n"
             b"size: {units: 2000, clients_per_unit: 2}\n", ("power",)),
    ]
    return cases


def corpus() -> list[Case]:
    """Every malformed scenario."""
    return generated() + written()


def tally(cases: list[Case], folder) -> dict[str, int]:
    """Run every case through ``fitlab.cli.main`` in this process and count what went
    wrong: tracebacks (any exception), wrong exit codes, runs that wrote a file."""
    import contextlib
    import io
    import traceback
    from pathlib import Path

    from fitlab.cli import main

    counts = {"scenarios": len(cases), "runs": 0, "tracebacks": 0, "wrong_exit": 0,
              "wrote_files": 0}
    for i, case in enumerate(cases):
        for command in case.commands:
            work = Path(folder) / f"{i}-{command}"
            work.mkdir(parents=True)
            path = work / "scenario.yaml"
            path.write_bytes(case.content)
            argv = {"power": ["power", str(path)],
                    "simulate": ["simulate", str(path), "--out", str(work / "o" / "t.csv")],
                    "run": ["run", str(path), "--reps", "2", "--estimators", "diff_means",
                            "--out", str(work / "o"), "--no-progress"]}[command]
            counts["runs"] += 1
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = main(argv)
            except BaseException:  # noqa: BLE001 (what a user would see as a traceback)
                counts["tracebacks"] += 1
                print(f"traceback: {case.name} {command}: {traceback.format_exc(limit=1)}")
                code = None
            if code is not None and code != 2:
                counts["wrong_exit"] += 1
                print(f"exit {code}: {case.name} {command}")
            if "Traceback" in err.getvalue():
                counts["tracebacks"] += 1
            if [p.name for p in work.rglob("*") if p.is_file()] != ["scenario.yaml"]:
                counts["wrote_files"] += 1
                print(f"wrote files: {case.name} {command}")
    return counts


if __name__ == "__main__":  # pragma: no cover
    # PYTHONPATH=src python tests/bad_scenarios.py        the size of the corpus
    # PYTHONPATH=src python tests/bad_scenarios.py --run  run it and count the failures
    import sys
    import tempfile

    c = corpus()
    print(f"{len(c)} scenarios, {sum(len(x.commands) for x in c)} command runs")
    if "--run" in sys.argv:
        with tempfile.TemporaryDirectory() as d:
            print(tally(c, d))
