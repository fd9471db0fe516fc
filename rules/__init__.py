"""The analyst rule engine: a small expression language, vectorised evaluation, versioned storage.

Public surface (everything else is internal):
- language: `validate`, `compile_expression`, `Catalogue`, `default_catalogue`, `RuleError`, `RuleSyntaxError`;
- storage (keyword-only, PostgreSQL): `create_rule`, `publish_version`, `disable`, `enable`, `get_rule`,
  `list_rules`, `list_versions`, `get_version`, `load_active_rules`;
- evaluation: `RuleSet`, `Columns`, `RuleEngine` (hot reload), `LiveRuleDetectors` / `detectors_for`
  (core.detection detectors), `pack_detectors` (a pack file, no database);
- backtests: `backtest` (any batches), `backtest_history` (stored transactions and labels);
- packs: `load_pack`, `pack_rules`, `parse_pack`, `seed_pack`, `DEFAULT_PACK`.
"""

from rules.backtest import BacktestReport, DayStat, Example, backtest
from rules.catalogue import Catalogue, FieldSpec, ValueType, default_catalogue
from rules.checker import CheckedExpression, compile_expression, validate
from rules.detector import LiveRuleDetectors, RuleDetector, detectors_for, pack_detectors
from rules.engine import RuleEngine
from rules.errors import (
    CatalogueError,
    InvalidRuleError,
    PackError,
    RuleError,
    RuleExistsError,
    RuleNotFoundError,
    RulesError,
    RuleSyntaxError,
    RuleVersionConflictError,
)
from rules.evaluator import Columns
from rules.history import backtest_history, count_transactions, load_labels, transaction_batches
from rules.model import ActiveRule, RuleDraft, RuleVersionView, RuleView
from rules.pack import DEFAULT_PACK, SeedReport, load_pack, pack_rules, parse_pack, seed_pack
from rules.ruleset import CompiledRule, RuleSet
from rules.store import (
    create_rule,
    disable,
    enable,
    get_rule,
    get_version,
    list_rules,
    list_versions,
    load_active_rules,
    publish_version,
    rules_fingerprint,
)

__all__ = [
    "DEFAULT_PACK",
    "ActiveRule",
    "BacktestReport",
    "Catalogue",
    "CatalogueError",
    "CheckedExpression",
    "Columns",
    "CompiledRule",
    "DayStat",
    "Example",
    "FieldSpec",
    "InvalidRuleError",
    "LiveRuleDetectors",
    "PackError",
    "RuleDetector",
    "RuleDraft",
    "RuleEngine",
    "RuleError",
    "RuleExistsError",
    "RuleNotFoundError",
    "RuleSet",
    "RuleSyntaxError",
    "RuleVersionConflictError",
    "RuleVersionView",
    "RuleView",
    "RulesError",
    "SeedReport",
    "ValueType",
    "backtest",
    "backtest_history",
    "compile_expression",
    "count_transactions",
    "create_rule",
    "default_catalogue",
    "detectors_for",
    "disable",
    "enable",
    "get_rule",
    "get_version",
    "list_rules",
    "list_versions",
    "load_active_rules",
    "load_labels",
    "load_pack",
    "pack_detectors",
    "pack_rules",
    "parse_pack",
    "publish_version",
    "rules_fingerprint",
    "seed_pack",
    "transaction_batches",
    "validate",
]
