"""Vision / OCR. CPU roster: RapidOCR (PP-OCR ONNX models in its wheel), text lines with boxes
and confidences. GPU roster: PaddleOCR-VL (or Chandra) through an OpenAI-compatible vision chat."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx

from deployments.base import ModelDeployment
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
            out = engine(call.image)
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
    """Tesseract through pytesseract; words grouped into lines, each with its box and mean confidence."""

    def __init__(self, spec) -> None:
        self._spec = spec
        self._thread = EngineThread("tesseract")
        self._ready = False

    async def start(self) -> None:
        import pytesseract

        try:
            await self._thread.run(pytesseract.get_tesseract_version)
        except pytesseract.TesseractNotFoundError as exc:
            raise ModelError("tesseract is not installed (Debian: apt-get install tesseract-ocr)") from exc
        self._ready = True

    async def read(self, call: VisionCall) -> dict[str, Any]:
        import pytesseract
        from PIL import Image

        def run():
            image = Image.open(io.BytesIO(call.image)).convert("RGB")
            data = pytesseract.image_to_data(image, lang=self._spec.lang, config=f"--psm {self._spec.psm}",
                                             output_type=pytesseract.Output.DICT)
            lines: dict[tuple, dict] = {}
            for i, word in enumerate(data["text"]):
                if not word.strip() or float(data["conf"][i]) < 0:
                    continue
                key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
                x, y, w, h = data["left"][i], data["top"][i], data["width"][i], data["height"][i]
                line = lines.setdefault(key, {"words": [], "confs": [], "box": [x, y, x + w, y + h]})
                line["words"].append(word)
                line["confs"].append(float(data["conf"][i]) / 100)
                b = line["box"]
                line["box"] = [min(b[0], x), min(b[1], y), max(b[2], x + w), max(b[3], y + h)]
            return [{"text": " ".join(v["words"]),
                     "box": [[v["box"][0], v["box"][1]], [v["box"][2], v["box"][1]],
                             [v["box"][2], v["box"][3]], [v["box"][0], v["box"][3]]],
                     "confidence": round(sum(v["confs"]) / len(v["confs"]), 4)} for v in lines.values()]

        lines = await self._thread.run(run)
        return {"text": "\n".join(line["text"] for line in lines), "lines": lines}

    async def check(self) -> None:
        if not self._ready:
            raise ModelError("tesseract not started")

    async def close(self) -> None:
        self._thread.close()


class OpenAIVisionEngine:
    """A VLM behind /v1/chat/completions (vLLM serving PaddleOCR-VL or Chandra). No boxes: one line."""

    def __init__(self, spec) -> None:
        self._spec = spec
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = openai_http_client(self._spec.base_url, api_key_env=self._spec.api_key_env,
                                          timeout_s=self._spec.timeout_s)

    async def read(self, call: VisionCall) -> dict[str, Any]:
        url = f"data:{_mime(call.image)};base64,{base64.b64encode(call.image).decode()}"
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


def _mime(image: bytes) -> str:
    return "image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png"


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
