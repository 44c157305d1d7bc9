"""The Bayesian hierarchical models: NUTS-sampled models on one base class, and the
integrated routes for the Gaussian and logit mixed models.

- :mod:`models.bayes.base`: compile once per capacity, seeds from the data, one
  convergence rule, one summary (:class:`~models.bayes.base.BayesEstimator`);
- :mod:`models.bayes.integrated` and :mod:`models.bayes.lmm`: the trajectory and
  stepped-wedge mixed models (the REML estimators' models) by exact conditional
  integration and importance sampling (``bayes_trajectory``, ``bayes_stepped_wedge``),
  and their NUTS twins with the same priors (``*_nuts``);
- :mod:`models.bayes.occasion`, :mod:`models.bayes.occasion_stepped_wedge`: non-centred
  growth models with occasion-specific means, ceiling censoring and learning;
- :mod:`models.bayes.logit_integrated` and :mod:`models.bayes.binary`: the logit mixed
  model for employment by nested integration (``bayes_binary``) and by NUTS
  (``bayes_binary_nuts``);
- :mod:`models.bayes.cace`, :mod:`models.bayes.cace_trajectory`: principal stratification.

Importing this package registers the estimators; PyMC itself is imported only when a
model is built.
"""

from models.bayes import (  # noqa: F401
    binary,
    cace,
    cace_trajectory,
    lmm,
    occasion,
    occasion_stepped_wedge,
)
