"""The OCR agreement: 1 - CER by rapidfuzz's C++ Levenshtein, on text capped so that a dense page
(or a hostile one) costs the ingress's event loop about a millisecond."""

import random
import string

from graphs.committee import AGREEMENT_MAX_CHARS, agreement, character_error_rate


def page(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
                    for _ in range(n // 6))


def reference_cer(reference: str, hypothesis: str) -> float:
    """The textbook dynamic programme, for comparison on short strings."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        current = [i]
        for j, h in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(reference)


def test_the_c_levenshtein_matches_the_textbook_one():
    rng = random.Random(7)
    for _ in range(200):
        a = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 30)))
        b = "".join(rng.choice("abc ") for _ in range(rng.randint(0, 30)))
        assert character_error_rate(a, b) == reference_cer(a, b)


def test_text_past_the_cap_does_not_count():
    text = page(AGREEMENT_MAX_CHARS + 2000)
    tail_differs = text[:AGREEMENT_MAX_CHARS + 500] + page(5000, seed=2)
    assert agreement(text, tail_differs) == 1.0
    assert agreement(page(50_000), page(50_000, seed=3)) < 0.8  # a huge page is still compared


def test_a_dense_page_read_slightly_differently():
    text = page(5000)
    misread = text.replace("e", "c")
    expected = round(1 - text.count("e") / len(text), 4)
    assert abs(agreement(text, misread) - expected) < 0.01
