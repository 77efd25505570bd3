"""Validators for the JSON Schemas of ``schemas/`` (one per ``--json`` shape), shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def validator(name: str) -> Draft202012Validator:
    """A validator for ``schemas/<name>.schema.json`` that resolves the other schema files by name."""
    resources = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        doc = json.loads(path.read_text())
        Draft202012Validator.check_schema(doc)
        resources += [(path.name, Resource.from_contents(doc)), (doc["$id"], Resource.from_contents(doc))]
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return Draft202012Validator(schema, registry=Registry().with_resources(resources))
