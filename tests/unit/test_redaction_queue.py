"""The request log's redaction thread: texts waiting are redacted in one call, in order, each
future gets its own text's answer, and one bad text costs the others nothing (no Presidio here)."""

import threading

import pytest

from serve_app.request_log.redaction_queue import RedactionQueue


class FakeRedactor:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.busy = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, texts):
        self.batches.append(list(texts))
        self.busy.set()
        assert self.release.wait(10)
        if any("bad" in text for text in texts):
            raise ValueError("cannot redact")
        return [(text.upper(), {"N": len(text)}) for text in texts]


def test_texts_that_wait_are_redacted_in_one_batch_each_getting_its_own_answer():
    fake = FakeRedactor()
    fake.release.clear()
    queue = RedactionQueue(fake, max_batch=5)
    first = queue.submit("first")
    assert fake.busy.wait(10)
    waiting = [queue.submit(f"text {n}", cut=4 if n % 2 else None) for n in range(7)]
    fake.release.set()
    assert first.result(10) == ("FIRST", {"N": 5})
    assert [f.result(10) for f in waiting] == [
        ("TEXT 0", {"N": 6}), ("TEXT", {"N": 6}), ("TEXT 2", {"N": 6}), ("TEXT", {"N": 6}),
        ("TEXT 4", {"N": 6}), ("TEXT", {"N": 6}), ("TEXT 6", {"N": 6})]
    assert [len(batch) for batch in fake.batches] == [1, 5, 2]
    queue.close()


def test_a_failing_batch_is_redacted_text_by_text_so_only_the_bad_one_fails():
    fake = FakeRedactor()
    fake.release.clear()
    queue = RedactionQueue(fake)
    queue.submit("warm")
    assert fake.busy.wait(10)
    good, bad, other = queue.submit("good"), queue.submit("bad"), queue.submit("other")
    fake.release.set()
    assert good.result(10) == ("GOOD", {"N": 4}) and other.result(10) == ("OTHER", {"N": 5})
    with pytest.raises(ValueError):
        bad.result(10)
    queue.close()


def test_close_redacts_what_waits_and_then_refuses_more():
    fake = FakeRedactor()
    queue = RedactionQueue(fake)
    futures = [queue.submit(f"t{n}") for n in range(20)]
    queue.close()
    assert [f.result(0) for f in futures] == [(f"T{n}", {"N": len(f"t{n}")}) for n in range(20)]
    with pytest.raises(RuntimeError):
        queue.submit("late")
    RedactionQueue(fake).close()  # never started: nothing to join
