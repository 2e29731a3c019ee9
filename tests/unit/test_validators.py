"""Output validators: an unusable answer is the model's failure; a legitimate empty one is not."""

import pytest

from graphs.validators import InvalidOutput, corrupt, validate

TRANSCRIPT = {"text": "hello there", "language": "en", "duration": 1.0, "confidence": 0.9,
              "segments": [{"id": 0, "start": 0.0, "end": 1.0, "text": "hello there"}]}
SILENCE = {"text": "", "language": "en", "duration": 2.0, "confidence": 0.0, "segments": []}


def test_silence_transcribes_to_empty_text_like_openai():
    assert validate("stt", "whisper", SILENCE) == SILENCE
    assert validate("stt", "whisper", {**SILENCE, "text": "   "})["text"] == "   "


def test_a_transcript_is_still_checked_for_shape():
    assert validate("stt", "whisper", TRANSCRIPT) == TRANSCRIPT
    for bad in (None, "hello", {"segments": []}, {"text": None}, {"text": "x", "segments": "nope"}):
        with pytest.raises(InvalidOutput, match="not a transcription"):
            validate("stt", "whisper", bad)
    with pytest.raises(InvalidOutput):
        validate("stt", "whisper", corrupt("stt", TRANSCRIPT, "garbled"))


def test_an_empty_llm_answer_is_valid_but_not_a_malformed_one():
    empty = {"choices": [{"message": {"role": "assistant", "content": ""}}]}
    assert validate("llm", "smollm2", empty) == empty
    for bad in ({}, {"choices": []}, {"choices": ["x"]}, {"choices": [{"message": {"content": 5}}]}):
        with pytest.raises(InvalidOutput, match="not a chat completion"):
            validate("llm", "smollm2", bad)


def test_zero_length_audio_is_still_a_failure():
    with pytest.raises(InvalidOutput, match="zero-length audio"):
        validate("tts", "piper", {"audio": b""})
    with pytest.raises(InvalidOutput, match="zero-length audio"):
        validate("clone", "voxcpm", corrupt("clone", {"audio": b"\x01\x02"}, "empty"))
    assert validate("tts", "piper", {"audio": b"\x01\x02"})


def test_an_image_without_text_is_a_valid_reading():
    assert validate("vision", "rapidocr", {"text": "", "lines": []})
    with pytest.raises(InvalidOutput, match="not an OCR result"):
        validate("vision", "rapidocr", {"text": ""})


def test_search_results_are_checked():
    assert validate("search", "local", {"results": []})
    with pytest.raises(InvalidOutput, match="malformed search result"):
        validate("search", "local", {"results": [{"title": "t"}]})


def test_unknown_families_pass():
    assert validate("router", "minilm", object()) is not None
