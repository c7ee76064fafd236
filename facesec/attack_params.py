"""What `attack.params` each built-in attack takes, typed, so a wrong one fails in `validate`; torch-free, so
validating a threat model does not load the attacks themselves."""

from __future__ import annotations

from pydantic import Field

from facesec.fields import Ceiling, Number, Strict, Unit, Whole


class NoParams(Strict):
    """An attack that takes no `attack.params`."""


class GradientParams(Strict):
    """`attack.params` of the native gradient attacks; momentum, input diversity and TI combine with any."""

    batch_size: Whole | None = Field(None, ge=1, le=4096, description="faces per forward pass (default 64)")
    momentum: Number | None = Field(None, ge=0, le=10, description="gradient momentum (default 1 for *-fgsm, "
                                    "else 0)")
    diversity: Unit | None = Field(None, description="probability of a random resize-and-pad each step (DI)")
    ti_kernel: Whole | None = Field(None, ge=0, le=63, description="Gaussian gradient smoothing, pixels (TI)")
    universal_kappa: Ceiling | None = Field(None, description="margin clip of universal perturbations (0.1)")
    early_stop: bool | None = Field(None, description="stop a face once the goal is reached (default true)")


class CwParams(GradientParams):
    """`attack.params` of native/cw: the gradient parameters plus the margin clip."""

    kappa: Ceiling | None = Field(None, description="the Carlini-Wagner margin clip (default 0)")


class SquareParams(Strict):
    """`attack.params` of native/square."""

    p_init: Number | None = Field(None, gt=0, le=1, description="the first square's share of the image (0.05)")
    batch_size: Whole | None = Field(None, ge=1, le=4096, description="faces attacked together (default 64)")


class HopSkipJumpParams(Strict):
    """`attack.params` of art/hopskipjump."""

    max_eval: Whole | None = Field(None, ge=1, le=100_000, description="queries per gradient estimate (100)")
    init_eval: Whole | None = Field(None, ge=1, le=100_000, description="queries of the first estimate (20)")


class MomentumParams(Strict):
    """`attack.params` of torchattacks' MI-FGSM."""

    decay: Number | None = Field(None, ge=0, le=10, description="momentum decay (torchattacks' default 1)")


class ArtParams(Strict):
    """`attack.params` of ART's PGD and FGSM."""

    batch_size: Whole | None = Field(None, ge=1, le=4096, description="ART's batch size (default 64)")


class ArtMomentumParams(ArtParams):
    """`attack.params` of ART's MI-FGSM."""

    decay: Number | None = Field(None, ge=0, le=10, description="momentum decay (ART's default 1)")
