"""``fitlab doctor``: what a bug report needs about this installation.

Versions (fitlab and its git commit, Python, the numerical and Bayesian stack, papermill),
the compile caches (PyTensor's compile directory, the per-worker slots of
:func:`fitlab.replicates.setup_worker`, numba's cache of the REML kernels) with whether
they are warm, the cores this process may use and the thread settings of BLAS.

A cold cache is no error: the first Bayesian fit compiles its model (about a minute), the
first REML fit its numba kernels (seconds), and later runs reuse them.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from fitlab.cli.common import command, print_json

__all__ = ["add_parser", "cmd_doctor", "report", "compile_caches", "DOCTOR_PACKAGES"]

#: Packages shown first, in this order (the rest of fitlab.manifest.versions follows).
DOCTOR_PACKAGES = ("numpy", "pandas", "scipy", "pymc", "pytensor", "nutpie", "numba", "arviz",
                   "papermill")
#: Environment variables that change speed or caching.
ENVIRONMENT = ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS")


def add_parser(sub) -> None:
    s = command(sub, "doctor", "versions, compile caches and cores: paste into a bug report",
                ["doctor", "doctor --json > fitlab-doctor.json"])
    s.add_argument("--json", action="store_true",
                   help="print one JSON object (default: readable lines)")
    s.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    """Print the report, as lines or one JSON object."""
    rep = report()
    if args.json:
        print_json(rep)
        return 0
    width = max(len(k) for section in rep.values() for k in section)
    for title, section in rep.items():
        print(f"{title}:")
        for k, v in section.items():
            print(f"  {k:<{width}}  {v}")
    return 0


def report() -> dict[str, dict[str, object]]:
    """The facts, by section: ``fitlab``, ``packages``, ``caches``, ``machine``."""
    from fitlab import __version__
    from fitlab.manifest import git_commit, versions

    vers = versions()
    packages = {name: vers.get(name, _version(name)) for name in DOCTOR_PACKAGES}
    packages |= {k: v for k, v in vers.items() if k not in packages and k not in
                 ("python", "fitlab")}
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "fitlab": {"version": __version__, "git commit": git_commit(),
                   "installed at": str(Path(__file__).resolve().parents[1])},
        "python": {"version": vers["python"], "executable": sys.executable,
                   "platform": platform.platform()},
        "packages": packages,
        "caches": compile_caches(),
        "machine": {"cores": os.cpu_count(), "cores usable by this process": usable,
                    **{k: os.environ.get(k, "(not set)") for k in ENVIRONMENT}},
    }


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def compile_caches() -> dict[str, str]:
    """Where compiled code is kept, and whether each place already holds some ("warm").

    PyTensor's compile directory is asked of PyTensor itself (importing it, a second or
    two). A compiled module there is a folder with a ``key.pkl``; fitlab's worker
    processes each compile in their own ``worker-<k>`` folder under it. numba caches the
    REML kernels as ``*.nbi`` index files next to their source, or under
    ``NUMBA_CACHE_DIR``.
    """
    out: dict[str, str] = {}
    try:
        import pytensor

        compiledir = Path(pytensor.config.compiledir)
    except Exception as exc:  # a broken PyTensor install is what the report is for
        out["pytensor compile dir"] = f"unavailable ({type(exc).__name__}: {exc})"
    else:
        out["pytensor compile dir"] = f"{compiledir} ({_warm(compiledir, 'key.pkl', 2)})"
        workers = sorted(p for p in compiledir.glob("worker-*") if p.is_dir())
        if workers:
            n = sum(_count(w, "key.pkl", 2) for w in workers)
            out["pytensor worker slots"] = f"{len(workers)} under it, {n} compiled modules"
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        where = Path(numba_dir)
        out["numba cache dir"] = f"{where} (NUMBA_CACHE_DIR; {_warm(where, '*.nbi', 8)})"
    else:
        import models

        where = Path(models.__file__).resolve().parent / "reml" / "__pycache__"
        out["numba cache dir"] = f"{where} ({_warm(where, '*.nbi', 1)})"
    return out


def _count(folder: Path, pattern: str, depth: int) -> int:
    """Files matching ``pattern`` at most ``depth`` levels below ``folder``."""
    if not folder.is_dir():
        return 0
    return sum(len(list(folder.glob("/".join(["*"] * d + [pattern])))) for d in range(depth))


def _warm(folder: Path, pattern: str, depth: int) -> str:
    if not folder.is_dir():
        return "cold: does not exist yet"
    n = _count(folder, pattern, depth)
    return f"warm: {n} compiled" if n else "cold: empty"
