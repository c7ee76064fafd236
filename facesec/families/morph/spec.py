"""The morph family's spec section: how morphs are made, whom they combine, and which recognizers judge them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from facesec.fields import Budget, PerturbationSpec, Unit, Whole


class MorphPerturbation(PerturbationSpec):
    """A morph of two people's photos submitted as one enrolment; both then present their own faces."""

    kind: Literal["morph"] = "morph"
    method: Literal["landmark", "optimised", "gan"] = Field(
        "landmark", description="landmark: Delaunay warp + blend spliced into A's photo; optimised: that morph's "
                                "pixels then optimised (within eps) so the worse-matched contributor is matched; "
                                "gan: both inverted into a face generator, latents interpolated, face spliced "
                                "into A's photo (needs `facesec models fetch gan-face-generate`)")
    alpha: Unit = Field(0.5, description="weight of contributor B (0: A's photo, 1: B's face in A's photo)")
    pairing: Literal["lookalike", "random"] = Field(
        "lookalike", description="lookalike: each subject with the most similar other identity by the attacker's "
                                 "recognizer (as a criminal picks an accomplice); random: seeded")
    pairs: Whole | None = Field(
        None, ge=1, le=100_000, description="morphs made: the first `pairs` subjects each host one (null: all)")
    references: Whole = Field(
        1, ge=1, le=10_000, description="photos per contributor the attacker holds: the first is the one morphed; none "
                                        "of them is ever a probe")
    eps: Budget = Field(8 / 255, le=1, description="optimised: L-inf budget around the landmark morph's pixels")
    calibration_identities: Whole = Field(
        150, ge=0, le=100_000, description="identities besides the subjects that fill the 1:N gallery and, "
                                           "with setting.calibration: in-sample, calibrate the thresholds in sample")
    fmrs: list[float] = Field([1e-3, 1e-4], min_length=1,
                               description="FMRs the metrics are also reported at (setting.fmr is the headline)")
    recognizers: list[str | dict[str, Any]] = Field(
        [], description="more recognizers that judge the same morphs (Morphing Attack Potential); the target is "
                        "always the first")

    @field_validator("fmrs")
    @classmethod
    def _fmrs_in_range(cls, value: list[float]) -> list[float]:
        for f in value:
            if not 0 < f < 1:
                raise ValueError(f"each FMR must be between 0 and 1 (got {f})")
        return sorted(set(value), reverse=True)
