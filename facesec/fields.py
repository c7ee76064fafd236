"""Field types every threat-model section shares (budgets, fractions, whole numbers, strict models) and the
base of a family's perturbation section. A leaf: it imports nothing from facesec, so a family's spec, the
threat model and the schema can all build on it without a cycle."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import ErrorDetails


def _fraction(value: Any) -> Any:
    """Budgets may be written as fractions of the pixel range: `8/255`."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*/\s*\d+(\.\d+)?\s*", value):
        num, den = (Fraction(v.strip()) for v in value.split("/"))
        if den == 0:
            raise ValueError("division by zero")
        return float(num / den)
    return value


def _not_bool(value: Any) -> Any:
    """YAML's true/false are not numbers here (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


Budget = Annotated[float, BeforeValidator(_fraction), BeforeValidator(_not_bool), Field(ge=0, allow_inf_nan=False)]
Number = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
"""A finite number (no .inf, .nan, true or false)."""


Whole = Annotated[int, BeforeValidator(_not_bool)]
"""A whole number (no true/false); each field bounds it, since a run that large is a typo, not a plan."""


Unit = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1, allow_inf_nan=False)]
Ceiling = Annotated[float, BeforeValidator(_not_bool), Field(ge=0)]
"""A non-negative number or .inf (no limit); never .nan."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PerturbationSpec(Strict):
    """The perturbation section: `kind` selects the attack family, whose own Spec subclass holds the rest."""

    kind: str


class SpecError(ValueError):
    """A section validated by its own model (a family's perturbation, an attack's params) failed; carries
    pydantic's errors and the section's place (`at`) so messages keep their full field paths."""

    def __init__(self, errors: list[ErrorDetails], at: tuple[str, ...] = ("perturbation",)) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid")
        self.errors = errors
        self.at = at
