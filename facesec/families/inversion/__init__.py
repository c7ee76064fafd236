"""Model inversion. Template inversion: a leaked face template (an embedding) turned back into a face that the
system, and other systems, accept as the enrolled person. Classifier inversion: a face rebuilt for a private
class of an identification model (GMI, LOMMA), judged by an evaluation model (MIBench)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from facesec.families.base import Draw, Family, MetricInfo, Supports
from facesec.families.inversion.spec import ClassifierInversionPerturbation, TemplateInversionPerturbation
from facesec.measures.rates import CLUSTER
from facesec.recognizers import packaged
from facesec.recognizers.preflight import check_recognizer

if TYPE_CHECKING:
    from facesec.threat_model import ThreatModel

_M = MetricInfo
METRICS: dict[str, MetricInfo] = {
    "type1_success_rate": _M("share of reconstructions the target accepts against the leaked template itself",
                             "type-I success (against the leaked template)", "lower"),
    "type1_success_rate_ci95": _M(label="95% Wilson interval of type-I success", gate=False),
    "type2_success_rate": _M("share of (reconstruction, other photo of the person) pairs the target accepts: "
                             "what an impostor presenting the face needs", "type-II success (against other photos)",
                             "lower"),
    "type2_success_rate_ci95": _M(label="95% Wilson interval of type-II success", gate=False),
    "type2_success_rate_ci95_cluster": _M(f"95% interval of type-II success {CLUSTER.format(who='the identities')}",
                                          gate=False),
    "type2_identities_any": _M(label="identities whose reconstruction matches at least one other photo",
                               better="lower"),
    **{f"{key}_ci95_cluster": _M(f"95% interval of {words} {CLUSTER.format(who='the identities')}", gate=False)
       for key, words in (("type1_success_rate", "type-I success (one decision per identity: Wilson's)"),
                          ("type2_identities_any", "identities matching another photo"),
                          ("cross_model_success_rate", "cross-model success"),
                          ("cross_model_identities_any", "identities the other recognizer accepts"),
                          ("cross_model_type1_success_rate", "cross-model type-I success"),
                          ("cross_model_type2_identities_any", "identities the other recognizer accepts against "
                                                               "another photo"))},
    "cross_model_success_rate": _M("share of (reconstruction, real photo) pairs the first of "
                                   "perturbation.recognizers accepts at its own threshold, the leaked photo "
                                   "included (type I and II pooled; the split is beside it)",
                                   "cross-model success (another recognizer)", "lower"),
    "cross_model_identities_any": _M(label="identities whose reconstruction the first other recognizer accepts "
                                           "against at least one of their real photos", better="lower"),
    "cross_model_type1_success_rate": _M(label="cross-model type I: the other recognizer accepts the "
                                               "reconstruction against the photo the template leaked from",
                                         better="lower"),
    "cross_model_type2_success_rate": _M("share of (reconstruction, other photo of the person) pairs the first of "
                                         "perturbation.recognizers accepts: the cross-model impersonation threat, "
                                         "without the leaked photo", "cross-model type II success", "lower"),
    "cross_model_type2_success_rate_ci95_cluster": _M("95% interval of cross-model type-II success "
                                                      + CLUSTER.format(who="the identities"), gate=False),
    "cross_model_type2_identities_any": _M(label="identities the other recognizer accepts against at least one "
                                                 "photo other than the leaked one", better="lower"),
    "restart_choice": _M("how the reconstruction kept of several restarts was chosen: target-template, the one "
                         "the target matches best to the leaked template (the type-I comparison itself: type I is "
                         "then near 1 by construction); none with one restart", "restart chosen by", gate=False),
    "baselines": _M(label="type-I / type-II of the baselines", gate=False),
    "random_prior_sample_type2_rate": _M(label="baseline: a random face from the prior, type II"),
    "mean_public_face_type2_rate": _M(label="baseline: the mean public face, type II"),
    "nearest_public_face_type2_rate": _M(label="baseline: the public face nearest the template, type II"),
    "decoded_face_type2_rate": _M(label="decoder-optimise: the decoder's face before the search, type II"),
    "training_queries": _M(label="target queries spent training the attacker's decoder and students"),
    "students_centred_cosine": _M(label="distilled students: centred cosine to the target on held-out faces",
                                  gate=False),
    "decoder_time_s": _M(label="decoder training time (s)"),
    "decoder_final_similarity": _M(label="decoder: similarity of decoded faces to their embeddings at the end "
                                         "of training"),
    "by_recognizer": _M(label="cross-model success per recognizer and attempt", gate=False),
    "detail": _M(label="rates with 95% intervals", gate=False),
    "reconstructions_detected": _M(label="reconstructions in which the detector found one face"),
    "queries_per_sample": _M(label="target forward/backward passes per template at inversion time"),
    "threshold": _M(label="target's threshold at setting.fmr"),
    "n_impostor_scores": _M(label="impostor scores the threshold was calibrated on"),
    "n_impostor_identity_pairs": _M("pairs of distinct people behind the impostor scores: with fewer than 1 / FMR the "
                                    "threshold is flagged (image pairs of the same few people are not independent)"),
    "fmr_supported": _M(label="enough impostor scores for setting.fmr (>= 10 / FMR)", gate=False),
    "n_identities": _M(label="enrolled identities whose templates leaked"),
    "n_public_identities": _M(label="public identities the attacker holds photos of"),
    "attack_time_s": _M(label="inversion time (s)"),
    "wall_time_s": _M(label="run time (s)"),
    "n_skipped_images": _M(label="skipped images"),
    "validity.n_flags": _M(label="validity: warnings"),
}


def _check_optimiser(tm: ThreatModel) -> None:
    """Inversion is optimised by facesec itself: only the step count and the learning rate may be set."""
    if tm.attack.library != "native" or tm.attack.method != "pgd" or tm.attack.params:
        raise ValueError("attack: inversion is optimised by facesec itself (Adam); set only attack.steps and "
                         "attack.step_size (the learning rate)")
    if tm.attack.steps < 1:
        raise ValueError("attack.steps: inversion needs at least one step")


class TemplateInversion(Family):
    """Each enrolled identity's leaked template inverted through the target into a face, judged as a photo."""

    name: ClassVar[str] = "template-inversion"
    order: ClassVar[int] = 3
    expandable: ClassVar[tuple[str, ...]] = ("method", "prior", "jitter", "restarts")
    Spec = TemplateInversionPerturbation
    supports: ClassVar[Supports] = Supports(goals=("impersonation",), capabilities=("individual",),
                                            knowledge=("white-box",), settings=("open-set",))
    metrics: ClassVar[dict[str, MetricInfo]] = METRICS
    headline: ClassVar[str] = "type2_success_rate"
    runner: ClassVar[str | None] = "facesec.families.inversion.run:run_threat_model"
    report_partial: ClassVar[str | None] = "inversion.html.j2"
    template_dir: ClassVar[Path | None] = Path(__file__).parent
    viewer: ClassVar[str | None] = "facesec.families.inversion.report:view"

    def draws(self, tm: ThreatModel) -> tuple[Draw, ...]:
        p = tm.perturbation
        assert isinstance(p, TemplateInversionPerturbation)
        return (Draw(p.public_identities, tm.data.images_per_identity, "perturbation.public_identities"),)

    def check(self, tm: ThreatModel) -> None:
        _check_optimiser(tm)
        if tm.data.images_per_identity < 2:
            raise ValueError("data.images_per_identity: template inversion needs at least 2 (the enrolment whose "
                             "template leaks, and another photo for type II)")
        if tm.photo_round_trip:
            raise ValueError("photo_round_trip: reconstructions are judged as photos already (detected and "
                             "aligned); remove it")
        p = tm.perturbation
        assert isinstance(p, TemplateInversionPerturbation)
        if p.prior == "pixel" and (p.method != "optimise" or p.distil or p.augment):
            raise ValueError("perturbation.prior: the decoder methods, distil and augment work in the generator's "
                             "latent space; use prior: gan (or method: optimise without them)")
        for field in ("erosion", "refine_steps"):
            if getattr(p, field) and (p.prior == "pixel" or p.method == "decoder"):
                raise ValueError(f"perturbation.{field}: it changes the generator search (prior: gan, method: "
                                 "optimise or decoder-optimise); set it to 0")
        target = tm.target if isinstance(tm.target, str) else tm.target.get("name")
        if p.erosion and target not in ("dlib-resnet", "surrogate"):
            raise ValueError(f"perturbation.erosion: ghosts are made of dlib-resnet's residual blocks; the target "
                             f"is {target}: set it to 0")

    def preflight(self, tm: ThreatModel) -> None:

        p = tm.perturbation
        assert isinstance(p, TemplateInversionPerturbation)
        for field in ("recognizers", "augment"):
            for i, spec in enumerate(getattr(p, field)):
                check_recognizer(f"field 'perturbation.{field}.{i}'", spec)
        if p.prior == "gan":

            packaged.check_fetched("gan-face-generate", "perturbation.prior")




CLASSIFIER_METRICS: dict[str, MetricInfo] = {
    "attack_accuracy_top1": _M("share of classes whose reconstruction the evaluation model ranks first (MIBench)",
                               "attack accuracy, top-1 (evaluation model)", "lower"),
    "attack_accuracy_top1_ci95": _M(label="95% Wilson interval of top-1 attack accuracy", gate=False),
    "attack_accuracy_top5": _M(label="attack accuracy, top-5 (evaluation model)", better="lower"),
    "attack_accuracy_top5_ci95": _M(label="95% Wilson interval of top-5 attack accuracy", gate=False),
    "knn_distance": _M("cosine distance from each reconstruction to the nearest private photo of its class in "
                       "the evaluation model's features, averaged", "KNN distance to the private photos",
                       "higher"),
    "chance_top1": _M(label="chance level, top-1"),
    "chance_top5": _M(label="chance level, top-5"),
    "target_accuracy_top1": _M(label="the attacked model's own top-1 on the reconstructions"),
    "random_prior_sample_top1": _M(label="baseline: a random face from the prior, top-1"),
    "random_prior_sample_top5": _M(label="baseline: a random face from the prior, top-5"),
    "evaluator_accuracy": _M(label="evaluation model's accuracy on held-out private photos"),
    "reconstructions_detected": _M(label="reconstructions in which the detector found one face"),
    "queries_per_sample": _M(label="target forward/backward passes per class"),
    "training_queries": _M(label="target queries spent distilling the students"),
    "students_centred_cosine": _M(label="distilled students: centred cosine to the target on held-out faces",
                                  gate=False),
    "n_identities": _M(label="private identities (classes)"),
    "n_public_identities": _M(label="public identities the attacker holds photos of"),
    "attack_time_s": _M(label="inversion time (s)"),
    "wall_time_s": _M(label="run time (s)"),
    "n_skipped_images": _M(label="skipped images"),
    "validity.n_flags": _M(label="validity: warnings"),
}


class ClassifierInversion(Family):
    """Each private class of an identification model (recognizer + head) inverted into a face through the
    generator prior; judged by an evaluation model trained on the same classes (GMI, LOMMA, MIBench)."""

    name: ClassVar[str] = "classifier-inversion"
    order: ClassVar[int] = 4
    expandable: ClassVar[tuple[str, ...]] = ("jitter", "restarts", "loss", "model_augmentation")
    Spec = ClassifierInversionPerturbation
    supports: ClassVar[Supports] = Supports(goals=("impersonation",), capabilities=("individual",),
                                            knowledge=("white-box",), settings=("closed-set",))
    metrics: ClassVar[dict[str, MetricInfo]] = CLASSIFIER_METRICS
    headline: ClassVar[str] = "attack_accuracy_top1"
    runner: ClassVar[str | None] = "facesec.families.inversion.classifier:run_threat_model"
    report_partial: ClassVar[str | None] = "classifier.html.j2"
    template_dir: ClassVar[Path | None] = Path(__file__).parent
    viewer: ClassVar[str | None] = "facesec.families.inversion.report:classifier_view"

    def draws(self, tm: ThreatModel) -> tuple[Draw, ...]:
        p = tm.perturbation
        assert isinstance(p, ClassifierInversionPerturbation)
        return (Draw(p.public_identities, tm.data.images_per_identity, "perturbation.public_identities"),)

    def check(self, tm: ThreatModel) -> None:
        p = tm.perturbation
        assert isinstance(p, ClassifierInversionPerturbation)
        if p.model_augmentation and not p.students and not p.distil:
            raise ValueError("perturbation.distil: model_augmentation needs students (distil >= 1, or "
                             "perturbation.students)")
        _check_optimiser(tm)

    def preflight(self, tm: ThreatModel) -> None:

        p = tm.perturbation
        assert isinstance(p, ClassifierInversionPerturbation)
        check_recognizer("field 'perturbation.evaluator'", p.evaluator)
        for i, spec in enumerate(p.students):
            check_recognizer(f"field 'perturbation.students.{i}'", spec)
        packaged.check_fetched("gan-face-generate", "perturbation.kind")


