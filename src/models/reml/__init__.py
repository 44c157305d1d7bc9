"""Exact REML for the nested Gaussian mixed models: the engine, its numba kernels and the
estimators ``reml_trajectory`` and ``reml_stepped_wedge``.

- :mod:`models.reml.engine`: sufficient statistics, the profiled deviance and its
  gradient (numpy reference sweeps);
- :mod:`models.reml.fit`: :func:`fit_nested_lmm` (the optimizer, the Wald degrees of
  freedom) and its :class:`MixedFit`;
- :mod:`models.reml.kernels`: the same deviance and gradient as numba loops (imported on
  the first fit);
- :mod:`models.reml.estimators`: the designs and the registered estimators.
"""

from models.reml.estimators import (  # noqa: F401
    RemlEstimator,
    RemlSteppedWedge,
    RemlTrajectory,
    client_re_level,
    stepped_wedge_design,
    trajectory_design,
)
from models.reml.fit import MixedFit, fit_nested_lmm  # noqa: F401
