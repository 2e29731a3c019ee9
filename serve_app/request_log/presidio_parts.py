"""Presidio's parts built for offline use: a spaCy engine over an installed model package (never
`spacy.cli.download`, which Presidio's own `load()` calls for a model it cannot find), and a
registry of only the recognizers the request log needs, the e-mail one checking domains against
tldextract's bundled suffix list instead of fetching it from the network on first use."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import spacy
import tldextract
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
)

from serve_app.request_log.pii_patterns import SECRET, STREET_ADDRESS

NER_SCORE = 0.85  # spaCy gives no score per entity; Presidio's default for its NER
PIPE_BATCH = 64  # texts per spaCy minibatch


class BatchSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine that runs the NER over many texts in one `nlp.pipe`, and only
    tokenises the texts it is told need no NER (the same tokens, so the same context words for the
    pattern recognizers; no entities)."""

    def process_many(self, texts: Sequence[str], language: str, ner: Sequence[bool]) -> list[NlpArtifacts]:
        nlp = self.nlp[language]
        with_ner = iter(nlp.pipe([text for text, wanted in zip(texts, ner) if wanted], batch_size=PIPE_BATCH))
        docs = [next(with_ner) if wanted else nlp.make_doc(text) for text, wanted in zip(texts, ner)]
        return [self._doc_to_nlp_artifact(doc, language) for doc in docs]


def nlp_engine(model: str, exclude: Iterable[str]) -> BatchSpacyNlpEngine:
    """A loaded engine whose only mapped NER label is PERSON: places, dates and organisations are
    kept (they are what questions are about: "the capital of France")."""
    nlp = spacy.load(model, exclude=list(exclude))  # an installed package; raises if it is not there
    labels = set(nlp.get_pipe("ner").labels)
    config = NerModelConfiguration(model_to_presidio_entity_mapping={"PERSON": "PERSON"},
                                   labels_to_ignore=sorted(labels - {"PERSON"}), default_score=NER_SCORE)
    engine = BatchSpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}], ner_model_configuration=config)
    engine.nlp = {"en": nlp}  # loaded: AnalyzerEngine does not call engine.load() (and its download)
    return engine


class PersonRecognizer(SpacyRecognizer):
    """spaCy's PERSON entities, where the small model's two habits are corrected: it glues a phone
    number to a name ("John Smith 555-123-4567"), and it takes a capitalised command followed by a
    number for a name ("Convert 3 cups", "the M2 chip"). Words with digits are trimmed off a name's
    ends; what is left is dropped if nothing is, or if it is a single word opening a sentence."""

    def analyze(self, text, entities, nlp_artifacts=None):
        results = []
        for result in super().analyze(text, entities, nlp_artifacts):
            span = _name_span(text, result.start, result.end)
            if span is not None:
                result.start, result.end = span
                results.append(result)
        return results


_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"(?:\A|[.!?:;\n\"'“(\[])\s*\Z")


def _name_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    if not any(char.isdigit() for char in text[start:end]):
        return start, end
    words = [word.span() for word in _WORD.finditer(text, start, end)]
    while words and any(char.isdigit() for char in text[words[0][0]:words[0][1]]):
        words.pop(0)
    while words and any(char.isdigit() for char in text[words[-1][0]:words[-1][1]]):
        words.pop()
    if not words or (len(words) == 1 and _SENTENCE_END.search(text, 0, words[0][0])):
        return None
    return words[0][0], words[-1][1]


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, its domain check on the suffix list bundled with tldextract."""

    _tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    def validate_result(self, pattern_text: str) -> bool:
        return self._tld(pattern_text).fqdn != ""


class DigitGatedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer (python-phonenumbers, one pass per region: half the cost of a
    call) skipped for a text with fewer digits than any phone number in the regions searched."""

    MIN_DIGITS = 7

    def analyze(self, text, entities, nlp_artifacts=None):
        if sum(char.isdigit() for char in text) < self.MIN_DIGITS:
            return []
        return super().analyze(text, entities, nlp_artifacts)


def recognizer_registry(engine: SpacyNlpEngine, phone_regions: Iterable[str],
                        address_patterns: Iterable[tuple[str, str, float]],
                        secret_patterns: Iterable[tuple[str, str, float]], flags: int) -> RecognizerRegistry:
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        PersonRecognizer(supported_entities=["PERSON"], ner_strength=NER_SCORE),
        OfflineEmailRecognizer(),
        DigitGatedPhoneRecognizer(supported_regions=tuple(phone_regions)),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        _patterns(STREET_ADDRESS, address_patterns, flags),
        _patterns(SECRET, secret_patterns, flags),
    ):
        registry.add_recognizer(recognizer)
    return registry


def _patterns(entity: str, patterns: Iterable[tuple[str, str, float]], flags: int) -> PatternRecognizer:
    return PatternRecognizer(supported_entity=entity, name=f"{entity.lower()}_recognizer",
                             patterns=[Pattern(name, regex, score) for name, regex, score in patterns],
                             global_regex_flags=flags)
