"""Feature engineering: transactions in, explainable per-entity feature vectors out.

Public surface: the registry (`FEATURES`, `FeatureSpec`, `FEATURE_SET_VERSION`),
the engine shared by both paths, the online stage, the offline replay, and the
read-only follower of the stage's state that synchronous scoring peeks into.
"""

from features.engine import Batch, FeatureEngine
from features.errors import FeaturesError
from features.follower import FeatureFollower, FollowerStatus
from features.offline import ReplayReport, replay
from features.registry import FEATURE_NAMES, FEATURE_SET_VERSION, FEATURES, FeatureSpec
from features.service import FeatureStage, StageOptions

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "FEATURE_SET_VERSION",
    "Batch",
    "FeatureEngine",
    "FeatureFollower",
    "FeatureSpec",
    "FeatureStage",
    "FeaturesError",
    "FollowerStatus",
    "ReplayReport",
    "StageOptions",
    "replay",
]
