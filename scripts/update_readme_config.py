"""Regenerate README.md's configuration table from the settings class (`make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

from vigil.commands.config import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"

text = README.read_text()
table = config_reference()
updated = re.sub(
    r"<!-- config:start -->\n.*?<!-- config:end -->",
    lambda _: f"<!-- config:start -->\n{table}\n<!-- config:end -->",
    text,
    flags=re.S,
)
README.write_text(updated)
