"""Estimators for FIT trials: one interface (``get_estimator(name).fit(data) -> Estimate``).

Each model family lives in its own module; importing this package registers them all.
"""

# Model-family modules register their estimators on import. Each is optional while the
# package grows, but a module that exists and fails to import is an error worth seeing.
import importlib as _importlib
import pkgutil as _pkgutil

from models.base import (  # noqa: F401
    ESTIMATORS,
    Estimate,
    Estimator,
    EstimatorError,
    LongFormatError,
    check_long,
    get_estimator,
    register,
)
from models.plan import AnalysisPlan  # noqa: F401

for _m in _pkgutil.iter_modules(__path__):
    if not _m.name.startswith("_"):
        _importlib.import_module(f"models.{_m.name}")
