"""Every documented limit fits in one gRPC message between replicas (Serve's high-throughput mode),
with room to spare: cluster/serve.env raises the cap, and Ray still reads the variable it sets."""

import yaml

from serve_app.local_env import ENV_FILE, local_env
from vocabulary.calls import SAMPLE_RATE_STT
from vocabulary.config import SwitchboardConfig

CAP_VARIABLE = "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"
# Speech at speed 0.25, the slowest OpenAI allows: Piper's joe voice speaks 4,096 characters in
# 689 s (5.9 a second; 19.3 at speed 1). Take 4 a second.
SLOWEST_CHARS_PER_S = 4
TTS_BYTES_PER_S = 24_000 * 2  # the highest sample rate of the roster's voices (Kokoro), int16


def largest_messages(config: SwitchboardConfig) -> dict[str, int]:
    media = config.media
    return {
        "audio to speech-to-text (float32 PCM)": int(media.max_audio_seconds * SAMPLE_RATE_STT * 4),
        "a request body's media (an image, a chat)": config.limits.max_body_bytes,
        "speech back from text-to-speech (int16 PCM)": media.max_tts_chars // SLOWEST_CHARS_PER_S * TTS_BYTES_PER_S,
    }


def shipped_config() -> SwitchboardConfig:
    path = ENV_FILE.parent / "local.yaml"
    return SwitchboardConfig.model_validate(yaml.safe_load(path.read_text())["applications"][0]["args"])


def test_the_documented_limits_fit_under_the_cap_twice_over():
    cap = int(local_env()[CAP_VARIABLE])
    for config in (SwitchboardConfig.model_validate({"models": shipped_config().model_dump()["models"]}),
                   shipped_config()):
        for what, size in largest_messages(config).items():
            assert 2 * size <= cap, f"{what}: {size} bytes, the cap is {cap}"


def test_the_documented_limits_are_what_the_readme_promises():
    media = shipped_config().media
    assert media.max_audio_seconds == 600 and media.max_tts_chars == 4096 and media.max_image_pixels == 40_000_000
    assert shipped_config().limits.max_body_bytes == 25 * 1024 * 1024


def test_ray_reads_the_variable_that_serve_env_sets():
    # tests/conftest.py applied cluster/serve.env before Ray was imported, as the Makefile does for `serve run`
    from ray.serve._private import constants

    assert constants.RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH == int(local_env()[CAP_VARIABLE])
    assert constants.RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH > 4 * 1024 * 1024  # gRPC's default, too small
