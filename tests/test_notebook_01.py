"""Notebook 01 executes under papermill with tiny parameters and refuses bad ones."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_simulate_design.ipynb"


def _execute(tmp_path, **params):
    import papermill as pm

    out = tmp_path / "01.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters=params, kernel_name="python3",
                        progress_bar=False, cwd=str(NOTEBOOK.parents[1]))
    return out


def test_notebook_01_runs_for_the_stepped_wedge(tmp_path):
    import nbformat

    out = _execute(tmp_path, scenario="params/fit_stepped_wedge.yaml", seed=3, fast=True,
                   output_dir=str(tmp_path))
    nb = nbformat.read(out, as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # schedule, allocation, sizes, trajectories, power curve
    text = "".join(str(o.get("data", {}).get("text/plain", "")) for c in nb.cells
                   if c.cell_type == "code" for o in c.get("outputs", []))
    assert "stepped_wedge" in text


def test_notebook_01_refuses_a_bad_parameter(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="seed: expected int or None"):
        _execute(tmp_path, seed="seven", fast=True)
