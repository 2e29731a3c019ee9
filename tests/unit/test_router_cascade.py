"""The router's cascade: a bounded decision cache, then the hashed n-gram tier where it is sure, then
MiniLM. The shipped artifact's cascade loses nothing against MiniLM alone on the held-out split, and
its threshold was chosen on the train split only."""

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest

from intent_router.classifier import DecisionCache, EmbeddingClassifier
from intent_router.fast_training import cascade_accuracy
from intent_router.head import Head, latest_path
from intent_router.ngram_head import NgramHead, cascade_threshold, fit_ngram_head, hashed, ngrams
from intent_router.training import read_rows
from vocabulary.paths import PROJECT_ROOT, ROUTER_HEADS, config_path
from vocabulary.router_config import EmbeddingClassifierSpec

HELDOUT = PROJECT_ROOT / "data" / "router" / "heldout.jsonl"


def shipped() -> tuple[Head, NgramHead]:
    head = Head.read(latest_path(config_path(ROUTER_HEADS)))
    assert head.fast is not None, "the shipped head carries a fast tier"
    return head, NgramHead.from_json(head.fast)


def test_features_hash_the_same_in_every_process():
    # hash() of a str differs per process; the columns must not, or a trained head means nothing elsewhere
    code = "from intent_router.ngram_head import hashed; print(hashed('Read this aloud, please', 32768)[0].tolist())"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=PROJECT_ROOT, env={"PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(runs) == 1 and json.loads(runs.pop()) == hashed("Read this aloud, please", 32768)[0].tolist()


def test_features_of_odd_text():
    assert ngrams("") == [] and len(hashed("", 64)[0]) == 0
    columns, values = hashed("héllo \ud800 wörld ☃", 64)  # a lone surrogate and non-ASCII letters
    assert len(columns) and abs(float(np.linalg.norm(values)) - 1.0) < 1e-5


def test_a_fast_head_round_trips_through_json_and_its_probabilities_are_a_distribution():
    texts = ["read this aloud", "say it in a calm voice", "what is 2 + 2", "explain recursion"] * 3
    labels = ["voice", "voice", "text", "text"] * 3
    head = fit_ngram_head(texts, labels, c=10, buckets=1024, threshold=0.8)
    again = NgramHead.from_json(json.loads(json.dumps(head.to_json())))
    for text in ("read it aloud", "", "\ud800"):
        p = again.probabilities(text)
        assert p.shape == (2,) and abs(float(p.sum()) - 1) < 1e-6
        assert np.allclose(p, head.probabilities(text), atol=1e-6)
    assert again.labels[int(again.probabilities("read this aloud now").argmax())] == "voice"


def test_the_threshold_is_the_lowest_at_which_the_fast_tier_breaks_nothing_the_slow_one_gets_right():
    probs = np.array([[0.95, 0.05], [0.7, 0.3], [0.6, 0.4], [0.3, 0.7]])
    fast_says = ("a", "b")
    truth = ["a", "b", "a", "b"]
    slow = ["a", "b", "b", "b"]  # slow is wrong on row 2 only
    # at 0.65 the fast tier answers rows 0, 1 (wrong: says a, slow was right) and 3: one broken
    chosen = cascade_threshold(probs, fast_says, slow, truth, (0.5, 0.65, 0.75, 1.01))
    assert chosen["threshold"] == 0.75
    assert [c["broken"] for c in chosen["candidates"]] == [1, 1, 0, 0]


def test_the_decision_cache_is_bounded_and_keeps_the_most_recent():
    cache = DecisionCache(2)
    keys = [cache.key(t) for t in ("a", "b", "c")]
    cache.put(keys[0], "A")
    cache.put(keys[1], "B")
    assert cache.get(keys[0]) == "A"  # a is now the most recent
    cache.put(keys[2], "C")
    assert len(cache) == 2 and cache.get(keys[1]) is None and cache.get(keys[0]) == "A"
    assert cache.key("\ud800") != cache.key("")  # a lone surrogate is hashable too
    off = DecisionCache(0)
    off.put(keys[0], "A")
    assert off.get(keys[0]) is None


@pytest.fixture(scope="module")
def classifier():
    spec = EmbeddingClassifierSpec(kind="embedding", cache_entries=8)
    c = EmbeddingClassifier(spec)
    asyncio.run(c.start())
    yield c
    asyncio.run(c.close())


def test_the_shipped_cascade_loses_nothing_on_the_held_out_split_and_answers_much_of_it_alone(classifier):
    head, fast = shipped()
    assert fast.meta["train_rows"] == 859 and "cv_thresholds" in fast.meta  # chosen on the train split
    result = cascade_accuracy(head, fast, read_rows(HELDOUT), classifier)
    assert result["cascade"] >= result["minilm"] >= 0.981, result
    assert result["fast_share"] >= 0.4, result


def test_the_cascade_answers_from_the_cache_then_the_fast_tier_then_minilm(classifier):
    _, fast = shipped()
    rows = read_rows(HELDOUT)
    easy = next(r["text"] for r in rows if fast.probabilities(r["text"]).max() >= fast.threshold)
    hard = next(r["text"] for r in rows if fast.probabilities(r["text"]).max() < fast.threshold)

    async def run():
        return [await classifier.classify(t) for t in (easy, easy, hard, hard)]

    first, again, slow, slow_again = asyncio.run(run())
    assert (first.meta["tier"], first.classifier, first.embedding) == ("fast", "ngram-logreg", None)
    assert again.meta["tier"] == "cache" and again.intent == first.intent and again.scores == first.scores
    assert (slow.meta["tier"], slow.classifier) == ("minilm", "minilm-logreg") and slow.embedding.shape == (384,)
    assert slow_again.meta["tier"] == "cache" and np.array_equal(slow_again.embedding, slow.embedding)


def test_with_the_fast_tier_off_minilm_decides_every_text(classifier):
    spec = EmbeddingClassifierSpec(kind="embedding", cache_entries=0, fast_tier={"enabled": False})
    off = EmbeddingClassifier(spec)
    off._encoder = classifier._encoder  # the same loaded MiniLM
    off._reload(force=True)

    async def run():
        return [await off.classify("hi"), await off.classify("hi")]

    assert [c.meta["tier"] for c in asyncio.run(run())] == ["minilm", "minilm"]
    asyncio.run(off.close())


def test_texts_waiting_for_minilm_share_one_forward_pass_with_the_same_answers(classifier):
    rows = read_rows(HELDOUT)
    _, fast = shipped()
    hard = [r["text"] for r in rows if fast.probabilities(r["text"]).max() < fast.threshold][:12]
    head = classifier._head
    alone = [head.probabilities(classifier.encode([t], head.layers))[0] for t in hard]

    async def run():
        classifier._cache.clear()
        before = classifier._batcher.passes
        doomed = asyncio.ensure_future(classifier.classify(hard[0] + " (cancelled)"))
        results = asyncio.gather(*(classifier.classify(t) for t in hard))
        await asyncio.sleep(0)
        doomed.cancel()  # a waiter that leaves: the others are still answered
        got = await results
        return got, classifier._batcher.passes - before

    got, passes = asyncio.run(run())
    assert passes < len(hard), passes  # the first went alone, the rest waited and went together
    for result, probs in zip(got, alone):
        assert result.meta["tier"] == "minilm"
        assert np.allclose([result.scores[label] for label in head.labels], probs, atol=2e-3)
