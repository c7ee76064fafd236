"""What each built-in defence takes, typed, so a wrong value fails in `validate` (torch-free)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from facesec.fields import Budget, Number, Strict, Whole


class NoParams(Strict):
    """A defence that takes no parameters."""


class Jpeg(Strict):
    """JPEG compression and decompression (Dziugaite et al. 2016; Guo et al. 2018)."""

    quality: Whole = Field(75, ge=1, le=100, description="JPEG quality, 1-100")
    bpda: Literal["identity", "differentiable"] | None = Field(None, description=(
        "what the adaptive attacker differentiates in place of the codec: differentiable (the codec's steps with "
        "soft rounding, Shin and Song 2017; the default, the stronger on both draws measured) or identity (the "
        "straight-through estimator)"))


class BitDepth(Strict):
    """Colour bit-depth reduction (feature squeezing, Xu et al. 2018)."""

    bits: Whole = Field(4, ge=1, le=7, description="bits per colour channel kept")


class Median(Strict):
    """Median smoothing over a square window (feature squeezing, Xu et al. 2018)."""

    size: Whole = Field(3, ge=3, le=15, description="window side in pixels (odd)")

    @field_validator("size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("the window needs a centre pixel: give an odd size (3, 5, 7 ...)")
        return value


class ResizePad(Strict):
    """Random resizing and padding (R&P, Xie et al. 2018): the face shrunk by a random factor and placed at a random
    position on a black canvas of the model's input size, drawn anew for every image."""

    min_scale: Number = Field(0.85, ge=0.5, lt=1, description="smallest resize factor (the largest is 1)")


class GaussianNoise(Strict):
    """Gaussian noise added to every image, drawn anew each time (randomised smoothing's input step)."""

    sigma: Number = Field(0.03, gt=0, le=0.5, description="noise standard deviation, in pixel units")


class AdversarialTraining(Strict):
    """PGD adversarial fine-tuning of the recognizer (Madry et al. 2018) on people drawn apart from the run's,
    with the metric loss it was trained with."""

    label_fields: ClassVar[tuple[str, ...]] = ("eps", "steps", "epochs", "layers")
    """What names it in reports (the rest is in the run's record)."""

    eps: Budget = Field(8 / 255, gt=0, le=0.5, description="L-inf budget of the training attack (8/255 allowed)")
    steps: Whole = Field(3, ge=1, le=50, description="PGD steps per training batch")
    epochs: Whole = Field(5, ge=1, le=200, description="fine-tuning epochs")
    learning_rate: Number = Field(1e-4, gt=0, le=1, description="Adam's learning rate")
    layers: Literal["last", "all"] = Field("last", description="what is trained: the last stage or every layer")
    identities: Whole = Field(100, ge=2, le=100_000, description="people it trains on, none of the run's others")
    images_per_identity: Whole = Field(5, ge=2, le=10_000, description="faces per training identity")
    batch_identities: Whole = Field(16, ge=2, le=1024, description="identities per batch")
    batch_images: Whole = Field(4, ge=2, le=64, description="images per identity in a batch")


class MorphDetection(Strict):
    """A morphing-attack detector fitted on the run's own kind of morphs of people apart from the attacked ones
    (S-MAD: the enrolment image alone; D-MAD: beside the live capture)."""

    label_fields: ClassVar[tuple[str, ...]] = ("bpcer",)
    """What names it in reports (the rest is in the run's record)."""

    c: Number | None = Field(None, gt=0, le=1e6, description="inverse regularisation strength of the logistic "
                             "regression (null: chosen by cross-validation, each training person in one fold)")
    bpcer: Number = Field(0.10, gt=0, lt=1, description="the share of bona fide presentations flagged at the "
                          "deployed threshold (set on people apart from those the detector is fitted on)")
    identities: Whole = Field(60, ge=8, le=100_000, description="people its training morphs and bona fide photos "
                              "come from, none of the run's others (half fit it, half set its threshold)")
    images_per_identity: Whole = Field(3, ge=2, le=10_000, description="photos per training identity")
