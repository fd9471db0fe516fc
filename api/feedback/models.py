"""Views of precision figures."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class DetectorPrecision(BaseModel):
    detector_family: str
    detector_name: str
    flagged: int = Field(description="Distinct transactions the detector flagged in the window.")
    labelled: int = Field(description="Of those, how many carry a label from the chosen source.")
    fraud: int = Field(description="Labelled `fraud` (analyst verdict confirmed_fraud).")
    not_fraud: int = Field(description="Labelled anything else (false_positive, expected).")
    precision: float | None = Field(description="fraud / labelled; null until something is labelled.")


class PrecisionReport(BaseModel):
    """ThirdEye-style feedback: how often each detector's flags turned out to be fraud."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2026-10-25T00:00:00Z",
                    "until": "2026-11-24T00:00:00Z",
                    "label_source": "analyst",
                    "detectors": [
                        {
                            "detector_family": "rules",
                            "detector_name": "rule:card-testing",
                            "flagged": 120,
                            "labelled": 40,
                            "fraud": 34,
                            "not_fraud": 6,
                            "precision": 0.85,
                        }
                    ],
                }
            ]
        }
    )

    since: datetime
    until: datetime
    label_source: str
    detectors: list[DetectorPrecision]
