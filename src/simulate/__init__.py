"""Simulate FIT trial designs: scenario schema, data-generating process, analytic power."""

from simulate.scenario import Scenario, ScenarioError, load_scenario  # noqa: F401
from simulate.trial import Trial, simulate_trial  # noqa: F401
