"""The base of every scenario section: frozen, validated, unknown keys refused.

It has its own module so that sections defined outside :mod:`simulate.scenario` (the
allocation list, the economics) share it without importing the scenario itself. Every
rule here holds for every section, those added later included: unknown keys, NaN and
infinity, and booleans where a number is meant are refused.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["Section"]

_NOT_A_NUMBER = PydanticCustomError("bool_number", "expected a number, got true/false")


class Section(BaseModel):
    """A part of a scenario: immutable, every field validated, defaults included."""

    # extra="forbid" is what turns a misspelt key into an error instead of a silent default;
    # allow_inf_nan=False refuses NaN and infinity in every number of every section
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, data: Any) -> Any:
        # pydantic reads true as 1 for an int or float field: `units: true` ran one unit
        if not isinstance(data, dict):
            return data
        errors = []
        for key, value in data.items():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if field is None or _admits(field.annotation, (bool,)) \
                    or not _admits(field.annotation, (int, float)):
                continue
            items = enumerate(value) if isinstance(value, list) else [(None, value)]
            errors += [InitErrorDetails(type=_NOT_A_NUMBER, input=v,
                                        loc=(key,) if i is None else (key, i))
                       for i, v in items if isinstance(v, bool)]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


def _admits(annotation: Any, types: tuple[type, ...]) -> bool:
    """Whether a field annotation (through Annotated, unions, lists, Literal) admits ``types``."""
    if annotation in types:
        return True
    if typing.get_origin(annotation) is Literal:
        return any(type(a) in types for a in typing.get_args(annotation))
    return any(_admits(a, types) for a in typing.get_args(annotation))
