"""What every model deployment shares: load the backend, prove it answers a tiny real input
before serving (so `serve run` fails loudly instead of serving a corpse), cheap health checks."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from vocabulary.config import ModelSpec
from vocabulary.errors import DeadlineExceeded, ModelError, SwitchboardError

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


class ModelDeployment:
    """Subclasses set `make_backend(spec)` and `_probe_once()`; the backend has start/check/close."""

    def make_backend(self, spec: ModelSpec) -> Any:
        raise NotImplementedError

    async def _probe_once(self) -> None:
        """Run the backend on a tiny real input; raise if the answer is unusable."""
        raise NotImplementedError

    async def __init__(self, spec: ModelSpec, backend: Any = None) -> None:
        self._spec = spec
        self._ongoing = 0
        self._backend = backend or self.make_backend(spec)
        await self._backend.start()
        latency = await self._startup_probe()
        logger.info("model ready", extra={"model": spec.name, "family": spec.family, "probe_latency_ms": latency})

    @classmethod
    async def create(cls, spec: ModelSpec, backend: Any = None) -> "ModelDeployment":
        """The same object outside Serve (a model placed in the ingress): the constructor is async."""
        model = cls.__new__(cls)
        await model.__init__(spec, backend)
        return model

    async def close(self) -> None:
        await self._backend.close()

    async def _startup_probe(self) -> float:
        """The dry run in the constructor; a deployment whose probe needs the outside world
        (web search) overrides it so that a network outage does not stop start-up."""
        return await self.probe()

    async def probe(self) -> float:
        """The dry run behind start-up and /api/health: latency in ms, or ModelError."""
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._probe_once(), timeout=self._spec.probe_timeout_s)
        except TimeoutError as exc:
            raise ModelError(f"probe of {self._spec.name} took over {self._spec.probe_timeout_s}s") from exc
        except SwitchboardError as exc:
            raise ModelError(f"probe of {self._spec.name} failed: {exc.message}") from exc
        return round((time.perf_counter() - started) * 1000, 2)

    async def check_health(self) -> None:
        await self._backend.check()

    async def _within(self, budget_s: float, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run `work()` within what is left of the caller's deadline; a cancelled caller ends it."""
        self._ongoing += 1
        try:
            return await asyncio.wait_for(work(), timeout=max(0.0, budget_s))
        except TimeoutError as exc:
            raise DeadlineExceeded(f"model {self._spec.name} ran out of time") from exc
        finally:
            self._ongoing -= 1

    async def stats(self, _: Any = None) -> dict[str, Any]:
        """Requests this replica is working on now (cancelled ones leave at once)."""
        return {"model": self._spec.name, "ongoing": self._ongoing}

    async def __del__(self) -> None:
        await self._backend.close()
