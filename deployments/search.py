"""Search. Web metasearch with ddgs (fails fast with no network) and a local BM25 index (bm25s)
over a folder of documents. Results are title, url, snippet."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from deployments.base import ModelDeployment
from vocabulary.calls import SearchCall
from vocabulary.config import ModelSpec
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import ConfigError, DeadlineExceeded, ModelError
from vocabulary.paths import config_path


class WebSearchEngine:
    needs_network = True

    def __init__(self, spec) -> None:
        self._spec = spec
        self._thread = EngineThread("ddgs")

    async def start(self) -> None:
        import ddgs  # noqa: F401  (fail at start if missing)

    async def search(self, query: str, max_results: int, budget_s: float) -> list[dict[str, str]]:
        from ddgs import DDGS

        timeout = min(self._spec.timeout_s, max(0.001, budget_s))

        def run():
            client = DDGS(proxy=self._spec.proxy, timeout=int(max(1, timeout)))
            return client.text(query, region=self._spec.region, max_results=max_results, backend=self._spec.backend)

        try:
            rows = await asyncio.wait_for(self._thread.run(run), timeout=timeout)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"web search gave no answer within {timeout:.1f}s") from exc
        except Exception as exc:  # ddgs raises its own exception types for network failures
            raise ModelError(f"web search failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
        return [{"title": r.get("title", ""), "url": r.get("href", ""), "snippet": r.get("body", "")}
                for r in rows or []]

    async def check(self) -> None:
        pass

    async def close(self) -> None:
        self._thread.close()


class LocalSearchEngine:
    """BM25 over the chunks (paragraph groups of about `chunk_chars`) of a folder's documents."""

    needs_network = False

    def __init__(self, spec) -> None:
        self._spec = spec
        self._index = None
        self._chunks: list[dict[str, str]] = []

    async def start(self) -> None:
        import bm25s

        folder = config_path(self._spec.folder)
        if not folder.is_dir():
            raise ConfigError(f"search folder does not exist: {folder}")
        files = sorted({p for pattern in self._spec.patterns for p in folder.glob(pattern) if p.is_file()})
        for path in files:
            self._chunks += _chunks_of(path, folder, self._spec.chunk_chars)
        if not self._chunks:
            raise ConfigError(f"no documents matching {self._spec.patterns} under {folder}")
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize([c["title"] + "\n" + c["text"] for c in self._chunks],
                                         stopwords="en", show_progress=False), show_progress=False)

    async def search(self, query: str, max_results: int, budget_s: float) -> list[dict[str, str]]:
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        k = min(max_results, len(self._chunks))
        ids, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        return [{"title": self._chunks[i]["title"], "url": self._chunks[i]["url"],
                 "snippet": _snippet(self._chunks[i]["text"])}
                for i, score in zip(ids[0].tolist(), scores[0].tolist()) if score > 0]

    async def check(self) -> None:
        if self._index is None:
            raise ModelError("local index not built")

    async def close(self) -> None:
        pass


def _chunks_of(path: Path, root: Path, size: int) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8", errors="replace")
    heading = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), path.stem)
    chunks, current = [], ""
    for para in re.split(r"\n\s*\n", text):
        if current and len(current) + len(para) > size:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{para}".strip()
    if current:
        chunks.append(current)
    rel = path.relative_to(root).as_posix()
    return [{"title": heading, "url": f"{root.name}/{rel}#part-{i + 1}", "text": c} for i, c in enumerate(chunks)]


def _snippet(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + "…"


ENGINES = {"ddgs": WebSearchEngine, "bm25": LocalSearchEngine}


class SearchDeployment(ModelDeployment):
    def make_backend(self, spec: ModelSpec):
        return ENGINES[spec.backend.kind](spec.backend)

    async def search(self, call: SearchCall) -> dict[str, Any]:
        results = await self._within(
            call.budget_s, lambda: self._backend.search(call.query, call.max_results, call.budget_s))
        return {"results": results, "model": self._spec.name}

    async def _startup_probe(self) -> float:
        if self._backend.needs_network:
            return 0.0  # a network outage must not stop start-up; /api/health probes for real
        return await self.probe()

    async def _probe_once(self) -> None:
        await self._backend.search("switchboard", 1, self._spec.probe_timeout_s)
