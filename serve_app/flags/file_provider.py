"""An OpenFeature provider that reads flags from a file in flagd's flag-definition format, so flagd
(`openfeature-provider-flagd`, same file), LaunchDarkly or Unleash can take its place without a
change to the code that evaluates flags.

    {"flags": {"models.smollm2.enabled": {"state": "ENABLED", "variants": {"on": true, "off": false},
                                          "defaultVariant": "off"}}}

Targeting: `{"fractional": [["baseline", 90], ["candidate", 10]]}` (flagd's fractional, bucketed on
the flag key and the evaluation context's targeting key); a flag without it gives its default
variant; a DISABLED flag gives the caller's default. `refresh()` rereads the file when it changed: a
file that does not parse or fails `check` is refused and logged, and the last good flags stay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Literal

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serve_app.flags.fractional import pick

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
Value = bool | int | float | str | list | dict


class FlagDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["ENABLED", "DISABLED"] = "ENABLED"
    variants: dict[str, Value] = Field(min_length=1)
    defaultVariant: str
    targeting: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("targeting")
    @classmethod
    def _fractional_only(cls, targeting: dict[str, Any] | None) -> dict[str, Any] | None:
        if not targeting:
            return None
        if set(targeting) != {"fractional"} or not isinstance(targeting["fractional"], list):
            raise ValueError('targeting: only {"fractional": [[variant, weight], ...]} is understood here')
        for entry in targeting["fractional"]:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and isinstance(entry[1], int) and not isinstance(entry[1], bool) and entry[1] >= 0):
                raise ValueError(f"targeting.fractional: {entry!r} is not [variant, weight >= 0]")
        if not any(w for _, w in targeting["fractional"]):
            raise ValueError("targeting.fractional: the weights add up to 0")
        return targeting

    @model_validator(mode="after")
    def _variants_known(self) -> "FlagDefinition":
        named = [self.defaultVariant] + [v for v, _ in (self.targeting or {}).get("fractional", [])]
        unknown = sorted({v for v in named if v not in self.variants})
        if unknown:
            raise ValueError(f"variants {unknown} are not among {sorted(self.variants)}")
        return self

    def weights(self) -> list[tuple[str, int]] | None:
        return [(v, w) for v, w in self.targeting["fractional"]] if self.targeting else None


class FlagFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: str | None = Field(None, alias="$schema")
    flags: dict[str, FlagDefinition]


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, (dict, list))


class FileFlagProvider(AbstractProvider):
    def __init__(self, path: str | Path, check: Callable[[FlagFile], None] | None = None) -> None:
        self.path = Path(path)
        self._check = check
        self._flags: dict[str, FlagDefinition] = {}
        self._seen: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.version: str | None = None  # the SHA-256 prefix of the file in force
        self.last_error: str | None = None

    def get_metadata(self) -> Metadata:
        return Metadata(name="switchboard-file")

    # ---- the file -----------------------------------------------------------------------------

    def parse(self, raw: bytes | str) -> FlagFile:
        """The file's flags, or ValueError saying what is wrong."""
        try:
            flags = FlagFile.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"flags file {self.path}: {exc}") from None
        if self._check is not None:
            self._check(flags)
        return flags

    def refresh(self) -> bool:
        """Reread the file if it changed; True when new flags are in force."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return False  # none yet (or gone): the flags in force stay
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return False
        raw = self.path.read_bytes()
        self._seen = seen
        try:
            flags = self.parse(raw)
        except ValueError as exc:
            self.last_error = str(exc)[:2000]
            logger.error("flags file refused: the last good flags stay", extra={
                "path": str(self.path), "error": self.last_error, "version": self.version})
            return False
        with self._lock:
            self._flags = dict(flags.flags)
            self.version = hashlib.sha256(raw).hexdigest()[:12]
            self.last_error = None
        logger.info("flags in force", extra={"path": str(self.path), "version": self.version,
                                             "flags": sorted(self._flags)})
        return True

    def write(self, data: dict[str, Any]) -> None:
        """Validate, then replace the file at once (a reader sees the old file or the new one)."""
        raw = json.dumps(data, indent=2, sort_keys=True)
        self.parse(raw)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".flags-")
        with os.fdopen(fd, "w") as f:
            f.write(raw)
        os.replace(tmp, self.path)
        self.refresh()

    def has(self, key: str) -> bool:
        """Whether the file in force defines `key` (one dict lookup: the switches skip OpenFeature's
        evaluation, which would answer the default, for the flags a file does not name)."""
        return key in self._flags

    def definitions(self) -> dict[str, FlagDefinition]:
        with self._lock:
            return dict(self._flags)

    # ---- evaluation ---------------------------------------------------------------------------

    def _resolve(self, key: str, default: Any, context: EvaluationContext | None, kind: type) -> FlagResolutionDetails:
        flag = self._flags.get(key)
        if flag is None:
            return FlagResolutionDetails(default, ErrorCode.FLAG_NOT_FOUND, f"no flag {key!r}", Reason.ERROR)
        if flag.state == "DISABLED":
            return FlagResolutionDetails(default, reason=Reason.DISABLED)
        variant, reason = flag.defaultVariant, Reason.STATIC
        weights = flag.weights()
        if weights is not None:
            targeting_key = context.targeting_key if context is not None else None
            if targeting_key:
                variant, reason = pick(key, targeting_key, weights), Reason.SPLIT
            else:
                reason = Reason.DEFAULT
        value = flag.variants[variant]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # JSON's 0 and 1 are numbers too
        if not _fits(value, kind):
            return FlagResolutionDetails(default, ErrorCode.TYPE_MISMATCH,
                                         f"flag {key!r} is {type(value).__name__}, not {kind.__name__}", Reason.ERROR)
        return FlagResolutionDetails(value, reason=reason, variant=variant)

    def resolve_boolean_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, bool)

    def resolve_string_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, str)

    def resolve_integer_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, int)

    def resolve_float_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, float)

    def resolve_object_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, dict)
