"""Evasion families: perturb a probe so it is no longer matched (dodging) or matched to someone else
(impersonation). `pixel` adds Lp-bounded noise; `accessory` recolours eyeglass frames, a sticker or a mask."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, JsonValue, ValidationError

from facesec.errors import ConfigError
from facesec.families.base import Draw, Family, MetricInfo, Supports
from facesec.families.evasion import words
from facesec.families.evasion.accessories.palette import read_palette
from facesec.families.evasion.spec import AccessoryParams, AccessoryPerturbation, PixelPerturbation
from facesec.fields import SpecError
from facesec.measures.rates import CLUSTER
from facesec.plugins import ATTACKS, DEFENCES, attack_params
from facesec.recognizers.trust import query_only
from facesec.threat_model import Query

if TYPE_CHECKING:
    from facesec.record import RunRecord
    from facesec.threat_model import ThreatModel

QUERY_METHODS = {"scores": ("square",), "decisions": ("hopskipjump",)}
"""Attacks that need only what the target returns."""
DETERMINISTIC = ("fgsm", "mi-fgsm", "di-fgsm", "ti-fgsm")
"""Native methods that start from the face itself unless asked for a random start."""
ACCESSORY_METHODS = ("pgd", "mi-fgsm")
"""Optimisers of accessory colours: signed gradient steps, with momentum for mi-fgsm."""

_M = MetricInfo
METRICS: dict[str, MetricInfo] = {
    "attack_success_rate": _M("attack success rate: the share of attack attempts that fooled the recognizer",
                              better="lower"),
    "attack_success_ci95": _M("95% Wilson interval of the attack success rate", gate=False),
    "attack_success_ci95_cluster": _M("95% interval of the attack success rate "
                                      + CLUSTER.format(who="the attacked people"), gate=False),
    "n_attempts": _M("probes not already fooled by the clean face"),
    "n_samples": _M("probes"),
    "clean_success_rate": _M("share of probes fooled without any attack"),
    "clean_success_ci95_cluster": _M("95% interval of the clean success rate "
                                     + CLUSTER.format(who="the attacked people"), gate=False),
    "noise_success_rate": _M("random noise of the same budget (a baseline)", better="lower"),
    "noise_success_ci95_cluster": _M("95% interval of the noise baseline's success rate "
                                     + CLUSTER.format(who="the attacked people"), gate=False),
    "surrogate_success_rate": _M(label="success on the surrogate(s) it was crafted on"),
    "photo_success_rate": _M(label="success once pasted into the original photo (8 bits) and detected and aligned "
                                   "again", better="lower"),
    "photo_faces_lost": _M(label="attacked photos in which the detector no longer found one face"),
    "asr_at_queries": _M(label="ASR after n queries per face", gate=False),
    "linf_at_queries": _M(label="median L-inf distance after n queries per face", gate=False),
    "protocol_metric": _M("tar, target_accept, rank1 or target_top1", gate=False),
    "protocol_before": _M("the protocol metric before the attack"),
    "protocol_after": _M("the protocol metric after the attack"),
    "similarity_before_mean": _M("mean similarity to the reference before"),
    "similarity_after_mean": _M("mean similarity to the reference after"),
    "similarity_shift_mean": _M("mean similarity change"),
    "threshold": _M("verification threshold at the FMR (open set)"),
    "n_impostor_scores": _M("impostor pairs of the population the threshold was set on (the FMR needs at least "
                            "10 / FMR of them)"),
    "n_impostor_identity_pairs": _M("pairs of distinct people behind the impostor scores: with fewer than 1 / FMR the "
                                    "threshold is flagged (image pairs of the same few people are not independent)"),
    "linf_mean": _M("mean L-inf norm of the change"),
    "l2_mean": _M("mean L2 norm of the change"),
    "ssim_mean": _M("mean SSIM of attacked to clean"),
    "queries_per_sample": _M("queries per probe"),
    "attack_time_s": _M("attack time (s)"),
    "wall_time_s": _M("run time (s)"),
    "n_identities": _M("identities"),
    "n_skipped_images": _M("skipped images"),
    "non_adaptive_success_rate": _M(label="success of the non-adaptive attack (the defence's gradients as built)",
                                    better="lower"),
    "non_adaptive_success_ci95_cluster": _M("95% interval of the non-adaptive attack's success rate "
                                            + CLUSTER.format(who="the attacked people"), gate=False),
    "adaptive_gain": _M(label="adaptive minus non-adaptive success (paired, on the same attempts)"),
    "adaptive_gain_ci95_cluster": _M("95% interval of the adaptive gain " + CLUSTER.format(who="the attacked people"),
                                     gate=False),
    "oblivious_success_rate": _M(label="success of the oblivious attack (the recognizer attacked as if the defence "
                                 "were not there, judged through it)", better="lower"),
    "oblivious_success_ci95_cluster": _M("95% interval of the oblivious attack's success rate "
                                         + CLUSTER.format(who="the attacked people"), gate=False),
    "adaptive_gain_over_oblivious": _M(label="adaptive minus oblivious success (paired, on the same attempts)"),
    "adaptive_gain_over_oblivious_ci95_cluster": _M("95% interval of the adaptive gain over the oblivious attack "
                                                    + CLUSTER.format(who="the attacked people"), gate=False),
    "validity.noise_baseline_asr": _M("the baseline's success rate"),
    "validity.unbounded_asr": _M("success of the unbounded run"),
    "validity.n_flags": _M("validity warnings"),
}
"""What an evasion run records (results.json `metrics` and `validity`); docs/results-schema.md has the rest.
The report labels in words only the knowledge and accessory metrics; the others show their keys."""
ACCESSORY_METRICS: dict[str, MetricInfo] = {
    **METRICS,
    "attack_success_rate": _M(label="attack success, digital (accessory worn as is)", better="lower"),
    "noise_success_rate": _M(label="random-colour accessory success", better="lower"),
    "plain_accessory_success_rate": _M(label="plain accessory (baseline) success"),
    "eot_success_rate": _M(label="success under fresh transforms (EOT)", better="lower"),
    "n_surrogate_people_left_out": _M("people the transfer attacker's students learnt from, left out of the "
                                      "attacked ones (a student remembers its training faces)",
                                      "surrogates' training people left out", gate=False),
    "plain_accessory_success_ci95_cluster": _M(f"95% interval of plain accessory success "
                                               f"{CLUSTER.format(who='the attacked people')}", gate=False),
    "eot_success_ci95_cluster": _M(f"95% interval of success under fresh transforms (each attempt's share of "
                                   f"draws) {CLUSTER.format(who='the attacked people')}", gate=False),
    "eot_draws": _M(label="fresh transforms per attempt (EOT draws)"),
}


def _type_params(tm: ThreatModel, model: type[BaseModel], optimiser: str) -> None:
    """Check `attack.params` against the optimiser's own parameters and keep their typed values."""
    try:
        tm.attack.params = model.model_validate(tm.attack.params).model_dump(exclude_none=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "extra_forbidden":
            takes = ", ".join(model.model_fields) or "none"
            raise ValueError(f"field 'attack.params.{first['loc'][0]}': {optimiser} does not take it; "
                             f"its params: {takes}") from None
        raise SpecError(exc.errors(), at=("attack", "params")) from None


class _Evasion(Family):
    headline: ClassVar[str] = "attack_success_rate"
    decision: ClassVar[str | None] = "attempt_success"
    decision_ignores: ClassVar[tuple[str, ...]] = ("attack.sanity_samples",)
    decision_beside: ClassVar[dict[str, tuple[str, ...]]] = {"defence": ("clean_success",)}
    sliced: ClassVar[dict[str, str]] = {"attack_success_rate": "attempt_success", "clean_success_rate": "clean_success"}
    runner: ClassVar[str | None] = "facesec.families.evasion.run:run_threat_model"
    report_partial: ClassVar[str | None] = "evasion.html.j2"
    template_dir: ClassVar[Path | None] = Path(__file__).parent
    viewer: ClassVar[str | None] = "facesec.families.evasion.report:view"
    plotter: ClassVar[str | None] = "facesec.families.evasion.report:suite_figures"

    def shards(self, tm: ThreatModel) -> bool:
        return tm.capability == "individual"  # one universal perturbation is optimised over all its wearers

    def metric_text(self, key: str, value: JsonValue) -> str | None:
        return words.metric_text(key, value)

    def matrix_detail(self, run: RunRecord) -> str:
        return words.matrix_detail(run, accessory=self.name == "accessory")

    def summary_line(self, run: RunRecord) -> str:
        return words.summary_line(run)

    def legends(self, runs: list[RunRecord]) -> list[tuple[str, str]]:
        return super().legends(runs) + words.legends(runs)









def _check_ensemble(tm: ThreatModel) -> None:
    """An ensemble is a white-box attacker's per-face worst case; each member's parameters are its own."""
    if not tm.attack.ensemble:
        return
    if tm.knowledge != "white-box" or tm.capability != "individual":
        raise ValueError("field 'attack.ensemble': a worst case over attacks is taken per face by a white-box "
                         "attacker (knowledge: white-box, capability: individual); remove the ensemble")
    norm = getattr(tm.perturbation, "norm", "linf")
    for i, member in enumerate(tm.attack.ensemble):
        if member.method == "hopskipjump" or (member.method == "square" and norm != "linf"):
            raise ValueError(f"field 'attack.ensemble.{i}': {member.method} cannot add to a white-box {norm} "
                             "ensemble (square: linf only; hopskipjump: decisions only)")
        try:
            member.params = attack_params(member.library, member.method).model_validate(member.params).model_dump(
                exclude_none=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"field 'attack.ensemble.{i}.params.{'.'.join(map(str, first['loc']))}': "
                             f"{first['msg']}") from None


class Pixel(_Evasion):
    """Additive noise bounded in L-inf or L2 (white-box, transfer or query attacks)."""

    name: ClassVar[str] = "pixel"
    order: ClassVar[int] = 0
    expandable: ClassVar[tuple[str, ...]] = ("eps", "norm")
    Spec = PixelPerturbation
    supports: ClassVar[Supports] = Supports(defences=("input", "weights"), worst_case=True)
    metrics: ClassVar[dict[str, MetricInfo]] = METRICS

    def draws(self, tm: ThreatModel) -> tuple[Draw, ...]:
        """A weights defence's training people (when its parameters say how many)."""
        d = tm.defence
        if d.name == "none" or DEFENCES.meta(d.name).get("stage") != "weights" or "identities" not in d.params:
            return ()
        return (Draw(int(d.params["identities"]), int(d.params.get("images_per_identity", 5)), "defence.identities"),)

    def check(self, tm: ThreatModel) -> None:
        _check_ensemble(tm)
        name = tm.target if isinstance(tm.target, str) else tm.target.get("name")
        if tm.defence.name != "none" and DEFENCES.meta(tm.defence.name).get("stage") == "weights" \
                and isinstance(name, str) and query_only(name):
            raise ValueError(f"field 'defence': {tm.defence.name} trains the target by its gradients, and {name} "
                             "gives none (it is run as a black box); defend a differentiable recognizer")
        if DEFENCES.meta(tm.defence.name).get("randomised") and tm.defence.eot_samples > 1 \
                and tm.attack.library != "native":
            raise ValueError(words.eot_needs_native(tm.defence.name, tm.defence.eot_samples))
        if tm.attack.restarts > 1 and tm.attack.method in DETERMINISTIC and not tm.attack.random_start:
            raise ValueError(f"field 'attack.restarts': {tm.attack.method} starts from the face itself, so every "
                             "restart would repeat the first run; set attack.random_start: true or restarts: 1")
        if tm.attack.restarts > 1 and (isinstance(tm.knowledge, Query) or tm.capability == "universal"):
            raise ValueError("field 'attack.restarts': restarts repeat per-face white-box or transfer attacks (a "
                             "query attack would spend its budget again: raise knowledge.budget; a universal one has "
                             "no faces of its own); set restarts: 1")
        if isinstance(tm.knowledge, Query):
            allowed = QUERY_METHODS[tm.knowledge.output]
            if tm.attack.method not in allowed:
                raise ValueError(f"attack.method: a target returning {tm.knowledge.output} is attacked by "
                                 f"{' or '.join(allowed)} (got {tm.attack.method})")
            if tm.capability != "individual":
                raise ValueError("knowledge: query attacks are per-image pixel attacks (capability: individual, "
                                 "perturbation.kind: pixel)")
        elif tm.attack.method in ("square", "hopskipjump"):
            raise ValueError(f"attack.method: {tm.attack.method} is a query attack; use it with knowledge: "
                             "{kind: query, output: scores|decisions, budget: N}")
        key = f"{tm.attack.library}/{tm.attack.method}"
        if tm.capability == "universal" and not ATTACKS.meta(key).get("universal", False):
            raise ValueError(f"capability: universal needs library: native ({key} makes per-image perturbations "
                             "only)")
        _type_params(tm, attack_params(tm.attack.library, tm.attack.method), key)

    def preflight(self, tm: ThreatModel) -> None:
        package = ATTACKS.meta(f"{tm.attack.library}/{tm.attack.method}").get("requires")
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(f"field 'attack.library': {tm.attack.library} needs the {package} package; install "
                              f"it with pip install 'facesec[{tm.attack.library}]'")


class Accessory(_Evasion):
    """Eyeglass frames, a sticker or a face mask placed from the landmarks, its colours optimised."""

    name: ClassVar[str] = "accessory"
    order: ClassVar[int] = 1
    expandable: ClassVar[tuple[str, ...]] = ("shape",)
    legend: ClassVar[str | None] = (
        "Accessory runs: the ASR is the optimised accessory worn as is (digital); plain = success of a plain, "
        "non-optimised accessory of the same shape (what occlusion alone does); EOT = success of the optimised "
        "accessory under fresh random shifts, rotations, scales, lighting and blur not used to optimise it (how it "
        "may fare printed and worn).")
    Spec = AccessoryPerturbation
    supports: ClassVar[Supports] = Supports(knowledge=("white-box", "transfer"))
    metrics: ClassVar[dict[str, MetricInfo]] = ACCESSORY_METRICS

    def check(self, tm: ThreatModel) -> None:
        if tm.attack.library != "native":
            raise ValueError(f"attack.library: accessories are optimised by facesec itself; use library: native "
                             f"(got {tm.attack.library})")
        if tm.attack.method not in ACCESSORY_METHODS:
            raise ValueError(f"attack.method: accessories take {' or '.join(ACCESSORY_METHODS)} "
                             f"(got {tm.attack.method})")
        if tm.attack.random_start:
            raise ValueError("attack.random_start: accessories start from perturbation.colour; remove it")
        _type_params(tm, AccessoryParams, "the accessory optimiser")

    def preflight(self, tm: ThreatModel) -> None:
        p = tm.perturbation
        assert isinstance(p, AccessoryPerturbation)
        if p.nps_weight and p.palette != "default":
            read_palette(p.palette)
