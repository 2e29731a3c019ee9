"""Search: the web first, the local index when the web cannot answer."""

from __future__ import annotations

from typing import Any

from serve_app.services.context import RequestContext
from serve_app.services.roster import Roster
from vocabulary.calls import SearchCall


class SearchService:
    def __init__(self, roster: Roster) -> None:
        self._roster = roster

    async def search(self, query: str, max_results: int, ctx: RequestContext, *,
                     model: str | None = None, tail: int = 0) -> dict[str, Any]:
        chain = self._roster.chain("search", model, ctx=ctx)
        name, result = await self._roster.call(
            "search", chain, "search", lambda _, d: SearchCall(ctx.request_id, query, d.remaining(), max_results),
            ctx, tail=tail)
        return {"query": query, "results": result["results"], "model": name}
