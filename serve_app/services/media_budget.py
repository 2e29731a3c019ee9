"""How much media one request may bring (config `media`): its image and audio parts are counted before
anything is decoded, and the decoded pixels and audio seconds of all its parts are added up as each is
decoded, which happens before any model reads one (70 images in one message once ran 15 s of OCR and
then failed for the LLM's context). Over a limit: 413 naming it."""

from __future__ import annotations

from typing import Iterable

from serve_app.schemas.chat import AudioPart, ImagePart
from vocabulary.config import MediaSpec
from vocabulary.errors import PayloadTooLarge


def check_part_counts(parts: Iterable[object], media: MediaSpec) -> None:
    parts = list(parts)
    images = sum(isinstance(p, ImagePart) for p in parts)
    audio = sum(isinstance(p, AudioPart) for p in parts)
    if images > media.max_image_parts:
        raise PayloadTooLarge(f"the request has {images} image parts, over the limit of {media.max_image_parts} "
                              "(media.max_image_parts)", param="messages")
    if audio > media.max_audio_parts:
        raise PayloadTooLarge(f"the request has {audio} audio parts, over the limit of {media.max_audio_parts} "
                              "(media.max_audio_parts)", param="messages")


class MediaTally:
    """The decoded media of one request so far, against the per-request limits."""

    def __init__(self) -> None:
        self.pixels = 0
        self.audio_seconds = 0.0

    def add_image(self, width: int, height: int, media: MediaSpec, param: str) -> None:
        self.pixels += width * height
        if self.pixels > media.max_request_pixels:
            raise PayloadTooLarge(f"the request's images have {self.pixels} pixels together, over the limit of "
                                  f"{media.max_request_pixels} (media.max_request_pixels)", param=param)

    def add_audio(self, seconds: float, media: MediaSpec, param: str) -> None:
        self.audio_seconds += seconds
        if self.audio_seconds > media.max_request_audio_seconds:
            raise PayloadTooLarge(f"the request's audio lasts {self.audio_seconds:.1f} s together, over the limit "
                                  f"of {media.max_request_audio_seconds:g} s (media.max_request_audio_seconds)",
                                  param=param)
