"""Config of who may call the service: client API keys and their per-minute limits."""

from __future__ import annotations

from pydantic import Field, model_validator

from vocabulary.config_base import StrictModel
from vocabulary.paths import PATH_RULE, ConfigPath


class ClientKey(StrictModel):
    """One client: its key in clear (`key`) or as the SHA-256 hex of the key (`sha256`), a name for
    the log, and its limits (None: the defaults of `client_keys`)."""

    name: str = Field(min_length=1, max_length=64)
    key: str | None = Field(None, min_length=16, description="At least 16 characters.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    rpm: int | None = Field(None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, description="Tokens (prompt + completion) per minute.")

    @model_validator(mode="after")
    def _one_secret(self) -> "ClientKey":
        if (self.key is None) == (self.sha256 is None):
            raise ValueError(f"client key {self.name!r}: give exactly one of key and sha256")
        return self


class ClientKeysFile(StrictModel):
    keys: list[ClientKey] = Field(min_length=1)


class ClientKeysSpec(StrictModel):
    """Off unless a keys file is named or the keys variable is set: then every /v1 and /api request
    (but health, the docs and the admin endpoints, which have their own token) needs
    `Authorization: Bearer <key>`."""

    file: ConfigPath | None = Field(
        None, description='JSON or YAML: {"keys": [{"name", "key" | "sha256", "rpm"?, "tpm"?}]}. ' + PATH_RULE)
    env: str = Field("SWITCHBOARD_API_KEYS", description="Variable with comma-separated keys (named key-1, key-2...).")
    rpm: int | None = Field(None, ge=1, description="Default requests per minute of a key; None: unlimited.")
    tpm: int | None = Field(None, ge=1, description="Default tokens per minute of a key; None: unlimited.")
