"""Views of registered models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Alias = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")]
Version = Annotated[str, StringConstraints(min_length=1, max_length=9, pattern=r"^[1-9][0-9]{0,8}$")]


class ModelVersionView(BaseModel):
    version: str
    created_at: datetime | None
    run_id: str | None
    status: str | None
    aliases: list[str]
    metrics: dict[str, float]


class ModelView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "vigil-supervised",
                    "description": "Gradient boosting on analyst labels.",
                    "aliases": {"champion": "3", "challenger": "4"},
                    "versions": [
                        {
                            "version": "4",
                            "created_at": "2026-11-24T08:00:00Z",
                            "run_id": "8f1c0d5e9a2b4c6d",
                            "status": "READY",
                            "aliases": ["challenger"],
                            "metrics": {"average_precision": 0.66},
                        }
                    ],
                }
            ]
        }
    )

    name: str
    description: str
    aliases: dict[str, str] = Field(description="Alias to version, e.g. champion -> 3.")
    versions: list[ModelVersionView] = Field(description="Newest first.")


class ModelList(BaseModel):
    data: list[ModelView]


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": "4", "alias": "champion"}]})

    version: Version
    alias: Alias = "champion"


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"alias": "champion"}]})

    alias: Alias = "champion"


class AliasChangeView(BaseModel):
    name: str
    alias: str
    previous_version: str | None
    version: str
