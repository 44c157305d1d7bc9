"""The package layout's two rules, checked on the source.

1. Dependencies point one way: ``simulate`` imports neither ``models`` nor ``fitlab``, and
   ``models`` does not import ``fitlab`` (docs/ARCHITECTURE.md).
2. ``import simulate`` and ``import models`` stay cheap: PyMC, Bambi, nutpie and ArviZ are
   imported inside the functions that use them, so a grid worker that runs only REML never
   pays for them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
FORBIDDEN = {"simulate": {"models", "fitlab"}, "models": {"fitlab"}}


def _imports(path: Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (any depth, any scope)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package):
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no modules found under {SRC / package}"
    wrong = {str(f.relative_to(SRC)): sorted(_imports(f) & FORBIDDEN[package]) for f in files}
    wrong = {k: v for k, v in wrong.items() if v}
    assert not wrong, f"{package} must not import {sorted(FORBIDDEN[package])}: {wrong}"


def test_importing_the_packages_stays_cheap():
    heavy = ["pymc", "bambi", "nutpie", "arviz", "pytensor", "statsmodels", "numba"]
    code = (
        "import sys, simulate, models, models.reml, models.bayes, simulate.power\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    loaded = out.stdout.strip()
    assert loaded == "", f"importing the packages loaded {loaded}"
