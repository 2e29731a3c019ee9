import base64
import json

from serve_app.payload_log import loggable_body


def test_base64_is_shortened_but_the_rest_is_kept():
    blob = base64.b64encode(b"\x00" * 30000).decode()
    body = {"model": "nope", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": blob, "format": "wav"}}]}]}
    logged = loggable_body(json.dumps(body).encode())
    data = logged["messages"][0]["content"][0]["input_audio"]["data"]
    assert data.startswith(blob[:64]) and f"base64, {len(blob)} chars" in data
    assert logged["model"] == "nope"


def test_invalid_json_is_logged_as_text():
    assert loggable_body(b'{"model": ') == '{"model": '


def test_form_data_and_odd_objects_become_json():
    import io

    from starlette.datastructures import FormData, UploadFile

    form = FormData([("model", "whisper-1"), ("file", UploadFile(io.BytesIO(b"x" * 10), size=10, filename="a.wav"))])
    logged = loggable_body(form)
    assert logged == {"model": "whisper-1", "file": "<file 'a.wav', 10 bytes>"}
    json.dumps(loggable_body({"x": object(), 3: b"abc"}))  # never raises
