"""From generated tokens to what an OpenAI chunk carries, on the engine's thread.

`TokenStream` is the streamer `generate` hands each token to. It counts the token for the engine,
decodes the text so far (a token that ends inside a UTF-8 character waits for the next), cuts the
text before the first stop string (`StopFilter`), and queues for the event loop each piece of
released text with the logprobs of the tokens that produced it. Tokens whose text lies past a stop
string are never shown, and neither are their logprobs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from deployments.llm.backend import EngineCounters

class StopFilter:
    """Text as it streams, cut before the first stop string; a possible start of one is held back."""

    def __init__(self, stops: list[str] | None) -> None:
        self._stops = [s for s in stops or () if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, piece: str) -> tuple[str, bool]:
        self._pending += piece
        cuts = [at for at in (self._pending.find(s) for s in self._stops) if at >= 0]
        if cuts:
            out, self._pending, self.stopped = self._pending[:min(cuts)], "", True
            return out, True
        keep = len(self._pending) - self._hold
        out, self._pending = (self._pending[:keep], self._pending[keep:]) if keep > 0 else ("", self._pending)
        return out, False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return "" if self.stopped else out


class TokenStream:
    """The streamer given to `generate` (put/end, transformers' BaseStreamer interface). `recorder`
    holds the current step's log-probabilities when the client asked for logprobs."""

    def __init__(self, tokenizer, token_bytes, stops: list[str] | None, recorder, top_logprobs: int,
                 cancel: threading.Event, counters: EngineCounters) -> None:
        self._tokenizer = tokenizer
        self._token_bytes = token_bytes  # token id -> its exact bytes
        self._filter = StopFilter(stops)
        self._recorder = recorder
        self._top = top_logprobs
        self._cancel = cancel
        self._counters = counters
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._prompt = True
        self._ended = False
        self._ids: list[int] = []
        self._text = ""  # decoded so far
        self._released = 0  # characters of it that passed the stop filter
        self._waiting: list[tuple[int, dict[str, Any]]] = []  # (where the token's text starts, its logprobs)
        self._special = set(tokenizer.all_special_ids)
        self.found_stop = threading.Event()

    async def next_piece(self) -> tuple[str, list[dict[str, Any]]] | None:
        """The next released text and its tokens' logprobs; None at the end of generation."""
        return await self._queue.get()

    def put(self, value) -> None:
        if self._prompt:  # generate hands the prompt over first
            self._prompt = False
            return
        tokens = value.reshape(-1).tolist()
        self._counters.produced(len(tokens), self._cancel)
        for token in tokens:
            if not self.found_stop.is_set():
                self._take(token)

    def end(self) -> None:
        """Called by generate when it finishes, and by the engine if it fails: the first call counts."""
        if self._ended:
            return
        self._ended = True
        if not self.found_stop.is_set():
            out, _ = self._filter.feed(self._decode(final=True))
            self._release(out + self._filter.flush(), final=True)  # nothing is flushed past a stop string
        self._send(None)

    def _take(self, token: int) -> None:
        if self._recorder is not None and token not in self._special:
            self._waiting.append((len(self._text), self._logprobs(token)))
        self._ids.append(token)
        out, stopped = self._filter.feed(self._decode(final=False))
        if stopped:
            self.found_stop.set()  # generation stops at its next step
        self._release(out, final=stopped)

    def _decode(self, final: bool) -> str:
        """The text the last token added; none while it ends inside a character (unless final)."""
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and not final:
            return ""
        new, self._text = text[len(self._text):], text
        return new

    def _release(self, text: str, final: bool) -> None:
        self._released += len(text)
        shown = [entry for start, entry in self._waiting if start < self._released]
        self._waiting = [] if final else [(s, e) for s, e in self._waiting if s >= self._released]
        if text:
            self._send((text, shown))

    def _logprobs(self, token: int) -> dict[str, Any]:
        import torch

        row = self._recorder.row
        top = torch.topk(row, self._top) if self._top else None
        alternatives = [] if top is None else [self._entry(int(t), float(lp))
                                               for lp, t in zip(top.values.tolist(), top.indices.tolist())]
        return {**self._entry(token, float(row[token])), "top_logprobs": alternatives}

    def _entry(self, token: int, logprob: float) -> dict[str, Any]:
        raw = self._token_bytes(token)
        return {"token": raw.decode("utf-8", errors="backslashreplace"), "logprob": logprob,
                "bytes": list(raw)}

    def _send(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone: so is the caller
            pass
