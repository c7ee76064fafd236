"""Threat-model files: matrix expansion, fractions, overrides, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from facesec.data.attributes import predicted_path
from facesec.errors import ConfigError, NotFetched
from facesec.loading import load_threat_models

GOOD = """\
name: sweep
target: dlib-resnet
data: {dataset: celeba-mini, identities: 4, images_per_identity: 3}
perturbation: {kind: pixel, norm: linf, eps: [1/255, 2/255, 8/255]}
goal: [dodging, impersonation]
setting: {kind: open-set, fmr: 1e-3, calibration: in-sample}
gates:
  - {metric: attack_success_rate, op: "<=", value: 0.5}
"""


def write(tmp_path: Path, text: str, name: str = "tm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "facesec.cli", *args], capture_output=True, text=True)


def test_matrix_expansion_and_fractions(tmp_path: Path) -> None:
    models = load_threat_models(write(tmp_path, GOOD))
    assert len(models) == 6
    assert {m.goal for m in models} == {"dodging", "impersonation"}
    assert sorted({m.perturbation.eps for m in models}) == pytest.approx([1 / 255, 2 / 255, 8 / 255])
    assert len({m.name for m in models}) == 6 and models[0].name.startswith("sweep[")
    assert models[0].gates[0].value == 0.5


def test_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    models = load_threat_models(path, ["goal=dodging", "perturbation.eps=4/255", "setting.fmr=0.01"])
    assert len(models) == 1
    assert models[0].perturbation.eps == pytest.approx(4 / 255) and models[0].setting.kind == "open-set"
    assert models[0].setting.fmr == 0.01  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="expected path.to.key=value"):
        load_threat_models(path, ["goal"])


@pytest.mark.parametrize(("value", "problem"), [
    ("[&a 1, *a]", r"aliases \(\*name\) are not allowed"),
    ("[" * 5000 + "]" * 5000, "nested more than 32 levels deep"),
    ("!!python/object/apply:os.system ['true']", "could not determine a constructor"),
])
def test_override_values_load_as_threat_models_do(tmp_path: Path, value: str, problem: str) -> None:
    """`--set` values go through the threat-model loader and its limits: one line naming the key, never a crash."""
    with pytest.raises(ConfigError, match=rf"^--set data.seed: value is not plain YAML \({problem}"):
        load_threat_models(write(tmp_path, GOOD), [f"data.seed={value}"])


BAD = {
    "unknown_key": ("name: x\ncolour: red\n", "field 'colour': unknown key"),
    "nested_unknown_key": ("name: x\nperturbation: {kind: pixel, epsilon: 0.1}\n", "field 'perturbation.epsilon'"),
    "wrong_type": ("name: x\ndata: {identities: many}\n", "field 'data.identities'"),
    "bad_enum": ("name: x\ngoal: confusion\n", "'dodging' or 'impersonation'"),
    "bad_value": ("name: x\nperturbation: {eps: -0.1}\n", "field 'perturbation.eps'"),
    "bad_fraction": ("name: x\nperturbation: {eps: 8/0}\n", "field 'perturbation.eps'"),
    "bad_fmr": ("name: x\nsetting: {kind: open-set, fmr: 2}\n", "field 'setting.fmr'"),
    "bad_setting_kind": ("name: x\nsetting: {kind: half-open}\n", "field 'setting"),
    "missing_name": ("target: dlib-resnet\n", "field 'name': Field required"),
    "yaml_syntax": ("name: x\ngoal: [dodging\n", "YAML syntax error"),
    "not_a_mapping": ("- name: x\n", "top level must be a mapping"),
    "scalar_document": ("just a string\n", "top level must be a mapping"),
    "empty_file": ("", "empty file"),
    "python_tag": ("name: !!python/object/apply:os.system ['echo hi']\n", "YAML tag not allowed"),
    "empty_list": ("name: x\ngoal: []\n", "field 'goal': empty list"),
    "no_probes_left": ("name: x\ndata: {images_per_identity: 3}\nsetting: {kind: closed-set, gallery_images: 3}\n",
                       "gallery_images (3) must be below data.images_per_identity (3)"),
    "unknown_gate_metric": ("name: x\ngates: [{metric: atack_success_rate, value: 1}]\n", "field 'gates.0.metric'"),
    "bad_gate_op": ("name: x\ngates: [{metric: attack_success_rate, op: '~', value: 1}]\n", "field 'gates.0.op'"),
    "unknown_perturbation_kind": ("name: x\nperturbation: {kind: hat}\n", "'pixel', 'accessory'"),
    "accessory_shape": ("name: x\nperturbation: {kind: accessory, shape: hat}\n",
                        "field 'perturbation.shape': Input should be 'eyeglasses', 'sticker' or 'facemask'"),
    "accessory_field_of_other_shape": ("name: x\nperturbation: {kind: accessory, shape: facemask, anchor: nose}\n",
                                       "perturbation.anchor applies to shape sticker only"),
    "accessory_colour": ("name: x\nperturbation: {kind: accessory, colour: [0.5, 2, 0]}\n",
                         "field 'perturbation.colour.1'"),
    "accessory_grid": ("name: x\nperturbation: {kind: accessory, grid: [16]}\n",
                       "field 'perturbation.grid.1': Field required"),
    "accessory_library": ("name: x\nperturbation: {kind: accessory}\nattack: {library: art}\n",
                          "accessories are optimised by facesec itself; use library: native"),
    "query_gradient_method": ("name: x\nknowledge: {kind: query, output: scores}\nattack: {method: pgd}\n",
                              "a target returning scores is attacked by square"),
    "square_without_query": ("name: x\nattack: {method: square}\n", "square is a query attack"),
    "query_budget": ("name: x\nknowledge: {kind: query, budget: 0}\nattack: {method: square}\n",
                     "field 'knowledge.budget'"),
    "accessory_method": ("name: x\nperturbation: {kind: accessory}\nattack: {method: cw}\n",
                         "accessories take pgd or mi-fgsm"),
    # attack.params are typed per optimiser: a wrong one fails here, not mid-run with exit 3
    "param_unknown": ("name: x\nattack: {params: {colour: 1}}\n",
                      "field 'attack.params.colour': native/pgd does not take it; its params: batch_size"),
    "param_not_a_number": ("name: x\nattack: {method: mi-fgsm, params: {momentum: fast}}\n",
                           "field 'attack.params.momentum': Input should be a valid number"),
    "param_nan": ("name: x\nattack: {method: mi-fgsm, params: {momentum: .nan}}\n",
                  "field 'attack.params.momentum': Input should be a finite number"),
    "param_batch_zero": ("name: x\nattack: {params: {batch_size: 0}}\n", "field 'attack.params.batch_size'"),
    "param_diversity": ("name: x\nattack: {method: di-fgsm, params: {diversity: 3}}\n",
                        "field 'attack.params.diversity'"),
    "param_kernel": ("name: x\nattack: {method: ti-fgsm, params: {ti_kernel: 100000}}\n",
                     "field 'attack.params.ti_kernel'"),
    "param_bool": ("name: x\nattack: {method: cw, params: {kappa: true}}\n",
                   "field 'attack.params.kappa': expected a number, not true/false"),
    "param_of_other_method": ("name: x\nattack: {method: pgd, params: {kappa: 1}}\n",
                              "native/pgd does not take it"),
    "param_square": ("name: x\nknowledge: {kind: query}\nattack: {method: square, params: {p_init: 0}}\n",
                     "field 'attack.params.p_init'"),
    "param_hopskipjump": ("name: x\nknowledge: {kind: query, output: decisions}\n"
                          "attack: {method: hopskipjump, library: art, params: {max_eval: 1e9}}\n",
                          "field 'attack.params.max_eval'"),
    "cw_in_torchattacks": ("name: x\nattack: {method: cw, library: torchattacks}\n",
                           "attack: no method 'cw' in library 'torchattacks'"),
    "universal_in_art": ("name: x\ncapability: universal\nattack: {library: art}\n",
                         "capability: universal needs library: native (art/pgd makes per-image"),
    "unregistered_attack": ("name: x\nknowledge: {kind: query, output: decisions}\nattack: {method: hopskipjump}\n",
                            "attack: no method 'hopskipjump' in library 'native'; available: art/fgsm"),
    "param_torchattacks": ("name: x\nattack: {library: torchattacks, params: {decay: 1}}\n",
                           "torchattacks/pgd does not take it; its params: none"),
    "param_accessory": ("name: x\nperturbation: {kind: accessory}\nattack: {params: {eps: 1}}\n",
                        "the accessory optimiser does not take it; its params: momentum, kappa, batch_size"),
    "param_accessory_kappa_nan": ("name: x\nperturbation: {kind: accessory}\nattack: {params: {kappa: .nan}}\n",
                                  "field 'attack.params.kappa'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_yaml_gives_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = write(tmp_path, text, f"{case}.yaml")
    with pytest.raises(ConfigError) as info:
        load_threat_models(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message
    out = cli("validate", str(path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"facesec: error: {message}"


def test_validate_ok_and_schema(celeba: Path, tmp_path: Path) -> None:
    out = cli("validate", str(write(tmp_path, GOOD)))
    assert out.returncode == 0 and "ok, 6 run(s)" in out.stdout
    schema = json.loads(cli("schema").stdout)
    assert {"name", "target", "perturbation", "knowledge", "goal", "capability", "setting"} <= set(schema["properties"])
    assert any(alt.get("type") == "array" for alt in schema["properties"]["goal"]["anyOf"])


PREFLIGHT = {
    "unknown_target": ("target: nope\n", "field 'target': unknown recognizer 'nope'"),
    "missing_dataset": ("data: {dataset: no-such-data}\n", "dataset 'no-such-data' not found"),
    "missing_palette": ("perturbation: {kind: accessory, nps_weight: 0.1, palette: no-such.csv}\n",
                        "no palette file 'no-such.csv'"),
}


def test_attack_params_are_typed_per_optimiser(tmp_path: Path) -> None:
    """Accepted params keep their typed values; `.inf` is a valid margin clip."""
    text = "name: x\nattack: {method: di-fgsm, params: {momentum: 2, diversity: 0.7, batch_size: '8'}}\n"
    (model,) = load_threat_models(write(tmp_path, text))
    assert model.attack.params == {"momentum": 2.0, "diversity": 0.7, "batch_size": 8}
    text = "name: x\nperturbation: {kind: accessory}\nattack: {params: {kappa: .inf}}\n"
    (model,) = load_threat_models(write(tmp_path, text))
    assert model.attack.params == {"kappa": float("inf")}


def test_accessory_matrix_expands_over_shapes(tmp_path: Path) -> None:
    text = ("name: m\nperturbation: {kind: accessory, shape: [eyeglasses, sticker, facemask]}\n"
            "goal: [dodging, impersonation]\ncapability: [individual, universal]\n")
    models = load_threat_models(write(tmp_path, text))
    assert len(models) == 12
    assert {m.perturbation.shape for m in models if m.perturbation.kind == "accessory"} == {
        "eyeglasses", "sticker", "facemask"}
    assert load_threat_models(write(tmp_path, "name: p\nperturbation: {eps: 4/255}\n"))[0].perturbation.kind == "pixel"


@pytest.mark.parametrize("case", sorted(PREFLIGHT))
def test_validate_preflights_what_run_would_need(celeba: Path, tmp_path: Path, case: str) -> None:
    text, expected = PREFLIGHT[case]
    path = write(tmp_path, f"name: pre\n{text}", f"{case}.yaml")
    out = cli("validate", str(path))
    assert out.returncode == 2, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"facesec: error: {path}: pre: ") and expected in lines[0]


def test_every_example_threat_model_validates(celeba: Path, hse_installed: Path, gan_installed: Path) -> None:
    """The shipped examples pass pre-flight; the students' ones say how to train the students first."""
    from facesec.validation import check

    files = sorted(Path("threat_models").glob("*.yaml"))
    assert len(files) >= 15
    annotated = predicted_path("celeba-mini").is_file()
    for path in files:
        if path.name == "transfer-students.yaml" and not Path("students/dlib-arch/surrogate.json").is_file():
            with pytest.raises(ConfigError, match="facesec surrogate train"):
                check([path])
        elif path.name.startswith("groups-") and not annotated:
            with pytest.raises(NotFetched, match="run `facesec data annotate celeba-mini`"):
                check([path])
        else:
            assert check([path]), path


@pytest.mark.parametrize(("override", "expected"), [
    ("attack.stepz=3", "field 'attack.stepz': unknown key"),
    ("attack.steps=-1", "field 'attack.steps'"),
    ("data={identities: many}", "field 'data.identities'"),
    ("data.dataset=nowhere", "dataset 'nowhere' not found"),
    ("data.identities=5000", "data.identities (5000"),
])
def test_an_error_in_a_set_value_is_blamed_on_the_set(celeba: Path, tmp_path: Path, override: str,
                                                      expected: str) -> None:
    """A mistake given with --set is named as that --set, not as the file (which is fine as it stands)."""
    path = write(tmp_path, "name: s\ndata: {identities: 4}\nsetting: {kind: open-set, calibration: {identities: 99}}\n")
    out = cli("validate", str(path), "--set", override)
    key = override.partition("=")[0]
    assert out.returncode == 2 and out.stderr.startswith(f"facesec: error: --set {key} (on {path}): "), out.stderr
    assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1
    bad_file = write(tmp_path, "name: s\ndata: {dataset: nowhere}\n", "bad.yaml")  # the file's own mistakes
    out = cli("validate", str(bad_file), "--set", "attack.steps=2")
    assert out.returncode == 2 and out.stderr.startswith(f"facesec: error: {bad_file}: s: dataset 'nowhere'")
    no_calibration = write(tmp_path, "name: s\n", "open.yaml")
    out = cli("validate", str(no_calibration), "--set", "data.identities=5")
    assert out.returncode == 2 and out.stderr.startswith(  # the file's field, in a run the --set changed
        f"facesec: error: {no_calibration} with --set data.identities: s: field 'setting.calib")


def test_a_folder_given_as_a_threat_model_says_so(tmp_path: Path) -> None:
    out = cli("validate", str(tmp_path))
    assert out.returncode == 2 and out.stderr.strip() == (
        f"facesec: error: {tmp_path}: is a folder; name the threat-model files in it (for example {tmp_path}/*.yaml)")
