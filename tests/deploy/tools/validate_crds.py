"""Validate custom resources in rendered manifests against tests/deploy/crd-schemas (JSON Schema).

Runs in the deploy tools venv (it has jsonschema; the app env does not), called by
tests/deploy. Prints one JSON object: {"validated": [...], "errors": [...]}.
Usage: python validate_crds.py SCHEMA_DIR MANIFEST...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,import-not-found,unused-ignore]
import yaml


def main(schema_dir: Path, manifests: list[Path]) -> dict[str, list[str]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(schema_dir.glob("*.json")):
        schema = json.loads(path.read_text())
        key = (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])
        schemas[key] = schema
    validated: list[str] = []
    errors: list[str] = []
    for manifest in manifests:
        for document in yaml.safe_load_all(manifest.read_text()):
            if not document:
                continue
            schema = schemas.get((document.get("apiVersion"), document.get("kind")))
            if schema is None:
                continue
            name = f"{document['kind']}/{document.get('metadata', {}).get('name')}"
            validator = jsonschema.Draft7Validator(schema)
            problems = [
                f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)
            ]
            errors.extend(problems)
            validated.append(name)
    return {"validated": validated, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])))
