"""Relaying a chat stream to the client: each choice's chunks relabelled, its breaker permit settled
by how it ended, the request log's call entry completed, and an error event (never a truncated answer
presented as complete) when a stream breaks after its first token."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import AsyncIterator, Callable

from graphs.blame import Blame, blame
from graphs.failover import settle
from serve_app import sse
from serve_app.schemas.chat import ChatCompletionRequest
from serve_app.services.chat import ChatService
from serve_app.services.context import RequestContext
from serve_app.stream_state import StreamState
from vocabulary.errors import DeadlineExceeded, ModelError, SwitchboardError

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


async def relay(chat: ChatService, body: ChatCompletionRequest, prepared, opened, chain,
                ctx: RequestContext, done: Callable[[StreamState], None] | None = None) -> AsyncIterator[str]:
    """Relay the stream of each choice (n>1: one after another, each through the chain), then
    the usage chunk when `stream_options.include_usage` asked for it, then [DONE]; then, the whole
    answer sent, `done(state)`."""
    first = opened.first[0] if opened.first else {}
    state = StreamState(first.get("id", f"chatcmpl-{ctx.request_id}"), first.get("created", int(time.time())))
    for choice in range(body.n or 1):
        if choice:
            try:
                opened, chain = await chat.open_stream(body, prepared, ctx, choice)
            except SwitchboardError as err:
                ctx.error_code = err.code
                for line in sse.error_events(err, chunk_id=state.id, model=state.model, created=state.created):
                    yield line
                return
        # closed at once when the client leaves: the permit is settled and the model stops now
        async with contextlib.aclosing(relay_choice(opened, chain, ctx, state, choice)) as lines:
            async for line in lines:
                yield line
        if state.outcome != "ok":
            return
    if body.stream_options and body.stream_options.include_usage:
        yield sse.event({"id": state.id, "object": "chat.completion.chunk", "created": state.created,
                         "model": state.model, "choices": [], "usage": state.usage()})
    yield sse.DONE
    if done is not None:
        done(state)

async def relay_choice(opened, chain, ctx: RequestContext, state: StreamState,
                       choice: int) -> AsyncIterator[str]:
    """Relay one opened stream. Its breaker permit is settled once, by how it ended: the end of
    the stream is a success; a failure after the first token is the model's when it is its own
    (an error, a stall), and says nothing about it when the client left or its deadline passed.
    Usage is kept for the final chunk, never sent on the way."""
    model = opened.model
    state.model = model
    state.outcome, who = "client_gone", Blame.NONE
    try:
        for chunk in opened.first:
            if state.relabel(chunk, model, choice):
                yield sse.event(chunk)
        async for chunk in opened.rest():
            if state.relabel(chunk, model, choice):
                yield sse.event(chunk)
        state.outcome = "ok"
    except Exception as exc:  # the stream broke after its first token: say so, never end as if complete
        state.outcome, who = "error", blame(exc, opened.attempt)
        if who is Blame.DEADLINE:
            err = DeadlineExceeded(f"the request's deadline passed while {model} was streaming")
        elif isinstance(exc, SwitchboardError):
            err = exc
        else:
            err = ModelError(f"model {model} failed mid-stream: "
                             f"{getattr(exc, 'message', None) or type(exc).__name__}")
        logger.error("stream broke after first token", extra={
            "request_id": ctx.request_id, "model": model, "code": err.code, "reason": err.message,
            "blame": who.value})
        ctx.error_code = err.code
        stream_ended(ctx, model, state, choice, who)  # before [DONE], when the log line is made
        for line in sse.error_events(err, chunk_id=state.id, model=model, created=state.created):
            yield line
    finally:
        opened.cancel()
        if state.outcome != "error":
            stream_ended(ctx, model, state, choice, who)
        if state.outcome == "ok" and chain.breaker is not None:
            chain.breaker.record_success(chain.permit)
        elif state.outcome != "ok":
            settle(chain.breaker, chain.permit, who)


def stream_ended(ctx: RequestContext, model: str, state: StreamState, choice: int, who: Blame) -> None:
    """The request log's entry of the call that streamed: its sizes, and how it ended."""
    entry = next((c for c in reversed(ctx.calls) if c["model"] == model and c["status"] == "ok"), None)
    if entry is None:
        return
    usage = state.choice_usage(choice)
    entry.update(tokens_in=usage.get("prompt_tokens"), tokens_out=usage.get("completion_tokens"),
                 output_length=state.chars.get(choice, 0))
    if state.outcome == "error":
        entry.update(status="error", error=f"broke mid-stream ({ctx.error_code})", blame=who.value)
    elif state.outcome == "client_gone":
        entry.update(status="cancelled", blame=Blame.NONE.value)
