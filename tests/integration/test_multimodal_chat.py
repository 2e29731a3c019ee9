"""Chat with image and audio content parts: read or transcribed first, then answered by the LLM."""

import base64

import httpx
import openai
import pytest

from tests.integration.media import text_image, words

pytestmark = pytest.mark.integration


@pytest.fixture
def client(switchboard):
    return openai.OpenAI(base_url=f"{switchboard}/v1", api_key="unused", max_retries=0, timeout=120)


def test_chat_with_an_image_of_printed_text(client):
    url = "data:image/png;base64," + base64.b64encode(text_image("Invoice number 4471")).decode()
    raw = client.chat.completions.with_raw_response.create(model="auto", temperature=0, max_tokens=40, messages=[
        {"role": "user", "content": [{"type": "text", "text": "What does the image say?"},
                                     {"type": "image_url", "image_url": {"url": url}}]}])
    result = raw.parse()
    assert raw.headers["x-switchboard-models"] == "rapidocr,tesseract,smollm2"
    report = result.model_extra["switchboard"]["attachments"][0]
    assert report == {"type": "image", "model": "rapidocr", "text": "Invoice number 4471", "agreement": 1.0,
                      "uncertain": False}
    # the LLM wrote the answer (its wording is the 135M model's business, not the test's)
    assert result.model == "smollm2" and isinstance(result.choices[0].message.content, str)
    assert result.choices[0].finish_reason in ("stop", "length")


def test_chat_with_input_audio_uses_the_transcript(client):
    sentence = "Please book a table for four people at seven."
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input=sentence, response_format="wav").content
    raw = client.chat.completions.with_raw_response.create(model="auto", temperature=0, max_tokens=40, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "Repeat what the caller asked for."},
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]}])
    result = raw.parse()
    assert raw.headers["x-switchboard-models"] == "whisper-base,smollm2"
    report = result.model_extra["switchboard"]["attachments"][0]
    assert report["type"] == "audio" and report["model"] == "whisper-base"
    assert words(report["transcript"]) == words(sentence.replace("four", "4").replace("seven", "7")) or \
        words(report["transcript"]) == words(sentence)
    # the LLM answered from the transcript (its wording is the 135M model's business, not the test's)
    assert result.model == "smollm2" and isinstance(result.choices[0].message.content, str)
    assert result.choices[0].finish_reason in ("stop", "length")


def test_image_chat_streams_too(switchboard):
    url = "data:image/png;base64," + base64.b64encode(text_image("Gate B12")).decode()
    body = {"stream": True, "max_tokens": 8, "temperature": 0, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                     {"type": "text", "text": "Which gate?"}]}]}
    r = httpx.post(f"{switchboard}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.headers["x-switchboard-models"] == "rapidocr,tesseract,smollm2"
    assert r.text.rstrip().endswith("data: [DONE]")
