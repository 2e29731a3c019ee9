"""Reading images: from an upload, a data: URL or a fetched http(s) URL, checked before any model."""

from __future__ import annotations

from typing import Any

from serve_app.media.fetch import FetchPolicy, fetch_image
from serve_app.media.image import ImageInfo, inspect_image, parse_data_url
from serve_app.media.pool import MediaPool
from serve_app.services.context import RequestContext
from serve_app.services.roster import Roster
from vocabulary.calls import VisionCall


class VisionService:
    def __init__(self, roster: Roster, pool: MediaPool | None = None) -> None:
        self._roster = roster
        self._pool = pool or MediaPool(name="image")
        media = roster.config.media
        self._media = media
        self._max_pixels = media.max_image_pixels
        fetch = media.image_fetch
        self._policy = FetchPolicy(allow_private=fetch.allow_private, max_bytes=fetch.max_bytes,
                                   timeout_s=fetch.timeout_s, max_redirects=fetch.max_redirects)

    async def load(self, url: str, ctx: RequestContext, *, param: str) -> bytes:
        """The image bytes behind an image_url (data: or http(s)), checked."""
        if url.startswith("data:"):
            data = await self._pool.run(parse_data_url, url, param=param)  # megabytes of base64
        else:
            data = await fetch_image(url, self._policy, param=param, budget_s=ctx.deadline.remaining())
        await self.check(data, param=param, ctx=ctx)
        return data

    async def check(self, data: bytes, *, param: str, ctx: RequestContext | None = None) -> ImageInfo:
        """Format, pixel count and a full decode (up to 40 MP), on the media pool: off the event loop.
        The same decode measures the text's skew and the contrast, which the request's facts keep."""
        info = await self._pool.run(inspect_image, data, max_pixels=self._max_pixels, param=param)
        if ctx is not None:
            ctx.media.add_image(info.width, info.height, self._media, param)
            ctx.facts = ctx.facts.with_image(info.width, info.height, info.rotation, info.contrast)
        return info

    async def read(self, image: bytes, ctx: RequestContext, *, model: str | None = None,
                   prompt: str | None = None, tail: int = 0) -> dict[str, Any]:
        chain = self._roster.chain("vision", model, ctx=ctx)
        name, result = await self._roster.call(
            "vision", chain, "read", lambda _, d: VisionCall(ctx.request_id, image, d.remaining(), prompt), ctx,
            tail=tail)
        return {**result, "model": name}
