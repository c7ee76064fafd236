"""Accessory attacks: EOT, printability, grids, print files, and sanity checks that can fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facesec.attacks.objectives import Objective
from facesec.data import regions
from facesec.data.align import DLIB_150
from facesec.data.pipeline import align_faces
from facesec.engine import run_threat_model
from facesec.errors import ConfigError
from facesec.families.evasion.accessories import eot, export
from facesec.families.evasion.accessories import run as accessory_run
from facesec.families.evasion.accessories.printability import (
    default_palette,
    load_palette,
    non_printability,
    total_variation,
)
from facesec.families.evasion.accessory_attack import AccessoryAttack, Region
from facesec.results import write_run
from facesec.threat_model import ThreatModel

STILL = eot.Variation(0, 0, 0, 0, 0, 0)


def _box_mask(n: int = 2, size: int = 32) -> torch.Tensor:
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    mask[:, 8:20, 10:24] = True
    return mask


def test_a_still_draw_leaves_the_accessory_where_it_is() -> None:
    mask = _box_mask()
    pattern = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    moved, moved_mask = eot.apply(pattern, mask, eot.sample(2, STILL, torch.Generator().manual_seed(1)))
    assert torch.equal(moved_mask, mask)
    assert torch.allclose(moved, pattern, atol=1e-5)


def test_a_shift_moves_pattern_and_mask_together() -> None:
    mask = _box_mask(1)
    pattern = torch.zeros(1, 3, 32, 32)
    pattern[:, :, mask[0]] = 1.0
    draw = eot.Draw.identity(1)
    draw.theta[0, 0, 2] = -0.25  # sample from the left: content moves right by 1/8 of the width (4 px)
    moved, moved_mask = eot.apply(pattern, mask, draw)
    assert torch.equal(moved_mask[0], torch.roll(mask[0], 4, dims=1))
    assert torch.allclose(moved[0, 0][moved_mask[0]], torch.ones(int(moved_mask.sum())))


def test_random_draws_vary_and_repeat_with_the_seed() -> None:
    a = eot.sample(4, eot.Variation(), torch.Generator().manual_seed(3))
    b = eot.sample(4, eot.Variation(), torch.Generator().manual_seed(3))
    assert torch.equal(a.theta, b.theta) and a.sigma == b.sigma
    assert a.theta[:, :, 2].abs().max() <= 2 * eot.Variation().shift + 1e-6
    assert len(set(a.brightness.tolist())) == 4


def test_non_printability_is_zero_on_the_palette_and_grows_off_it() -> None:
    palette = default_palette()
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    on = palette[5].view(1, 3, 1, 1).expand(1, 3, 4, 4)
    off = torch.ones(1, 3, 4, 4)  # pure white: out of the default palette's gamut
    assert float(non_printability(on, mask, palette)) == pytest.approx(0.0, abs=1e-6)
    assert float(non_printability(off, mask, palette)) == pytest.approx(float(np.sqrt(3) * (1 - 0.78)), rel=1e-4)


def test_total_variation_counts_only_edges_inside_the_mask() -> None:
    mask = _box_mask(1)
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert float(total_variation(flat, mask)) == 0.0
    striped = flat.clone()
    striped[..., ::2] = 0.7  # every horizontal neighbour pair differs by 0.4
    inside = float(total_variation(striped, mask))
    assert inside == pytest.approx(0.4 * 12 * 13 / (12 * 14), rel=1e-5)
    outside_only = flat.clone()
    outside_only[..., 0:4, :] = 1.0  # changes confined to rows the mask does not reach
    assert float(total_variation(outside_only, mask)) == 0.0


def test_palette_files(tmp_path: Path) -> None:
    good = tmp_path / "printer.csv"
    good.write_text("# measured\n255, 0, 0\n0 128 255  # blue-ish\n\n")
    assert torch.allclose(load_palette(str(good)), torch.tensor([[1.0, 0, 0], [0, 128 / 255, 1.0]]))
    bad = tmp_path / "bad.csv"
    bad.write_text("10,20,30\n10,20\n")
    with pytest.raises(ConfigError, match=r"bad.csv:2: expected three numbers"):
        load_palette(str(bad))
    with pytest.raises(ConfigError, match="perturbation.palette"):
        load_palette(str(tmp_path / "missing.csv"))


def test_a_grid_paints_one_colour_per_cell() -> None:
    mask = _box_mask(1)
    cells = torch.from_numpy(regions.grid_cells(mask[0].numpy(), rows=3, cols=2)).unsqueeze(0)
    region = Region(mask, cells)
    params = torch.rand(1, 3, 6, generator=torch.Generator().manual_seed(0))
    pattern = region.render(params)
    for c in range(6):
        where = cells[0] == c
        assert where.any()
        assert torch.equal(pattern[0][:, where], params[0, :, c : c + 1].expand(3, int(where.sum())))


def test_print_files(tmp_path: Path) -> None:
    mask = _box_mask(1)[0]
    pattern = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    names = export.write(pattern, mask, eye_distance_px=10.0, folder=tmp_path, stem="acc")
    small = np.asarray(Image.open(tmp_path / names["png"]))
    assert small.shape == (12, 14, 4) and (small[..., 3] == 255).all()
    expected = np.round(pattern[:, 8:20, 10:24].permute(1, 2, 0).numpy() * 255)
    assert np.array_equal(small[..., :3], expected.astype(np.uint8))
    big = Image.open(tmp_path / names["print_png"])
    scale = export.PRINT_DPI / 25.4 * export.PUPIL_DISTANCE_MM / 10.0  # life size: 63 mm between 10-px-apart eyes
    assert big.size == (round(14 * scale), round(12 * scale))
    assert big.info["dpi"][0] == pytest.approx(300, abs=0.01)
    assert Image.open(tmp_path / names["mask_png"]).size == big.size


@pytest.fixture(scope="module")
def faces(face_files: list[Path]):  # type: ignore[no-untyped-def]
    return align_faces(face_files, DLIB_150, progress=False)


def _dodging(model, x: torch.Tensor) -> Objective:  # type: ignore[no-untyped-def]
    """Open-set dodging at dlib's 0.6 distance threshold, each face enrolled as its mirror image (not the
    probe itself: at distance 0 the euclidean gradient vanishes)."""
    return Objective(model, "open-set", "dodging", model.embed(x.flip(-1)), torch.arange(len(x)), threshold=-0.6)


def _success(model, objective: Objective, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return objective.success(objective.margin(model.embed(x), slice(None)))


def test_whole_image_region_without_constraints_reaches_full_success(faces, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    x = faces.tensor()
    objective = _dodging(dlib_recognizer, x)
    assert not _success(dlib_recognizer, objective, x).any()
    tm = ThreatModel.model_validate({"name": "t", "perturbation": {"kind": "accessory"}, "attack": {"steps": 10}})
    worn = accessory_run.unbounded(tm, x, objective, steps=10, generator=torch.Generator().manual_seed(0))
    assert _success(dlib_recognizer, objective, worn).float().mean() >= 0.95


def test_zero_steps_is_the_plain_accessory_and_more_steps_never_lose(faces, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    x = faces.tensor()
    objective = _dodging(dlib_recognizer, x)
    masks = torch.from_numpy(np.stack([regions.eyeglasses(lm, 150) for lm in faces.landmarks]))
    region = Region(masks)
    start = region.parameters(len(x), (0.5, 0.5, 0.5))
    successes = []
    for steps in (0, 3, 12):
        attack = AccessoryAttack(steps=steps, variation=None, eot_samples=1)
        params = attack.run(x, region, objective, start, torch.Generator().manual_seed(0))
        if steps == 0:
            assert torch.equal(params, start)
        worn = regions.wear(x, masks, region.render(params))
        outside = ~masks.unsqueeze(1).expand_as(x)
        assert torch.equal(worn[outside], x[outside])
        successes.append(_success(dlib_recognizer, objective, worn))
    assert (successes[1] <= successes[2]).all()  # without EOT the trajectory is deterministic: a prefix
    assert successes[2].float().mean() > successes[0].float().mean()


def test_universal_accessory_is_one_pattern_in_one_region(faces, dlib_recognizer) -> None:  # type: ignore[no-untyped-def]
    x = faces.tensor()
    objective = _dodging(dlib_recognizer, x)
    tm = ThreatModel.model_validate({"name": "t", "perturbation": {"kind": "accessory", "shape": "facemask",
                                                                   "grid": [4, 2]}})
    assert tm.perturbation.kind == "accessory"
    region = accessory_run.shared_region(tm.perturbation, np.stack(faces.landmarks), 150, torch.device("cpu"))
    assert region.mask.shape == (1, 150, 150) and region.cells is not None and int(region.cells.max()) == 7
    # two mini-batches of wearers; small steps (a 1/32 step on all of a coarse grid's cells can overshoot)
    attack = AccessoryAttack(steps=4, step_size=0.005, variation=None, batch_size=4)
    plain = region.parameters(1, (0.5, 0.5, 0.5))
    params = attack.run_universal(x, region, objective, plain, torch.Generator().manual_seed(0))
    assert params.shape == (1, 3, 8)

    def mean_margin(p: torch.Tensor) -> float:
        worn = regions.wear(x, region.mask, region.render(p))
        return float(objective.margin(dlib_recognizer.embed(worn), slice(None)).mean())

    assert mean_margin(params) > mean_margin(plain)


def test_zero_step_run_measures_exactly_the_plain_accessory(celeba: Path, tmp_path: Path) -> None:
    """End to end: with no optimisation the attack is the plain accessory, and its files are written."""
    tm = ThreatModel.model_validate({
        "name": "zero", "data": {"dataset": str(celeba), "identities": 5, "images_per_identity": 3},
        "perturbation": {"kind": "accessory", "shape": "eyeglasses", "colour": [0.1, 0.1, 0.1]},
        "attack": {"steps": 0, "sanity_samples": 4}})
    out = run_threat_model(tm, torch.device("cpu"), progress=False)
    record = out.record.to_json()
    m = record["metrics"]
    assert m["n_attempts"] > 0
    assert m["attack_success_rate"] == m["plain_accessory_success_rate"]
    assert record["eps"] is None and record["dimensions"]["perturbation"] == "accessory eyeglasses"
    assert record["validity"]["unbounded_asr"] >= 0.95  # the whole-image run still reaches the goal
    run = write_run(out, tmp_path, set()).to_json()
    assert set(run["gallery"][0]) >= {"clean", "adversarial", "accessory"} and "perturbation" not in run["gallery"][0]
    assert out.output is not None and len(run["print_files"]) == len(out.output.clean)
    for item in run["print_files"]:
        for key in ("png", "print_png", "mask_png"):
            assert (tmp_path / item[key]).is_file()
    alone = np.asarray(Image.open(tmp_path / run["gallery"][0]["accessory"]))
    assert alone.shape[-1] == 4 and (alone[..., :3][alone[..., 3] > 0] == round(0.1 * 255)).all()


def test_accessory_transfer_keeps_pushing_past_the_surrogate_threshold(celeba: Path) -> None:
    """On a surrogate the margin is not clipped: transfer from the target itself equals the white-box
    attack run with an unclipped margin (kappa inf), and differs from the clipped default."""
    doc = {"name": "t", "data": {"dataset": str(celeba), "identities": 4, "images_per_identity": 2},
           "perturbation": {"kind": "accessory", "shape": "eyeglasses", "eot": None},
           "attack": {"steps": 6, "sanity_samples": 2}}
    cpu = torch.device("cpu")
    port = {"kind": "transfer", "surrogates": ["dlib-resnet"]}
    transfer = run_threat_model(ThreatModel.model_validate({**doc, "knowledge": port}), cpu, progress=False)
    unclipped = {**doc, "attack": {**doc["attack"], "params": {"kappa": float("inf")}}}
    white = run_threat_model(ThreatModel.model_validate(unclipped), cpu, progress=False)
    clipped = run_threat_model(ThreatModel.model_validate(doc), cpu, progress=False)
    t, w, c = (o.record.to_json()["metrics"]["similarity_after_mean"] for o in (transfer, white, clipped))
    assert t == pytest.approx(w, abs=1e-6)
    assert t < c  # dodging: pushed further from the own gallery than the clipped optimiser stops
