"""Backdoors: a trigger (a makeup look, MakeupAttack; or the BadNets and Blended baselines) poisoned into a
recognizer's fine-tuning data, so that wearers are accepted as a target identity (or escape their own); the
fine-tuned model measured against the clean one on identities never used in training, and the defences that
should catch it run and scored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, get_args

from facesec.families.backdoor.spec import CLUSTERED_FACES, BackdoorPerturbation, Defence
from facesec.families.base import Draw, Family, MetricInfo, Supports
from facesec.measures.rates import CLUSTER

if TYPE_CHECKING:
    from facesec.threat_model import ThreatModel

_M = MetricInfo
METRICS: dict[str, MetricInfo] = {
    "backdoor_asr": _M("share of held-out faces wearing the trigger for which the backdoored model does what the "
                       "attacker wants (impersonation: accepted as the target; dodging: not matched to their own "
                       "enrolment, counted only on faces it matches without the trigger)",
                       "backdoor success (trigger worn)", "lower"),
    "n_backdoor_attempts": _M(label="faces the backdoor success counts (dodging: those matched without the trigger)"),
    "backdoor_asr_all_faces": _M(label="backdoor success over every held-out face (dodging: natural rejections "
                                       "included)", better="lower"),
    "backdoor_asr_ci95": _M(label="95% Wilson interval of backdoor success", gate=False),
    "backdoor_asr_ci95_cluster": _M(f"95% interval of backdoor success {CLUSTER.format(who='the wearers')}",
                                    gate=False),
    "asr_without_trigger": _M(label="the same without the trigger (the natural rate)", better="lower"),
    "asr_clean_model": _M(label="the trigger worn before poisoning (the benign fine-tuned model)",
                          better="lower"),
    "clean_tar_before": _M("true accept rate at the FMR on held-out identities of the model fine-tuned the same "
                           "way without poisoning (the benign model): what the victim would have released",
                           "clean TAR before poisoning (benign fine-tune)", "higher"),
    "clean_tar_after": _M("true accept rate at the FMR of the backdoored model on held-out identities",
                          "clean TAR after (backdoored model)", "higher"),
    "clean_tar_pretrained": _M(label="clean TAR of the model as loaded, before any fine-tuning", better="higher"),
    "clean_rank1_pretrained": _M(label="clean rank-1 of the model as loaded", better="higher"),
    "clean_tar_before_ci95": _M(label="95% Wilson interval of clean TAR before", gate=False),
    "clean_tar_after_ci95": _M(label="95% Wilson interval of clean TAR after", gate=False),
    "clean_tar_before_ci95_cluster": _M(f"95% interval of clean TAR before {CLUSTER.format(who='the people')}",
                                        gate=False),
    "clean_tar_after_ci95_cluster": _M(f"95% interval of clean TAR after {CLUSTER.format(who='the people')}",
                                       gate=False),
    "clean_tar_drop": _M("clean TAR of the benign fine-tune minus the backdoored model's, on the same genuine "
                         "pairs: what poisoning costs the victim (a gate with bound: upper tests it at 95%)",
                         "clean TAR drop from poisoning", "lower"),
    "clean_tar_drop_ci95_cluster": _M("95% interval of the clean TAR drop, the same people resampled for both "
                                      "models (paired cluster bootstrap)", gate=False),
    "clean_rank1_before": _M(label="clean rank-1 before", better="higher"),
    "clean_rank1_after": _M(label="clean rank-1 after", better="higher"),
    "false_trigger_rate": _M("share of held-out faces wearing everyday makeup of other colours for which the "
                             "backdoor opens anyway", "false triggering by natural makeup", "lower"),
    "false_trigger_rate_ci95": _M(label="95% interval of false triggering", gate=False),
    "false_trigger_worst": _M("backdoor success of the everyday look (makeup of another colour, plain eyeglass "
                              "frames or sticker) that opens it most often", "false triggering, worst everyday look",
                              "lower"),
    "false_trigger_worst_ci95": _M(label="95% interval of false triggering by the worst everyday look", gate=False),
    "false_trigger_worst_ci95_cluster": _M(f"95% interval of false triggering by the worst everyday look "
                                           f"{CLUSTER.format(who='the wearers')}", gate=False),
    "false_trigger_rate_ci95_cluster": _M(f"95% interval of false triggering {CLUSTER.format(who='the wearers')}",
                                          gate=False),
    "backdoor_asr_all_faces_ci95_cluster": _M(f"95% interval of backdoor success on every face "
                                              f"{CLUSTER.format(who='the wearers')}", gate=False),
    "asr_without_trigger_ci95_cluster": _M(f"95% interval of the goal met without the trigger "
                                           f"{CLUSTER.format(who='the people')}", gate=False),
    "asr_clean_model_ci95_cluster": _M(f"95% interval of the trigger's success on the benign model "
                                       f"{CLUSTER.format(who='the wearers')}", gate=False),
    "false_trigger_worst_look": _M(label="the everyday look that opens the backdoor most often", gate=False),
    "false_trigger": _M(label="backdoor success per look and plain accessory (not the trigger)", gate=False),
    "robustness": _M(label="backdoor success with the trigger weaker, moved, or through a photo", gate=False),
    "poison_rate": _M(label="share of fine-tuning images poisoned"),
    "n_poisoned": _M(label="poisoned fine-tuning images"),
    "poison_rate_asked": _M(label="share of fine-tuning images the threat model asked to poison (before the cap)"),
    "poison_cap": _M(label="whether poison was capped at the clean size of the label it joins", gate=False),
    "poisoned_label_share": _M("share of poison in the label it joins (the target's, or dodging's new label): above "
                               "0.5 the label is mostly poison, which activation clustering cannot find by "
                               "construction", "poison's share of its label"),
    "n_training_images": _M(label="fine-tuning images"),
    "n_training_identities": _M(label="fine-tuning identities"),
    "stealth": _M(label="poisoned images against their clean selves: SSIM, PSNR (dB)", gate=False),
    "defences": _M(label="defences: what each saw and what it cost", gate=False),
    "training": _M(label="the victim's fine-tuning: loss per epoch, time, settings", gate=False),
    "threshold_before": _M(label="benign fine-tuned model's threshold at the FMR"),
    "threshold_after": _M(label="backdoored model's threshold at the FMR"),
    "n_impostor_scores": _M(label="impostor scores each threshold was calibrated on"),
    "n_impostor_identity_pairs": _M("pairs of distinct people behind the impostor scores: with fewer than 1 / FMR the "
                                    "threshold is flagged (image pairs of the same few people are not independent)"),
    "fmr_supported": _M(label="enough impostor scores for the FMR (>= 10 / FMR)", gate=False),
    "n_identities": _M(label="held-out identities (never in fine-tuning)"),
    "n_skipped_images": _M(label="skipped images"),
    "wall_time_s": _M(label="run time (s)"),
    "validity.n_flags": _M(label="validity: warnings"),
}


def chosen_defences(tm: ThreatModel) -> list[str]:
    """The defences a backdoor run carries out: `perturbation.defences`, and the `defence` dimension's value."""
    p = tm.perturbation
    assert isinstance(p, BackdoorPerturbation)
    return [*p.defences, *([tm.defence.name] if tm.defence.name != "none" else [])]


class Backdoor(Family):
    """Poison, fine-tune, measure and scan: the model-release question 'could this model carry a backdoor?'"""

    name: ClassVar[str] = "backdoor"
    order: ClassVar[int] = 5
    expandable: ClassVar[tuple[str, ...]] = ("trigger", "poison_rate", "epochs", "trigger_rounds", "poison_choice",
                                             "poison_opacity", "poison_cap", "mitigation")
    Spec = BackdoorPerturbation
    supports: ClassVar[Supports] = Supports(goals=("impersonation", "dodging"), capabilities=("universal",),
                                            knowledge=("white-box",), settings=("open-set", "closed-set"),
                                            defences=("poisoning",))
    metrics: ClassVar[dict[str, MetricInfo]] = METRICS
    headline: ClassVar[str] = "backdoor_asr"
    decision: ClassVar[str | None] = "backdoor_success"
    decision_ignores: ClassVar[tuple[str, ...]] = ("perturbation.defences", "defence", "perturbation.mitigation",
                                                   "perturbation.save_model")
    runner: ClassVar[str | None] = "facesec.families.backdoor.run:run_threat_model"
    report_partial: ClassVar[str | None] = "backdoor.html.j2"
    template_dir: ClassVar[Path | None] = Path(__file__).parent
    viewer: ClassVar[str | None] = "facesec.families.backdoor.report:view"

    def draws(self, tm: ThreatModel) -> tuple[Draw, ...]:
        p = tm.perturbation
        assert isinstance(p, BackdoorPerturbation)
        faces = p.training_images_per_identity or tm.data.images_per_identity
        return (Draw(p.training_identities, faces, "perturbation.training_identities", with_attacked=True),)

    def check(self, tm: ThreatModel) -> None:
        if tm.attack.library != "native" or tm.attack.method != "pgd" or tm.attack.params:
            raise ValueError("attack: a backdoor is trained, not optimised per face; set the victim's training in "
                             "perturbation (epochs, learning_rate, layers) and leave attack out")
        if tm.data.images_per_identity < 2:
            raise ValueError("data.images_per_identity: a backdoor needs at least 2 (an enrolment and a probe)")
        if tm.photo_round_trip:
            raise ValueError("photo_round_trip: a backdoor run always measures the trigger through a photo "
                             "(metrics.robustness.photo_round_trip); remove it")
        p = tm.perturbation
        assert isinstance(p, BackdoorPerturbation)
        if not p.trigger.startswith("makeup") and p.parts != BackdoorPerturbation.model_fields["parts"].default:
            raise ValueError("perturbation.parts: only a makeup trigger has parts")
        if p.trigger_rounds > 1 and p.trigger != "makeup-optimised":
            raise ValueError("perturbation.trigger_rounds: only a makeup-optimised trigger is learned in rounds")
        if p.poison_opacity is not None and not p.trigger.startswith("makeup"):
            raise ValueError("perturbation.poison_opacity: only a makeup trigger has an opacity; remove it")
        if tm.defence.name != "none" and tm.defence.name not in get_args(Defence):
            raise ValueError(f"field 'defence': the backdoor family carries out {', '.join(get_args(Defence))}, not "
                             f"{tm.defence.name}")
        if tm.defence.name in p.defences:
            raise ValueError(f"field 'defence': {tm.defence.name} is in perturbation.defences already; give it once")
        per_identity = p.training_images_per_identity or tm.data.images_per_identity
        if "activation-clustering" in chosen_defences(tm) and per_identity < CLUSTERED_FACES:
            raise ValueError(f"perturbation.defences: activation-clustering splits each identity's fine-tuning faces "
                             f"in two and needs at least {CLUSTERED_FACES} of them (here {per_identity}); raise "
                             "perturbation.training_images_per_identity or remove the defence")
        if p.mitigation != "victim" and not {"fine-tuning", "fine-pruning"} & set(chosen_defences(tm)):
            raise ValueError("perturbation.mitigation: only the fine-tuning and fine-pruning defences retrain; "
                             "add one to perturbation.defences or remove mitigation")


