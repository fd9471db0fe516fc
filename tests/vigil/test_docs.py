"""Documentation that must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from vigil.commands.config import config_reference

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- config:start -->\n(.*?)\n?<!-- config:end -->", readme, re.S)
    assert match, "README lost its config markers"
    assert match.group(1).strip() == config_reference().strip(), "run: make docs (README config table is stale)"


def test_readme_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:20])
    assert "make demo" in first_screen
    assert "make test" in first_screen


def test_every_default_in_the_configuration_reference_is_a_real_value() -> None:
    table = config_reference()
    assert "PydanticUndefined" not in table  # a default_factory must be shown as the value it builds
    assert '| `VIGIL_OIDC_ALGORITHMS` | `["RS256"]` |' in table  # lists as the JSON the variable takes
