"""Building blocks shared by the config modules."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Unknown keys are errors; configs are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(StrictModel):
    """Where weights come from: an installed Python package or a local path. Never a hub."""

    package: str | None = Field(None, description="Import name of an installed package that ships the model.")
    path: str | None = Field(None, description="Local file or directory.")
    file: str | None = Field(
        None, description="Glob inside the package or directory that selects the model file, e.g. '*.gguf'."
    )

    @model_validator(mode="after")
    def _one_origin(self) -> "ModelSource":
        if (self.package is None) == (self.path is None):
            raise ValueError("give exactly one of 'package' or 'path'")
        return self
