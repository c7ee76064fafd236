"""The import layers docs/architecture.md draws, checked on the source (an AST walk; imports under
`if TYPE_CHECKING` are annotations, not imports): the core knows no family, no family imports another, the
leaves import nothing of facesec, packages import each other without cycles, and the configuration layer
(what `facesec validate` needs) loads without torch; and functions fit on a screen."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1] / "facesec"
FAMILIES = sorted(p.name for p in (ROOT / "families").iterdir() if (p / "__init__.py").is_file())
LEAVES = {"facesec.errors": set(), "facesec.fields": set(), "facesec.record": set(),
          "facesec.registry": {"facesec.errors"}}
"""Modules and the only facesec modules they may import."""
TORCH_FREE = ["facesec.fields", "facesec.threat_model", "facesec.yaml_safe", "facesec.matrix", "facesec.loading",
              "facesec.schema", "facesec.plugins", "facesec.registry", "facesec.record", "facesec.attack_params",
              "facesec.validation", "facesec.calibration", "facesec.measures.rates",
              "facesec.recognizers.trust",
              "facesec.recognizers.preflight", "facesec.families", *(f"facesec.families.{f}" for f in FAMILIES),
              *(f"facesec.families.{f}.spec" for f in FAMILIES)]
"""The configuration layer: what loading, validating and listing threat models, families and attacks need."""


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The facesec modules `path` imports when it runs (`from a import b` counts as a.b when that is a module)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("facesec"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if _exists(n)} | {node.module or ""}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("facesec")}
    return found


def _exists(module: str) -> bool:
    path = ROOT.parent / module.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


GRAPH = {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "families" and parts[2] in FAMILIES else None


def test_the_core_knows_no_family_and_families_know_no_other() -> None:
    wrong = [f"{m} imports {i}" for m, found in GRAPH.items() for i in found
             if _family(i) is not None and _family(i) != _family(m)]
    assert not wrong, wrong


def test_leaves_import_nothing_of_facesec_but_what_they_may() -> None:
    for leaf, allowed in LEAVES.items():
        assert GRAPH[leaf] <= allowed, (leaf, GRAPH[leaf] - allowed)


def _package(module: str) -> str:
    """A node of the package graph: facesec.X (a module or package), families one node per family."""
    parts = module.split(".")
    return ".".join(parts[:3] if _family(module) else parts[:2])


def test_packages_import_each_other_without_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for module, found in GRAPH.items():
        edges.setdefault(_package(module), set()).update(_package(i) for i in found if _package(i) != _package(module))
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError(" -> ".join([*path[path.index(node):], node]))
        if node in done:
            return
        for nxt in sorted(edges.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for node in sorted(edges):
        visit(node, [])


def test_the_configuration_layer_loads_without_torch() -> None:
    script = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in TORCH_FREE) + \
        "from facesec import families\n[families.get(k) for k in families.kinds()]\nprint('torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


MAX_FUNCTION_LINES = 80


def test_functions_fit_on_a_screen() -> None:
    """No function in facesec longer than 80 lines (the five family runners were 116-135 before issue 38)."""
    long = [f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
            for path in ROOT.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


RECORD_NAMES = {"record", "records", "run", "runs", "raw_runs", "results", "baseline", "old", "done", "previous"}
"""Parameter names that hold a run record or a results document wherever they appear in facesec."""


def test_no_untyped_run_record() -> None:
    """A run record or results document is a `facesec.record` model, never a `dict[str, Any]`: no parameter by
    one of those names, and no function returning a record or document, is annotated as a plain mapping."""
    untyped = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            shapes = [ast.unparse(a.annotation) for a in args if a.arg in RECORD_NAMES and a.annotation is not None]
            if node.name in ("write_run", "document", "read_results", "load_results", "run_threat_model", "run"):
                shapes.append(ast.unparse(node.returns) if node.returns is not None else "")
            if any("dict[str, Any]" in shape for shape in shapes):
                untyped.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}")
    assert not untyped, untyped
