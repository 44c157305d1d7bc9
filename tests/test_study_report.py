"""Papermill: a tiny grid end to end, and a failing notebook recorded while others go on."""

import json

import nbformat
import pytest

from fitlab.runner import run_notebooks
from fitlab.study import run_grid


def test_tiny_grid_end_to_end(tmp_path):
    grid = tmp_path / "tiny.yaml"
    grid.write_text("""
name: tiny
base:
  - {name: a, size: {units: 6, clients_per_unit: 8}}
  - {name: b, size: {units: 6, clients_per_unit: 8}, design: {kind: stepped_wedge, steps: 3}}
factors:
  size.clients_per_unit: [8, 12]
reps: 4
estimators: [diff_means]
""")
    out = run_grid(grid, tmp_path / "out", workers=1, progress=False, fast=True)
    root = tmp_path / "out" / "tiny"
    assert out["report"]["status"] == "ok", out["report"]
    assert (root / "04_compare_designs.html").stat().st_size > 10_000
    executed = nbformat.read(root / "04_compare_designs.ipynb", as_version=4)
    (cell,) = [c for c in executed.cells if c.get("id") == "precision-table"]
    printed = "".join(o.get("text", "") for o in cell.outputs)
    assert "run to a fixed number of replicates" in printed and "targets met" not in printed
    assert len(out["summary"]) == 4
    assert set(out["summary"]["design"]) == {"individual", "stepped_wedge"}
    runs = json.loads((root / "runs.json").read_text())
    assert runs[0]["status"] == "ok"
    for sid in out["summary"]["scenario_id"]:
        m = json.loads((root / sid / "manifest.json").read_text())
        assert m["finished"] and m["rows"] == 8 and m["git_commit"]
        assert "numpy" in m["versions"] and m["time_per_replicate"]["simulate_seconds"] >= 0


def _notebook(path, source):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("y = x + 1"),
        nbformat.v4.new_code_cell(source),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_failing_notebook_recorded_and_others_continue(tmp_path):
    bad = _notebook(tmp_path / "bad.ipynb", "raise ValueError('no such design')")
    good = _notebook(tmp_path / "good.ipynb", "print(x)")
    recs = run_notebooks([(bad, {"x": 2, "unknown": 1}), (tmp_path / "missing.ipynb", {}),
                          (good, {"x": 3})], tmp_path / "out")
    assert [r["status"] for r in recs] == ["failed", "missing", "ok"]
    assert recs[0]["ename"] == "ValueError" and "no such design" in recs[0]["evalue"]
    assert recs[0]["cell_index"] is not None and "raise" in recs[0]["source"]
    assert recs[0]["ignored_parameters"] == ["unknown"]
    assert (tmp_path / "out" / "bad.html").is_file()  # the error can be read in HTML
    assert (tmp_path / "out" / "good.html").is_file()
    saved = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert [r["status"] for r in saved] == ["failed", "missing", "ok"]


@pytest.mark.parametrize("name", ["04_compare_designs.ipynb"])
def test_committed_notebook_has_no_outputs(name):
    from fitlab.study import notebooks_dir

    nb = nbformat.read(notebooks_dir() / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
