"""The learning loop on synthetic request logs, with the real MiniLM encoder (no Ray): the choice head
learns which model fails on which topic, train-router publishes only what is not worse, rollback goes
back one version, buckets cluster the low-confidence requests."""

import asyncio
import json
import random
from datetime import datetime

import numpy as np
import pytest

from graphs.chain_order import order
from intent_router.buckets import cluster, low_confidence
from intent_router.choice_head import ChoiceFeatures, ChoiceHeads
from intent_router.classifier import EmbeddingClassifier, as_dict
from intent_router.head import LATEST, Head, latest_path, rollback
from intent_router.publishing import train_router
from serve_app.cli import main
from tests.request_log_samples import call, feedback, line, write_log
from vocabulary.paths import PROJECT_ROOT
from vocabulary.router_config import EmbeddingClassifierSpec, RouterSpec

ALPHA, BETA = "smollm2", "smollm2-hf"  # the text chain of cluster/local.yaml, so the CLI knows them
FAMILIES = {ALPHA: "llm", BETA: "llm"}
TEMPLATES = ["Explain how {}.", "Why is it that {}?", "Write a short poem about how {}.",
             "Give me three facts about how {}.", "What should a student know about how {}?"]
VOLCANO = ["lava flows down the side of a volcano", "a volcano erupts", "magma rises from a chamber under a volcano",
           "Mount Vesuvius buried Pompeii in an eruption", "volcanic ash clouds ground airplanes",
           "pyroclastic flows race down a volcano", "lava cools into basalt rock", "Hawaiian shield volcanoes grow",
           "Krakatoa exploded in 1883", "volcanic eruptions cool the climate"]
OTHER = ["bread rises in the oven", "the stock market works", "plants turn sunlight into sugar",
         "the offside rule works in football", "Python list comprehensions work", "the French revolution began",
         "airplanes stay in the air", "sleep helps memory", "people save money for retirement",
         "the knight moves in chess", "cats purr", "the moon causes tides", "adults learn a new language",
         "electric car batteries charge", "espresso is brewed"]


@pytest.fixture(scope="module")
def encoder():
    classifier = EmbeddingClassifier(EmbeddingClassifierSpec(kind="embedding"))  # the shipped head
    classifier.load_encoder()
    yield classifier
    asyncio.run(classifier.close())


async def test_classify_gives_the_sentence_embedding_of_its_own_pass(encoder):
    text = "lava flows down the side of a volcano"
    result = await encoder.classify(text)
    assert result.embedding.shape == (384,)
    assert np.allclose(result.embedding, encoder.sentence_embeddings([text])[0], atol=1e-5)
    assert np.allclose(result.embedding, await encoder.sentence_embedding(text), atol=1e-5)
    assert "embedding" not in as_dict(result)


def topic_log(flip_training: bool = False, prefix: str = "r") -> list[dict]:
    """ALPHA fails on volcano questions and answers the rest; BETA answers everything it is asked but
    for one in three of the (rarer) other requests it goes first on. With flip_training, the requests of
    the training split say the opposite (a misleading log); the held-out ones stay true."""
    from intent_router.learning_data import held_out

    lines = []
    texts = [(t.format(s), True) for s in VOLCANO for t in TEMPLATES] + \
        [(t.format(s), False) for s in OTHER for t in TEMPLATES]
    for i, (text, volcano) in enumerate(texts):
        request_id = f"{prefix}{i}"
        fails = volcano != (flip_training and not held_out(request_id))
        if fails:
            calls = [call(ALPHA, "error", error="ModelError: nonsense"), call(BETA)]
        elif i % 4 == 0:  # exploration: BETA first, and now and then it fails
            calls = [call(BETA, "error"), call(ALPHA)] if i % 12 == 0 else [call(BETA)]
        else:
            calls = [call(ALPHA)]
        lines.append(line(request_id, text, calls))
    return lines


def small_data(tmp_path, shuffle_labels=False):
    rows = [json.loads(x) for x in (PROJECT_ROOT / "data/router/train.jsonl").read_text().splitlines()[::4]]
    heldout = (PROJECT_ROOT / "data/router/heldout.jsonl").read_text().splitlines()[::3]
    if shuffle_labels:
        labels = [r["label"] for r in rows]
        random.Random(0).shuffle(labels)
        rows = [{**r, "label": label} for r, label in zip(rows, labels)]
    folder = tmp_path / ("shuffled" if shuffle_labels else "data")
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "heldout.jsonl").write_text("\n".join(heldout) + "\n")
    return folder


def test_the_choice_head_learns_which_model_fails_on_a_topic(tmp_path, encoder):
    router = RouterSpec(choice={"min_rows": 20})
    outcome = train_router(small_data(tmp_path), tmp_path / "heads", router, topic_log(), [], FAMILIES,
                           classifier=encoder)
    assert outcome.published and outcome.report["choice"]["families"]["llm"]["compared_rows"] > 0
    heads = ChoiceHeads.from_head(Head.read(latest_path(tmp_path / "heads")), min_rows=20)

    def scores(text):
        embedding = encoder.sentence_embeddings([text])[0]
        return heads.scores("llm", [ALPHA, BETA], ChoiceFeatures(embedding, input_chars=len(text)))

    def chain(s):
        return order([ALPHA, BETA], s, prior_weight=0.1, exploration=0.0, rng=random.Random(0))

    for text in ["My hiking trail passes an active crater spewing molten rock: is it dangerous?",
                 "Tell me about the Mount St. Helens blast and its lahars."]:
        s = scores(text)
        assert s[BETA] > s[ALPHA] and s[ALPHA] < 0.5, (text, s)
        assert chain(s) == [BETA, ALPHA]
    for text in ["How do I bake sourdough at home?", "What is a good strategy for the chess opening?",
                 "Summarise the causes of the First World War."]:
        s = scores(text)  # both answer well here: within the prior, so the config order stays
        assert s[ALPHA] > 0.7 and s[ALPHA] + 0.1 > s[BETA], (text, s)
        assert chain(s) == [ALPHA, BETA]


def test_train_refuses_a_worse_version_and_rollback_goes_back(tmp_path, encoder, capsys):
    heads = tmp_path / "heads"
    data = small_data(tmp_path)
    router = RouterSpec(choice={"min_rows": 20})
    first = train_router(data, heads, router, topic_log(), [], FAMILIES, classifier=encoder)
    assert first.published and first.artifact.endswith("head-0001.json")
    assert first.report["intent"]["current_accuracy"] is None and first.report["intent"]["new_accuracy"] > 0.8

    # a worse intent head: the same held-out rows, training labels shuffled
    worse = train_router(small_data(tmp_path, shuffle_labels=True), heads, router, topic_log(), [], FAMILIES,
                         classifier=encoder)
    assert not worse.published and worse.artifact is None
    assert any("intent accuracy" in reason for reason in worse.refused)
    assert (heads / LATEST).read_text().strip() == "head-0001.json" and not (heads / "head-0002.json").exists()

    # a worse choice head: a misleading log (its held-out rows still true); the intent head is as good
    misleading = train_router(data, heads, router, topic_log(flip_training=True), [], FAMILIES, classifier=encoder)
    assert not misleading.published
    assert misleading.refused and all("llm choice head" in reason for reason in misleading.refused)
    family = misleading.report["choice"]["families"]["llm"]
    assert family["new"]["log_loss"] > family["old"]["log_loss"]

    forced = train_router(data, heads, router, topic_log(flip_training=True), [], FAMILIES, classifier=encoder,
                          force=True)
    assert forced.published and forced.artifact.endswith("head-0002.json")
    assert Head.read(latest_path(heads)).meta["forced"] is True

    # the same data again: not worse, published, and a version without log rows keeps the choice heads
    again = train_router(data, heads, router, [], [], FAMILIES, classifier=encoder)
    assert again.published and again.report["choice"]["carried_over"] == ["llm"]
    assert Head.read(latest_path(heads)).choice == Head.read(heads / "head-0002.json").choice

    assert rollback(heads) == ("head-0003.json", "head-0002.json")
    assert main(["rollback-router", "--artifacts", str(heads)]) == 0
    assert "head-0002.json -> head-0001.json" in capsys.readouterr().out
    assert main(["rollback-router", "--artifacts", str(heads)]) == 3
    assert "oldest" in capsys.readouterr().err


def test_the_command_exits_3_when_it_refuses(tmp_path, encoder, capsys):
    heads = tmp_path / "heads"
    data = small_data(tmp_path)
    assert train_router(data, heads, RouterSpec(), topic_log(), [], FAMILIES, classifier=encoder).published
    log = write_log(tmp_path / "log", topic_log(flip_training=True))
    args = ["train-router", "--data", str(data), "--artifacts", str(heads), "--log-dir", str(log)]
    assert main(args) == 3
    out = capsys.readouterr()
    assert "not published" in out.err and "--force" in out.err and json.loads(out.out)["published"] is False
    assert (heads / LATEST).read_text().strip() == "head-0001.json"
    assert main(args + ["--force"]) == 0
    assert json.loads(capsys.readouterr().out)["artifact"].endswith("head-0002.json")


def test_corrections_teach_the_intent_head(tmp_path, encoder):
    texts = [f"please frobnicate the widget gizmo number {i}" for i in range(30)]
    lines = [line(f"c{i}", text, [call(ALPHA)]) for i, text in enumerate(texts)]
    notes = [feedback(f"c{i}", "down", intent="search") for i in range(30)]
    heads = tmp_path / "heads"
    data = small_data(tmp_path)
    before = train_router(data, heads, RouterSpec(), [], [], FAMILIES, classifier=encoder)
    after = train_router(data, heads, RouterSpec(), lines, notes, FAMILIES, classifier=encoder)
    assert after.published, after.refused
    intent = after.report["intent"]
    assert intent["corrections_train"] + intent["corrections_heldout"] == 30 and intent["corrections_heldout"] > 0
    assert intent["new_accuracy"] >= intent["current_accuracy"]

    def intent_of(path, text):
        head = Head.read(path)
        return head.labels[int(np.argmax(head.probabilities(encoder.encode([text], head.layers))))]

    paraphrase = "could you frobnicate my widget gizmo"
    assert intent_of(heads / "head-0001.json", paraphrase) != "search"
    assert intent_of(heads / "head-0002.json", paraphrase) == "search"
    assert before.artifact.endswith("head-0001.json")


LOW = ["how do I fill in the tax return form", "which tax form do I need as a freelancer",
       "deadline for filing my income tax return", "can I deduct my home office on my taxes",
       "how to cast on stitches for knitting a scarf", "best yarn for knitting a baby blanket",
       "my knitting purl stitches are too loose", "how to knit a cable pattern"]


def test_buckets_cluster_the_low_confidence_requests(tmp_path, encoder, capsys):
    lines = [line(f"b{i}", text, [call(ALPHA)], confidence=0.3) for i, text in enumerate(LOW)]
    lines += [line("sure", "what is the weather in Paris", [call(ALPHA)], confidence=0.95),
              line("img", "read this", [call(ALPHA)], confidence=1.0, classifier="attachment"),
              line("fb", "router broke", [call(ALPHA)], confidence=0.0, classifier="fallback")]
    items = low_confidence(lines, 0.5)
    assert [i.request_id for i in items] == [f"b{i}" for i in range(8)]
    clusters = cluster(items, encoder.sentence_embeddings)
    assert sorted(sorted(c.request_ids) for c in clusters) == [["b0", "b1", "b2", "b3"], ["b4", "b5", "b6", "b7"]]
    assert [c.size for c in cluster(items, encoder.sentence_embeddings, k=2)] == [4, 4]
    folder = write_log(tmp_path / "log", lines)
    assert main(["buckets", "--log-dir", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == 8 and sorted(c["size"] for c in report["clusters"]) == [4, 4]
    assert main(["buckets", "--log-dir", str(folder), "--min-confidence", "0.2"]) == 0
    assert "no request was classified under" in capsys.readouterr().out



def starved_log() -> list[dict]:
    """A log like the one a breaker leaves: ALPHA answered every request (both topics) until it began
    failing on volcano questions ten minutes later; its breaker then kept most of them away (skipped,
    breaker open), so only one volcano request in four reached it and failed (BETA answered them all),
    while other requests went on reaching ALPHA when its breaker was closed. The old successes stay."""
    lines = []
    texts = [(t.format(s), True) for s in VOLCANO for t in TEMPLATES] + \
        [(t.format(s), False) for s in OTHER for t in TEMPLATES]
    for i, (text, _) in enumerate(texts):
        lines.append(line(f"old{i}", text, [call(ALPHA)], ts=f"2025-11-26T12:0{i // 60}:{i % 60:02d}.000+00:00"))
    for i, (text, volcano) in enumerate(texts):
        ts = f"2025-11-26T12:1{i // 60}:{i % 60:02d}.000+00:00"
        if volcano and i % 4 == 0:
            calls = [call(ALPHA, "error", error="ModelError: nonsense"), call(BETA)]
        elif volcano or i % 3 == 0:
            calls = [call(ALPHA, "skipped"), call(BETA)]
        else:
            calls = [call(ALPHA)]
        lines.append(line(f"new{i}", text, calls, ts=ts))
    return lines


@pytest.mark.parametrize("after_change", [True, False])
def test_a_few_failures_since_the_breaker_opened_demote_a_model_for_the_topic(encoder, after_change):
    """13 failures since ALPHA's breaker opened stand against 50 older successes on the same topic. With
    the change point, the old evidence is reweighed by what the new says: unseen volcano questions go
    to BETA first and the rest stay with ALPHA. Without it (every row as it is) the old successes
    outvote the new failures on some of them: the property the reweighing is there for."""
    from intent_router.choice_training import embed_rows, fit_choice_heads
    from intent_router.learning_data import change_points, choice_rows

    lines = starved_log()
    changes = change_points(lines)
    first_skip = datetime.fromisoformat("2025-11-26T12:10:01+00:00").timestamp()  # new1: a volcano question skipped
    assert changes == {ALPHA: first_skip}
    rows = embed_rows(choice_rows(lines, [], FAMILIES), encoder.sentence_embeddings)
    assert sum(r.model == ALPHA and r.label == 0 for r in rows) == 13
    heads = fit_choice_heads(rows, changes=changes if after_change else None)
    volcano = ["My hiking trail passes an active crater spewing molten rock: is it dangerous?",
               "Tell me about the Mount St. Helens blast and its lahars.", "How hot is lava when it erupts?",
               "Which volcano destroyed Pompeii?", "Can a supervolcano like Yellowstone erupt again?",
               "Why do volcanoes form along the Pacific ring of fire?"]
    other = ["How do I bake sourdough at home?", "What is a good strategy for the chess opening?",
             "Summarise the causes of the First World War.", "How do tides work?", "Why do cats purr?",
             "How should I save for retirement?"]

    def first(text):
        embedding = encoder.sentence_embeddings([text])[0]
        s = heads.scores("llm", [ALPHA, BETA], ChoiceFeatures(embedding, input_chars=len(text)))
        return order([ALPHA, BETA], s, prior_weight=0.1, exploration=0.0, rng=random.Random(0))[0]

    to_beta = sum(first(t) == BETA for t in volcano)
    assert (to_beta == len(volcano)) is after_change, to_beta
    assert all(first(t) == ALPHA for t in other)
