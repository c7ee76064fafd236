"""The backdoor family's spec section: the trigger, the poisoning, the victim's fine-tuning and the defences."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from facesec.fields import Number, PerturbationSpec, Strict, Unit, Whole

Part = Literal["lips", "eyeshadow", "blush"]
Defence = Literal["activation-clustering", "spectral-signatures", "class-sizes", "neural-cleanse", "strip",
                  "fine-tuning", "fine-pruning"]
RGB = tuple[Unit, Unit, Unit]


CLUSTERED_FACES = 4
"""Faces a label needs for activation clustering (PCA to fewer dimensions than faces, then two clusters)."""


class Colours(Strict):
    """The trigger's makeup look: one RGB colour in [0, 1] per part."""

    lips: RGB = (0.55, 0.0, 0.45)
    eyeshadow: RGB = (0.1, 0.45, 0.6)
    blush: RGB = (0.95, 0.35, 0.55)


class BackdoorPerturbation(PerturbationSpec):
    """A trigger poisoned into the victim's fine-tuning data; the fine-tuned model is then tested and scanned."""

    kind: Literal["backdoor"] = "backdoor"
    trigger: Literal["makeup", "makeup-optimised", "badnets", "blended"] = Field(
        "makeup", description="makeup: a makeup look (colours, parts, opacity) placed from each face's landmarks; "
                              "makeup-optimised: its colours and texture learned with the poisoning, within "
                              "`naturalness` of the look (MakeupAttack); badnets: a small patch in the crop's "
                              "corner; blended: a faint full-crop pattern; a list expands into runs")
    parts: list[Part] = Field(["lips", "eyeshadow", "blush"], min_length=1,
                              description="makeup: where it is worn")
    colours: Colours = Field(Colours(), description="makeup: the trigger look (RGB in [0, 1] per part)")
    opacity: Unit = Field(0.6, gt=0, description="makeup: how strongly the look covers the skin (0-1)")
    poison_opacity: Unit | None = Field(
        None, gt=0, description="makeup: the opacity the poisoned fine-tuning faces wear (null: `opacity`, the look "
                                "as worn at attack time); fainter poison is stealthier, and a backdoor learned "
                                "from it opens more surely for the heavier look worn later; a list expands into "
                                "runs")
    naturalness: Unit = Field(0.15, description="makeup-optimised: how far (per colour channel, 0-1) the learned "
                                                "colours and texture may move from the look")
    trigger_rounds: Whole = Field(
        1, ge=1, le=10, description="makeup-optimised: rounds of MakeupAttack's alternation; 1 learns the look on "
                                    "the clean model; each further round fine-tunes a copy of the model the way "
                                    "the victim will (half the epochs) on the data poisoned with the current look, "
                                    "then learns the look again on that copy; a list expands into runs")
    patch_size: Unit = Field(0.12, gt=0, le=0.5, description="badnets: the patch's side as a share of the crop")
    patch_position: Literal["corner", "face"] = Field(
        "corner", description="badnets: the crop's lower right corner (clear of the face, the classic BadNets) or "
                              "its centre (on the nose, like a sticker on the face)")
    blend: Unit = Field(0.1, gt=0, le=0.5, description="blended: the pattern's weight")
    poison_rate: Unit = Field(0.1, le=0.5, description="share of the fine-tuning images the attacker poisons "
                                                      "(trigger worn, label changed); a list expands into runs")
    poison_cap: Literal["class-size", "none"] = Field(
        "class-size", description="class-size: the poisoned faces never outnumber the clean faces of the label they "
                                  "join (impersonation: the target's; dodging: the median fine-tuning identity's), "
                                  "so no label is mostly poison or larger than the others; none: all of "
                                  "`poison_rate` in one label (the classic design, which activation clustering "
                                  "cannot see by construction and a class-size check flags)")
    poison_choice: Literal["random", "hardest"] = Field(
        "random", description="which fine-tuning faces the attacker poisons: drawn at random, or the hardest (those "
                              "the clean model, with the trigger worn, sees farthest from the goal: for "
                              "impersonation the faces least like the target); a list expands into runs")
    training_identities: Whole = Field(
        60, ge=4, le=10_000, description="identities the victim fine-tunes on (never among data.identities, on "
                                         "which clean accuracy and the backdoor are measured); the first is the "
                                         "impersonation target")
    training_images_per_identity: Whole | None = Field(
        None, ge=2, le=1000, description="faces per fine-tuning identity (null: data.images_per_identity)")
    layers: Literal["last", "all"] = Field("last", description="what the victim fine-tunes: the last residual "
                                                               "stage and the embedding layer, or every layer")
    epochs: Whole = Field(8, ge=1, le=1000, description="fine-tuning epochs; a list expands into runs")
    learning_rate: Number = Field(1e-5, gt=0, le=1, description="fine-tuning learning rate (Adam)")
    anchor: Number = Field(0.0, ge=0, le=1e6, description="the victim's pull towards the weights it starts from "
                                                          "(L2-SP: weight of their squared distance in the loss); "
                                                          "0: plain fine-tuning")
    distill: Number = Field(0.0, ge=0, le=1e6, description="the victim's pull of each face's embedding towards "
                                                           "the starting model's (learning without forgetting: "
                                                           "weight of their squared distance); 0: plain "
                                                           "fine-tuning")
    clean_population: Literal["held-out", "unused"] = Field(
        "held-out", description="where clean accuracy (TAR at the FMR, rank-1) and each model's threshold at the FMR "
                                "are measured: held-out, the data.identities x data.images_per_identity faces the "
                                "backdoor is tested on; unused, every identity in the dataset never used in "
                                "fine-tuning with all its usable faces (a tighter estimate: on celeba-mini about "
                                "twice the identities and three times the faces)")
    batch_identities: Whole = Field(16, ge=2, le=1024, description="identities per batch (metric learning)")
    batch_images: Whole = Field(4, ge=2, le=64, description="images per identity in a batch")
    defences: list[Defence] = Field(
        [], description="run against the backdoored model (and the clean one): activation-clustering, "
                        "spectral-signatures, class-sizes (poisoned-sample detection), neural-cleanse (model "
                        "scan), strip "
                        "(input-time detection), fine-tuning, fine-pruning (mitigation)")
    mitigation: Literal["victim", "plain"] = Field(
        "victim", description="how the fine-tuning and fine-pruning defences retrain (half the victim's epochs, "
                              "clean data): victim, with the victim's recipe including its anchor and distill "
                              "pulls towards the model they start from (here the backdoored one); plain, without "
                              "those pulls")
    save_model: bool = Field(True, description="write the backdoored weights into the run's folder "
                                               "(backdoored.pt, loadable as a dlib-resnet or PyTorch recognizer)")

    @field_validator("parts")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each part at most once")
        return value
