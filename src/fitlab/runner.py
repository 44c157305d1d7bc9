"""Execute notebooks with papermill, export HTML, and record each run's success or failure.

Like the pymc-examples runner: every notebook gets a record (``ok``, ``failed`` with the
failing cell and error, or ``missing``), the records go to a ``runs.json``, and one failing
notebook never stops the others.

Examples
--------
>>> from fitlab.runner import run_notebooks                          # doctest: +SKIP
>>> records = run_notebooks([("notebooks/04_compare_designs.ipynb",  # doctest: +SKIP
...                           {"output_dir": "outputs/fit_default", "fast": True})],
...                         "outputs/fit_default")
>>> records[0]["status"]                                         # doctest: +SKIP
'ok'
"""

from __future__ import annotations

import time
from pathlib import Path

from fitlab import manifest as mf
from fitlab.store import atomic_write_text

__all__ = ["run_notebook", "run_notebooks", "to_html", "KERNEL"]

KERNEL = "python3"


def _kernel_manager_class():
    """A kernel manager that talks to the kernel over local sockets (IPC), not TCP.

    The kernel and papermill always share this machine; with TCP every kernel prints a
    warning about unencrypted traffic into the demo's output, and opens ports for nothing.
    """
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

    return IPCKernelManager


def to_html(ipynb: str | Path, html: str | Path | None = None) -> Path:
    """Export an executed notebook to HTML next to it (or at ``html``)."""
    from nbconvert import HTMLExporter

    ipynb = Path(ipynb)
    html = Path(html) if html else ipynb.with_suffix(".html")
    body, _ = HTMLExporter().from_filename(str(ipynb))
    return atomic_write_text(html, body)


def run_notebook(
    notebook: str | Path,
    out_dir: str | Path,
    parameters: dict | None = None,
    *,
    kernel_name: str = KERNEL,
    html: bool = True,
    timeout: int | None = None,
) -> dict:
    """Execute one notebook into ``out_dir`` (``.ipynb`` and ``.html``); never raises for
    a failure inside the notebook.

    Parameters
    ----------
    notebook : path
    out_dir : path
    parameters : dict
        Offered parameters; only those the notebook's ``parameters`` cell declares are
        passed (papermill would only warn about the others). The rest are listed in the
        record as ``ignored_parameters``.
    kernel_name : str
    html : bool
        Also export HTML (for a failed run too, so the error can be read in the browser).
    timeout : int, optional
        Seconds allowed per cell.

    Returns
    -------
    dict
        ``notebook, status ("ok" | "failed" | "missing"), output, html, seconds`` and, on
        failure, ``cell_index, exec_count, ename, evalue, source``.
    """
    import papermill as pm

    nb = Path(notebook)
    out_dir = Path(out_dir)
    rec: dict = {"notebook": str(nb), "status": "missing", "output": None, "html": None,
                 "seconds": 0.0, "started": mf.now()}
    if not nb.is_file():
        rec["error"] = f"notebook not found: {nb}"
        return rec
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / nb.name
    params = dict(parameters or {})
    declared = set(pm.inspect_notebook(str(nb)))
    if declared:
        rec["ignored_parameters"] = sorted(set(params) - declared)
        params = {k: v for k, v in params.items() if k in declared}
    rec["parameters"] = params
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=kernel_name,
                            progress_bar=False, cwd=str(nb.resolve().parent),
                            execution_timeout=timeout,
                            kernel_manager_class=_kernel_manager_class())
        rec["status"] = "ok"
    except pm.PapermillExecutionError as exc:
        rec.update(status="failed", cell_index=exc.cell_index, exec_count=exc.exec_count,
                   ename=exc.ename, evalue=exc.evalue, source=_short(exc.source))
    except Exception as exc:  # kernel died, bad notebook JSON, ...
        rec.update(status="failed", cell_index=None, ename=type(exc).__name__,
                   evalue=str(exc)[:2000])
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    if out.is_file():
        rec["output"] = str(out)
        if html:
            try:
                rec["html"] = str(to_html(out))
            except Exception as exc:  # HTML is a convenience; keep the record
                rec["html_error"] = f"{type(exc).__name__}: {exc}"
    return rec


def run_notebooks(
    notebooks: list[tuple[str | Path, dict]],
    out_dir: str | Path,
    *,
    runs_json: str | Path | None = None,
    kernel_name: str = KERNEL,
    html: bool = True,
    log=None,
) -> list[dict]:
    """Run notebooks one after another and record every outcome in ``runs.json``.

    Parameters
    ----------
    notebooks : list of (path, parameters)
    out_dir : path
    runs_json : path, optional
        Default ``out_dir/runs.json``; records of earlier runs of other notebooks are kept.
    log : callable, optional
        Called with one line per notebook (e.g. ``print``).

    Returns
    -------
    list of dict
        The records of this call (see :func:`run_notebook`).
    """
    out_dir = Path(out_dir)
    runs_json = Path(runs_json) if runs_json else out_dir / "runs.json"
    old = {r["notebook"]: r for r in (mf.read_json(runs_json) or [])}
    records = []
    for nb, params in notebooks:
        rec = run_notebook(nb, out_dir, params, kernel_name=kernel_name, html=html)
        records.append(rec)
        old[rec["notebook"]] = rec
        mf.write_json(runs_json, list(old.values()))
        if log is not None:
            log(describe(rec))
    return records


def describe(rec: dict) -> str:
    """One line about a notebook run."""
    name = Path(rec["notebook"]).name
    if rec["status"] == "ok":
        return f"ok       {name} ({rec['seconds']:.0f} s) -> {rec.get('html') or rec['output']}"
    if rec["status"] == "missing":
        return f"missing  {name}: {rec.get('error')}"
    where = f"cell {rec.get('cell_index')}" if rec.get("cell_index") is not None else "kernel"
    return f"FAILED   {name} at {where}: {rec.get('ename')}: {rec.get('evalue')}"


def _short(src: str | None, n: int = 400) -> str | None:
    if src is None:
        return None
    return src if len(src) <= n else src[:n] + " ..."
