"""The base of every scenario section: frozen, validated, unknown keys refused.

It has its own module so that sections defined outside :mod:`simulate.scenario` (the
allocation list, the economics) share it without importing the scenario itself.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    """A part of a scenario: immutable, every field validated, defaults included."""

    # extra="forbid" is what turns a misspelt key into an error instead of a silent default
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
