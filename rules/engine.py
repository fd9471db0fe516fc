"""The live rule set of a running detector, hot-reloaded from the database.

Between batches the detector asks `current()`; at most every `poll_seconds`
that runs one cheap fingerprint query over the rules table and recompiles only
when the set of (rule, version, enabled) changed. A failing poll keeps the rules
already loaded: the detector must keep judging traffic while the database blips.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from core import metrics
from rules.catalogue import Catalogue, default_catalogue
from rules.ruleset import RuleSet
from rules.store import load_active_rules, rules_fingerprint

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 2.0


class RuleEngine:
    """Holds the compiled active rules and reloads them when the database changes."""

    def __init__(
        self,
        *,
        engine: Engine,
        catalogue: Catalogue | None = None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._catalogue = catalogue or default_catalogue()
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._ruleset = RuleSet(())
        self._next_poll = 0.0
        self._invalid: set[str] = set()
        self.reloads = 0

    def current(self) -> RuleSet:
        """The rule set to use for the next batch (polling the database when due)."""
        if self._clock() >= self._next_poll:
            self.refresh()
        return self._ruleset

    @property
    def poll_seconds(self) -> float:
        return self._poll_seconds

    def loaded(self) -> RuleSet | None:
        """The rule set loaded last, without polling (None before the first load succeeded).

        For callers that must not wait on the database (a request answered on the event loop);
        something else calls `refresh` on a schedule.
        """
        return None if self._fingerprint is None else self._ruleset

    def refresh(self, *, force: bool = False) -> bool:
        """Check the database now; True when the rules were recompiled."""
        with self._lock:
            self._next_poll = self._clock() + self._poll_seconds
            try:
                fingerprint = rules_fingerprint(engine=self._engine)
                if fingerprint == self._fingerprint and not force:
                    return False
                active = load_active_rules(engine=self._engine)
            except SQLAlchemyError as exc:
                if self._fingerprint is None:
                    raise  # nothing loaded yet: starting without rules would silently judge nothing
                log.warning("rule reload failed; keeping the loaded rules", extra={"error": str(exc)})
                return False
            ruleset, invalid = RuleSet.compile(active, catalogue=self._catalogue)
            for rule_id, error in invalid.items():
                log.error("stored rule no longer compiles; skipped", extra={"rule_id": rule_id, "error": str(error)})
                metrics.DETECTOR_DEGRADED.labels(f"rule:{rule_id}").set(1)
            for rule_id in self._invalid - set(invalid):
                metrics.DETECTOR_DEGRADED.labels(f"rule:{rule_id}").set(0)
            self._invalid = set(invalid)
            self._ruleset = ruleset
            self._fingerprint = fingerprint
            self.reloads += 1
            log.info(
                "rules loaded",
                extra={
                    "rules": len(ruleset.rules),
                    "skipped": len(invalid),
                    "versions": {r.rule.rule_id: r.rule.version for r in ruleset.rules},
                },
            )
            return True
