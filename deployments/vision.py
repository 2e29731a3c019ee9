"""Vision / OCR. CPU roster: RapidOCR (PP-OCR ONNX models in its wheel), text lines with boxes
and confidences, and Tesseract. GPU roster: PaddleOCR-VL (or Chandra) through an OpenAI-compatible
vision chat. Every engine reads the image as deployments/ocr_image.py normalises it (8-bit RGB,
upright), decoded on the engine's thread, never on the replica's event loop."""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx

from deployments.base import ModelDeployment
from deployments.ocr_image import normalise, upload_form
from deployments.spawn import spawn_and_wait
from vocabulary.calls import VisionCall
from vocabulary.config import ModelSpec
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import DeadlineExceeded, ModelError, UpstreamError
from vocabulary.openai_http import openai_http_client


class RapidOCREngine:
    def __init__(self, spec) -> None:
        self._spec = spec
        self._engine = None
        self._thread = EngineThread("rapidocr")

    async def start(self) -> None:
        from rapidocr import RapidOCR

        params = {"Det.limit_type": "max", "Det.limit_side_len": self._spec.limit_side_len,
                  "Global.log_level": "warning"}
        self._engine = await self._thread.run(lambda: RapidOCR(params=params))

    async def read(self, call: VisionCall) -> dict[str, Any]:
        engine = self._engine

        def run():
            out = engine(normalise(call.image))
            boxes = out.boxes.tolist() if out.boxes is not None else []
            return [{"text": t, "box": [[round(x, 1), round(y, 1)] for x, y in b], "confidence": round(float(c), 4)}
                    for t, b, c in zip(out.txts or (), boxes, out.scores or ())]

        lines = await self._thread.run(run)
        return {"text": "\n".join(line["text"] for line in lines), "lines": lines}

    async def check(self) -> None:
        if self._engine is None:
            raise ModelError("RapidOCR is not loaded")

    async def close(self) -> None:
        self._thread.close()


class TesseractEngine:
    """The `tesseract` command (Debian tesseract-ocr), started with posix_spawn (deployments/spawn.py:
    no fork in a replica) on the normalised image; its TSV words grouped into lines, each with its
    box and mean confidence. One OpenMP thread: the replica has a fraction of a 2-core machine."""

    def __init__(self, spec) -> None:
        self._spec = spec
        self._thread = EngineThread("tesseract")
        self._binary: str | None = None
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    async def start(self) -> None:
        binary = shutil.which("tesseract")
        if binary is None:
            raise ModelError("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
        with tempfile.TemporaryDirectory(prefix="sb-tesseract-") as tmp:
            err = Path(tmp) / "err"
            if await spawn_and_wait([binary, "--version"], stdout=err, stderr=err, env=self._env) != 0:
                raise ModelError(f"tesseract does not run: {err.read_text(errors='replace')[:200]}")
        self._binary = binary

    async def read(self, call: VisionCall) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="sb-tesseract-") as tmp:
            folder = Path(tmp)
            await self._thread.run(lambda: normalise(call.image).save(folder / "in.png", compress_level=1))
            code = await spawn_and_wait(
                [self._binary, str(folder / "in.png"), str(folder / "out"), "-l", self._spec.lang,
                 "--psm", str(self._spec.psm), "tsv"], stdout=folder / "log", stderr=folder / "log", env=self._env)
            if code != 0:
                log = (folder / "log").read_text(errors="replace")[-300:]
                raise ModelError(f"tesseract exited with {code}: {log}")
            lines = await self._thread.run(lambda: tsv_lines((folder / "out.tsv").read_text(errors="replace")))
        return {"text": "\n".join(line["text"] for line in lines), "lines": lines}

    async def check(self) -> None:
        if self._binary is None or not Path(self._binary).exists():
            raise ModelError("tesseract not started")

    async def close(self) -> None:
        self._thread.close()


def tsv_lines(tsv: str) -> list[dict[str, Any]]:
    """Tesseract's TSV (level, page, block, par, line, word, left, top, width, height, conf, text)
    as lines: words joined, the union of their boxes, their mean confidence (0..1)."""
    lines: dict[tuple, dict] = {}
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t", 11)
        if len(cols) < 12 or not cols[11].strip():
            continue
        try:
            conf = float(cols[10])
            block, par, line_no, x, y, w, h = (int(c) for c in (cols[2], cols[3], cols[4], *cols[6:10]))
        except ValueError:
            continue
        if conf < 0:
            continue
        line = lines.setdefault((block, par, line_no), {"words": [], "confs": [], "box": [x, y, x + w, y + h]})
        line["words"].append(cols[11].strip())
        line["confs"].append(conf / 100)
        b = line["box"]
        line["box"] = [min(b[0], x), min(b[1], y), max(b[2], x + w), max(b[3], y + h)]
    return [{"text": " ".join(v["words"]),
             "box": [[v["box"][0], v["box"][1]], [v["box"][2], v["box"][1]],
                     [v["box"][2], v["box"][3]], [v["box"][0], v["box"][3]]],
             "confidence": round(sum(v["confs"]) / len(v["confs"]), 4)} for v in lines.values()]


class OpenAIVisionEngine:
    """A VLM behind /v1/chat/completions (vLLM serving PaddleOCR-VL or Chandra). No boxes: one line."""

    def __init__(self, spec) -> None:
        self._spec = spec
        self._client: httpx.AsyncClient | None = None
        self._thread = EngineThread("vision-upload")

    async def start(self) -> None:
        self._client = openai_http_client(self._spec.base_url, api_key_env=self._spec.api_key_env,
                                          timeout_s=self._spec.timeout_s)

    async def read(self, call: VisionCall) -> dict[str, Any]:
        def data_url() -> str:
            image, mime = upload_form(call.image)
            return f"data:{mime};base64,{base64.b64encode(image).decode()}"

        url = await self._thread.run(data_url)
        body = {"model": self._spec.model, "max_tokens": self._spec.max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": call.prompt or self._spec.prompt}]}]}
        try:
            resp = await self._client.post("/chat/completions", json=body,
                                           timeout=min(self._spec.timeout_s, max(0.001, call.budget_s)))
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"vision upstream {self._spec.base_url} timed out") from exc
        except httpx.HTTPError as exc:
            raise ModelError(f"vision upstream unreachable: {type(exc).__name__}") from exc
        if resp.status_code >= 400:
            raise UpstreamError(f"vision upstream returned {resp.status_code}: {resp.text[:500]}",
                                http_status=resp.status_code)
        text = resp.json()["choices"][0]["message"]["content"] or ""
        return {"text": text.strip(), "lines": [{"text": line, "box": None, "confidence": None}
                                                 for line in text.strip().splitlines() if line.strip()]}

    async def check(self) -> None:
        if self._client is None:
            raise ModelError("vision client not started")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._thread.close()


ENGINES = {"rapidocr": RapidOCREngine, "tesseract": TesseractEngine, "openai_vision": OpenAIVisionEngine}


def probe_image() -> bytes:
    """A small rendered image with one word on it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (160, 48), "white")
    ImageDraw.Draw(image).text((8, 8), "READY", fill="black", font=ImageFont.load_default(size=28))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


class VisionDeployment(ModelDeployment):
    def make_backend(self, spec: ModelSpec):
        return ENGINES[spec.backend.kind](spec.backend)

    async def read(self, call: VisionCall) -> dict[str, Any]:
        result = await self._within(call.budget_s, lambda: self._backend.read(call))
        return {**result, "model": self._spec.name}

    async def _probe_once(self) -> None:
        result = await self._backend.read(VisionCall("probe", probe_image(), budget_s=10))
        if "READY" not in result["text"].upper():
            raise ModelError(f"read {result['text']!r} from an image that says READY")
