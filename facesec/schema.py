"""JSON Schema of a threat-model file for editors: `perturbation` is one of the installed families' sections,
chosen by `kind`, and a list is allowed wherever the matrix expands one."""

from __future__ import annotations

from typing import Any

from facesec import families
from facesec.matrix import CORE_EXPANDABLE
from facesec.plugins import ATTACKS
from facesec.threat_model import ThreatModel


def json_schema() -> dict[str, Any]:
    """JSON Schema of a threat-model file, for editors; lists are allowed where the matrix expands them (the
    core's fields, and each family's own in its section), and `perturbation` is chosen by `kind`."""
    schema = ThreatModel.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for part, values in (("library", {n.split("/")[0] for n in ATTACKS.names()}),
                         ("method", {n.split("/")[1] for n in ATTACKS.names()})):
        defs["Attack"]["properties"][part]["enum"] = sorted(values)
    sections = []
    for kind in families.kinds():
        family = families.get(kind)
        section = family.Spec.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(section.pop("$defs", {}))
        for field in family.expandable:
            _listable(section, field)
        defs[family.Spec.__name__] = section
        sections.append({"$ref": f"#/$defs/{family.Spec.__name__}"})
    schema["properties"]["perturbation"] = {"oneOf": sections, "description": "kind selects the attack family"}
    for path in CORE_EXPANDABLE:
        head, _, field = path.partition(".")
        if not field:
            _listable(schema, head)
            continue
        node = schema["properties"][head]
        refs = [node.get("$ref")] + [o.get("$ref") for o in node.get("oneOf", []) + node.get("anyOf", [])]
        for ref in filter(None, refs):
            _listable(defs[ref.rsplit("/", 1)[-1]], field)
    return schema


def _listable(holder: dict[str, Any], field: str) -> None:
    """Let `field` of the object schema `holder` be one value or a non-empty list of them."""
    prop = holder.get("properties", {}).get(field)
    if prop is not None:
        single = {k: v for k, v in prop.items() if k not in ("default", "title", "description")}
        holder["properties"][field] = {**{k: v for k, v in prop.items() if k in ("default", "title")},
                                       "anyOf": [single, {"type": "array", "items": single, "minItems": 1}]}
