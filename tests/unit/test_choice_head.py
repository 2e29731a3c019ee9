import json
import os

import numpy as np
import pytest

from intent_router.choice_head import NUMERIC, ChoiceFeatures, ChoiceHeads, FamilyHead, LatestChoiceHeads, ModelHead
from intent_router.head import LATEST, Head, latest_path, rollback, write_head

DIMS = 4


def heads(rows_a=50, rows_b=50, min_rows=1) -> ChoiceHeads:
    width = DIMS + len(NUMERIC)
    weights_a = np.zeros(width)
    weights_a[0] = 3.0  # the first embedding dimension makes model a fail
    family = FamilyHead(np.zeros(width), np.ones(width), {
        "a": ModelHead(rows_a, rows_a // 2, -weights_a, 2.0),
        "b": ModelHead(rows_b, rows_b, np.zeros(width), 1.0)})
    return ChoiceHeads({"llm": family}, dims=DIMS, min_rows=min_rows)


def test_features_from_a_log_line():
    line = {"input_chars": 99, "attachments": {"images": 1, "audio": 0, "image": {"rotation": -87.5, "contrast": 0.4},
                                               "audio_seconds": None}}
    f = ChoiceFeatures.from_line(line)
    values = dict(zip(NUMERIC, f.numeric()))
    assert values["has_image"] == 1 and values["has_audio"] == 0
    assert values["rotation"] == pytest.approx(87.5) and values["rotation_missing"] == 0
    assert values["contrast"] == pytest.approx(0.4) and values["audio_seconds_missing"] == 1
    assert values["log_chars"] == pytest.approx(np.log(100))
    assert ChoiceFeatures(image_rotation=270).numeric()[NUMERIC.index("rotation")] == pytest.approx(90)
    bare = dict(zip(NUMERIC, ChoiceFeatures.from_line({"attachments": None}).numeric()))
    assert bare["rotation_missing"] == 1 and bare["contrast_missing"] == 1 and bare["has_image"] == 0


def test_scores_follow_the_features_and_the_evidence():
    h = heads()
    hot = ChoiceFeatures(embedding=np.array([1.0, 0, 0, 0]))
    cold = ChoiceFeatures(embedding=np.array([-1.0, 0, 0, 0]))
    assert h.scores("llm", ["a", "b"], hot)["a"] < 0.5 < h.scores("llm", ["a", "b"], cold)["a"]
    assert h.scores("vision", ["a"], hot) is None
    assert h.scores("llm", ["zzz"], hot) is None
    assert set(heads(rows_a=5, min_rows=10).scores("llm", ["a", "b"], hot)) == {"b"}
    assert heads(rows_a=5, rows_b=5, min_rows=10).scores("llm", ["a", "b"], hot) is None
    # no embedding (or one of another size) counts as the training mean
    missing = h.scores("llm", ["a"], ChoiceFeatures())["a"]
    assert missing == h.scores("llm", ["a"], ChoiceFeatures(embedding=np.zeros(7)))["a"]
    assert missing == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-4)


def test_round_trip_through_a_versioned_head(tmp_path):
    args = (["text", "vision"], [6], np.zeros(2), np.ones(2), np.zeros((2, 2)), np.zeros(2))
    write_head(tmp_path, *args, {"note": "old, without a choice section"})
    assert Head.read(latest_path(tmp_path)).choice is None
    path = write_head(tmp_path, *args, {}, heads().to_json())
    read = ChoiceHeads.from_head(Head.read(path), min_rows=1)
    assert read.version == 2
    f = ChoiceFeatures(embedding=np.array([0.5, 0.1, 0, 0]), input_chars=10)
    assert read.scores("llm", ["a", "b"], f) == heads().scores("llm", ["a", "b"], f)
    data = json.loads(path.read_text())
    data["choice"]["numeric"] = ["something", "else"]
    with pytest.raises(ValueError):
        ChoiceHeads.from_json(data["choice"])


def test_latest_choice_heads_follow_latest_and_rollback(tmp_path):
    args = (["text", "vision"], [6], np.zeros(2), np.ones(2), np.zeros((2, 2)), np.zeros(2))
    source = LatestChoiceHeads(tmp_path, min_rows=1, reload_check_s=0)
    assert source.current() is None
    write_head(tmp_path, *args, {}, heads().to_json())
    assert source.current().version == 1
    write_head(tmp_path, *args, {}, None)
    _bump(tmp_path)
    assert source.current() is None  # version 2 has no choice heads
    assert rollback(tmp_path) == ("head-0002.json", "head-0001.json")
    _bump(tmp_path)
    assert source.current().version == 1
    with pytest.raises(LookupError):
        rollback(tmp_path)
    assert (tmp_path / LATEST).read_text().strip() == "head-0001.json"


def test_rollback_needs_a_published_head(tmp_path):
    with pytest.raises(LookupError):
        rollback(tmp_path)


def _bump(folder):
    """A coarse file clock may give two writes in a row one mtime: make the change visible."""
    pointer = folder / LATEST
    stamp = pointer.stat().st_mtime_ns + 1_000_000_000
    os.utime(pointer, ns=(stamp, stamp))


def test_projection_round_trip_and_a_missing_embedding(tmp_path):
    """A family head over projected embeddings: the same scores after JSON, and a request without an
    embedding scores as the training mean (the projected NaN standardises to 0)."""
    width = 2 + len(NUMERIC)
    projection = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])  # 4 dims -> 2 components
    weights = np.zeros(width)
    weights[0] = -3.0
    family = FamilyHead(np.zeros(width), np.ones(width), {"a": ModelHead(40, 20, weights, 1.0)},
                        np.array([0.5, 0.0, 0.0, 0.0]), projection)
    h = ChoiceHeads({"llm": family}, dims=DIMS)
    hot, cold = ChoiceFeatures(embedding=np.array([1.5, 0, 0, 0])), ChoiceFeatures(embedding=np.array([-0.5, 0, 0, 0]))
    assert h.scores("llm", ["a"], hot)["a"] == pytest.approx(1 / (1 + np.exp(2.0)), abs=1e-4)
    assert h.scores("llm", ["a"], cold)["a"] == pytest.approx(1 / (1 + np.exp(-4.0)), abs=1e-4)
    assert h.scores("llm", ["a"], ChoiceFeatures())["a"] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-4)
    again = ChoiceHeads.from_json(json.loads(json.dumps(h.to_json())))
    for f in (hot, cold, ChoiceFeatures()):
        assert again.scores("llm", ["a"], f) == h.scores("llm", ["a"], f)


def test_the_comparison_leaves_out_held_out_rows_from_before_a_models_change():
    from intent_router.choice_training import compare
    from intent_router.learning_data import ChoiceRow

    def row(i, label, ts):
        return ChoiceRow(f"h{i}", "llm", "a", label, 1.0, None, ChoiceFeatures(embedding=np.array([1.0, 0, 0, 0])),
                         "call", ts)

    heldout = [row(i, 1, 100.0) for i in range(6)] + [row(10 + i, 0, 200.0) for i in range(4)]
    everything = compare(heads(), None, heldout, heldout)["llm"]
    since = compare(heads(), None, heldout, heldout, {"a": 150.0})["llm"]
    assert everything["compared_rows"] == 10 and since["compared_rows"] == 4
    assert since["new"]["accuracy"] == 1.0 > everything["new"]["accuracy"]  # model a now fails on these: predicted
