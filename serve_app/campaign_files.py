"""What a failure campaign reads (`switchboard campaign --requests FILE --faults FILE`):

- the faults file, JSON or YAML: a list of `{"model": name, "fault": FaultSpec}` (the body of
  PUT /api/admin/faults/{model}, `when` included);
- the requests file, JSONL: `{"endpoint"?: "/v1/chat/completions", "body": {...}, "tag"?: str,
  "image_path"?: str, "audio_path"?: str}`. A chat request gets its media as a data URL (an
  `image_url` part) or an `input_audio` part added to its last user message; a multipart endpoint
  (/api/vision, the audio uploads) gets it as the `file` upload, with `body` as its form fields.
  Media paths are relative to the requests file. `tag` names the class of the request in the
  summary (e.g. the topic that fails, and the rest)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError

from vocabulary.config_base import StrictModel
from vocabulary.resilience_config import FaultSpec

CHAT = "/v1/chat/completions"
MULTIPART = ("/api/vision", "/v1/audio/transcriptions", "/v1/audio/translations", "/api/voice/stt")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}
AUDIO_FORMATS = {".wav": "wav", ".mp3": "mp3"}
MAX_MEDIA_BYTES = 20 * 1024 * 1024


class CampaignError(Exception):
    """A campaign that cannot run as asked: its files, its URL, the admin API."""


class CampaignFault(StrictModel):
    model: str = Field(min_length=1, description="A roster model, or 'router'.")
    fault: FaultSpec


class _RequestLine(StrictModel):
    endpoint: str = Field(CHAT, pattern=r"^/[A-Za-z0-9/_.-]*$")
    body: dict[str, Any] = Field(default_factory=dict)
    tag: str | None = Field(None, max_length=100)
    image_path: str | None = None
    audio_path: str | None = None


@dataclass(frozen=True)
class CampaignRequest:
    """One request as it is sent: a JSON body, or form fields and a file upload."""

    endpoint: str
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    file: tuple[str, bytes, str] | None = None  # (file name, bytes, content type)
    tag: str | None = None


def read_faults(path: str | Path) -> list[CampaignFault]:
    path = Path(path)
    text = _read(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CampaignError(f"{path}: not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CampaignError(f"{path}: not valid JSON: {exc}") from None
    try:
        faults = TypeAdapter(list[CampaignFault]).validate_python(data)
    except ValidationError as exc:
        raise CampaignError(f"{path}: {_first_error(exc)}") from None
    if not faults:
        raise CampaignError(f"{path}: no faults")
    models = [f.model for f in faults]
    if len(set(models)) != len(models):
        raise CampaignError(f"{path}: one fault per model (a model's fault replaces the one before)")
    return faults


def read_requests(path: str | Path) -> list[CampaignRequest]:
    path = Path(path)
    out, media = [], {}
    for n, raw in enumerate(_read(path).splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = _RequestLine.model_validate_json(raw)
        except ValidationError as exc:
            raise CampaignError(f"{path}:{n}: {_first_error(exc)}") from None
        try:
            out.append(_request(line, path.parent, media))
        except CampaignError as exc:
            raise CampaignError(f"{path}:{n}: {exc}") from None
    if not out:
        raise CampaignError(f"{path}: no requests")
    return out


def _request(line: _RequestLine, folder: Path, media: dict[Path, bytes]) -> CampaignRequest:
    if line.image_path and line.audio_path:
        raise CampaignError("give image_path or audio_path, not both")
    given = line.image_path or line.audio_path
    if given is None:
        return CampaignRequest(line.endpoint, json=line.body, tag=line.tag)
    file = folder / given
    if file not in media:
        media[file] = _read_bytes(file)
    data, suffix = media[file], file.suffix.lower()
    kinds = IMAGE_TYPES if line.image_path else AUDIO_FORMATS
    if suffix not in kinds:
        raise CampaignError(f"{given}: use one of {', '.join(kinds)}")
    if line.endpoint in MULTIPART:
        content_type = IMAGE_TYPES.get(suffix) or f"audio/{AUDIO_FORMATS[suffix]}"
        form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in line.body.items()}
        return CampaignRequest(line.endpoint, form=form, file=(file.name, data, content_type), tag=line.tag)
    if line.endpoint != CHAT:
        raise CampaignError(f"media goes to {CHAT} or a multipart endpoint ({', '.join(MULTIPART)})")
    b64 = base64.b64encode(data).decode()
    part = ({"type": "image_url", "image_url": {"url": f"data:{IMAGE_TYPES[suffix]};base64,{b64}"}}
            if line.image_path else {"type": "input_audio", "input_audio": {"data": b64, "format": AUDIO_FORMATS[suffix]}})
    return CampaignRequest(line.endpoint, json=with_part(line.body, part), tag=line.tag)


def with_part(body: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """`body` with `part` added to its last user message (a string content becomes a text part)."""
    messages = [dict(m) for m in body.get("messages") or []]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise CampaignError("a request with media needs a user message to carry it")
    last = messages[users[-1]]
    content = last.get("content")
    parts = list(content) if isinstance(content, list) else ([{"type": "text", "text": content}] if content else [])
    last["content"] = [*parts, part]
    return {**body, "messages": messages}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CampaignError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_MEDIA_BYTES:
            raise CampaignError(f"{path}: over {MAX_MEDIA_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise CampaignError(f"cannot read {path}: {exc.strerror or exc}") from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]
