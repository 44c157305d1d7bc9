"""Shared fixtures: the default scenario and seeded trials reused across test modules."""

import os
from pathlib import Path

import numpy as np
import pytest

from simulate import Scenario, load_scenario, simulate_trial

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params"

#: FITLAB_FULL=1 runs the heavy statistical checks at full size.
FULL = os.environ.get("FITLAB_FULL") == "1"


@pytest.fixture(scope="session")
def default_scenario():
    return Scenario()


@pytest.fixture(scope="session")
def default_trial(default_scenario):
    return simulate_trial(default_scenario, seed=12345)


@pytest.fixture(scope="session")
def ips_scenario():
    return load_scenario(PARAMS / "ips_2to1.yaml")


@pytest.fixture
def rng():
    return np.random.default_rng(2026)
