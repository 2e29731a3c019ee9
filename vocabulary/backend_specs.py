"""Backend settings, one sub-model per engine, as a tagged union on `kind`.

`FAMILY_BACKENDS` says which engines may serve which family; the roster validator uses it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from vocabulary.config_base import ModelSource, StrictModel
from vocabulary.paths import PATH_RULE, SEARCH_CORPUS, ConfigPath

# ---- llm ---------------------------------------------------------------------------------------

class LlamaCppBackend(StrictModel):
    """llama.cpp in-process (llama-cpp-python): the CPU default."""

    kind: Literal["llama_cpp"]
    source: ModelSource
    n_ctx: int = Field(2048, ge=128)
    n_threads: int = Field(1, ge=1, description="Threads for generation and for the prompt.")
    n_batch: int = Field(256, ge=8)


class UpstreamBackend(StrictModel):
    """An OpenAI-compatible server the user already runs (vLLM, llama.cpp, TGI, ...)."""

    kind: Literal["upstream"]
    base_url: str = Field(description="Base URL including /v1, e.g. http://127.0.0.1:8001/v1")
    model: str = Field(description="Model name the upstream serves.")
    api_key_env: str | None = Field(None, description="Environment variable holding the upstream's API key.")
    timeout_s: float = Field(120.0, gt=0)
    max_connections: int = Field(64, ge=1)


class VLLMBackend(StrictModel):
    """vLLM through `ray.serve.llm` (GPU roster)."""

    kind: Literal["vllm"]
    source: ModelSource
    served_model_name: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Passed to vLLM's engine as is.")


class TransformersBackend(StrictModel):
    """Hugging Face transformers on CPU: a GGUF (dequantised, via `gguf_file`) or an HF model folder."""

    kind: Literal["transformers"]
    source: ModelSource
    n_ctx: int = Field(2048, ge=128)
    torch_threads: int = Field(1, ge=1)


# ---- stt ---------------------------------------------------------------------------------------

class FasterWhisperBackend(StrictModel):
    """faster-whisper (CTranslate2). CPU: Whisper base (multilingual) and tiny.en, int8; GPU: large-v3/turbo
    float16 from a local path."""

    kind: Literal["faster_whisper"]
    source: ModelSource
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, float16, int8_float16, ...")
    cpu_threads: int = Field(1, ge=0)
    beam_size: int = Field(1, ge=1, le=10)
    english_only: bool = Field(False, description="The model knows English only (*.en models).")


# ---- tts ---------------------------------------------------------------------------------------

class PiperBackend(StrictModel):
    """Piper (ONNX) voices. `voices` maps a voice name to its .onnx model."""

    kind: Literal["piper"]
    voices: dict[str, ModelSource] = Field(min_length=1)


class EspeakBackend(StrictModel):
    """espeak-ng (Debian package): robotic but always there; the last-resort voice."""

    kind: Literal["espeak"]
    binary: str = "espeak-ng"
    voices: dict[str, str] = Field(default_factory=lambda: {"espeak": "en-us"},
                                   description="Voice name -> espeak-ng voice.")


class KokoroBackend(StrictModel):
    """Kokoro-82M from a local path (GPU roster). `voices` maps a name to a voice pack in the path."""

    kind: Literal["kokoro"]
    source: ModelSource
    device: Literal["cpu", "cuda"] = "cuda"
    lang_code: str = "a"
    voices: dict[str, str] = Field(default_factory=lambda: {"heart": "af_heart"})


# Kokoro's voice names start with their language: a American and b British English, e Spanish, f French,
# h Hindi, i Italian, p Brazilian Portuguese (Kokoro speaks these from espeak-ng's phonemes; its Japanese and
# Chinese voices need other phonemizers). The espeak-ng language of each:
KOKORO_LANGUAGES: dict[str, str] = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it",
                                    "p": "pt-br"}


class KokoroOnnxBackend(StrictModel):
    """Kokoro-82M v1.0 int8 under ONNX Runtime on CPU (kokoro-onnx), phonemes from espeak-ng in-process.
    `source` is a folder with kokoro-v1.0.int8.onnx, vocab.json and voices.npz (models/assembled/,
    built at install time). A voice speaks the language its pack's first letter names; speeds outside
    Kokoro's 0.5-2.0 are clamped."""

    kind: Literal["kokoro_onnx"]
    source: ModelSource
    voices: dict[str, str] = Field(min_length=1, description="Voice name -> Kokoro voice pack (e.g. ef_dora); a "
                                                           "list of packs names each voice after its pack.")
    intra_op_threads: int = Field(1, ge=1, description="ONNX Runtime threads for one synthesis.")

    @field_validator("voices", mode="before")
    @classmethod
    def _named_after_packs(cls, value: Any) -> Any:
        return {pack: pack for pack in value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _languages(self) -> KokoroOnnxBackend:
        for name, pack in self.voices.items():
            if pack[:1] not in KOKORO_LANGUAGES or pack[1:3] not in ("f_", "m_"):
                raise ValueError(f"voices.{name}: {pack!r} is not a Kokoro voice of a language spoken from espeak-ng "
                                 f"phonemes (first letter one of {''.join(KOKORO_LANGUAGES)}, e.g. af_heart)")
        return self

    def language(self, voice: str) -> str:
        """The espeak-ng language that voice `voice` speaks."""
        return KOKORO_LANGUAGES[self.voices[voice][0]]


# ---- clone -------------------------------------------------------------------------------------

class VoxCPMBackend(StrictModel):
    """VoxCPM-0.5B voice cloning from a local path (GPU roster)."""

    kind: Literal["voxcpm"]
    source: ModelSource
    inference_timesteps: int = Field(10, ge=1)
    cfg_value: float = Field(2.0, gt=0)


# ---- vision ------------------------------------------------------------------------------------

class RapidOCRBackend(StrictModel):
    """RapidOCR (PP-OCR ONNX models inside its wheel)."""

    kind: Literal["rapidocr"]
    limit_side_len: int = Field(960, ge=32, description="Det.limit_side_len with Det.limit_type=max.")


class TesseractBackend(StrictModel):
    """Tesseract (the Debian tesseract-ocr command, started without fork): a second, independent OCR engine."""

    kind: Literal["tesseract"]
    lang: str = "eng"
    psm: int = Field(3, ge=0, le=13, description="Tesseract page segmentation mode.")


class OpenAIVisionBackend(StrictModel):
    """A vision-language model behind an OpenAI-compatible chat API (PaddleOCR-VL or Chandra on vLLM)."""

    kind: Literal["openai_vision"]
    base_url: str
    model: str
    prompt: str = Field("OCR:", description="The instruction sent with the image (PaddleOCR-VL: 'OCR:').")
    api_key_env: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    max_tokens: int = Field(2048, ge=1)


# ---- search ------------------------------------------------------------------------------------

class WebSearchBackend(StrictModel):
    """Web metasearch with ddgs. With no network it fails within `timeout_s`."""

    kind: Literal["ddgs"]
    timeout_s: float = Field(3.0, gt=0)
    region: str = "us-en"
    backend: str = Field("auto", description="ddgs search backend(s), e.g. 'duckduckgo,brave'.")
    proxy: str | None = Field(None, description="Proxy for all ddgs traffic, e.g. socks5h://127.0.0.1:9150.")


class LocalSearchBackend(StrictModel):
    """BM25 (bm25s) over a folder of text and Markdown documents, indexed at start."""

    kind: Literal["bm25"]
    folder: ConfigPath = Field(SEARCH_CORPUS, description="The folder of the documents; the default is the corpus "
                                                          "shipped in the package. " + PATH_RULE)
    patterns: list[str] = Field(default_factory=lambda: ["**/*.md", "**/*.txt"])
    chunk_chars: int = Field(800, ge=100)


BackendSpec = Annotated[
    Union[LlamaCppBackend, UpstreamBackend, VLLMBackend, TransformersBackend, FasterWhisperBackend, PiperBackend, EspeakBackend,
          KokoroBackend, KokoroOnnxBackend, VoxCPMBackend, RapidOCRBackend, TesseractBackend, OpenAIVisionBackend,
          WebSearchBackend, LocalSearchBackend],
    Field(discriminator="kind"),
]

FAMILY_BACKENDS: dict[str, frozenset[str]] = {
    "llm": frozenset({"llama_cpp", "upstream", "vllm", "transformers"}),
    "router": frozenset(),
    "stt": frozenset({"faster_whisper"}),
    "tts": frozenset({"piper", "espeak", "kokoro", "kokoro_onnx"}),
    "clone": frozenset({"voxcpm"}),
    "vision": frozenset({"rapidocr", "tesseract", "openai_vision"}),
    "search": frozenset({"ddgs", "bm25"}),
}
