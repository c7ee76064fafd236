"""Transfer attacks: surrogates, ensembles, DI/TI, dlib's C++ model as a black box, students."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from facesec.attacks import Ensemble
from facesec.attacks.pixel import GradientAttack
from facesec.data.align import DLIB_150
from facesec.data.pipeline import align_faces
from facesec.engine import run_threat_model
from facesec.errors import ConfigError, DataError
from facesec.recognizers.base import load
from facesec.recognizers.students import build
from facesec.surrogates.distill import CARD, STUDENT, Settings, mix, probe, train
from facesec.threat_model import ThreatModel


def _tm(celeba: Path, **fields: object) -> ThreatModel:
    doc = {"name": "t", "data": {"dataset": str(celeba), "identities": 5, "images_per_identity": 3},
           "perturbation": {"kind": "pixel", "eps": "2/255"}, "attack": {"steps": 5, "sanity_samples": 3}}
    return ThreatModel.model_validate({**doc, **fields})


def test_transfer_from_the_target_itself_is_the_white_box_attack(celeba: Path) -> None:
    cpu = torch.device("cpu")
    # transfer attacks use every step (no early stop on the surrogate): so does the white-box reference here
    attack = {"steps": 5, "sanity_samples": 3, "params": {"early_stop": False}}
    white = run_threat_model(_tm(celeba, attack=attack), cpu, progress=False).record.to_json()
    port = {"kind": "transfer", "surrogates": ["dlib-resnet"]}
    transfer = run_threat_model(_tm(celeba, attack=attack, knowledge=port), cpu, progress=False).record.to_json()
    assert transfer["dimensions"]["knowledge"] == "transfer from dlib-resnet"
    assert white["dimensions"]["knowledge"] == "white-box"
    for key in ("attack_success_rate", "n_attempts", "similarity_after_mean"):
        assert transfer["metrics"][key] == pytest.approx(white["metrics"][key], abs=1e-6)
    assert transfer["metrics"]["surrogate_success_rate"] == pytest.approx(white["metrics"]["attack_success_rate"])
    assert "surrogate_success_rate" not in white["metrics"]


def test_dlib_cpp_is_a_black_box_reached_by_transfer(celeba: Path) -> None:
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="gives no gradients"):
        run_threat_model(_tm(celeba, target="dlib-cpp"), cpu, progress=False)
    tm = _tm(celeba, target="dlib-cpp", knowledge={"kind": "transfer", "surrogates": ["dlib-resnet"]})
    record = run_threat_model(tm, cpu, progress=False).record.to_json()
    # the port and dlib's C++ model agree to 1e-6: crafting on one fools the other almost equally
    assert record["metrics"]["attack_success_rate"] >= record["metrics"]["surrogate_success_rate"] - 0.15
    assert record["metrics"]["attack_success_rate"] > record["metrics"]["noise_success_rate"]


def test_onnxruntime_target_is_query_only_and_matches_the_port(celeba: Path, face_files: list[Path],
                                                              dlib_recognizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    path = tmp_path / "dlib.onnx"
    torch.onnx.export(dlib_recognizer.net, (torch.rand(1, 3, 150, 150),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["e"], dynamic_axes={"x": {0: "n"}, "e": {0: "n"}})
    target = {"name": "onnxruntime", "weights": str(path), "input_size": 150, "template": "dlib-chip-150",
              "embedding_size": 128, "comparison": "euclidean", "threshold": -0.6, "mean": 0.0, "std": 1.0}
    deployed = load(target)
    x = align_faces(face_files[:3], DLIB_150, progress=False).tensor()
    assert not deployed.info.differentiable
    assert (deployed.embed(x) - dlib_recognizer.embed(x)).abs().max() < 1e-4
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="gives no gradients"):
        run_threat_model(_tm(celeba, target=target), cpu, progress=False)
    port = {"kind": "transfer", "surrogates": ["dlib-resnet"]}
    record = run_threat_model(_tm(celeba, target=target, knowledge=port), cpu, progress=False).record.to_json()
    assert record["metrics"]["attack_success_rate"] >= record["metrics"]["surrogate_success_rate"] - 0.15
    queries = {"kind": "query", "output": "scores", "budget": 30}
    attack = {"method": "square", "library": "native", "steps": 30, "sanity_samples": 3}
    tm = _tm(celeba, target=target, knowledge=queries, attack=attack)
    record = run_threat_model(tm, cpu, progress=False).record.to_json()
    assert max(int(q) for q in record["metrics"]["asr_at_queries"]) == 30


def test_surrogate_with_its_own_alignment_sees_the_perturbation_where_it_was_made(face_files: list[Path]) -> None:
    from facesec.attacks import Objective
    from facesec.attacks.reframe import Reframed, crop_grid
    from facesec.data.align import ARCFACE_112

    mine = ARCFACE_112
    target = align_faces(face_files[:3], DLIB_150, progress=False)
    own = align_faces(face_files[:3], mine, progress=False)
    lm_t, lm_o = np.stack(target.landmarks), np.stack(own.landmarks)
    grid = crop_grid(lm_t, lm_o, DLIB_150.size, mine.size)
    surrogate = load("iresnet18")  # random weights: only the geometry and the gradients matter here
    objective = Objective(surrogate, "open-set", "dodging", torch.randn(3, 512), torch.arange(3))
    seen = Reframed(objective, target.tensor(), own.tensor(), grid)
    clean = target.tensor()
    assert torch.equal(seen.view(clean, slice(None)), own.tensor())
    # a bright dot on each face's nose tip (landmark 30) in the target's crop lands on its nose tip in the surrogate's
    yy, xx = torch.meshgrid(torch.arange(150.0), torch.arange(150.0), indexing="ij")
    dots = torch.stack([torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8) for x, y in lm_t[:, 30]])
    moved = seen.view((clean + 0.5 * dots[:, None]).clamp(0, 1), slice(None)) - own.tensor()
    peaks = moved.abs().sum(1).flatten(1).argmax(1)
    found = np.stack([(peaks % mine.size).numpy(), (peaks // mine.size).numpy()], 1)
    assert np.abs(found - lm_o[:, 30]).max() <= 2.0
    x = clean.clone().requires_grad_(True)
    seen.score(x, torch.arange(3)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_transfer_from_a_surrogate_that_aligns_differently(celeba: Path) -> None:
    tm = _tm(celeba, knowledge={"kind": "transfer", "surrogates": ["iresnet18"]})
    record = run_threat_model(tm, torch.device("cpu"), progress=False).record.to_json()
    assert record["dimensions"]["knowledge"] == "transfer from iresnet18"
    assert 0 <= record["metrics"]["surrogate_success_rate"] <= 1
    assert record["validity"]["unbounded_n"] > 0


def test_ensembles_need_the_native_library() -> None:
    with pytest.raises(ValueError, match="library: native only"):
        ThreatModel.model_validate({"name": "e", "attack": {"library": "art"}, "knowledge": {
            "kind": "transfer", "surrogates": ["dlib-resnet", "dlib-resnet"]}})


def test_ensemble_margin_is_the_members_mean(face_files: list[Path], dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    from facesec.attacks import Objective

    x = align_faces(face_files[:3], DLIB_150, progress=False).tensor()
    emb = dlib_recognizer.embed(x)
    a = Objective(dlib_recognizer, "open-set", "dodging", emb.flip(0), torch.arange(3), threshold=-0.6)
    b = Objective(dlib_recognizer, "open-set", "dodging", emb.flip(0), torch.arange(3), threshold=-0.4)
    both = Ensemble([a, b])
    idx = torch.arange(3)
    assert torch.allclose(both.score(x, idx), (a.score(x, idx) + b.score(x, idx)) / 2)
    assert torch.equal(both.subset(torch.tensor([1])).members[1].labels, torch.tensor([1]))


def test_input_diversity_and_translation_invariance() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 40, 40, generator=g)
    assert torch.equal(GradientAttack("pgd")._diverse(x, g), x)
    always = GradientAttack("di", diversity=1.0)
    shrunk = [always._diverse(x, torch.Generator().manual_seed(s)) for s in range(6)]
    assert all(d.shape == x.shape for d in shrunk)
    assert any((d == 0.5).all(dim=1).any() for d in shrunk)  # grey padding somewhere
    ti = GradientAttack("ti", ti_kernel=7)
    flat = torch.ones(1, 3, 40, 40)
    assert torch.allclose(ti._smooth(flat)[..., 5:-5, 5:-5], flat[..., 5:-5, 5:-5], atol=1e-5)
    noise = torch.randn(1, 3, 40, 40, generator=g)
    assert ti._smooth(noise).std() < 0.5 * noise.std()


@pytest.fixture
def tiny_dataset(celeba: Path, tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    for person in sorted(p for p in celeba.iterdir() if p.is_dir())[:6]:
        os.symlink(person.resolve(), root / person.name)  # FACESEC_DATA may be relative
    return root


def test_student_training_counts_queries_and_resumes(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "student"
    settings = Settings("dlib-resnet", "iresnet18", str(tiny_dataset), epochs=1, batch_size=8, holdout=0.34)
    card = train(settings, out, torch.device("cpu"), progress=False)
    n_train = card["data"]["train_faces"]
    per_epoch = (n_train // 8) * (8 + 2)  # each batch of 8 and a quarter of it probed again
    assert card["queries"] == n_train + per_epoch  # the teacher's mean, then one query per image it saw
    assert len(card["history"]) == 1 and -1 <= card["history"][0]["held_out_centred_cosine"] <= 1
    assert card["data"]["held_out_identities"] == 2
    assert set(card["held_out"]) == {"trained", "untrained"}
    assert (out / STUDENT).is_file() and json.loads((out / CARD).read_text())["queries"] == card["queries"]
    resumed = train(Settings(**{**settings.__dict__, "epochs": 2}), out, torch.device("cpu"), resume=True,
                    progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["queries"] == card["queries"] + per_epoch
    with pytest.raises(ConfigError, match="only --epochs may grow"):
        train(Settings(**{**settings.__dict__, "lr": 0.1}), out, torch.device("cpu"), resume=True, progress=False)
    student = load({"name": "surrogate", "weights": str(out)})
    assert student.info.template.name == DLIB_150.name and student.info.comparison == "euclidean"
    assert student(torch.rand(2, 3, 150, 150)).shape == (2, 128)


def test_transfer_attacks_only_people_the_student_never_learnt_from(tiny_dataset: Path, tmp_path: Path) -> None:
    """The attacked people are the student's held-out ones, whatever data.seed draws; a run that needs more is
    refused saying why; a card that does not list its people is flagged."""
    out = tmp_path / "student"
    settings = Settings("dlib-resnet", "iresnet18", str(tiny_dataset), epochs=1, batch_size=8, holdout=0.34)
    card = train(settings, out, torch.device("cpu"), progress=False)
    trained = set(card["data"]["train_identities"])
    assert len(trained) == 4
    port = {"kind": "transfer", "surrogates": [{"name": "surrogate", "weights": str(out)}]}
    for seed in (0, 1):
        tm = _tm(tiny_dataset, knowledge=port, data={"dataset": str(tiny_dataset), "identities": 2,
                                                     "images_per_identity": 3, "seed": seed})
        done = run_threat_model(tm, torch.device("cpu"), progress=False)
        record = done.record.to_json()
        assert not trained & set(done.samples()["identity"])
        assert record["metrics"]["n_surrogate_people_left_out"] == 4
        assert not any("does not say" in f for f in record["validity"]["flags"])
    with pytest.raises(DataError, match="4 of them are people the surrogates learnt from"):
        run_threat_model(_tm(tiny_dataset, knowledge=port, data={"dataset": str(tiny_dataset), "identities": 3,
                                                                 "images_per_identity": 3}),
                         torch.device("cpu"), progress=False)
    alias = tmp_path / "alias"  # the same folder under another name: the same people
    os.symlink(tiny_dataset, alias)
    done = run_threat_model(_tm(alias, knowledge=port, data={"dataset": str(alias), "identities": 2,
                                                            "images_per_identity": 3}), torch.device("cpu"),
                            progress=False)
    assert not trained & set(done.samples()["identity"])
    older = json.loads((out / CARD).read_text())
    del older["data"]["train_identities"]
    (out / CARD).write_text(json.dumps(older))
    tm = _tm(tiny_dataset, knowledge=port, data={"dataset": str(tiny_dataset), "identities": 2,
                                                 "images_per_identity": 3})
    record = run_threat_model(tm, torch.device("cpu"), progress=False).record.to_json()
    assert any("does not say on whom" in f for f in record["validity"]["flags"])


def test_mixup_blends_a_share_of_the_batch_and_leaves_the_rest() -> None:
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = mix(x, 0.5, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.equal(out[4:], x[4:])
    assert not torch.equal(out[:4], x[:4])
    assert (out[:4].amin(dim=(1, 2, 3)) >= x.amin() - 1e-6).all() and (out[:4] <= x.amax() + 1e-6).all()
    assert torch.equal(mix(x, 0.0, torch.Generator()), x)


def test_probes_stay_within_their_step_and_move_the_student() -> None:
    torch.manual_seed(0)
    student = build("dlib-resnet", 128).train()
    x = torch.rand(8, 3, 150, 150)
    out = probe(student, x, 0.25, 8 / 255, torch.Generator().manual_seed(0), bf16=False)
    assert out.shape == (10, 3, 150, 150) and torch.equal(out[:8], x) and student.training
    moved = out[8:] - x[6:]
    assert moved.abs().max() <= 8 / 255 + 1e-6 and 0 <= out.min() and out.max() <= 1
    student.eval()
    with torch.no_grad():  # the probe's step moves the embedding more than a random one of the same size
        base, pushed = student(x[6:]), student(out[8:])
        signs = torch.randint(0, 2, moved.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
        random = student((x[6:] + 8 / 255 * signs).clamp(0, 1))
    assert (pushed - base).norm(dim=1).mean() > (random - base).norm(dim=1).mean()
    assert torch.equal(probe(student, x, 0.0, 8 / 255, torch.Generator(), bf16=False), x)


def _oracle_setup(face_files: list[Path], model):  # type: ignore[no-untyped-def]
    from facesec.attacks import Objective

    x = align_faces(face_files[:3], DLIB_150, progress=False).tensor()
    return x, Objective(model, "open-set", "dodging", model.embed(x.flip(-1)), torch.arange(3), threshold=-0.6)


def test_oracle_refuses_one_query_too_many(face_files: list[Path], dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    from facesec.attacks.query import Oracle, QueryBudgetExceeded

    x, objective = _oracle_setup(face_files, dlib_recognizer)
    oracle = Oracle(objective, "scores", budget=3)
    for _ in range(3):
        oracle.score(x, slice(None))
    assert oracle.used.tolist() == [3, 3, 3]
    with pytest.raises(QueryBudgetExceeded):
        oracle.score(x[:1], torch.tensor([0]))
    assert oracle.used.tolist() == [3, 3, 3]  # the refused query is not spent either
    with pytest.raises(ConfigError, match="decisions only"):
        Oracle(objective, "decisions", budget=3).score(x, slice(None))


def test_square_spends_exactly_its_budget_and_stays_in_the_ball(face_files: list[Path], dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    from facesec.attacks import Budget, create
    from facesec.attacks.query import Oracle

    x, objective = _oracle_setup(face_files, dlib_recognizer)
    oracle = Oracle(objective, "scores", budget=25)
    square = create("native", "square", steps=1000)
    out = square.run(x, oracle, Budget("linf", 8 / 255), torch.Generator().manual_seed(0))
    assert (out.queries <= 25).all()
    fooled = objective.success(objective.score(out.x_adv, slice(None)))
    assert (out.queries[~fooled] == 25).all()  # failing samples use the whole budget, never one more
    assert (out.x_adv - x).abs().max() <= 8 / 255 + 1e-6
    big = Oracle(objective, "scores", budget=200)  # an unbounded budget must get there
    far = create("native", "square", steps=200).run(x, big, Budget("linf", 1.0), torch.Generator().manual_seed(0))
    assert objective.success(objective.score(far.x_adv, slice(None))).all()


def test_hopskipjump_stops_at_the_budget_and_records_distortion(face_files: list[Path], dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    from facesec.attacks import Budget, Objective, create
    from facesec.attacks.query import Oracle

    x = align_faces(face_files[:2], DLIB_150, progress=False).tensor()
    emb = dlib_recognizer.embed(x)
    # impersonation: each face claims to be the other; HopSkipJump starts from the other's face
    objective = Objective(dlib_recognizer, "open-set", "impersonation", emb, torch.tensor([1, 0]), threshold=-0.6)
    oracle = Oracle(objective, "decisions", budget=40)
    attack = create("art", "hopskipjump", steps=20, max_eval=10, init_eval=5)
    attack.starts = x.flip(0)  # type: ignore[attr-defined]
    out = attack.run(x, oracle, Budget("linf", 8 / 255), torch.Generator().manual_seed(0))
    assert (out.queries <= 40).all() and (out.queries > 20).all()
    traces = attack.trace  # type: ignore[attr-defined]
    assert all(trace for trace in traces)
    for trace in traces:  # distortion never grows as queries are spent, and starts below the start's
        queries, linf = zip(*trace, strict=True)
        assert list(queries) == sorted(queries) and queries[-1] <= 40
        assert linf[-1] <= linf[0] + 1e-6
    assert (out.x_adv - x).abs().max() <= 8 / 255 + 1e-6
