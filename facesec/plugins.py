"""What facesec loads by name, in one registry shape (facesec.registry): recognizers, attacks and attack
families, built in or installed through their entry-point groups. Names and metadata are known without
importing torch; each entry's module is imported when it is first used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from facesec import attack_params as P
from facesec import defence_params as D
from facesec.registry import Entry, Registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from facesec.families.base import Family

_REC = "facesec.recognizers."
RECOGNIZERS: Registry[Callable[..., Any]] = Registry("recognizer", "facesec.recognizers", {
    "dlib-resnet": Entry(_REC + "builtin:dlib_resnet"),
    "dlib-cpp": Entry(_REC + "builtin:dlib_cpp", {"query_only": True}),
    **{f"iresnet{d}": Entry(_REC + f"builtin:iresnet{d}") for d in (18, 34, 50, 100)},
    "surrogate": Entry(_REC + "builtin:surrogate"),
    "torchscript": Entry(_REC + "builtin:torchscript", {"runs_file_code": (
        "a TorchScript file is a program: its forward can read and write files (torch.save and torch.load run "
        "inside it)")}),
    "onnx": Entry(_REC + "builtin:onnx_model"),
    "onnxruntime": Entry(_REC + "builtin:onnx_runtime", {"query_only": True}),
    "tfjs": Entry(_REC + "tfjs:tfjs"),
    "hse-faceres": Entry(_REC + "tfjs:hse_faceres"),
})
"""Factories of recognizers (keyword arguments: the spec's fields). Metadata: `query_only` (a black box: no
gradients), `runs_file_code` (why its files are programs: refused unless code is trusted)."""


def _attack(target: str, params: type[P.Strict], universal: bool = False, requires: str | None = None) -> Entry:
    return Entry("facesec.attacks." + target, {"params": params, "universal": universal, "requires": requires})


ATTACKS: Registry[Callable[..., Any]] = Registry("attack", "facesec.attacks", {
    "native/pgd": _attack("pixel:pgd", P.GradientParams, True),
    "native/fgsm": _attack("pixel:fgsm", P.GradientParams, True),
    "native/mi-fgsm": _attack("pixel:mi_fgsm", P.GradientParams, True),
    "native/di-fgsm": _attack("pixel:di_fgsm", P.GradientParams, True),
    "native/ti-fgsm": _attack("pixel:ti_fgsm", P.GradientParams, True),
    "native/cw": _attack("pixel:cw", P.CwParams, True),
    "native/square": _attack("query:square", P.SquareParams),
    "torchattacks/pgd": _attack("adapters.torchattacks_adapter:pgd", P.NoParams, requires="torchattacks"),
    "torchattacks/fgsm": _attack("adapters.torchattacks_adapter:fgsm", P.NoParams, requires="torchattacks"),
    "torchattacks/mi-fgsm": _attack("adapters.torchattacks_adapter:mi_fgsm", P.MomentumParams,
                                    requires="torchattacks"),
    "art/pgd": _attack("adapters.art_adapter:pgd", P.ArtParams, requires="art"),
    "art/fgsm": _attack("adapters.art_adapter:fgsm", P.ArtParams, requires="art"),
    "art/mi-fgsm": _attack("adapters.art_adapter:mi_fgsm", P.ArtMomentumParams, requires="art"),
    "art/hopskipjump": _attack("adapters.art_query:hopskipjump", P.HopSkipJumpParams, requires="art"),
})
"""Attack factories by `library/method` (keyword arguments: steps, step_size, random_start and the typed
`attack.params`). Metadata: `params` (the model of `attack.params`), `universal` (has a universal mode),
`requires` (the package it needs: an optional extra)."""

FAMILIES: Registry[type[Family]] = Registry("attack family", "facesec.families", {
    "pixel": Entry("facesec.families.evasion:Pixel"),
    "accessory": Entry("facesec.families.evasion:Accessory"),
    "morph": Entry("facesec.families.morph:Morph"),
    "template-inversion": Entry("facesec.families.inversion:TemplateInversion"),
    "classifier-inversion": Entry("facesec.families.inversion:ClassifierInversion"),
    "backdoor": Entry("facesec.families.backdoor:Backdoor"),
})
"""Attack family classes by `perturbation.kind`."""


def _defence(target: str, params: type[P.Strict], randomised: bool = False) -> Entry:
    return Entry("facesec.defences.transforms:" + target, {"params": params, "stage": "input",
                                                           "randomised": randomised})


DEFENCES: Registry[Callable[..., Any]] = Registry("defence", "facesec.defences", {
    "jpeg": _defence("Jpeg", D.Jpeg),
    "bit-depth": _defence("BitDepth", D.BitDepth),
    "median": _defence("Median", D.Median),
    "resize-pad": _defence("ResizePad", D.ResizePad, randomised=True),
    "gaussian-noise": _defence("GaussianNoise", D.GaussianNoise, randomised=True),
    "adversarial-training": Entry("facesec.defences.adversarial:AdversarialTraining",
                                  {"params": D.AdversarialTraining, "stage": "weights"}),
    "s-mad": Entry("facesec.defences.mad:SingleImage", {"params": D.MorphDetection, "stage": "detector"}),
    "d-mad": Entry("facesec.defences.mad:Differential", {"params": D.MorphDetection, "stage": "detector"}),
    **{name: Entry("facesec.defences.base:PoisoningDefence", {"params": D.NoParams, "stage": "poisoning"})
       for name in ("activation-clustering", "spectral-signatures", "class-sizes", "neural-cleanse", "strip",
                    "fine-tuning", "fine-pruning")},
})
"""Defence factories by name (keyword arguments: `generator` and the typed parameters), each building a
`facesec.defences.base.InputDefence` (stage input: a transform in front of the recognizer) or `WeightsDefence`
(stage weights: a changed recognizer) or `facesec.defences.mad.MorphDetector` (stage detector: a morphing-attack
detector) or `PoisoningDefence` (stage poisoning: carried out by the family that trains a poisoned victim, the
backdoor family's defences). Metadata: `params` (the model of its parameters; an installed one declares
none and takes what its factory accepts), `stage` (input unless it says weights, detector or poisoning),
`randomised` (an input defence that draws anew for every image: attacked with EOT)."""


def attack_params(library: str, method: str) -> type[P.Strict]:
    """The model of `attack.params` for `library/method` (an installed attack declares none: NoParams)."""
    params = ATTACKS.meta(f"{library}/{method}").get("params", P.NoParams)
    return params
