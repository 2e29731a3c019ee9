"""Render a transcription in OpenAI's response formats."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(segments: list[dict[str, Any]]) -> str:
    return "\n".join(f"{i + 1}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n{s['text']}\n"
                     for i, s in enumerate(segments))


def vtt(segments: list[dict[str, Any]]) -> str:
    cues = "\n".join(f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text']}\n" for s in segments)
    return f"WEBVTT\n\n{cues}"


def render(result: dict[str, Any], fmt: str, headers: dict[str, str]) -> Response:
    if fmt == "text":
        return PlainTextResponse(result["text"] + "\n", headers=headers)
    if fmt == "srt":
        return PlainTextResponse(srt(result["segments"]), headers=headers)
    if fmt == "vtt":
        return PlainTextResponse(vtt(result["segments"]), media_type="text/vtt", headers=headers)
    if fmt == "verbose_json":
        body = {"task": result.get("task", "transcribe"), "language": result["language"],
                "language_probability": result.get("language_probability"), "duration": result["duration"],
                "text": result["text"], "segments": result["segments"], "confidence": result["confidence"],
                "untrusted": result.get("untrusted", False), "model": result["model"]}
        return JSONResponse(body, headers=headers)
    return JSONResponse({"text": result["text"]}, headers=headers)
