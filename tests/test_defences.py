"""Input defences: each transform does what its paper describes, the three ways of seeing it give the gradients
they promise, and a masking defence is flagged by the non-adaptive attack and beaten by the adaptive one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from facesec.api import run
from facesec.attacks import Expectation, Objective
from facesec.cli import main
from facesec.defences.base import behind, build
from facesec.recognizers.base import Recognizer, RecognizerInfo

SMALL = Path(__file__).parent / "fixtures" / "small"


def bare_rows(out: Path) -> list[str]:
    """The probes of the suite's first run (its samples file, one row each)."""
    return (next((out / "runs").glob("*none*")) / "samples.csv").read_text().strip().splitlines()[1:]


def _toy(seed: int = 0) -> Recognizer:
    """A linear 'recognizer' on 3 x 8 x 8 images: its gradient is known everywhere."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    info = RecognizerInfo("toy", 8, None, 4, "cosine", None, None)  # type: ignore[arg-type]
    return Recognizer(net, info).eval()


def test_median_is_scipys_median_filter() -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    got = build("median", {"size": 5}, 0).transform(x)
    want = ndimage.median_filter(x.numpy(), size=(1, 1, 5, 5), mode="mirror")
    assert np.allclose(got.numpy(), want)


def test_bit_depth_and_jpeg_change_images_as_their_settings_say() -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    squeezed = build("bit-depth", {"bits": 2}, 0).transform(x)
    assert set(torch.unique(squeezed * 3).round().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    smooth = torch.nn.functional.interpolate(x[:, :, ::8, ::8], size=32, mode="bilinear")  # JPEG keeps smooth images
    err = {q: (build("jpeg", {"quality": q}, 0).transform(smooth) - smooth).abs().mean().item() for q in (10, 95)}
    assert err[95] < 3 / 255 and err[10] > 3 * err[95]  # chroma subsampling costs even quality 95 a little
    again = build("jpeg", {"quality": 10}, 0).transform(smooth)
    assert torch.equal(again, build("jpeg", {"quality": 10}, 0).transform(smooth))  # deterministic


def test_randomised_defences_draw_anew_but_repeat_with_the_seed() -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    for name in ("resize-pad", "gaussian-noise"):
        first, second = build(name, {}, 7), build(name, {}, 7)
        a, b = first.transform(x), first.transform(x)
        assert not torch.equal(a, b)  # a new draw for every image it sees
        assert torch.equal(a, second.transform(x))  # the same seed, the same draws
        assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1


def test_the_four_ways_of_seeing_a_masking_step_give_the_gradients_they_promise() -> None:
    """Deployed: the network sees the squeezed image. Non-adaptive: no gradient crosses the rounding.
    Adaptive (BPDA): the network's gradient at the squeezed image, passed straight through. Oblivious: the
    network alone, as if the step were not there."""
    model, x = _toy(), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    squeeze = build("bit-depth", {"bits": 3}, 0)
    q = squeeze.transform(x)
    seen = {m: behind(model, squeeze, "bit-depth(bits=3)", m)
            for m in ("deployed", "non-adaptive", "adaptive", "oblivious")}
    assert torch.allclose(seen["deployed"](x), model(q)) and torch.allclose(seen["oblivious"](x), model(x))
    grads = {}
    for mode in ("non-adaptive", "adaptive"):
        xi = x.clone().requires_grad_(True)
        seen[mode](xi).sum().backward()
        grads[mode] = xi.grad
    qi = q.clone().requires_grad_(True)
    model(qi).sum().backward()
    assert grads["non-adaptive"] is not None and torch.count_nonzero(grads["non-adaptive"]) == 0
    assert torch.allclose(grads["adaptive"], qi.grad)
    assert seen["adaptive"].info.name == "toy behind bit-depth(bits=3)"


def test_the_differentiable_jpeg_is_close_to_libjpeg_and_gives_the_adaptive_attacker_its_gradient() -> None:
    """The stand-in's value lies within two grey levels of Pillow's codec on smooth images (the identity's error
    is several times that); the adaptive view keeps the codec's value and takes the stand-in's gradient."""
    from facesec.defences.jpeg_approx import approximate_jpeg

    g = torch.Generator().manual_seed(2)
    x = torch.nn.functional.interpolate(torch.rand(3, 3, 19, 19, generator=g), size=150, mode="bicubic").clamp(0, 1)
    x = (x + 0.02 * torch.rand(x.shape, generator=g)).clamp(0, 1)  # some detail for the quantiser to remove
    for quality in (30, 75):
        real = build("jpeg", {"quality": quality}, 0).transform(x)
        near, straight = ((v - real).abs().mean().item() for v in (approximate_jpeg(x, quality), x))
        assert near < 2 / 255 and near < straight / 3, (quality, near * 255, straight * 255)
    model, small = _toy(), x[:, :, :8, :8].contiguous()
    grads = {}
    for bpda in ("differentiable", "identity", None):  # None: the default
        codec = build("jpeg", {"quality": 50, **({"bpda": bpda} if bpda else {})}, 0)
        xi = small.clone().requires_grad_(True)
        out = behind(model, codec, "jpeg", "adaptive")(xi)
        assert torch.allclose(out, model(codec.transform(small)))  # the system's codec forward, whatever the bpda
        out.sum().backward()
        grads[bpda] = xi.grad
    through_codec, bare = small.clone().requires_grad_(True), small.clone().requires_grad_(True)
    model(approximate_jpeg(through_codec, 50)).sum().backward()
    model(bare).sum().backward()
    assert torch.allclose(grads["differentiable"], through_codec.grad)
    assert torch.equal(grads[None], grads["differentiable"])
    assert torch.allclose(grads["identity"], bare.grad)  # straight through
    assert not torch.allclose(grads["differentiable"], bare.grad, atol=1e-3)


def test_the_differentiable_jpeg_keeps_a_gradient_at_black_edges_and_under_autocast() -> None:
    """A black band (as the face aligner pads) beside texture rings below zero: not clipped, so every black
    pixel of the shared blocks keeps its gradient. (A block black throughout has none: its coefficients are whole.)"""
    from facesec.defences.jpeg_approx import approximate_jpeg

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    x[..., :, :12] = 0
    xi = x.clone().requires_grad_(True)
    out = approximate_jpeg(xi, 75)
    out[..., :, 8:12].sum().backward()
    assert out.min() < 0 and xi.grad is not None and bool((xi.grad[..., :, 8:12].abs() > 1e-3).all())
    xb = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = approximate_jpeg(xb, 95)
    out.sum().backward()
    xf = x.clone().requires_grad_(True)
    approximate_jpeg(xf, 95).sum().backward()
    assert out.dtype == torch.float32 and torch.allclose(xb.grad, xf.grad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bpda is differentiable or identity"):
        build("jpeg", {"bpda": "smooth"}, 0)


def test_the_differentiable_jpeg_quantises_with_the_tables_libjpeg_writes() -> None:
    import io

    from PIL import Image

    from facesec.defences.jpeg_approx import quantisation

    for quality in (10, 30, 75, 95):
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, format="JPEG", quality=quality)
        written = Image.open(buffer).quantization
        for mine, theirs in zip(quantisation(quality), (written[0], written[1]), strict=True):
            assert mine.flatten().tolist() == list(theirs), quality


def test_a_jpeg_passed_by_the_identity_is_its_own_named_defence() -> None:
    from facesec.matrix import expand

    doc = {"name": "d", "defence": [{"name": "jpeg", "quality": 75},
                                    {"name": "jpeg", "quality": 75, "bpda": "identity"}],
           "perturbation": {"kind": "pixel"}}
    assert [r["name"] for r in expand(doc)] == ["d[defence=jpeg(quality=75)]",
                                                 "d[defence=jpeg(bpda=identity,quality=75)]"]


def test_eot_follows_the_expected_margin() -> None:
    """Averaged over many draws, the margin through a noisy defence barely moves from call to call; one draw does."""
    model = _toy()
    noisy = behind(model, build("gaussian-noise", {"sigma": 0.2}, 0), "noise", "adaptive")
    gallery = torch.nn.functional.normalize(torch.randn(2, 4, generator=torch.Generator().manual_seed(2)), dim=-1)
    one = Objective(noisy, "open-set", "dodging", gallery, torch.tensor([0, 1]), 0.5)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    spread = {k: torch.stack([c.score(x, slice(None)) for _ in range(20)]).std(0).mean().item()
              for k, c in (("one", one), ("eot", Expectation(one, 64)))}
    assert spread["eot"] < spread["one"] / 4


def test_an_attack_on_a_randomised_defence_does_not_stop_at_its_own_draws(celeba: Path) -> None:
    """A face that crossed the threshold on the attacker's draws sits at the boundary, and a fresh draw at
    deployment sends it back about half the time: PGD through random resize-and-pad, judged on fresh draws,
    succeeds far more often run to its last step than stopped early, and the evasion run runs it so (adaptive
    and non-adaptive); a deterministic defence keeps early stopping, and many EOT draws shrink the batch."""
    from facesec.attacks.base import Budget
    from facesec.attacks.pixel import pgd
    from facesec.families.evasion import defended
    from facesec.families.evasion.knowledge import AttackerView
    from facesec.families.evasion.run import EOT_BATCH, _native_overrides
    from facesec.loading import load_threat_models

    model, rp = _toy(), build("resize-pad", {"min_scale": 0.85}, 0)
    deployed = behind(model, rp, "rp", "deployed")
    x = torch.rand(300, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gallery = model(x)
    judge = Objective(deployed, "open-set", "dodging", gallery, torch.arange(300), 0.5)
    seen = Expectation(Objective(behind(model, rp, "rp", "adaptive"), "open-set", "dodging", gallery,
                                 torch.arange(300), 0.5), 8)
    rates = {}
    for stop in (True, False):
        out = pgd(steps=20, early_stop=stop).run(x, seen, Budget("linf", 0.1), torch.Generator().manual_seed(2))
        with torch.no_grad():
            rates[stop] = np.mean([judge.success(judge.score(out.x_adv, slice(None))).float().mean().item()
                                   for _ in range(20)])
    assert rates[False] >= rates[True] + 0.15, rates
    for name, noisy in (("resize-pad", True), ("jpeg", False)):
        tm = load_threat_models(SMALL / "pixel.yaml", [f"defence={{name: {name}, eot_samples: 64}}"])[0]
        guard = defended.setup(tm, model)
        assert guard is not None
        adaptive, (naive, unaware) = defended.views(AttackerView(judge, None, "white-box", False), guard)
        for view in (adaptive, naive):
            assert view.noisy is noisy
            settings = _native_overrides(tm, view)
            assert ("early_stop" in settings) is noisy and settings.get("early_stop", False) is False
            assert settings.get("batch_size", 64) == (EOT_BATCH // 64 if noisy and isinstance(
                view.objective, Expectation) else 64)
        assert not unaware.noisy and _native_overrides(tm, unaware) == {}  # it attacks the bare recognizer


@pytest.mark.parametrize("bad, says", [
    ("defence=nope", "field 'defence': no defence 'nope'; available: none, activation-clustering, adversarial-"),
    ("defence={name: median, size: 4}", "field 'defence.size': the window needs a centre pixel"),
    ("defence={name: jpeg, qualty: 50}", "field 'defence.qualty'"),
    ("defence={name: none, quality: 50}", "field 'defence': none takes no parameters: remove quality"),
    ("defence={name: jpeg, generator: 3}", "field 'defence': generator is the run's own"),
    ("defence={name: jpeg, bpda: smooth}", "field 'defence.bpda'"),
    ("defence=[{name: jpeg, eot_samples: 2}, {name: jpeg, eot_samples: 4}]", "both be named small-pixel[defence=jpeg]"),
    ("attack.restarts=3", "field 'attack.restarts': fgsm starts from the face itself"),
    ("defence=resize-pad", "field 'defence': resize-pad draws at random and the adaptive attack averages 8 draws"),
    ("attack.ensemble=[{method: square, steps: 10}]", "field 'attack.ensemble.0': square cannot add to a white-box l2"),
])
def test_a_bad_defence_is_one_line_at_validate(bad: str, says: str, celeba: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    more = ["--set", "attack.method=fgsm"] if "restarts" in bad else ["--set", "attack.library=torchattacks"] \
        if "resize-pad" in bad else \
        ["--set", "perturbation={kind: pixel, norm: l2, eps: 0.5}"] if "square" in bad else []
    assert main(["validate", str(SMALL / "pixel.yaml"), "--set", bad, *more]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err


def test_a_family_that_cannot_evaluate_a_defence_or_a_worst_case_says_so(celeba: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SMALL / "morph.yaml"), "--set", "defence=jpeg"]) == 2
    assert "perturbation.kind morph cannot evaluate a defence of stage input (jpeg)" in capsys.readouterr().err
    assert main(["validate", str(SMALL / "accessory.yaml"), "--set", "attack.ensemble=[pgd]"]) == 2
    assert "perturbation.kind accessory takes no per-face worst case" in capsys.readouterr().err


def test_a_randomised_defence_draws_apart_from_the_attack_and_is_never_cached() -> None:
    """Its generator is not the run's (same seed, other numbers), and its thresholds are set anew each run."""
    noise = build("gaussian-noise", {}, 0)
    run_draws = torch.rand(4, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(torch.rand(4, generator=noise.generator), run_draws)
    assert not behind(_toy(), noise, "noise", "deployed").info.deterministic
    assert behind(_toy(), build("jpeg", {}, 0), "jpeg", "deployed").info.deterministic


def test_a_masking_defence_is_flagged_by_the_non_adaptive_attack_and_beaten_by_the_adaptive_one(
        tmp_path: Path, celeba: Path) -> None:
    """Bit-depth reduction in front of dlib's ResNet: differentiated as built, PGD gets no gradient and stays at the
    clean rate; through BPDA it fools the recognizer on almost every attempt, and the run says gradients were
    masked. The undefended run of the same suite carries no such flag."""
    results, out = run([SMALL / "pixel.yaml"], ["defence=[none, {name: bit-depth, bits: 4}]", "attack.steps=10"],
                       out_root=tmp_path, progress=False)
    bare, squeezed = results.to_json()["runs"]
    m = squeezed["metrics"]
    assert m["attack_success_rate"] >= 0.8 and m["non_adaptive_success_rate"] <= 0.2, m
    assert m["adaptive_gain_ci95_cluster"][0] > 0
    assert any(f.startswith("gradient masking suspected") for f in squeezed["validity"]["flags"])
    assert not any("masking" in f for f in bare["validity"]["flags"]) and "non_adaptive_success_rate" not in \
        bare["metrics"]
    assert squeezed["operating_points"][0]["recognizer"] == "dlib-resnet behind bit-depth(bits=4)"
    pair = {d["decision"]: d for d in results.to_json()["differences"] if d["setting"] == "defence"}
    assert set(pair) == {"attempt_success", "clean_success"}  # the defence's effect, and its clean cost beside
    clean = pair["clean_success"]
    assert clean["first_rate"] == bare["metrics"]["clean_success_rate"] and clean["n"] == len(bare_rows(out))
    unaware = m["oblivious_success_rate"]  # the bare recognizer attacked, its faces judged through the defence
    assert 0 <= unaware <= 1 and abs(m["adaptive_gain_over_oblivious"] - (m["attack_success_rate"] - unaware)) < 1e-9
    page = (out / "index.html").read_text()  # the matrix cell shows the attacks, the legend says which is which
    assert f"non-adaptive {m['non_adaptive_success_rate']:.2f}" in page and "Defended runs" in page
    assert f"unaware {unaware:.2f}" in page
    assert 'id="defences"' in page and "not a defence against an adaptive attacker" in page


def test_adversarial_training_hardens_the_target_on_people_apart_and_is_cached(
        tmp_path: Path, celeba: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A weights defence: dlib's ResNet fine-tuned on PGD perturbations of people who are neither attacked nor
    calibrated on, judged at a threshold set again for the changed weights, its clean cost compared with the bare
    model; a second run takes the fine-tune from the cache."""
    at = "{name: adversarial-training, identities: 6, images_per_identity: 3, epochs: 1, steps: 1}"
    overrides = [f"defence=[none, {at}]", "setting.calibration={identities: 8}"]
    results, out = run([SMALL / "pixel.yaml"], overrides, out_root=tmp_path / "a", progress=False)
    bare, hard = results.to_json()["runs"]
    point = hard["operating_points"][0]
    assert point["recognizer"].startswith("dlib-resnet with adversarial-training(") and point["source"] != \
        "in-sample"
    assert point["threshold"] != bare["operating_points"][0]["threshold"]
    training = hard["defence_training"]
    attacked = {row.split(",")[1] for row in bare_rows(out)}
    assert len(training["people"]) == 6 and not set(training["people"]) & attacked
    assert training["faces"] == 18 and training["resumed_from_epoch"] == 0 and len(training["losses"]) == 1
    assert {d["decision"] for d in results.to_json()["differences"] if d["setting"] == "defence"} == {
        "attempt_success", "clean_success"}
    again, _ = run([SMALL / "pixel.yaml"], [f"defence={at}", overrides[1]], out_root=tmp_path / "b",
                   progress=False)
    assert again.to_json()["runs"][0]["defence_training"]["resumed_from_epoch"] == 1
    assert again.to_json()["runs"][0]["operating_points"][0]["threshold"] == point["threshold"]
    assert main(["validate", str(SMALL / "pixel.yaml"), "--set", "defence={name: adversarial-training, "
                 "identities: 100000}"]) == 2
    assert "defence.identities" in capsys.readouterr().err
    assert main(["validate", str(SMALL / "pixel.yaml"), "--set", "target=dlib-cpp", "--set", "defence="
                 "adversarial-training", "--set", "knowledge={kind: transfer, surrogates: [dlib-resnet]}"]) == 2
    assert "trains the target by its gradients, and dlib-cpp gives none" in capsys.readouterr().err


def test_the_defence_table_reads_each_outcome_plainly() -> None:
    from facesec.report.defences import reading

    assert reading("jpeg(quality=75)", 1.0, 0.4, 0.98).endswith(
        "gets 0.40; one who adapts (BPDA, EOT) gets 0.98: not a defence against an adaptive attacker")
    assert "an attacker unaware of it gets 0.10; one who differentiates it as built gets 0.40" in \
        reading("jpeg(quality=75)", 1.0, 0.4, 0.98, 0.1)
    assert "it holds 0.60 of the success back" in reading("d", 1.0, 0.1, 0.4)
    assert reading("d", None, None, None) == "not measured"
    assert reading("adversarial-training", 1.0, None, 0.95).endswith(  # one attack: nothing masked to adapt past
        "the attack on the defended model gets 0.95: not a defence against this attacker")


def test_the_defence_table_pairs_a_defence_without_parameters_and_leaves_out_runs_that_measure_their_own() -> None:
    """A plug-in defence with no parameters differs from none only in `defence.name`: its row still finds the
    undefended run and the clean cost; a morph run with a detector (no attack success rate) is not a row."""
    from facesec.record import Difference, RunRecord
    from facesec.report.defences import rows

    def record(name: str, defence: str | None, metrics: dict[str, float]) -> RunRecord:
        dims = {"recognizer": "toy", "perturbation": "p", "knowledge": "white-box", "goal": "dodging",
                "capability": "individual", "setting": "s", "attack": "a", **({"defence": defence} if defence else {})}
        return RunRecord.model_validate({"name": name, "dimensions": dims, "metrics": metrics})

    runs = [record("bare", None, {"attack_success_rate": 1.0}), record("mine", "mine", {"attack_success_rate": 0.5}),
            record("morph", "d-mad(identities=60)", {"mmpmr": 0.9})]
    found = [Difference(first="bare", second="mine", setting="defence.name", values=['"none"', '"mine"'],
                        decision=d, first_rate=0.9, second_rate=0.8, difference=0.1, ci95_cluster=[0.0, 0.2], n=10,
                        people=5) for d in ("attempt_success", "clean_success")]
    (row,) = rows(runs, ["a", "b", "c"], found)
    assert (row.defence, row.undefended, row.adaptive) == ("mine", "1.00", "0.50")
    assert row.clean_cost == "-0.10 [-0.20, +0.00]"


def test_targets_and_defences_expand_into_named_runs() -> None:
    from facesec.matrix import expand

    doc = {"name": "d", "target": ["dlib-resnet", {"name": "iresnet50", "weights": "/w/backbone.pth"}],
           "defence": ["none", {"name": "jpeg", "quality": 75}], "perturbation": {"kind": "pixel"}}
    assert [r["name"] for r in expand(doc)] == [
        "d[target=dlib-resnet,defence=none]", "d[target=dlib-resnet,defence=jpeg(quality=75)]",
        "d[target=iresnet50:backbone.pth,defence=none]", "d[target=iresnet50:backbone.pth,defence=jpeg(quality=75)]"]


def test_restarts_never_lower_a_faces_success_and_can_raise_it() -> None:
    """The same PGD, the same seed: with restarts every face fooled by the single run stays fooled, and the later
    starts fool some that one start did not (a small budget leaves room)."""
    from facesec.attacks import Budget, create
    from facesec.attacks.worst_case import margins, restarts

    model = _toy(4)
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    own = torch.nn.functional.normalize(model(x).detach(), dim=-1)
    objective = Objective(model, "open-set", "dodging", own, torch.arange(64), 0.95)
    pgd, budget = create("native", "pgd", steps=3, random_start=True), Budget("linf", 8 / 255)
    once = pgd.run(x, objective, budget, torch.Generator().manual_seed(0))
    single = objective.success(margins(objective, once.x_adv))
    again = restarts(pgd, 5).run(x, objective, budget, torch.Generator().manual_seed(0))
    several = objective.success(margins(objective, again.x_adv))
    assert 0 < int(single.sum()) < 64
    assert bool((several | ~single).all()) and int(several.sum()) > int(single.sum())
    assert (again.x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_an_ensemble_keeps_each_faces_worst_case() -> None:
    """FGSM alone, then FGSM followed by PGD and Square (querying the white-box objective): every face FGSM fooled
    stays fooled, and the later attacks fool more."""
    from facesec.attacks import Budget, create
    from facesec.attacks.worst_case import WorstCase, margins

    model = _toy(4)
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    own = torch.nn.functional.normalize(model(x).detach(), dim=-1)
    objective = Objective(model, "open-set", "dodging", own, torch.arange(64), 0.95)
    budget, fgsm = Budget("linf", 8 / 255), create("native", "fgsm")
    alone = objective.success(margins(objective, fgsm.run(x, objective, budget, torch.Generator()).x_adv))
    members = [fgsm, create("native", "pgd", steps=5), create("native", "square", steps=50)]
    worst = WorstCase(members).run(x, objective, budget, torch.Generator())
    together = objective.success(margins(objective, worst.x_adv))
    assert bool((together | ~alone).all()) and int(together.sum()) > int(alone.sum())
    assert (worst.x_adv - x).abs().max() <= 8 / 255 + 1e-6


def test_an_ensemble_runs_in_a_threat_model_and_is_refused_where_it_means_nothing(
        tmp_path: Path, celeba: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = ["attack.method=fgsm", "perturbation.eps=1/255", "attack.ensemble=[{method: square, steps: 20}]"]
    results, _ = run([SMALL / "pixel.yaml"], ["attack.ensemble=[]", *overrides[:2]], out_root=tmp_path / "a",
                     progress=False)
    alone = results.to_json()["runs"][0]["metrics"]["attack_success_rate"]
    results, _ = run([SMALL / "pixel.yaml"], overrides, out_root=tmp_path / "b", progress=False)
    assert results.to_json()["runs"][0]["metrics"]["attack_success_rate"] >= alone
    assert main(["validate", str(SMALL / "pixel.yaml"), "--set", "attack.ensemble=[mi-fgsm]",
                 "--set", "capability=universal"]) == 2
    assert "field 'attack.ensemble': a worst case over attacks is taken per face" in capsys.readouterr().err
