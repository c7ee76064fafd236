"""The template-inversion family's spec section: the prior searched, the attacker's means, and the judges."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from facesec.fields import Number, PerturbationSpec, Unit, Whole


class _Distillation(PerturbationSpec):
    """How the students of model augmentation (perturbation.distil) are trained."""

    distil_generated: Whole = Field(4000, ge=0, le=10_000, description="faces drawn from the prior, added to the "
                                                                         "public faces for distillation (one query "
                                                                         "each; held in memory, 0.27 MB each)")
    distil_epochs: Whole = Field(20, ge=1, le=1000, description="epochs over the distillation faces per student")


class TemplateInversionPerturbation(_Distillation):
    """A leaked template of each enrolled identity, turned back into a face the system accepts as that person."""

    kind: Literal["template-inversion"] = "template-inversion"
    method: Literal["optimise", "decoder", "decoder-optimise"] = Field(
        "optimise", description="optimise: search the prior for a face whose embedding matches the template; "
                                "decoder: train a decoder from embeddings to the prior's latents on the attacker's "
                                "own faces, then invert each template in one pass (no query); decoder-optimise: "
                                "the search started from the decoded face; a list expands into runs")
    decoder_samples: Whole = Field(4000, ge=16, le=200_000, description="decoder: generated faces whose latents it "
                                                                        "learns to regress (one query each)")
    decoder_steps: Whole = Field(300, ge=0, le=100_000, description="decoder: training steps through the target "
                                                                    "(identity loss), 16 queries each")
    distil: Whole = Field(0, ge=0, le=8, description="students distilled in the run from the target on the public "
                                                     "and generated faces, added to the search's objective (LOMMA's "
                                                     "model augmentation); their training queries are counted")
    prior: Literal["gan", "pixel"] = Field(
        "gan", description="gan: the latent space of gan-face-generate's DCGAN (needs `facesec models fetch "
                           "gan-face-generate`); pixel: the pixels of the target's crop, from the mean public face, "
                           "with total-variation smoothing (what the prior adds)")
    restarts: Whole = Field(4, ge=1, le=64, description="random starts per template; the one the target matches best "
                                                      "is kept; a list expands into runs")
    jitter: Unit = Field(0.0, le=0.5, description="each step sees the face shifted and scaled at random by up to "
                                                  "this share of the crop, so the match survives other alignments")
    erosion: Unit = Field(0.0, le=0.5, description="model augmentation without training (Ghost Networks): each "
                                                    "search step sees the target (dlib-resnet) with every residual "
                                                    "shortcut scaled by a random factor in [1 - erosion, "
                                                    "1 + erosion], a different ghost per face and step")
    refine_steps: Whole = Field(0, ge=0, le=100_000, description="gan prior: Adam steps after the latent search on "
                                                                "the generator's first feature maps (intermediate-"
                                                                "layer optimisation), so the face may leave the "
                                                                "latent's span; one target pass each")
    refine_radius: Number = Field(0.3, gt=0, le=10, description="refine_steps: how far the feature maps may move, as "
                                                                "a share of their own norm")
    tv_weight: Number = Field(0.05, ge=0, le=100, description="pixel prior: weight of the total-variation penalty")
    public_identities: Whole = Field(
        40, ge=1, le=100_000, description="other people whose photos the attacker holds (never an enrolled "
                                          "identity): the mean public face and the nearest-public-face baseline")
    augment: list[str | dict[str, Any]] = Field(
        [], description="recognizers imitating the target's embeddings (students from `facesec surrogate train`) "
                        "added to the attacker's objective: model augmentation (LOMMA)")
    recognizers: list[str | dict[str, Any]] = Field(
        [], description="other recognizers that judge the reconstructions against the identity's real photos "
                        "(cross-model success); never used by the attacker")


class ClassifierInversionPerturbation(_Distillation):
    """A face rebuilt for a class of an identification model trained on private identities (GMI / LOMMA)."""

    kind: Literal["classifier-inversion"] = "classifier-inversion"
    loss: Literal["ce", "logit"] = Field(
        "ce", description="ce: cross-entropy of the target class (GMI); logit: the target class's logit with "
                          "features held near the public faces' (LOMMA); a list expands into runs")
    model_augmentation: bool = Field(
        False, description="also attack students of the target classifier, distilled on public faces (LOMMA): "
                           "perturbation.distil of them trained in the run, plus perturbation.students; a list "
                           "expands into runs")
    students: list[str | dict[str, Any]] = Field(
        [], description="recognizers whose features the students' heads are distilled on (e.g. students from "
                        "`facesec surrogate train`)")
    distil: Whole = Field(2, ge=0, le=8, description="model augmentation: students distilled in the run from the "
                                                     "target on the public and generated faces (their heads then "
                                                     "distilled like the others')")
    restarts: Whole = Field(4, ge=1, le=64, description="random starts per class; the best is kept")
    jitter: Unit = Field(0.05, le=0.5, description="random shift and scale of each crop per step (share)")
    feature_weight: Number = Field(0.1, ge=0, le=100, description="logit loss: pull of the features towards the "
                                                                  "public faces' mean")
    public_identities: Whole = Field(40, ge=1, le=100_000, description="other people the attacker holds photos of")
    evaluator: str | dict[str, Any] = Field(
        "hse-faceres", description="the recognizer whose own classifier, trained on the same private identities, "
                                   "judges the reconstructions (the MIBench protocol); never used by the attacker")
