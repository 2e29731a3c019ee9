import json

from intent_router.exemplars import from_log
from intent_router.learning_data import FEEDBACK_WEIGHT, change_points, choice_rows, held_out, intent_rows, line_time, split
from serve_app.cli import main
from tests.request_log_samples import call, feedback, line, write_log

FAMILIES = {"alpha": "llm", "beta": "llm", "rapidocr": "vision", "tesseract": "vision", "whisper": "stt"}


def outcomes(rows):
    return {(r.request_id, r.model): (r.label, r.weight, r.source) for r in rows}


def test_choice_rows_from_calls():
    lines = [
        line("r1", "tell me about lava", [call("alpha", "error"), call("beta")]),
        line("r2", "hello", [call("alpha", "skipped"), call("beta")]),  # an open breaker is no evidence
        line("r3", "bad request", [call("alpha", "error", blame="client")], status=400),
        line("r4", "platform", [call("alpha", "error", blame="platform"), call("beta", "error", blame="deadline")]),
        line("r5", "retried", [call("alpha", "error"), call("alpha", attempt=2)]),
        line("r6", "unknown model", [call("gamma")]),
    ]
    got = outcomes(choice_rows(lines, [], FAMILIES))
    assert got == {("r1", "alpha"): (0, 1.0, "call"), ("r1", "beta"): (1, 1.0, "call"),
                   ("r2", "beta"): (1, 1.0, "call"), ("r4", "beta"): (0, 1.0, "call"),
                   ("r5", "alpha"): (1, 1.0, "call")}
    rows = choice_rows(lines[:1], [], FAMILIES)
    assert {r.family for r in rows} == {"llm"} and rows[0].text == "tell me about lava"
    assert rows[0].features.input_chars == len("tell me about lava") and rows[0].features.embedding is None


def test_feedback_overrides_the_calls():
    lines = [line("r1", "a", [call("alpha")]), line("r2", "b", [call("alpha")]), line("r3", "c", [call("alpha")]),
             line("r4", "d", [call("alpha")])]
    notes = [feedback("r1", "down"), feedback("r2", "down", model="beta"), feedback("r3", "up"),
             feedback("r4", "up"), feedback("r4", "down")]  # the latest rating counts
    got = outcomes(choice_rows(lines, notes, FAMILIES))
    w = FEEDBACK_WEIGHT
    assert got == {("r1", "alpha"): (0, w, "feedback"), ("r2", "alpha"): (0, w, "feedback"),
                   ("r2", "beta"): (1, w, "feedback"), ("r3", "alpha"): (1, w, "feedback"),
                   ("r4", "alpha"): (0, w, "feedback")}


def test_intent_corrections_and_the_fixed_split():
    lines = [line(f"q{i}", f"frobnicate {i}", [call("alpha")]) for i in range(40)] + [line("empty", None, [])]
    notes = [feedback(f"q{i}", "down", intent="search") for i in range(40)] + \
        [feedback("empty", intent="search"), feedback("q0", intent="nonsense"), feedback("unknown", intent="text")]
    rows = intent_rows(lines, notes)
    assert len(rows) == 39  # q0's latest correction names no intent; "empty" has no text; "unknown" no line
    assert all(r.label == "search" and r.used == "text" for r in rows)
    train, heldout = split(rows)
    assert heldout and train and all(held_out(r.request_id) for r in heldout)
    assert [r.request_id for r in heldout] == [r.request_id for r in rows if held_out(r.request_id)]
    assert held_out("q1") == held_out("q1")  # a stable hash, not Python's salted one
    assert rows[0].as_training_row()["label"] == "search"


def handcrafted():
    lines = [
        line("t1", "long essay", [call("alpha", "error", blame="deadline", error="DeadlineExceeded"), call("beta")]),
        line("f1", "lava", [call("alpha", "error", error="ModelError: boom"), call("beta")]),
        line("s1", "all failed", [call("alpha", "error"), call("beta", "error")], status=503,
             error_code="all_models_failed"),
        line("s2", "gateway", [], status=504, error_code="deadline_exceeded"),
        line("u1", None, [call("whisper"), call("alpha")], intent="voice", stt_confidence=0.41, untrusted=True),
        line("o1", "read this", [call("rapidocr"), call("tesseract")], intent="vision", agreement=0.55),
        line("ok", "fine", [call("alpha")]),
        line("c1", "use the other one", [call("alpha")]),
        line("c2", "bad client", [call("alpha", "error", blame="client")], status=400),
    ]
    return lines, [feedback("c1", "down", model="beta", intent="search"), feedback("ok", "up")]


def test_exemplars_from_a_handcrafted_log():
    lines, notes = handcrafted()
    rows = from_log(lines, notes)
    got = [(r["request_id"], r["mistake"]["kind"], r["mistake"]["model"], r["fix"]["model"]) for r in rows]
    assert got == [("t1", "timeout", "alpha", "beta"), ("f1", "failover", "alpha", "beta"),
                   ("s1", "server_error", "alpha", None), ("s1", "server_error", "beta", None),
                   ("s2", "timeout", None, None), ("u1", "low_stt_confidence", "whisper", None),
                   ("o1", "ocr_disagreement", "tesseract", None), ("c1", "feedback", "alpha", "beta")]
    c1 = rows[-1]
    assert c1["fix"]["intent"] == "search" and c1["mistake"]["used_intent"] == "text"
    assert c1["context"] == {"excerpt": "use the other one", "endpoint": "/v1/chat/completions", "intent": "text",
                             "attachments": lines[7]["attachments"]}
    assert rows[1]["mistake"]["detail"] == "ModelError: boom"
    assert [r["request_id"] for r in from_log(lines, notes, request_ids={"f1", "c1"})] == ["f1", "c1"]


def test_exemplars_command_writes_jsonl(tmp_path, capsys):
    lines, notes = handcrafted()
    folder = write_log(tmp_path / "log", lines, notes)
    out = tmp_path / "exemplars.jsonl"
    assert main(["exemplars", "--log-dir", str(folder), "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]) == {"request_id", "context", "mistake", "fix"}
    assert main(["exemplars", "--log-dir", str(folder), "--since", "2099-01-01T00:00:00"]) == 0
    assert capsys.readouterr().out == ""


def at(hhmmss: str) -> str:
    return f"2025-11-26T{hhmmss}.000+00:00"


def test_change_points_are_the_start_of_each_models_latest_breaker_episode():
    probe = {**call("alpha"), "breaker_state": "half_open"}
    lines = [
        line("a", "x", [call("alpha", "skipped"), call("beta")], ts=at("08:00:00")),  # an old episode
        line("b", "x", [call("alpha"), call("beta", "error")], ts=at("09:30:00")),  # beta failed, never opened
        line("c", "x", [call("alpha", "skipped"), call("beta")], ts=at("10:00:00")),  # 2 h later: a new episode
        line("d", "x", [probe], ts=at("10:20:00")),
        line("e", "x", [call("alpha", "skipped"), call("beta")], ts=at("10:50:00")),  # < 1 h apart: the same one
        line("f", "x", [call("alpha", "skipped")], ts="not a time"),
    ]
    assert change_points(lines) == {"alpha": line_time(lines[2])}
    assert change_points(lines, gap_s=600) == {"alpha": line_time(lines[4])}
    rows = choice_rows(lines, [], FAMILIES)
    assert {r.request_id: r.ts for r in rows if r.model == "beta"} == {
        "a": line_time(lines[0]), "b": line_time(lines[1]), "c": line_time(lines[2]), "e": line_time(lines[4])}
