"""One ingress replica's side of the shared board (serve_app/shared_state/board.py): it tells the
board about its breakers' moves, the failures it counted, and the faults and flags written through
it, and follows the board's snapshots, applying what other replicas did.

Nothing here is on a request's path: publishing goes through a bounded queue drained by a task, and
following is one long-poll at a time. Every call to the board has a deadline; a board that cannot be
reached leaves the replica working alone (logged) until it can be reached again, when the replica
joins afresh and tells it its open breakers and its faults.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any, Awaitable, Callable

from graphs.breaker import BreakerState
from graphs.faults import Fault
from serve_app.services.roster import Roster
from vocabulary.config import SwitchboardConfig

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
WATCH_S = 10.0  # one long-poll waits this long for a change
CALL_S = 5.0  # the deadline of every other call to the board (and the slack on a long-poll)
RETRY_S = 1.0
QUEUE = 1024


def fingerprint(config: SwitchboardConfig) -> str:
    """Replicas of one configuration share a board; a new configuration starts it afresh."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


class BoardFollower:
    def __init__(self, roster: Roster, replica: str, fingerprint: str,
                 connect: Callable[[], Any], *, adopt_flags: Callable[[dict[str, Any]], Awaitable[None]] | None = None
                 ) -> None:
        self._roster = roster
        self._replica = replica
        self._fingerprint = fingerprint
        self._connect = connect  # () -> the board's actor handle (created when missing)
        self._adopt_flags = adopt_flags
        self._board: Any = None
        self._version = -1
        self._applying = False
        self._outbox: asyncio.Queue = asyncio.Queue(QUEUE)
        self._tasks: list[asyncio.Task] = []
        self.replicas: list[str] = []

    # ---- what this replica tells the board ----------------------------------------------------

    def breaker_changed(self, model: str, old: BreakerState, new: BreakerState) -> None:
        """From the breaker's on_change: share opening and closing (half-open is each replica's own)."""
        if self._applying or new is BreakerState.HALF_OPEN:
            return
        opened_at = time.time() if new is BreakerState.OPEN else None
        self._post("breaker_moved", model, new.value, opened_at, self._replica)

    def failure_counted(self, model: str) -> None:
        self._post("failure", model, time.time(), self._replica)

    async def set_fault(self, model: str, fault: dict[str, Any] | None) -> bool:
        """Shared at once (the admin call waits for it); False when the board could not be reached."""
        return await self._tell("set_fault", model, fault)

    async def set_flags(self, body: dict[str, Any]) -> bool:
        return await self._tell("set_flags", body)

    def _post(self, method: str, *args: Any) -> None:
        try:
            self._outbox.put_nowait((method, args))
        except asyncio.QueueFull:
            logger.warning("shared board: outbox full, an update is dropped", extra={"method": method})

    async def _tell(self, method: str, *args: Any) -> bool:
        if self._board is None:
            return False
        try:
            await asyncio.wait_for(getattr(self._board, method).remote(*args), CALL_S)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("shared board unreachable", extra={"method": method, "error": repr(exc)})
            return False

    # ---- following ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._join()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow()), loop.create_task(self._publish())]

    async def _join(self) -> bool:
        try:
            self._board = await asyncio.to_thread(self._connect)
            policy = self._roster.config.resilience.breaker
            snapshot = await asyncio.wait_for(
                self._board.join.remote(self._replica, self._fingerprint, policy.failure_threshold, policy.window_s),
                CALL_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("shared board unreachable: this replica works alone until it is back",
                           extra={"error": repr(exc)})
            self._board = None
            return False
        await self.apply(snapshot)
        return True

    async def _follow(self) -> None:
        while True:
            if self._board is None:
                await asyncio.sleep(RETRY_S)
                if await self._join():
                    self._tell_what_i_hold()
                continue
            try:
                snapshot = await asyncio.wait_for(self._board.watch.remote(self._version, WATCH_S), WATCH_S + CALL_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("shared board lost; joining again", extra={"error": repr(exc)})
                self._board = None
                continue
            if snapshot is not None:
                await self.apply(snapshot)

    async def _publish(self) -> None:
        while True:
            method, args = await self._outbox.get()
            try:
                await self._tell(method, *args)
            finally:
                self._outbox.task_done()

    async def drained(self) -> None:
        """Until everything posted so far has been told to the board (or given up on)."""
        await self._outbox.join()

    def _tell_what_i_hold(self) -> None:
        """After joining a board that started afresh: the breakers open here."""
        for name, breaker in self._roster.breakers.items():
            ago = breaker.opened_ago_s
            if ago is not None:
                self._post("breaker_moved", name, BreakerState.OPEN.value, time.time() - ago, self._replica)

    async def apply(self, snapshot: dict[str, Any]) -> None:
        """What changed on the board since the last snapshot, applied here without echoing it back."""
        since, self._version = self._version, snapshot["version"]
        self.replicas = snapshot.get("replicas", [])
        self._applying = True
        try:
            for model, entry in snapshot["breakers"].items():
                breaker = self._roster.breakers.get(model)
                if breaker is None or entry["version"] <= since:
                    continue
                if entry["state"] == BreakerState.OPEN.value:
                    breaker.force_open(time.time() - entry["opened_at"])
                elif breaker.state is not BreakerState.CLOSED:
                    breaker.reset()
            for model, entry in snapshot["faults"].items():
                if entry["version"] <= since:
                    continue
                if entry["fault"] is None:
                    self._roster.faults.clear(model)
                else:
                    self._roster.faults.set(model, Fault(**entry["fault"]))
        finally:
            self._applying = False
        flags = snapshot.get("flags")
        if flags and flags["version"] > since and self._adopt_flags is not None:
            try:
                await self._adopt_flags(flags["body"])
            except Exception:
                logger.exception("shared board: flags from another replica refused")

    def view(self) -> dict[str, Any]:
        return {"connected": self._board is not None, "version": self._version, "replicas": self.replicas}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CALL_S)


def board_connector(app_name: str) -> Callable[[], Any]:
    """Finds the application's board, creating it on the head node when there is none."""
    def connect() -> Any:
        import ray

        from serve_app.shared_state.board import BOARD_PREFIX, HEAD_NODE_RESOURCE, SharedBoard

        return ray.remote(SharedBoard).options(
            name=BOARD_PREFIX + app_name, get_if_exists=True, lifetime="detached", num_cpus=0,
            resources={HEAD_NODE_RESOURCE: 0.001}, max_restarts=-1).remote()
    return connect
