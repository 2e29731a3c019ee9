
from graphs.routing import RequestFeatures, decide


def classifier(intent="search", confidence=0.9, calls=None):
    async def classify(text):
        if calls is not None:
            calls.append(text)
        scores = {"vision": 0.0, "voice": 0.0, "text": 0.0, "search": 0.0, intent: confidence}
        return {"intent": intent, "confidence": confidence, "scores": scores, "classifier": "fake"}
    return classify


async def route(features, **kw):
    return await decide(features, kw.pop("classify", classifier()), min_confidence=kw.pop("min_confidence", 0.5),
                        max_chars=kw.pop("max_chars", 1000))


async def test_attachments_come_first():
    calls = []
    d = await route(RequestFeatures("latest news?", has_image=True, model_family="llm"), classify=classifier(calls=calls))
    assert (d.intent, d.classifier) == ("vision", "attachment")
    d = await route(RequestFeatures("latest news?", has_audio=True), classify=classifier(calls=calls))
    assert (d.intent, d.classifier) == ("voice", "attachment")
    assert calls == []


async def test_an_explicit_model_comes_next():
    calls = []
    d = await route(RequestFeatures("latest news?", model_family="llm"), classify=classifier(calls=calls))
    assert (d.intent, d.classifier) == ("text", "model") and calls == []
    d = await route(RequestFeatures("hello", model_family="tts"))
    assert d.intent == "voice"


async def test_classifier_then_low_confidence_falls_to_text():
    d = await route(RequestFeatures("latest news?"))
    assert (d.intent, d.classifier, d.confidence) == ("search", "fake", 0.9)
    d = await route(RequestFeatures("latest news?"), classify=classifier(confidence=0.4))
    assert d.intent == "text" and "low confidence" in d.reason and d.scores["search"] == 0.4


async def test_empty_text_is_text_and_long_text_is_cut_for_classification_only():
    calls = []
    d = await route(RequestFeatures("   "), classify=classifier(calls=calls))
    assert (d.intent, d.classifier, calls) == ("text", "empty", [])
    await route(RequestFeatures("x" * 5000), classify=classifier(calls=calls), max_chars=100)
    assert len(calls[0]) == 100
