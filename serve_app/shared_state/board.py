"""The shared board: one small async Ray actor per Switchboard application that holds what the
ingress replicas must agree on, so that a breaker opened, a fault injected or flags written through
one replica hold on all of them (and survive a replica's restart).

- breakers: each model's last shared state (open with the wall-clock time it opened, or closed), and
  the failures every replica counted: failures split across replicas open the breaker here when
  together they reach the threshold within the window.
- faults: the admin faults set or cleared through any replica (None: cleared).
- flags: the last flags body written through PUT /api/flags.

Replicas long-poll `watch(since)`: it answers at once with a snapshot when something changed after
version `since`, else when something changes, else after `wait_s` with None. Nothing is asked of
the board on a request's path; replicas tell it about failures and state changes only.

The board is detached (a replica that goes away on downscale must not take it along) and lives on
the head node. A replica of a differently configured application (a new deploy) starts it afresh.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

BOARD_PREFIX = "switchboard-board-"
HEAD_NODE_RESOURCE = "node:__internal_head__"


class SharedBoard:
    def __init__(self) -> None:
        self._fingerprint: str | None = None
        self._policy = (3, 60.0)
        self._version = 0  # never goes back, even when the board starts afresh: followers compare with it
        self._changed = asyncio.Event()
        self._reset()

    def _reset(self) -> None:
        self._breakers: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, deque[float]] = {}
        self._faults: dict[str, dict[str, Any]] = {}
        self._flags: dict[str, Any] | None = None
        self._replicas: set[str] = set()

    def _bump(self) -> int:
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()
        return self._version

    async def join(self, replica: str, fingerprint: str, failure_threshold: int, window_s: float) -> dict[str, Any]:
        """A replica starts following: a different configuration starts the board afresh."""
        if fingerprint != self._fingerprint:
            self._reset()
            self._fingerprint = fingerprint
            self._bump()
        self._policy = (failure_threshold, window_s)
        self._replicas.add(replica)
        return self._snapshot()

    async def watch(self, since: int, wait_s: float) -> dict[str, Any] | None:
        if self._version <= since:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), wait_s)
            except asyncio.TimeoutError:
                return None
        return self._snapshot()

    async def breaker_moved(self, model: str, state: str, opened_at: float | None, replica: str) -> int:
        current = self._breakers.get(model)
        if state == "open":
            if current is not None and current["state"] == "open" and current["opened_at"] >= (opened_at or 0):
                return self._version  # already open since then or later
            self._breakers[model] = {"state": "open", "opened_at": opened_at or time.time(), "by": replica}
        else:
            if current is None or current["state"] == "closed":
                self._failures.pop(model, None)
                return self._version
            self._breakers[model] = {"state": "closed", "opened_at": None, "by": replica}
            self._failures.pop(model, None)
        self._breakers[model]["version"] = self._bump()
        return self._version

    async def failure(self, model: str, when: float, replica: str) -> int:
        """A failure one replica counted; with the others' within the window it may open the breaker."""
        threshold, window_s = self._policy
        seen = self._failures.setdefault(model, deque())
        seen.append(when)
        while seen and when - seen[0] > window_s:
            seen.popleft()
        current = self._breakers.get(model)
        if len(seen) >= threshold and (current is None or current["state"] != "open"):
            seen.clear()
            return await self.breaker_moved(model, "open", when, f"{replica} (failures of all replicas)")
        return self._version

    async def set_fault(self, model: str, fault: dict[str, Any] | None) -> int:
        self._faults[model] = {"fault": fault, "version": self._bump()}
        return self._version

    async def set_flags(self, body: dict[str, Any]) -> int:
        self._flags = {"body": body, "version": self._bump()}
        return self._version

    def _snapshot(self) -> dict[str, Any]:
        return {"version": self._version, "breakers": {k: dict(v) for k, v in self._breakers.items()},
                "faults": {k: dict(v) for k, v in self._faults.items()},
                "flags": dict(self._flags) if self._flags else None, "replicas": sorted(self._replicas)}
