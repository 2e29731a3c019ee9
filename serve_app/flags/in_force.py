"""The flags of one ingress replica: the file provider registered with OpenFeature, a poll that picks
up a changed file within `flags.poll_s`, and what GET/PUT /api/flags show and write."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from openfeature import api

from serve_app.flags.file_provider import FileFlagProvider
from serve_app.flags.switches import Switches, check_flags
from vocabulary.config import SwitchboardConfig
from vocabulary.errors import ConfigError, InvalidRequest
from vocabulary.paths import config_path

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
DOMAIN = "switchboard"


class FlagsInForce:
    def __init__(self, config: SwitchboardConfig) -> None:
        self.provider = FileFlagProvider(config_path(config.flags.file), check_flags(config))
        self.provider.refresh()
        if self.provider.last_error:  # a bad file at start stops start-up; later ones are refused
            raise ConfigError(self.provider.last_error)
        api.set_provider(self.provider, domain=DOMAIN)
        self.switches = Switches(api.get_client(DOMAIN), defined=self.provider.has)
        self._poll_s = config.flags.poll_s
        self._task: asyncio.Task | None = None

    def watch(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await asyncio.to_thread(self.provider.refresh)
            except Exception:  # a read error now is logged; the next poll tries again
                logger.exception("flags file could not be read", extra={"path": str(self.provider.path)})

    def write(self, body: dict[str, Any]) -> None:
        try:
            self.provider.write(body)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="flags") from None

    def adopt(self, body: dict[str, Any]) -> bool:
        """Flags another replica wrote (through the shared board): written here too unless this
        replica's file already holds them (one machine, or a shared filesystem)."""
        try:
            if json.loads(self.provider.path.read_text()) == body:
                return False
        except (OSError, ValueError):
            pass
        self.provider.write(body)
        return True

    def view(self) -> dict[str, Any]:
        """Each flag's value in force (as evaluated without a targeting key), its variant, whether
        traffic is split, and the file's version and last refusal."""
        flags = {}
        for key, flag in sorted(self.provider.definitions().items()):
            on = flag.state == "ENABLED"
            flags[key] = {"state": flag.state, "value": flag.variants[flag.defaultVariant] if on else None,
                          "variant": flag.defaultVariant if on else None, "split": flag.weights(),
                          "variants": flag.variants}
        return {"provider": "file", "path": str(self.provider.path), "version": self.provider.version,
                "last_error": self.provider.last_error, "flags": flags}


def start_flags(config: SwitchboardConfig) -> FlagsInForce | None:
    if config.flags.file is None:
        return None
    flags = FlagsInForce(config)
    flags.watch()
    return flags
