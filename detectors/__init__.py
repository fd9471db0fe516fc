"""Detectors: statistical (z-score, robust z, IQR), aggregate hour-of-week checks, and ML models."""

from detectors.config import StatisticalConfig, load_statistical_config
from detectors.errors import DetectorConfigError, DetectorError
from detectors.statistical import IqrDetector, RobustZDetector, ZScoreDetector, statistical_detectors

__all__ = [
    "DetectorConfigError",
    "DetectorError",
    "IqrDetector",
    "RobustZDetector",
    "StatisticalConfig",
    "ZScoreDetector",
    "load_statistical_config",
    "statistical_detectors",
]
