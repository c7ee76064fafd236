"""Face morphing: one enrolment photo made from two people (a criminal and an accomplice), against which
both are then verified. Landmark morphs, and optimised (worst-case) morphs; MMPMR, FMMPMR, RMMR, MAP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from facesec.families.base import Draw, Family, MetricInfo, Supports
from facesec.families.morph.spec import MorphPerturbation
from facesec.measures.rates import CLUSTER
from facesec.recognizers import packaged
from facesec.recognizers.preflight import check_recognizer

if TYPE_CHECKING:
    from facesec.threat_model import ThreatModel



def _label(label: str, meaning: str = "", better: Literal["lower", "higher", ""] = "", gate: bool = True) -> MetricInfo:
    """A morph metric, labelled in words in the report."""
    return MetricInfo(meaning, label, better, gate)


METRICS: dict[str, MetricInfo] = {
    "mmpmr": _label("MMPMR", "the share of morphs that accept both people whose faces were morphed, each by "
                             "their best probe (Scherhag et al. 2017); with a detector in the loop, the share of "
                             "pairs one of whose morphs also gets past it", "lower"),
    "mmpmr_ignoring_detector": _label("MMPMR ignoring the detector", "with a detector in the loop, the share of "
                                      "the judged morphs that accept both people, whatever the detector says",
                                      "lower"),
    "mmpmr_ignoring_detector_ci95_cluster": _label("95% interval of MMPMR ignoring the detector, people resampled",
                                                   gate=False),
    "mmpmr_first_probe": _label("MMPMR with each contributor's first probe only (one presentation)", better="lower"),
    "mmpmr_ci95": _label("95% Wilson interval of MMPMR", gate=False),
    "mmpmr_ci95_cluster": _label("95% interval of MMPMR, people resampled",
                                 "95% interval of MMPMR "
                                 + CLUSTER.format(who="groups of morphs sharing a contributor"),
                                 gate=False),
    **{f"{key}_ci95_cluster": _label(f"95% interval of {words}, people resampled",
                                     f"95% interval of {words} " + CLUSTER.format(who=who), gate=False)
       for key, words, who in (
           ("mmpmr_first_probe", "MMPMR with the first probe", "groups of morphs sharing a contributor"),
           ("no_morph_mmpmr", "the MMPMR of unmorphed photos", "groups of morphs sharing a contributor"),
           ("genuine_accept_rate_best_of_n", "best-of-N genuine acceptance", "contributors"),
           ("fnmr", "FNMR", "the people of the genuine pairs"),
           ("genuine_accept_rate", "genuine acceptance", "the people of the genuine pairs"),
           ("impostor_accept_rate", "impostor acceptance", "either person of the impostor pairs"))},
    "fmmpmr": _label("FMMPMR", "share of all probe pairs of both contributors accepted together "
                               "(Venkatesh et al. 2020)", "lower"),
    "rmmr": _label("RMMR", "MMPMR + FNMR at the same threshold: MMPMR relative to how often genuine pairs match "
                       "(Scherhag et al. 2017)", "lower"),
    "rmmr_best_of_n": _label("RMMR, best of N genuine", "MMPMR + (1 - best-of-N genuine acceptance): RMMR with the "
                             "genuine side scored the way MMPMR is (each contributor's best probe against their own "
                             "unmorphed photo), so it does not exceed 1 merely because MMPMR takes the best of N "
                             "probes", "lower"),
    "genuine_accept_rate_best_of_n": _label("genuine acceptance, best of N probes",
                                            "share of contributors A whose own unmorphed photo accepts at least one "
                                            "of their probes: the genuine rate MMPMR's best-of-N compares with"),
    "map": _label("Morphing Attack Potential", "share of morphs accepting both contributors in at least r "
                  "attempts on at least c recognizers (Ferrara et al. 2022, ISO/IEC 20059)", gate=False),
    "no_morph_mmpmr": _label("MMPMR with A's own photo, unmorphed (zero-effort baseline)"),
    "genuine_accept_rate": _label("genuine acceptance rate at the threshold (1 - FNMR)"),
    "impostor_accept_rate": _label("zero-effort impostor acceptance rate at the threshold (observed FMR)"),
    "fnmr": _label("FNMR at the threshold"),
    "threshold": _label("verification threshold at setting.fmr"),
    "dedup_both_top2": _label("1:N search: both contributors are the top 2 (NIST IR 8430)", better="lower"),
    "dedup_contributor_top1": _label("1:N search: a contributor is rank 1"),
    "n_morphs": _label("morphs"),
    "morphs_not_enrolled": _label("morphs in which detection found no single face (failed attacks)"),
    "pair_similarity_mean": _label("mean similarity of the paired subjects, as the attacker's (first) recognizer "
                                   "saw them"),
    "mmpmr_past_detector": _label("MMPMR past the detector", "the share of morphs that accept both contributors "
                                  "and that the morphing-attack detector lets through (S-MAD at enrolment, D-MAD "
                                  "beside each probe)", "lower"),
    "mmpmr_past_detector_non_adaptive": _label("MMPMR past the detector, morphs optimised without it",
                                               better="lower"),
    "mmpmr_past_detector_worst_case": _label(
        "MMPMR past the detector, each pair's best morph", "the share of pairs for which at least one of the "
        "run's morphs (detection-aware, optimised without the detector, or the landmark morph) accepts both "
        "contributors and passes the detector: the attacker submits whichever works", "lower"),
    "mad_apcer": _label("detector APCER", "share of morph presentations the detector passes, at its threshold "
                        "set for its BPCER on other people (ISO/IEC 30107-3)", "lower"),
    "mad_apcer_non_adaptive": _label("detector APCER, morphs optimised without it", better="lower"),
    "mad_apcer_landmark": _label("detector APCER, the landmark morphs optimisation started from", better="lower"),
    "mmpmr_past_detector_landmark": _label("MMPMR past the detector, the landmark morphs optimisation started "
                                           "from", better="lower"),
    "mad_deer_non_adaptive": _label("detector D-EER, morphs optimised without it", better="lower"),
    "mad_deer_landmark": _label("detector D-EER, the landmark morphs optimisation started from", better="lower"),
    "mad_bpcer": _label("detector BPCER", "share of bona fide presentations of the attacked people the detector "
                        "flags", "lower"),
    "mad_deer": _label("detector D-EER", "where APCER equals BPCER on the attacked people (threshold-free)",
                       "lower"),
    "mad_threshold": _label("detector threshold (log-odds)", gate=False),
    "mad_bona_fide": _label("bona fide presentations shown to the detector"),
    "mad_attacks": _label("morph presentations shown to the detector"),
    **{f"{key}_ci95_cluster": _label(f"95% interval of {words}, people resampled", gate=False)
       for key, words in (("mmpmr_past_detector", "MMPMR past the detector"),
                          ("mmpmr_past_detector_non_adaptive", "MMPMR past the detector without adapting"),
                          ("mmpmr_past_detector_landmark", "MMPMR past the detector, landmark morphs"),
                          ("mmpmr_past_detector_worst_case", "MMPMR past the detector, each pair's best morph"),
                          ("mad_apcer", "APCER"), ("mad_apcer_non_adaptive", "APCER without adapting"),
                          ("mad_apcer_landmark", "APCER, landmark morphs"),
                          ("mad_bpcer", "BPCER"))},
    "landmark_mmpmr": _label("MMPMR of the landmark morphs the optimisation started from"),
    "landmark_fmmpmr": _label("FMMPMR of the landmark morphs the optimisation started from"),
    "at_fmr": _label("target's metrics at each FMR", gate=False),
    "by_recognizer": _label("each judging recognizer's metrics at each FMR", gate=False),
    "attack_time_s": _label("morphing time (s)"),
    "wall_time_s": _label("run time (s)"),
    "n_identities": _label("identities (subjects and calibration)"),
    "n_subjects": _label("subjects who may be paired"),
    "n_skipped_images": _label("skipped images"),
    "validity.n_flags": _label("validity: warnings"),
    "validity.morphs_not_enrolled": _label("validity: morphs not enrolled"),
}


class Morph(Family):
    """Morphs of two subjects' photos submitted as enrolments; both contributors' own probes verified against them."""

    name: ClassVar[str] = "morph"
    order: ClassVar[int] = 2
    expandable: ClassVar[tuple[str, ...]] = ("eps", "method", "alpha", "pairing")
    legend: ClassVar[str | None] = (
        "Morph runs: the cell shows MMPMR, the share of morphed enrolment photos that accept both people whose "
        "faces were morphed, each verified with their own photo, at the run's threshold (Scherhag et al. 2017). "
        "Lower is more robust.")
    Spec = MorphPerturbation
    supports: ClassVar[Supports] = Supports(goals=("impersonation",), capabilities=("individual",),
                                            knowledge=("white-box", "transfer"), settings=("open-set",),
                                            defences=("detector",))
    metrics: ClassVar[dict[str, MetricInfo]] = METRICS
    headline: ClassVar[str] = "mmpmr"
    decision: ClassVar[str | None] = "mated_match"
    decision_ignores: ClassVar[tuple[str, ...]] = ("perturbation.fmrs", "perturbation.recognizers")
    decision_clusters: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("contributor_a", "contributor_b"), ("contributor_a",), ("contributor_b",))
    runner: ClassVar[str | None] = "facesec.families.morph.run:run_threat_model"
    report_partial: ClassVar[str | None] = "morph.html.j2"
    template_dir: ClassVar[Path | None] = Path(__file__).parent
    viewer: ClassVar[str | None] = "facesec.families.morph.report:view"
    plotter: ClassVar[str | None] = "facesec.families.morph.report:suite_figures"

    def draws(self, tm: ThreatModel) -> tuple[Draw, ...]:
        p = tm.perturbation
        assert isinstance(p, MorphPerturbation)
        draws = [Draw(p.calibration_identities, tm.data.images_per_identity, "perturbation.calibration_identities")]
        d = tm.defence
        if d.name != "none" and "identities" in d.params:  # a detector's training people
            draws.append(Draw(int(d.params["identities"]), int(d.params.get("images_per_identity", 3)),
                              "defence.identities"))
        return tuple(draws)

    def check(self, tm: ThreatModel) -> None:
        p = tm.perturbation
        assert isinstance(p, MorphPerturbation)
        if tm.data.images_per_identity <= p.references:
            raise ValueError(f"data.images_per_identity ({tm.data.images_per_identity}) must exceed "
                             f"perturbation.references ({p.references}) so that every contributor keeps probes")
        if p.pairs is not None and p.pairs > tm.data.identities:
            raise ValueError(f"perturbation.pairs ({p.pairs}) cannot exceed data.identities ({tm.data.identities}): "
                             "each subject hosts one morph")
        if tm.photo_round_trip:
            raise ValueError("photo_round_trip: morphs are photos already (each is detected and aligned when "
                             "enrolled); remove it")
        for i, gate in enumerate(tm.gates):
            if p.method != "optimised" and (gate.metric.startswith("landmark_")
                                            or gate.metric.endswith(("_non_adaptive", "_landmark", "_worst_case"))):
                raise ValueError(f"gates.{i}.metric: {gate.metric} is recorded by optimised morphs only")
            if tm.defence.name == "none" and gate.metric.startswith(("mad_", "mmpmr_past_detector")):
                raise ValueError(f"gates.{i}.metric: {gate.metric} is recorded by runs with a detector (defence: "
                                 "s-mad or d-mad); a run without one has no such number")
        if p.method == "landmark" and "attack" in tm.model_fields_set:
            raise ValueError("attack: landmark morphs are not optimised; remove it (optimised and gan use it)")
        if p.method != "landmark":
            if tm.attack.library != "native" or tm.attack.method != "pgd":
                raise ValueError(f"attack: {p.method} morphs are made by facesec's own optimiser; use "
                                 f"library: native, method: pgd (got {tm.attack.library}/{tm.attack.method})")
            if tm.attack.steps < 1:
                raise ValueError(f"attack.steps: {p.method} morphs need at least one step")

    def needs_target_gradients(self, tm: ThreatModel) -> bool:
        """White-box optimised or GAN morphs (a detector's training morphs are made the run's way)."""
        assert isinstance(tm.perturbation, MorphPerturbation)
        return super().needs_target_gradients(tm) and tm.perturbation.method != "landmark"

    def preflight(self, tm: ThreatModel) -> None:

        p = tm.perturbation
        assert isinstance(p, MorphPerturbation)
        for i, spec in enumerate(p.recognizers):
            check_recognizer(f"field 'perturbation.recognizers.{i}'", spec)
        if p.method == "gan":

            packaged.check_fetched("gan-face-generate", "perturbation.method")



