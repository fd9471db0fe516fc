"""Run Poetry, reading PyPI release metadata from the simple index (PEP 691/658).

Some networks (including our CI machines) serve PyPI's simple index but not its
per-release JSON API, which stock Poetry needs for locking and installing. The
simple index carries the same files, hashes and metadata, and Poetry already
knows how to read it for non-PyPI sources, so we point the PyPI repository at
that code path. Behaviour and the lock file format are otherwise unchanged.
"""

from __future__ import annotations

import sys

from poetry.console.application import main
from poetry.repositories.legacy_repository import LegacyRepository
from poetry.repositories.pypi_repository import PyPiRepository

PyPiRepository._get_release_info = LegacyRepository._get_release_info  # type: ignore[method-assign]
PyPiRepository.find_links_for_package = LegacyRepository.find_links_for_package  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
