"""Parse every .tf file under a directory with python-hcl2 and print {relative path: parsed} as JSON.

Runs in the deploy tools venv (python-hcl2 lives there), called by tests/deploy/test_terraform.py.
Usage: python hcl_to_json.py TERRAFORM_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hcl2  # type: ignore[import-untyped,import-not-found,unused-ignore]


def main(root: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for path in sorted(root.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        with path.open() as handle:
            parsed[str(path.relative_to(root))] = hcl2.load(handle)
    return parsed


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), default=str))
