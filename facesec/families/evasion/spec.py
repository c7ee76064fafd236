"""The evasion families' spec sections: pixel noise in an Lp ball, and accessories worn on the face."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from facesec.fields import Budget, Ceiling, Number, PerturbationSpec, Strict, Unit, Whole


class PixelPerturbation(PerturbationSpec):
    """Additive noise bounded in an Lp norm, in [0, 1] pixel units."""

    kind: Literal["pixel"] = "pixel"
    norm: Literal["linf", "l2"] = "linf"
    eps: Budget = 8 / 255

    @model_validator(mode="after")
    def _eps_in_range(self) -> PixelPerturbation:
        most = {"linf": 1.0, "l2": 1000.0}[self.norm]
        if self.eps > most:
            raise ValueError(f"perturbation.eps: {self.eps:g} is beyond any {self.norm} change of [0, 1] pixels; "
                             f"use at most {most:g} (budgets accept fractions such as 8/255)")
        return self


class Eot(Strict):
    """Random physical transforms of the worn accessory (expectation over transformation)."""

    samples: int = Field(2, ge=1, description="transforms averaged at every optimisation step")
    shift: float = Field(0.02, ge=0, le=0.2, description="translation, fraction of the crop")
    rotation: float = Field(4.0, ge=0, le=45, description="degrees")
    scale: float = Field(0.04, ge=0, le=0.5, description="relative size change")
    brightness: float = Field(0.08, ge=0, le=0.5, description="added to the colours")
    contrast: float = Field(0.1, ge=0, le=0.5, description="relative change of the colours' spread")
    blur: float = Field(0.8, ge=0, le=5, description="largest Gaussian sigma in pixels")
    eval_draws: int = Field(8, ge=1, description="fresh transforms per attempt when measuring physical robustness")


_SHAPE_FIELDS = {"frame_width": "eyeglasses", "anchor": "sticker", "width": "sticker", "height": "sticker"}


class AccessoryPerturbation(PerturbationSpec):
    """Something worn: eyeglass frames, a sticker or a face mask, placed from the face's landmarks.

    Colours are free in [0, 1] inside the accessory and start from `colour`; nothing else changes.
    """

    kind: Literal["accessory"] = "accessory"
    shape: Literal["eyeglasses", "sticker", "facemask"] = "eyeglasses"
    frame_width: float = Field(0.035, gt=0, le=0.2, description="eyeglasses: rim thickness, fraction of the crop")
    anchor: Literal["forehead", "left-cheek", "right-cheek", "nose"] = Field("forehead", description="sticker")
    width: float = Field(0.25, gt=0, le=1, description="sticker: fraction of the crop")
    height: float = Field(0.12, gt=0, le=1, description="sticker: fraction of the crop")
    grid: tuple[Annotated[int, Field(ge=1, le=64)], Annotated[int, Field(ge=1, le=64)]] | None = Field(
        None, description="[columns, rows]: one colour per cell (FACESEC masks: [16, 8]); null = per pixel")
    colour: tuple[Unit, Unit, Unit] = Field((0.5, 0.5, 0.5), description="plain starting colour, RGB in [0, 1]")
    eot: Eot | None = Field(Eot(), description="null: optimise and judge the digital accessory only")
    tv_weight: float = Field(0.0, ge=0, description="total-variation penalty (smoothness)")
    nps_weight: float = Field(0.0, ge=0, description="non-printability penalty (distance to the palette)")
    palette: str = Field("default", description="'default' or a file of R,G,B lines in 0-255")

    @model_validator(mode="after")
    def _fields_fit_shape(self) -> AccessoryPerturbation:
        for name, shape in _SHAPE_FIELDS.items():
            if name in self.model_fields_set and self.shape != shape:
                raise ValueError(f"perturbation.{name} applies to shape {shape} only (this one is {self.shape}); "
                                 "remove it")
        return self


class AccessoryParams(Strict):
    """`attack.params` of the accessory optimiser."""

    momentum: Number | None = Field(None, ge=0, le=10, description="gradient momentum (default 1 for mi-fgsm, "
                                    "else 0)")
    kappa: Ceiling | None = Field(None, description="margin clip (default 0.1 on the target, .inf on surrogates)")
    batch_size: Whole | None = Field(None, ge=1, le=4096, description="wearers per forward pass")
