"""The request log's redaction, on the real Presidio and the real spaCy model (no mocks)."""

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from serve_app.request_log.redaction import MAX_ANALYSED_CHARS, Redactor, scrub_secrets


@pytest.fixture(scope="module")
def redactor():
    loaded = Redactor("presidio")
    loaded.load()
    return loaded


PERSONAL = {
    "PERSON": "John Smith",
    "EMAIL_ADDRESS": "john.smith@example.com",
    "PHONE_NUMBER": "(555) 123-4567",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "STREET_ADDRESS": "221B Baker Street",
}


def test_a_text_with_every_kind_of_personal_data_keeps_none_and_counts_each(redactor):
    text = (f"Hi, I'm {PERSONAL['PERSON']}. Mail me at {PERSONAL['EMAIL_ADDRESS']} or call "
            f"{PERSONAL['PHONE_NUMBER']}; my card is {PERSONAL['CREDIT_CARD']} and I live at "
            f"{PERSONAL['STREET_ADDRESS']}. Please summarise my bank statement.")
    redacted, counts = redactor.redact(text)
    for entity, value in PERSONAL.items():
        assert value not in redacted
        assert f"<{entity}>" in redacted
    assert "John" not in redacted and "Smith" not in redacted and "4567" not in redacted
    assert counts == {entity: 1 for entity in PERSONAL}
    assert redacted.endswith("Please summarise my bank statement.")


@pytest.mark.parametrize("phone", ["+44 20 7946 0958", "(555) 123-4567", "555-123-4567", "+1 415 555 2671",
                                   "+33 1 42 68 53 00", "020 7946 0958"])
def test_phone_numbers_in_international_and_national_formats(redactor, phone):
    redacted, counts = redactor.redact(f"You can reach me on {phone} after six.")
    assert redacted == "You can reach me on <PHONE_NUMBER> after six."
    assert counts == {"PHONE_NUMBER": 1}


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005",
                                  "6011 1111 1111 1117"])
def test_luhn_valid_card_numbers_with_spaces_or_dashes(redactor, card):
    redacted, counts = redactor.redact(f"Charge it to {card} please")
    assert redacted == "Charge it to <CREDIT_CARD> please" and counts == {"CREDIT_CARD": 1}


def test_a_number_that_fails_the_luhn_check_is_not_a_card(redactor):
    assert redactor.redact("Order 1234 5678 9012 3456 arrived")[1].get("CREDIT_CARD") is None


@pytest.mark.parametrize("address", ["221B Baker Street", "1600 Pennsylvania Avenue NW, Washington, DC 20500",
                                     "12 rue de la Paix", "10 Downing St", "Hauptstraße 5", "Calle Mayor 10",
                                     "221b baker street", "42 Wallaby Way, Sydney",
                                     "5 bis avenue des Champs-Élysées, 75008 Paris", "Via Roma 5"])
def test_street_addresses(redactor, address):
    redacted, counts = redactor.redact(f"Send the parcel to {address} tomorrow.")
    assert redacted == "Send the parcel to <STREET_ADDRESS> tomorrow.", redacted
    assert counts == {"STREET_ADDRESS": 1}


def test_iban_and_ip_address(redactor):
    redacted, counts = redactor.redact("Pay DE89 3704 0044 0532 0130 00 from 192.168.1.20 today")
    assert redacted == "Pay <IBAN_CODE> from <IP_ADDRESS> today"
    assert counts == {"IBAN_CODE": 1, "IP_ADDRESS": 1}


def test_names_are_found_in_several_places(redactor):
    redacted, counts = redactor.redact("Ask Maria Garcia and Pierre Dubois to review the draft.")
    assert redacted == "Ask <PERSON> and <PERSON> to review the draft." and counts == {"PERSON": 2}


def test_a_phone_number_glued_to_a_name_by_the_model_leaves_both_found(redactor):
    redacted, counts = redactor.redact("Call John Smith 555-123-4567 or Jane Doe 07700 900123")
    assert redacted == "Call <PERSON> <PHONE_NUMBER> or <PERSON> <PHONE_NUMBER>"
    assert counts == {"PERSON": 2, "PHONE_NUMBER": 2}


ORDINARY = [
    "What is the capital of France?",
    "Read this screenshot aloud",
    "Summarise the article about volcanoes",
    "Translate 'good morning' into Spanish",
    "I walked 5 miles down the road yesterday",
    "What's 12 times 34?",
    "Explain how Bearer tokens work in OAuth",
    "I forgot my password and need to reset it",
    "How do I use the key in a Python dictionary?",
    "Write a haiku about autumn leaves in Kyoto",
    "Meet at 12:30 on 2024-05-01 in room 4",
    "Is the PS5 4TB edition worth it?",
    "Python 3.11.7 fails to import numpy",
    "Call 911 if there is a fire",
    "Which is faster, the M2 or the M3 chip?",
    "List the planets of the solar system in order",
    "Convert 3 cups of flour to grams",
    "Describe the image: a dog on a street",
    "I sent 2 via DHL and 3 by Royal Mail",
]


@pytest.mark.parametrize("sentence", ORDINARY)
def test_ordinary_sentences_come_back_unchanged(redactor, sentence):
    assert redactor.redact(sentence) == (sentence, {})


SECRETS = {
    "sk-proj-abcdEFGH1234ijklMNOP5678": "Use my key <SECRET> for the call",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fw": "Send it with Bearer <SECRET>",
    "Bearer 8f2b1c9d0e7a6b5c": "Send it with Bearer <SECRET>",
    "AKIAIOSFODNN7EXAMPLE": "AWS id <SECRET> in us-east-1",
    "ghp_0123456789abcdefghijABCDEFGHIJ012345": "my token is <SECRET> ok",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": "token: <SECRET>",
    "hunter2": "my password is <SECRET>.",
    "correcthorsebatterystaple": "password: <SECRET>",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "aws_secret_access_key = <SECRET>",
}


@pytest.mark.parametrize(("secret", "expected"), SECRETS.items())
def test_secrets_are_removed(redactor, secret, expected):
    text = expected.replace("Bearer <SECRET>", secret).replace("<SECRET>", secret)
    assert secret in text
    redacted, counts = redactor.redact(text)
    assert redacted == expected and counts == {"SECRET": 1}
    assert scrub_secrets(text) == expected


def test_scrub_secrets_leaves_ordinary_text_alone():
    for sentence in ORDINARY:
        assert scrub_secrets(sentence) == sentence


def test_calls_from_several_threads_give_what_one_thread_gives(redactor):
    texts = [f"Ticket {n}: Maria Garcia at maria{n}@example.com, +44 20 7946 0958" for n in range(24)]
    alone = [redactor.redact(text) for text in texts]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(redactor.redact, texts)) == alone
    assert all(counts == {"EMAIL_ADDRESS": 1, "PERSON": 1, "PHONE_NUMBER": 1} for _, counts in alone)


def test_mode_off_returns_the_text_as_it_came():
    off = Redactor("off")
    off.load()
    text = "John Smith, john.smith@example.com, sk-proj-abcdEFGH1234ijklMNOP5678"
    assert off.redact(text) == (text, {})


def test_a_redactor_refuses_unknown_modes_languages_and_use_before_load():
    with pytest.raises(ValueError):
        Redactor("regex")
    with pytest.raises(ValueError):
        Redactor("presidio", languages=("fr",))
    with pytest.raises(RuntimeError):
        Redactor("presidio").redact("John Smith")


@pytest.mark.parametrize("hostile", [
    "\ud800", "John Smith \udfff at \ud83d\ude00 john@example.com \ud800",
    "\x00\x01\x02 call\x1b 555-123-4567 \x7f\u200b\u202e", "\ufeff" * 50, "", "   \n\t ",
    "a@b." * 3000, "1" * 100_000, ("John Smith 555-123-4567 " * 5000), "é" * 100_000,
])
def test_hostile_input_never_raises_and_comes_back_json_safe(redactor, hostile):
    redacted, counts = redactor.redact(hostile)
    json.dumps({"excerpt": redacted, "pii": counts}, ensure_ascii=False).encode("utf-8")
    assert "555-123-4567" not in redacted and "Smith" not in redacted and "john@" not in redacted


def test_a_long_text_is_cut_without_leaving_half_an_email(redactor):
    text = "x " * (MAX_ANALYSED_CHARS // 2 - 5) + "john.smith@example.com tail"
    redacted, _ = redactor.redact(text)
    assert len(redacted) <= MAX_ANALYSED_CHARS and "john" not in redacted


NO_NETWORK = textwrap.dedent("""
    import socket
    import spacy.cli

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is unreachable (test)")

    def no_download(*args, **kwargs):
        raise AssertionError(f"spacy.cli.download called: {args}")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse
    spacy.cli.download = no_download

    from serve_app.request_log.redaction import Redactor

    redactor = Redactor("presidio")
    redactor.load()
    print(redactor.redact("Mail Jane Doe at jane.doe@example.co.uk"))
    print("connect attempts:", len(attempts))
""")


def test_loading_and_redacting_needs_no_network_and_downloads_nothing(tmp_path):
    """In a fresh interpreter: no socket is opened (stock Presidio fetches the public suffix list
    for its e-mail check, and its spaCy engine downloads a model it cannot find) and no cache is
    written."""
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, timeout=300, check=False,
                          env=env, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "('Mail <PERSON> at <EMAIL_ADDRESS>', {'EMAIL_ADDRESS': 1, 'PERSON': 1})" in done.stdout
    assert "connect attempts: 0" in done.stdout
    assert not cache.exists()


# ---- batches, the NER skip rule, the cache ----------------------------------------------------

@pytest.fixture(scope="module")
def uncached():
    """A second redactor without a cache: what one text analysed alone gives."""
    loaded = Redactor("presidio", cache_entries=0)
    loaded.load()
    return loaded


NAMED = ["John Smith", "my name is john smith", "john", "Ed", "Amy", "Bob", "Li Na", "JOHN SMITH",
         "ask pierre dubois", "Hi Bob", "what did taylor swift sing", "Maria Garcia and Pierre Dubois",
         "Zoë Ångström", "José Núñez", "李娜", "Mr O'Brien-Smith", "R2 Jane Doe"]
NO_LETTERS = ["+44 20 7946 0958", "4111 1111 1111 1111", "192.168.1.20", "12345 678", "🙂🙂 !!! ???",
              "(555) 123-4567 / 555-123-4567", "2024-05-01 12:30", "…—–·", "1" * 3000]


def _corpus() -> list[str]:
    texts = [f"Hi, I'm {PERSONAL['PERSON']}. Mail me at {PERSONAL['EMAIL_ADDRESS']} or call "
             f"{PERSONAL['PHONE_NUMBER']}; my card is {PERSONAL['CREDIT_CARD']}."]
    texts += ORDINARY + NAMED + NO_LETTERS + [f"Tell {name} to call me" for name in NAMED]
    texts += [expected.replace("<SECRET>", secret) for secret, expected in SECRETS.items()]
    texts += ["", "   ", "Hi", "Hi", "John Smith 555-123-4567 " * 120]  # a repeat, and one cut at the limit
    return texts


def test_a_batch_redacts_every_text_as_that_text_alone_would(redactor, uncached):
    texts = _corpus()
    alone = [uncached.redact(text) for text in texts]
    assert redactor.redact_many(texts) == alone
    assert redactor.redact_many(list(reversed(texts))) == list(reversed(alone))  # now from the cache
    assert sum(bool(counts.get("PERSON")) for _, counts in alone) >= len(NAMED)


def test_every_named_text_goes_through_the_ner_and_loses_its_name(uncached):
    from serve_app.request_log.redaction import may_hold_name

    for text in NAMED + [f"Tell {name} to call me" for name in NAMED]:
        assert may_hold_name(text), text
    found = [uncached.redact(text)[1].get("PERSON") for text in NAMED]
    assert all(found[:4]), found  # lower-case and two-letter names are the model's too


def test_a_text_without_letters_skips_the_ner_and_loses_nothing_the_patterns_find(redactor, uncached):
    from serve_app.request_log.redaction import may_hold_name

    assert not any(may_hold_name(text) for text in NO_LETTERS)
    for text in NO_LETTERS:
        with_ner = uncached._analyzer.analyze(text=text, language="en", score_threshold=0.4)
        assert not [r for r in with_ner if r.entity_type == "PERSON"]
    assert redactor.redact_many(NO_LETTERS[:3]) == [("<PHONE_NUMBER>", {"PHONE_NUMBER": 1}),
                                                   ("<CREDIT_CARD>", {"CREDIT_CARD": 1}),
                                                   ("<IP_ADDRESS>", {"IP_ADDRESS": 1})]


def test_the_cache_is_bounded_keeps_no_raw_text_and_hands_out_copies():
    small = Redactor("presidio", cache_entries=3)
    small.load()
    texts = [f"Ticket {n}: Maria Garcia at maria{n}@example.com" for n in range(10)]
    first = [small.redact(text) for text in texts]
    assert small.cached == 3
    assert [small.redact(text) for text in texts] == first
    assert small.cached == 3
    stored = repr(list(small._cache.items()))
    assert "Maria" not in stored and "maria" not in stored
    redacted, counts = small.redact(texts[-1])
    counts["PERSON"] = 99
    assert small.redact(texts[-1]) == first[-1]
    assert Redactor("presidio", cache_entries=0).cache_entries == 0
    with pytest.raises(ValueError):
        Redactor("presidio", cache_entries=-1)
