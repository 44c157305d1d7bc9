"""Write an allocation list to a folder, and verify a folder against its manifest.

The list itself is drawn by :func:`simulate.allocation.allocation_list`; this module only
turns it into files and checks files. Layout of a folder::

    allocation.csv          the list (individual: stratum, sequence, code, block,
                            block_size, arm, allocation; cluster: unit, arm, ...;
                            stepped wedge: unit, step, crossover_month, ...)
    strata/<stratum>.html   individual designs: one printable page per stratum, for
                            sealed envelopes or central allocation
    schedule.csv            stepped wedge: units x periods, 1 when offering the intervention
    schedule.png            cluster and stepped wedge: the randomized schedule, drawn
    manifest.json           seed, scenario (whole, with its hash), SHA-256 of the list and
                            of every text file, versions; written last

The manifest holds the seed, from which anyone can regenerate the list: keep it (and
``allocation.csv``) with the trial statistician, apart from those who recruit. Every file
is written whole or not at all (:func:`fitlab.store.atomic_write`), and nothing is
written when the scenario or seed is refused.

Examples
--------
>>> import tempfile
>>> from simulate import load_scenario
>>> sc = load_scenario({"allocation": {"strata": {"north": 8}}})
>>> with tempfile.TemporaryDirectory() as d:
...     m = write_allocation(sc, 11, d)
...     problems = verify_allocation(d)
>>> m["entries"], problems
(16, [])
"""

from __future__ import annotations

import html
import io
import os
from pathlib import Path

import pandas as pd

from fitlab import manifest as mf
from fitlab.errors import MissingFileError, UsageError
from fitlab.store import atomic_write, atomic_write_text
from simulate.allocation import AllocationList, allocation_list, sha256_text

__all__ = ["write_allocation", "verify_allocation", "render_files", "MANIFEST", "LIST"]

MANIFEST = "manifest.json"
LIST = "allocation.csv"
#: Kept with the manifest so that whoever opens it knows what it is.
SECRET_NOTE = ("This manifest holds the seed that regenerates the whole allocation list. "
               "Keep it, and allocation.csv, with the trial statistician, apart from anyone "
               "who recruits or treats clients. No personal data was used or is stored.")


def render_files(lst: AllocationList) -> dict[str, str]:
    """Every text file of the folder, by relative path (the figure aside)."""
    files = {LIST: lst.csv()}
    if lst.kind == "individual":
        checksum = lst.checksum()
        for name, rows in lst.table.groupby("stratum", sort=True):
            files[f"strata/{name}.html"] = _stratum_page(lst, str(name), rows, checksum)
    if lst.schedule is not None:
        files["schedule.csv"] = lst.schedule.to_csv(lineterminator="\n", float_format="%g")
    return files


def write_allocation(scenario, seed: int, out: str | os.PathLike, *, source: str | None = None,
                     overwrite: bool = False) -> dict:
    """Draw the list of ``scenario`` from ``seed`` and write the folder ``out``.

    Parameters
    ----------
    scenario : Scenario
    seed : int
    out : path
        The folder; refused if it already holds an allocation list, unless ``overwrite``.
    source : str, optional
        Where the scenario came from (recorded in the manifest).
    overwrite : bool
        Replace an existing list in ``out`` (its files named in its manifest are removed).

    Returns
    -------
    dict
        The manifest.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    old = _read_manifest(out) if (out / MANIFEST).is_file() else None
    if old is not None and not overwrite:
        raise UsageError(f"{out} already holds an allocation list ({MANIFEST}); a list for a "
                         "real trial is never overwritten: choose another folder")
    lst = allocation_list(scenario, seed)  # refuses a bad seed before anything is written
    files = render_files(lst)
    figures = ["schedule.png"] if lst.kind != "individual" else []
    figure = _draw(lst) if figures else None
    if old is not None:
        for name in [*old.get("files", {}), *old.get("figures", [])]:
            (out / name).unlink(missing_ok=True)
    for name, text in files.items():
        atomic_write_text(out / name, text)
    if figure is not None:
        atomic_write(out / "schedule.png", lambda p: figure.savefig(
            p, dpi=120, format="png", metadata={"Software": None}))
        import matplotlib.pyplot as plt

        plt.close(figure)
    manifest = _manifest(lst, files, figures, source)
    mf.write_json(out / MANIFEST, manifest)
    return manifest


def _manifest(lst: AllocationList, files: dict[str, str], figures: list[str],
              source: str | None) -> dict:
    from simulate.allocation import resolved_block_sizes, resolved_strata

    sc = lst.scenario
    versions = mf.versions()
    return {
        "what": "fitlab allocation list",
        "note": SECRET_NOTE,
        "created": mf.now(),
        "seed": lst.seed,
        "scenario_name": sc.name,
        "scenario_hash": sc.hash(),
        "scenario_source": source,
        "design": sc.design.kind,
        "allocation_ratio": sc.design.allocation_ratio,
        "randomization": ("permuted blocks within strata" if lst.kind == "individual"
                          else sc.design.randomization),
        "block_sizes": resolved_block_sizes(sc) if lst.kind == "individual" else None,
        "strata": resolved_strata(sc),
        "entries": len(lst.table),
        "checksum": lst.checksum(),
        "checksum_of": LIST,
        "files": {name: sha256_text(text) for name, text in files.items()},
        "figures": figures,
        "versions": {k: versions[k] for k in ("python", "fitlab", "numpy", "pandas", "pydantic")},
        "git_commit": mf.git_commit(),
        "scenario": sc.to_dict(),
    }


def verify_allocation(folder: str | os.PathLike) -> list[str]:
    """Recompute the list in ``folder`` from its manifest's seed and scenario.

    Parameters
    ----------
    folder : path

    Returns
    -------
    list of str
        One line per difference; empty when every file matches the recomputed list and
        the manifest's checksums.

    Raises
    ------
    MissingFileError
        No manifest in ``folder``.
    ScenarioError
        The manifest's scenario is not a valid scenario.
    """
    from simulate.scenario import Scenario

    folder = Path(folder)
    man = _read_manifest(folder)
    sc = Scenario.from_dict(man.get("scenario"), source=f"{folder / MANIFEST} (scenario)")
    problems = []
    if sc.hash() != man.get("scenario_hash"):
        problems.append(f"the manifest's scenario has hash {sc.hash()}, but the manifest "
                        f"records {man.get('scenario_hash')}: the scenario was edited")
    lst = allocation_list(sc, man.get("seed"))
    expected = render_files(lst)
    if lst.checksum() != man.get("checksum"):
        problems.append(f"the recomputed list has checksum {lst.checksum()[:16]}..., the "
                        f"manifest records {str(man.get('checksum'))[:16]}...")
    recorded = man.get("files", {})
    for name in sorted(set(expected) | set(recorded)):
        path = folder / name
        if name not in expected:
            problems.append(f"{name}: in the manifest but not part of the recomputed list")
            continue
        want = sha256_text(expected[name])
        if recorded.get(name) != want:
            problems.append(f"{name}: the manifest's checksum differs from the recomputed file")
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif _sha256_file(path) != want:
            problems.append(f"{name}: differs from the recomputed file"
                            + (": " + _row_differences(path, expected[name]) if name in
                               (LIST, "schedule.csv") else ""))
    return problems


def _row_differences(path: Path, want: str, show: int = 5) -> str:
    """The first differing rows of a CSV file against the recomputed text, in words."""
    try:
        have = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # unreadable: say so, the checksum already differs
        return f"cannot be read as CSV ({type(exc).__name__})"
    ref = pd.read_csv(io.StringIO(want), dtype=str, keep_default_na=False)
    if list(have.columns) != list(ref.columns):
        return f"columns {list(have.columns)} instead of {list(ref.columns)}"
    if len(have) != len(ref):
        return f"{len(have)} rows instead of {len(ref)}"
    diff = (have != ref).to_numpy()
    rows = sorted(set(diff.nonzero()[0]))
    lines = []
    for i in rows[:show]:
        cols = [c for c, d in zip(ref.columns, diff[i]) if d]
        what = ", ".join(f"{c} {have.at[i, c]!r} instead of {ref.at[i, c]!r}" for c in cols)
        lines.append(f"row {i + 1} ({ref.iat[i, 0]} {ref.iat[i, 1]}): {what}")
    more = f" (and {len(rows) - show} more rows)" if len(rows) > show else ""
    return f"{len(rows)} rows differ; " + "; ".join(lines) + more if rows else "line endings"


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise MissingFileError(f"no allocation manifest in {folder} (expected {path})")
    try:
        man = mf.read_json(path)
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(man, dict) or "seed" not in man or "scenario" not in man:
        raise UsageError(f"{path} is not an allocation manifest (no seed or scenario)")
    return man


def _sha256_file(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _draw(lst: AllocationList):
    """The randomized schedule as a figure: units x periods (stepped wedge), or each
    unit's expected clients coloured by arm (cluster)."""
    from simulate.design import step_length
    from simulate.plots import ARM_COLORS, _plt, draw_schedule

    sc = lst.scenario
    control, treated = sc.allocation.arm_labels
    if lst.schedule is not None:
        mat = lst.schedule.loc[lst.table.sort_values(["step", "unit"])["unit"]]
        length = step_length(sc)
        mat.columns = [f"{k}\n({k * length:g})" for k in mat.columns]
        return draw_schedule(mat, f"{sc.name}: stepped-wedge schedule\n(dark = {treated})",
                             "step period (calendar month it starts)")
    plt = _plt()
    t = lst.table.sort_values(["arm", "unit"])
    colors = [ARM_COLORS["FIT"] if a else ARM_COLORS["usual care"] for a in t["arm"]]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.3 * len(t)))
    ax.barh(range(len(t)), t["expected_clients"], color=colors)
    ax.set_yticks(range(len(t)), t["unit"])
    ax.invert_yaxis()
    ax.set_xlabel("expected clients")
    ax.set_title(f"{sc.name}: cluster allocation")
    handles = [plt.Rectangle((0, 0), 1, 1, color=ARM_COLORS[k]) for k in ("FIT", "usual care")]
    ax.legend(handles, [treated, control], frameon=False, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


_STYLE = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #777; padding: 4px 12px; text-align: left; }
td.code { font-family: monospace; font-size: 1.15em; letter-spacing: 0.05em; }
td.blank { min-width: 7em; }
p.small { font-size: 0.9em; color: #333; max-width: 50em; }
@media print { tr { page-break-inside: avoid; } }
"""


def _stratum_page(lst: AllocationList, name: str, rows: pd.DataFrame, checksum: str) -> str:
    """One printable HTML page: the stratum's entries in sequence order."""
    sc = lst.scenario
    e = html.escape
    control, treated = sc.allocation.arm_labels
    body = "\n".join(
        f"<tr><td>{r.sequence}</td><td class=\"code\">{e(r.code)}</td>"
        f"<td>{e(r.allocation)}</td><td class=\"blank\"></td><td class=\"blank\"></td></tr>"
        for r in rows.sort_values("sequence").itertuples())
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Allocation list: {e(sc.name)}, {e(name)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>Allocation list: stratum {e(name)}</h1>
<p>Trial scenario <b>{e(sc.name)}</b> (scenario hash {sc.hash()}). Allocation
{e(treated)} : {e(control)} = {sc.design.allocation_ratio:g} : 1 in permuted blocks of
random size; {len(rows)} entries. List checksum (SHA-256) <code>{checksum[:16]}</code>.</p>
<p class="small">Use the entries strictly in order of sequence number, one for each client
at randomization, and never skip or reuse one. Sealed envelopes: write the sequence number
and code on the outside and the allocation inside an opaque envelope. Central allocation:
give out the next entry only once the client is registered in the trial. Never write a
name or a personal identity number here: the trial links the code to the client in its
separate key.</p>
<table>
<thead><tr><th>#</th><th>Sequence code</th><th>Allocation</th><th>Date used</th>
<th>Signature</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
