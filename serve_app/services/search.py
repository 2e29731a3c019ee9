"""Search: the web first, the local index when the web cannot answer."""

from __future__ import annotations

from typing import Any

from deployments.calls import SearchCall
from serve_app.services.context import RequestContext
from serve_app.services.roster import Roster


class SearchService:
    def __init__(self, roster: Roster) -> None:
        self._roster = roster

    async def search(self, query: str, max_results: int, ctx: RequestContext, *,
                     model: str | None = None) -> dict[str, Any]:
        chain = self._roster.chain("search", model)
        name, result = await self._roster.call(
            "search", chain, "search", lambda _: SearchCall(ctx.request_id, query, ctx.deadline.remaining(),
                                                            max_results), ctx)
        return {"query": query, "results": result["results"], "model": name}
