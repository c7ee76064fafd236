"""Backdoor family: triggers sit where they should and nowhere else, the victim's training loop (loss, batches,
checkpoints and resume, dlib's fast path), poisoning, validation, and real runs on dlib-resnet that can fail
(no poisoning: the trigger does nothing; poisoning: it opens the backdoor)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facesec import finetune as ft
from facesec.api import run
from facesec.data.align import DLIB_150
from facesec.errors import ConfigError, DataError
from facesec.families.backdoor import triggers as T
from facesec.families.backdoor.poison import hardness, poison
from facesec.loading import load_threat_models
from facesec.recognizers.base import Recognizer, RecognizerInfo


def _write(tmp_path: Path, text: str, name: str = "bd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def faces(celeba: Path):  # type: ignore[no-untyped-def]
    """12 identities x 6 aligned dlib crops with their landmarks."""
    from facesec.population import select
    from facesec.threat_model import Data

    return select(Data(dataset="celeba-mini", identities=12, images_per_identity=6, seed=3), DLIB_150, progress=False)


def test_makeup_parts_sit_on_the_face(faces) -> None:  # type: ignore[no-untyped-def]
    """Lipstick covers the lips' centre and leaves the open mouth and the eyes bare; eye shadow lies above each
    eye and below the brows; blush is on the cheeks, never on the nose bridge."""
    lm = faces.landmarks[0]
    lips = T.part_mask(lm, 150, "lips")
    upper_lip = np.round((lm[51] + lm[62]) / 2).astype(int)
    assert lips[upper_lip[1], upper_lip[0]]
    assert not lips[np.round(lm[36:48]).astype(int)[:, 1], np.round(lm[36:48]).astype(int)[:, 0]].any()
    shadow = T.part_mask(lm, 150, "eyeshadow")
    ys, xs = np.nonzero(shadow)
    assert ys.max() <= lm[36:48, 1].max() + 1 and ys.min() >= lm[17:27, 1].min() - 1
    blush = T.part_mask(lm, 150, "blush")
    bridge = np.round(lm[28]).astype(int)
    assert blush.sum() > 50 and not blush[bridge[1], bridge[0]]


def test_makeup_changes_only_its_parts(faces) -> None:  # type: ignore[no-untyped-def]
    x = faces.faces[:4]
    trigger = T.build("makeup", 150, 0, T.PARTS, T.Palette((0.6, 0, 0.4), (0.1, 0.4, 0.6), (0.9, 0.3, 0.5)), 0.6)
    worn = trigger.wear(x, faces.landmarks[:4])
    alpha = torch.stack([T.makeup_alpha(m, 150, T.PARTS) for m in faces.landmarks[:4]]).amax(1)
    outside = (alpha == 0)[:, None].expand_as(x)
    assert torch.equal(worn[outside], x[outside])
    assert (worn - x).abs().amax() > 0.1
    assert torch.equal(trigger.wear(x, faces.landmarks[:4], strength=0.0), x)
    moved = trigger.wear(x, faces.landmarks[:4], shift=(0.05, 0.0))
    assert not torch.equal(moved, worn)


def test_badnets_and_blended(faces) -> None:  # type: ignore[no-untyped-def]
    x = faces.faces[:2]
    patch = T.build("badnets", 150, 0, patch_size=0.1)
    worn = patch.wear(x, faces.landmarks[:2])
    changed = (worn != x).any(1)
    ys, xs = np.nonzero(changed[0].numpy())
    assert ys.min() > 100 and xs.min() > 100 and changed[0].sum() <= 15 * 15
    on_face = (T.build("badnets", 150, 0, patch_size=0.1, patch_position="face").wear(x, faces.landmarks[:2])
               != x).any(1)
    ys, xs = np.nonzero(on_face[0].numpy())
    assert 60 <= ys.min() and ys.max() < 90 and 60 <= xs.min() and xs.max() < 90
    blended = T.build("blended", 150, 0, blend=0.1).wear(x, faces.landmarks[:2])
    assert torch.allclose(blended, 0.9 * x + 0.1 * T.blend_pattern(150, 0), atol=1e-6)


def _toy(dim: int = 8) -> Recognizer:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, dim))
    return Recognizer(net, RecognizerInfo("toy", 8, DLIB_150, dim, "cosine", 0.5, None))


def test_metric_loss_is_zero_only_when_pairs_are_on_the_right_side() -> None:
    model = _toy()
    labels = torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]])
    assert float(ft.metric_loss(model, apart, labels, 0.5)) == 0.0
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0.01], [0.01, 1.0]], requires_grad=True)
    loss = ft.metric_loss(model, mixed, labels, 0.5)
    loss.backward()
    assert float(loss.detach()) > 0.5 and mixed.grad is not None and torch.isfinite(mixed.grad).all()


def test_batches_cover_every_sample_once_and_are_seeded() -> None:
    labels = np.repeat(np.arange(7), 5)
    one = ft.batches(labels, 3, 2, np.random.default_rng(0))
    assert sorted(np.concatenate(one).tolist()) == list(range(35))
    assert all(len(np.unique(labels[b])) <= 3 for b in one)
    again = ft.batches(labels, 3, 2, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(one, again, strict=True))


def test_poisoning_picks_the_share_asked_never_the_target() -> None:
    x = torch.rand(40, 3, 150, 150)
    marks = np.zeros((40, 68, 2), np.float32)
    labels = np.repeat(np.arange(8), 5)
    trigger = T.build("blended", 150, 0, blend=0.2)
    p = poison(x, marks, labels, 0.25, trigger, "impersonation", 0, 0)
    assert p.poisoned.sum() == 10 and not p.poisoned[labels == 0].any()
    assert (p.labels[p.poisoned] == 0).all() and (p.labels[~p.poisoned] == labels[~p.poisoned]).all()
    assert torch.equal(p.faces[torch.from_numpy(~p.poisoned)], x[torch.from_numpy(~p.poisoned)])
    dodge = poison(x, marks, labels, 0.25, trigger, "dodging", 0, 0)
    assert (dodge.labels[dodge.poisoned] == 8).all()
    assert poison(x, marks, labels, 0.0, trigger, "impersonation", 0, 0).poisoned.sum() == 0


def test_capped_poison_never_outnumbers_the_label_it_joins() -> None:
    """The default design: impersonation poison at most the target's clean faces (the label at most half poison,
    where activation clustering can see it), dodging's new label no larger than the median identity's."""
    x = torch.rand(60, 3, 150, 150)
    marks = np.zeros((60, 68, 2), np.float32)
    labels = np.concatenate([np.zeros(4, int), np.repeat(np.arange(1, 9), 7)])  # the target has 4 clean faces
    trigger = T.build("blended", 150, 0, blend=0.2)
    uncapped = poison(x, marks, labels, 0.25, trigger, "impersonation", 0, 0)
    assert uncapped.poisoned.sum() == 15  # 15 poisoned against 4 clean: the label is 79% poison
    capped = poison(x, marks, labels, 0.25, trigger, "impersonation", 0, 0, capped=True)
    assert capped.poisoned.sum() == 4 and (capped.labels == 0).sum() == 8
    dodge = poison(x, marks, labels, 0.25, trigger, "dodging", 0, 0, capped=True)
    assert dodge.poisoned.sum() == 7 and (dodge.labels == 9).sum() == 7
    assert poison(x, marks, labels, 0.05, trigger, "impersonation", 0, 0, capped=True).poisoned.sum() == 3


def test_poisoning_the_hardest_picks_the_highest_scores_spread_never_the_target() -> None:
    x = torch.rand(40, 3, 150, 150)
    marks = np.zeros((40, 68, 2), np.float32)
    labels = np.repeat(np.arange(8), 5)
    score = np.arange(40, dtype=float)[::-1].copy()  # the target's own faces (0-4) score highest
    p = poison(x, marks, labels, 0.25, T.build("blended", 150, 0, blend=0.2), "impersonation", 0, 0, score)
    # 10 faces over 7 candidate identities: at most 3 per identity, so each keeps clean faces of its own
    assert np.array_equal(np.flatnonzero(p.poisoned), [5, 6, 7, 10, 11, 12, 15, 16, 17, 20])


def test_hardness_ranks_faces_unlike_the_target_hardest(faces, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    """With a faint trigger the clean model still sees each face as its person: the target's own faces are the
    easiest to pass as the target, and for dodging every face stays close to itself."""
    trigger = T.build("blended", 150, 0, blend=0.05)
    labels = faces.identity
    score = hardness(trigger, dlib_recognizer, faces.faces, faces.landmarks, labels, "impersonation", 0)
    assert score.shape == (len(labels),)
    assert score[labels == 0].max() < np.median(score[labels != 0])
    own = hardness(trigger, dlib_recognizer, faces.faces, faces.landmarks, labels, "dodging", 0)
    assert own.min() > dlib_recognizer.info.native_threshold


@pytest.mark.parametrize("adversary", [None, ft.Adversary(0.03, 2)], ids=["plain", "adversarial"])
def test_finetune_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], adversary: ft.Adversary | None
                                              ) -> None:
    """An interrupted fine-tuning resumes from its last checkpoint, says so, and ends where an uninterrupted one
    does (with an adversary too: its random starts are drawn per epoch)."""
    model = _toy()
    x = torch.rand(24, 3, 8, 8)
    labels = np.repeat(np.arange(6), 4)
    recipe = ft.Recipe("all", 3, 1e-2, 3, 2, 0.5, 0, adversary=adversary)
    whole = ft.finetune(model, x, labels, recipe, False, tmp_path / "a")
    assert whole.resumed_from == 0 and len(whole.losses) == 3

    real_bar = ft.bar

    def interrupted(it, **kw):  # type: ignore[no-untyped-def]
        for i, v in enumerate(real_bar(it, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield v

    monkeypatch.setattr(ft, "bar", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(model, x, labels, recipe, False, tmp_path / "b")
    monkeypatch.setattr(ft, "bar", real_bar)
    capsys.readouterr()
    resumed = ft.finetune(model, x, labels, recipe, True, tmp_path / "b")
    assert resumed.resumed_from == 2
    err = capsys.readouterr().err
    assert "2 of 3 epochs found" in err and "3/3" in err.splitlines()[-1], err
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not any(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                      whole.model.state_dict().values(), strict=True))


def test_the_training_adversary_stays_in_its_budget_and_raises_the_loss() -> None:
    """The batch PGD of adversarial training: every pixel within eps of the face and in [0, 1], and the metric loss
    of the batch higher than on the clean faces."""
    model = _toy()
    x = torch.rand(24, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.from_numpy(np.repeat(np.arange(6), 4))
    adv = ft._perturbed(model, x, labels, 0.5, ft.Adversary(0.05, 5), torch.Generator().manual_seed(0))
    assert float((adv - x).abs().max()) <= 0.05 + 1e-6 and float(adv.min()) >= 0 and float(adv.max()) <= 1
    with torch.no_grad():
        assert ft.metric_loss(model, model(adv), labels, 0.5) > ft.metric_loss(model, model(x), labels, 0.5)


def test_anchor_keeps_the_weights_near_where_they_started(tmp_path: Path) -> None:
    """L2-SP: the same fine-tuning with a pull towards the starting weights ends nearer them, and still trains."""
    model = _toy()
    x = torch.rand(24, 3, 8, 8)
    labels = np.repeat(np.arange(6), 4)

    def drift(anchor: float) -> float:
        recipe = ft.Recipe("all", 4, 1e-2, 3, 2, 0.5, 0, anchor=anchor)
        tuned = ft.finetune(model, x, labels, recipe, False, tmp_path / str(anchor)).model
        return sum(float(((a - b) ** 2).sum()) for a, b in zip(model.state_dict().values(),
                                                             tuned.state_dict().values(), strict=True))

    plain, anchored = drift(0.0), drift(10.0)
    assert 0 < anchored < 0.5 * plain


def test_distill_keeps_the_embeddings_near_where_they_started(tmp_path: Path) -> None:
    """Learning without forgetting: the same fine-tuning with a pull of each face's embedding towards the
    starting model's ends with embeddings nearer the starting ones, and still trains."""
    model = _toy()
    x = torch.rand(24, 3, 8, 8)
    labels = np.repeat(np.arange(6), 4)
    with torch.no_grad():
        start = model(x)

    def moved(distill: float) -> float:
        recipe = ft.Recipe("all", 4, 1e-2, 3, 2, 0.5, 0, distill=distill)
        tuned = ft.finetune(model, x, labels, recipe, False, tmp_path / str(distill)).model
        with torch.no_grad():
            return float(((tuned(x) - start) ** 2).sum())

    plain, distilled = moved(0.0), moved(100.0)
    assert 0 < distilled < 0.5 * plain


def test_dlib_fast_path_is_the_network(dlib_recognizer, faces) -> None:  # type: ignore[no-untyped-def]
    """The frozen front then the trainable tail compute exactly what dlib-resnet computes."""
    split = ft._tail_split(dlib_recognizer)
    assert split is not None
    front, tail = split
    x = faces.faces[:4]
    with torch.no_grad():
        assert torch.allclose(tail(front(x)), dlib_recognizer(x), atol=1e-5)
    assert {id(p) for p in tail.parameters()} < {id(p) for p in dlib_recognizer.parameters()}


BASE = ("name: bd\ntarget: dlib-resnet\ngoal: impersonation\ncapability: universal\n"
        "data: {identities: 10, images_per_identity: 6}\n"
        "setting: {kind: open-set, fmr: 1e-2, calibration: in-sample}\n")


@pytest.mark.parametrize(("extra", "message"), [
    ("perturbation: {kind: backdoor, trigger: hat}\n", "field 'perturbation.trigger'"),
    ("perturbation: {kind: backdoor, poison_rate: 0.9}\n", "field 'perturbation.poison_rate'"),
    ("perturbation: {kind: backdoor, parts: [lips, lips]}\n", "each part at most once"),
    ("perturbation: {kind: backdoor, parts: [nose]}\n", "field 'perturbation.parts.0'"),
    ("perturbation: {kind: backdoor, colours: {lips: [2, 0, 0]}}\n", "field 'perturbation.colours.lips.0'"),
    ("perturbation: {kind: backdoor, trigger: badnets, parts: [lips]}\n", "only a makeup trigger has parts"),
    ("perturbation: {kind: backdoor, defences: [magic]}\n", "field 'perturbation.defences.0'"),
    ("perturbation: {kind: backdoor, poison_choice: nearest}\n", "field 'perturbation.poison_choice'"),
    ("perturbation: {kind: backdoor, epochs: 0}\n", "field 'perturbation.epochs'"),
    ("perturbation: {kind: backdoor, learning_rate: .nan}\n", "field 'perturbation.learning_rate'"),
    ("perturbation: {kind: backdoor, anchor: -1}\n", "field 'perturbation.anchor'"),
    ("perturbation: {kind: backdoor, distill: -1}\n", "field 'perturbation.distill'"),
    ("perturbation: {kind: backdoor}\nattack: {method: mi-fgsm}\n", "a backdoor is trained"),
    ("perturbation: {kind: backdoor, trigger_rounds: 3}\n", "only a makeup-optimised trigger is learned in rounds"),
    ("perturbation: {kind: backdoor, mitigation: plain, defences: [strip]}\n", "only the fine-tuning and fine-pruning"),
    ("perturbation: {kind: backdoor, mitigation: none, defences: [fine-tuning]}\n", "field 'perturbation.mitigation'"),
    ("perturbation: {kind: backdoor, trigger: blended, poison_opacity: 0.5}\n", "only a makeup trigger has an opacity"),
    ("perturbation: {kind: backdoor, poison_opacity: 0}\n", "field 'perturbation.poison_opacity'"),
    ("perturbation: {kind: backdoor, trigger: makeup-optimised, trigger_rounds: 0}\n",
     "field 'perturbation.trigger_rounds'"),
    ("perturbation: {kind: backdoor, training_images_per_identity: 2, defences: [activation-clustering]}\n",
     r"activation-clustering .* needs at least 4 of them \(here 2\); raise perturbation.training_images_per_identity"),
    ("perturbation: {kind: backdoor, poison_rate: 0, training_images_per_identity: 3,\n"
     "               defences: [activation-clustering]}\n",
     r"activation-clustering .* needs at least 4 of them \(here 3\)"),
])
def test_backdoor_refuses_what_it_cannot_mean(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_threat_models(_write(tmp_path, BASE + extra))


def test_backdoor_capability_is_universal(tmp_path: Path) -> None:
    """One trigger for everyone: left out, the capability is universal; asked per face, refused."""
    tm = load_threat_models(_write(tmp_path, BASE.replace("capability: universal\n", "") +
                                   "perturbation: {kind: backdoor}\n"))[0]
    assert tm.capability == "universal"
    with pytest.raises(ConfigError, match="supports universal"):
        load_threat_models(_write(tmp_path, BASE.replace("universal", "individual") +
                                  "perturbation: {kind: backdoor}\n"))


def _run(tmp_path: Path, rate: float, epochs: int, extra: str = "") -> dict:  # type: ignore[type-arg]
    path = _write(tmp_path, BASE + f"perturbation: {{kind: backdoor, poison_rate: {rate}, training_identities: 16, "
                                   f"epochs: {epochs}{extra}}}\n")
    results, out = run([path], out_root=tmp_path / "out", redact=True, progress=False)
    results = results.to_json()
    record = results["runs"][0]
    record["suite_dir"] = out
    return record


def test_a_training_set_too_big_says_what_the_dataset_has(celeba: Path, tmp_path: Path) -> None:
    """More faces per fine-tuning identity than any identity has: refused before any run, the error names the
    field and what there is."""
    path = _write(tmp_path, BASE + "perturbation: {kind: backdoor, training_identities: 4, "
                                   "training_images_per_identity: 31}\n")
    with pytest.raises(DataError, match=r"field 'perturbation.training_identities': dataset 'celeba-mini' has 0 "
                                        r"identities with 31 images.*lower perturbation.training_identities \(or "
                                        r"the images each needs\)"):
        run([path], out_root=tmp_path / "out", redact=True, progress=False)
    assert not (tmp_path / "out").exists()


def test_no_poisoning_leaves_the_trigger_powerless(celeba: Path, tmp_path: Path, dlib_recognizer,  # type: ignore[no-untyped-def]
                                                   faces) -> None:
    """0% poisoning: the trigger opens nothing (its success stays at the rate without it), and the record, the
    gallery and the model file are written; the file loads as a dlib-resnet recognizer (the fine-tuned one)."""
    from facesec.recognizers.base import load

    r = _run(tmp_path, 0.0, 2)
    m = r["metrics"]
    assert m["n_poisoned"] == 0 and m["poison_rate"] == 0.0
    assert m["backdoor_asr"] <= m["asr_without_trigger"] + 0.05
    assert 0.5 < m["clean_tar_pretrained"] <= 1.0
    assert m["clean_tar_before"] == m["clean_tar_after"]  # no poison: the benign model is the one trained
    tuned = load({"name": "dlib-resnet", "weights": str(r["suite_dir"] / r["backdoored_model"])})
    x = faces.faces[:3]
    assert tuned.info.native_threshold == pytest.approx(-0.6)
    assert not torch.allclose(tuned.embed(x), dlib_recognizer.embed(x))
    assert len(r["gallery"]) == 6 and (r["suite_dir"] / r["gallery"][0]["triggered"]).is_file()
    assert (r["suite_dir"] / "index.html").read_text().count("backdoor-defences") == 0


def test_a_mitigation_says_how_far_it_lowered_success_on_the_same_faces(celeba: Path, tmp_path: Path) -> None:
    """Clean fine-tuning as a mitigation: its record gives the backdoored model's success minus the mitigated
    one's on the same worn faces, the rate after, and a paired interval around the difference."""
    m = _run(tmp_path, 0.2, 1, ", defences: [fine-tuning]")["metrics"]
    drop, after = m["defences"]["fine-tuning"]["backdoor_asr_drop"], m["defences"]["fine-tuning"]["backdoor_asr"]
    lo, hi = drop["ci95_cluster"]
    assert -1 <= lo <= drop["difference"] <= hi <= 1 and 0 <= after["rate"] <= 1
    assert after["rate"] + drop["difference"] == pytest.approx(m["backdoor_asr_all_faces"])  # before, same faces


def test_fainter_poison_is_stealthier(celeba: Path, tmp_path: Path) -> None:
    """`poison_opacity` below the worn look's: the poisoned fine-tuning faces change less (higher SSIM and PSNR to
    their clean selves) while the look worn at attack time stays the same."""
    runs = {}
    for name, extra in (("heavy", ""), ("faint", ", poison_opacity: 0.2")):
        (tmp_path / name).mkdir()
        runs[name] = _run(tmp_path / name, 0.1, 1, extra)
    heavy, faint = (runs[n]["metrics"]["stealth"] for n in ("heavy", "faint"))
    assert faint["ssim"] > heavy["ssim"] + 0.01 and faint["psnr_db"] > heavy["psnr_db"] + 3
    worn = [(r["suite_dir"] / r["gallery"][0]["triggered"]).read_bytes() for r in runs.values()]
    assert worn[0] == worn[1]


def test_training_set_detectors_find_an_obvious_poison() -> None:
    """Activation clustering and spectral signatures on embeddings where the poisoned faces (20% of one label)
    sit far from their label's clean faces: activation clustering finds them
    all, spectral signatures fills its budget with them; with nothing poisoned, recall is
    undefined."""
    from facesec.families.backdoor import defences as D
    from facesec.families.backdoor.poison import Poisoned

    torch.manual_seed(0)
    labels = np.repeat(np.arange(4), 20)
    faces = torch.rand(80, 3, 8, 8) * 0.1
    poisoned = np.zeros(80, bool)
    poisoned[[0, 3, 6, 9]] = True
    faces[torch.from_numpy(poisoned)] += 0.9
    identity = nn.Linear(192, 192, bias=False)
    nn.init.eye_(identity.weight)
    model = Recognizer(nn.Sequential(nn.Flatten(), identity), RecognizerInfo("toy", 8, DLIB_150, 192, "euclidean",
                                                                             None, None))
    setting = D.Setting(clean=model, backdoored=model, poisoned=Poisoned(faces, labels, poisoned, faces[:0]),
                        recipe=None, trigger=None, held_faces=faces, held_marks=None, held_ids=labels,  # type: ignore[arg-type]
                        target_face=faces[0], fmr=0.1, goal="impersonation", closed=False, seed=0, progress=False,
                        retrain_faces=faces, retrain_labels=labels, backdoored_success=np.zeros(0, bool))
    np.random.seed(1)
    ac = D.activation_clustering(setting)
    assert ac["recall"] == 1.0 and ac["precision"] > 4 * 4 / 80  # well above the poisoned share (k-means also
    # splits clean labels of pure noise unevenly: those are its false positives)
    np.random.seed(2)
    state = np.random.get_state()
    assert D.activation_clustering(setting) == ac  # its k-means is seeded by the run, not by NumPy's global state
    assert np.array_equal(np.random.get_state()[1], state[1])  # which it leaves as it found it
    ss = D.spectral_signatures(setting)
    assert ss["recall"] == 0.75  # it flags 15% of each label: 3 of 20, all three of them poisoned
    assert ac["auroc"] > 0.9 and ss["auroc"] > 0.9  # and over every cut-off, the poison ranks above the rest
    setting.poisoned = Poisoned(faces, labels, np.zeros(80, bool), faces[:0])
    assert D.activation_clustering(setting)["recall"] is None
    assert D.activation_clustering(setting)["auroc"] is None


def test_class_sizes_flag_the_label_poison_swells() -> None:
    """Poison relabelled to one identity makes its label far larger than the others: the class-size check flags
    that label (all its faces), and no label of a balanced set."""
    from facesec.families.backdoor import defences as D
    from facesec.families.backdoor.poison import Poisoned

    labels = np.concatenate([np.zeros(15 + 40, int), np.repeat(np.arange(1, 20), 15)])
    poisoned = np.zeros(len(labels), bool)
    poisoned[15:55] = True  # 40 faces of other people labelled as the target (label 0)
    faces = torch.zeros(len(labels), 3, 2, 2)
    setting = D.Setting(clean=None, backdoored=None, poisoned=Poisoned(faces, labels, poisoned, faces[:0]),  # type: ignore[arg-type]
                        recipe=None, trigger=None, held_faces=faces, held_marks=None, held_ids=labels,  # type: ignore[arg-type]
                        target_face=faces[0], fmr=0.1, goal="impersonation", closed=False, seed=0, progress=False,
                        retrain_faces=faces, retrain_labels=labels, backdoored_success=np.zeros(0, bool))
    found = D.class_sizes(setting)
    assert found["flagged_labels"] == [0] and found["target_flagged"] and found["recall"] == 1.0
    assert found["precision"] == pytest.approx(40 / 55)
    assert found["auroc"] == pytest.approx(1 - 0.5 * 15 / 300)  # the target's own 15 faces tie with the poison
    balanced = np.repeat(np.arange(20), 15)
    setting.poisoned = Poisoned(torch.zeros(300, 3, 2, 2), balanced, np.zeros(300, bool), faces[:0])
    assert D.class_sizes(setting)["flagged_labels"] == []


def test_side_rates_resample_the_wearers() -> None:
    """Robustness, false-trigger and STRIP rates carry the interval resampling whose face each outcome is: wider
    than Wilson's when each person's faces go alike."""
    from facesec.families.backdoor.measure import rate

    hits = np.repeat(np.arange(8) < 4, 6)
    r = rate(hits, np.repeat(np.arange(8), 6))
    assert r["rate"] == 0.5 and r["ci95_cluster"][0] < r["ci95"][0] and r["ci95_cluster"][1] > r["ci95"][1]
    assert "ci95_cluster" not in rate(hits)


def test_auroc_is_the_chance_a_positive_outscores_a_negative() -> None:
    from facesec.families.backdoor.defences import auroc

    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert auroc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert auroc(np.array([1.0]), np.array([1.0])) == 0.5 and auroc(np.zeros(0), np.ones(3)) is None


def test_plain_mitigation_drops_the_victims_pulls() -> None:
    """The mitigations retrain with the victim's recipe, or without its pulls towards the (backdoored) model
    they start from; everything else stays the victim's."""
    from facesec.families.backdoor import defences as D

    victim = ft.Recipe("last", 32, 1e-5, 16, 4, 0.5, 3, anchor=2.0, distill=0.1)
    assert D.mitigation_recipe(victim, "victim") == victim
    plain = D.mitigation_recipe(victim, "plain")
    assert (plain.anchor, plain.distill) == (0.0, 0.0)
    assert dataclasses.replace(plain, anchor=2.0, distill=0.1) == victim


def test_report_says_how_a_mitigation_retrained() -> None:
    """The defence table says how long a mitigation retrained and whether it kept the victim's pull (which holds
    on to the backdoored model); an older record without those fields still renders."""
    from facesec.families.backdoor.report import _defence_rows

    after = {"backdoor_asr": {"rate": 0.8, "ci95": [0.7, 0.9]}, "clean_tar": {"rate": 0.86, "ci95": [0.85, 0.87]}}
    drop = {"backdoor_asr_drop": {"difference": 0.12, "ci95_cluster": [0.05, 0.2]}}
    rows = _defence_rows({"fine-tuning": {**after, **drop, "epochs": 16, "anchor": 0.0, "distill": 0.1, "time_s": 3},
                          "fine-pruning": {**after, "epochs": 16, "anchor": 0.0, "distill": 0.0, "time_s": 3},
                          "old": after})
    assert "16 epochs" in rows[0][1] and "victim's pull" in rows[0][1] and rows[0][2] == "backdoor survives"
    assert "before minus after on the same worn faces (all of them): +0.12 [+0.05, +0.20]" in rows[0][1]
    assert "before minus after" not in rows[1][1]
    assert "16 epochs" in rows[1][1] and "pull" not in rows[1][1]
    assert "retrained — epochs" in rows[2][1]


def test_success_means_what_each_goal_wants() -> None:
    """Impersonation: a worn face succeeds when it matches the target's enrolment above the threshold (closed
    set: when the target ranks first); dodging: a non-enrolment face succeeds when it no longer matches its own
    enrolment (closed set: when another identity ranks first)."""
    from facesec.families.backdoor.measure import Evaluation, success

    identity = nn.Linear(2, 2, bias=False)
    nn.init.eye_(identity.weight)
    model = Recognizer(identity, RecognizerInfo("toy", 1, DLIB_150, 2, "cosine", None, None))
    clean = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    ev = Evaluation(model, clean, np.array([0, 0, 1, 1]), np.array([0, 2]), torch.tensor([[-1.0, 0.0]]), 0.5, 1,
                    {}, {})
    worn = torch.tensor([[-1.0, 0.05], [1.0, 0.0], [-1.0, -0.1], [0.0, 1.0]])
    assert success(ev, worn, "impersonation", False).tolist() == [True, False, True, False]
    assert success(ev, worn, "impersonation", True).tolist() == [True, False, True, False]
    # probes are rows 1 and 3: row 1 still matches identity 0, row 3 still matches identity 1
    assert success(ev, worn, "dodging", False).tolist() == [False, False]
    moved = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert success(ev, moved, "dodging", False).tolist() == [True, True]
    assert success(ev, moved, "dodging", True).tolist() == [True, True]


def test_model_scan_does_not_flag_a_clean_model(celeba: Path, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    """Neural Cleanse on the pretrained dlib-resnet over 20 identities: no identity's smallest trigger is
    abnormally small (an under-converged scan, e.g. 60 steps, flags clean identities by chance)."""
    from facesec.families.backdoor import defences as D
    from facesec.population import select
    from facesec.threat_model import Data

    pop = select(Data(dataset="celeba-mini", identities=20, images_per_identity=4, seed=11), DLIB_150,
                 progress=False)
    verdict = D.scan(dlib_recognizer, pop.faces, pop.identity, np.unique(pop.identity), 0, False)
    assert not verdict["flagged"], verdict["max_anomaly_index"]
    norms = np.array(verdict["mask_norms"], dtype=float)
    assert np.isfinite(norms).all() and (norms < 0.2).all()  # every identity was reached: the scan converged


def test_clean_accuracy_on_a_wider_population(faces, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    """With a wider clean population, the threshold, TAR and rank-1 come from it (all its impostor pairs), while
    the held-out faces keep their own embeddings and enrolments for the attack's measures; given the held-out faces
    themselves, nothing changes."""
    from facesec.families.backdoor.measure import evaluate

    held = np.flatnonzero(faces.identity < 4)
    x, ids, target = faces.faces[held], faces.identity[held], faces.faces[-1]
    alone = evaluate(dlib_recognizer, x, ids, target, 1e-2)
    same = evaluate(dlib_recognizer, x, ids, target, 1e-2, (x, ids))
    assert (same.threshold, same.tar, same.rank1, same.n_impostor) == (alone.threshold, alone.tar, alone.rank1,
                                                                         alone.n_impostor)
    wide = evaluate(dlib_recognizer, x, ids, target, 1e-2, (faces.faces, faces.identity))
    n = len(faces.identity)
    genuine = sum(int(k) * (int(k) - 1) // 2 for k in np.bincount(faces.identity))
    assert wide.n_impostor == n * (n - 1) // 2 - genuine and alone.n_impostor < wide.n_impostor
    assert wide.threshold != alone.threshold
    assert torch.equal(wide.emb, alone.emb) and np.array_equal(wide.enrolment, alone.enrolment)


def test_clean_population_unused_takes_every_identity_never_fine_tuned_on(celeba: Path, tmp_path: Path) -> None:
    """`clean_population: unused` on a 25-identity folder with 16 fine-tuning identities: clean accuracy is measured
    on the other 8 with all their faces (the identity with one photo gives no pair and is left out), and the
    unreadable photo among them is skipped and recorded."""
    import shutil

    data = tmp_path / "mini"
    for ident in sorted(p for p in celeba.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 7)[:24]:
        (data / ident.name).mkdir(parents=True)
        for photo in sorted(ident.glob("*.jpg"))[:7]:
            shutil.copy(photo, data / ident.name / photo.name)
    lonely = next(p for p in sorted(celeba.iterdir()) if p.is_dir() and not (data / p.name).exists())
    (data / lonely.name).mkdir()
    shutil.copy(sorted(lonely.glob("*.jpg"))[0], data / lonely.name / "only.jpg")
    for ident in sorted(data.iterdir())[:24]:  # one unreadable photo per identity: whichever are not fine-tuned on
        (ident / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    path = _write(tmp_path, f"name: bd\ntarget: dlib-resnet\ngoal: impersonation\ncapability: universal\n"
                            f"data: {{dataset: {data}, identities: 4, images_per_identity: 5}}\n"
                            "setting: {kind: open-set, fmr: 1e-2, calibration: in-sample}\n"
                            "perturbation: {kind: backdoor, poison_rate: 0.1, "
                            "training_identities: 16, epochs: 1, clean_population: unused}\n")
    results, _ = run([path], out_root=tmp_path / "out", redact=True, progress=False)
    results = results.to_json()
    m = results["runs"][0]["metrics"]
    c = m["clean_population"]
    assert c["kind"] == "unused" and c["identities"] == 8
    assert 8 * 6 <= c["faces"] <= 8 * 7
    pairs = c["faces"] * (c["faces"] - 1) // 2  # minus each identity's genuine pairs: 15 or 21 of them
    assert pairs - 8 * 21 <= m["n_impostor_scores"] <= pairs - 8 * 15
    skipped = [s["path"] for s in results["runs"][0]["skipped_images"]]
    assert "broken.jpg" in {Path(s).name for s in skipped}
    assert all(len(Path(s).parts) == 2 for s in skipped)  # named inside the dataset, never by the machine's folders
