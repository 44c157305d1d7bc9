"""Small helpers for parameterized notebooks: check papermill parameters, show a scenario.

papermill only warns about unknown parameters and never checks types, so each notebook
calls :func:`check_parameters` in the cell after its ``parameters`` cell.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from simulate.errors import FitlabError

__all__ = ["NotebookParameterError", "check_parameters", "scenario_table"]


class NotebookParameterError(FitlabError, ValueError):
    """A notebook parameter of the wrong type; the message names it and what is allowed."""


def check_parameters(values: dict[str, Any], **allowed: type | tuple[type, ...]) -> dict[str, Any]:
    """Check notebook parameters against allowed types.

    Parameters
    ----------
    values : dict
        Parameter name -> value, as set by the ``parameters`` cell or papermill.
    **allowed
        Parameter name -> type or tuple of types.

    Returns
    -------
    dict
        ``values``, unchanged.

    Raises
    ------
    NotebookParameterError
        For an unexpected parameter or a value of the wrong type.

    Examples
    --------
    >>> check_parameters({"seed": 3}, seed=(int, type(None)))
    {'seed': 3}
    """
    problems = []
    for name, value in values.items():
        if name not in allowed:
            problems.append(f"{name}: unknown parameter; allowed: {', '.join(sorted(allowed))}")
            continue
        types = allowed[name] if isinstance(allowed[name], tuple) else (allowed[name],)
        # bool is an int in Python; refuse True where an int is meant and vice versa
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            problems.append(f"{name}: expected {names}, got {value!r}")
    if problems:
        raise NotebookParameterError("invalid notebook parameters:\n  - " + "\n  - ".join(problems))
    return values


def scenario_table(scenario) -> pd.DataFrame:
    """The scenario as a two-column table (section.field, value), for display."""
    rows = []
    for section, fields in scenario.to_dict().items():
        if isinstance(fields, dict):
            rows += [(f"{section}.{k}", _fmt(v)) for k, v in fields.items()]
        else:
            rows.append((section, _fmt(fields)))
    return pd.DataFrame(rows, columns=["field", "value"]).set_index("field")


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
