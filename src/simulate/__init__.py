"""Simulate FIT trial designs: scenario schema, data-generating process, analytic power
(:mod:`simulate.power`, imported on demand to keep ``import simulate`` cheap)."""

from simulate.scenario import Scenario, ScenarioError, load_scenario  # noqa: F401
from simulate.trial import Trial, simulate_trial  # noqa: F401
