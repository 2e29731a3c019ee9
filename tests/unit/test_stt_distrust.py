"""Learned distrust: a transcript under stt.min_confidence is untrusted, in the answer and the log."""

from types import SimpleNamespace

from graphs.deadline import Deadline
from serve_app.services.audio import AudioService
from serve_app.services.context import RequestContext
from vocabulary.config import SttSpec


def service(min_confidence: float) -> AudioService:
    audio = AudioService.__new__(AudioService)
    audio._config = SimpleNamespace(stt=SttSpec(min_confidence=min_confidence))
    return audio


def test_a_doubtful_transcript_is_untrusted_and_the_lowest_confidence_is_kept():
    ctx = RequestContext("r", Deadline(5))
    audio = service(0.7)
    assert audio.distrust({"text": "hello there", "confidence": 0.91}, ctx) is False
    assert (ctx.untrusted, ctx.stt_confidence) == (False, 0.91)
    assert audio.distrust({"text": "hullo their", "confidence": 0.42}, ctx) is True
    assert audio.distrust({"text": "fine again", "confidence": 0.95}, ctx) is False
    assert (ctx.untrusted, ctx.stt_confidence) == (True, 0.42)
    assert ctx.headers()["x-switchboard-untrusted"] == "true"


def test_silence_is_not_a_doubtful_transcript():
    ctx = RequestContext("r", Deadline(5))
    assert service(0.7).distrust({"text": "  ", "confidence": 0.05}, ctx) is False
    assert ctx.untrusted is False and ctx.stt_confidence is None and "x-switchboard-untrusted" not in ctx.headers()


def test_the_threshold_is_config():
    ctx = RequestContext("r", Deadline(5))
    assert service(0.3).distrust({"text": "hullo their", "confidence": 0.42}, ctx) is False
