"""The Bayesian hierarchical models, sampled by NUTS (nutpie), on one base class.

- :mod:`models.bayes.base`: compile once per capacity, seeds from the data, one
  convergence rule, one summary (:class:`~models.bayes.base.BayesEstimator`);
- :mod:`models.bayes.marginal`: the growth model with every random effect integrated out;
- :mod:`models.bayes.trajectory`, :mod:`models.bayes.stepped_wedge`: non-centred growth
  models for individual/cluster and stepped-wedge designs;
- :mod:`models.bayes.binary`: the logit mixed model for employment;
- :mod:`models.bayes.cace`, :mod:`models.bayes.cace_trajectory`: principal stratification.

Importing this package registers the estimators; PyMC itself is imported only when a
model is built.
"""

from models.bayes import (  # noqa: F401
    binary,
    cace,
    cace_trajectory,
    marginal,
    stepped_wedge,
    trajectory,
)
