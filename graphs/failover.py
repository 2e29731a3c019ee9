"""Walk an ordered list of models until one answers.

A failure the client caused (`is_client_error`) stops the walk: the next model would refuse the
same input. Any other failure is recorded and the next model is tried while time remains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

from graphs.deadline import Deadline

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    model: str
    error: BaseException

    def describe(self) -> str:
        message = getattr(self.error, "message", None) or str(self.error) or type(self.error).__name__
        return f"{self.model}: {message}"


@dataclass(frozen=True)
class ChainResult(Generic[T]):
    model: str
    value: T
    failures: list[Failure] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        return bool(self.failures)


class ChainExhausted(Exception):
    """Every model of the chain failed (or no time was left to try the rest)."""

    def __init__(self, failures: list[Failure], skipped: list[str]) -> None:
        self.failures = failures
        self.skipped = skipped
        parts = [f.describe() for f in failures] + [f"{name}: not tried, no time left" for name in skipped]
        super().__init__("; ".join(parts) or "no model to try")


async def first_answer(
    models: Sequence[str],
    attempt: Callable[[str], Awaitable[T]],
    deadline: Deadline,
    *,
    is_client_error: Callable[[BaseException], bool],
) -> ChainResult[T]:
    failures: list[Failure] = []
    for i, name in enumerate(models):
        if deadline.expired():
            raise ChainExhausted(failures, list(models[i:]))
        try:
            return ChainResult(name, await attempt(name), failures)
        except Exception as exc:
            if is_client_error(exc):
                raise
            failures.append(Failure(name, exc))
    raise ChainExhausted(failures, [])
