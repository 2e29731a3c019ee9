"""The patterns Presidio has no recognizer for: street addresses and secrets (API keys, tokens,
passwords). Plain data plus `scrub_secrets`, a cheap regex pass usable without Presidio loaded.

Patterns are written for the `regex` module (Presidio's engine): variable-width look-behinds keep
the word before a secret ("password: <SECRET>", "Bearer <SECRET>"). They are matched without
IGNORECASE; case-insensitive parts say so with `(?i:...)`, so capitals can tell a street name
from ordinary words."""

from __future__ import annotations

import regex

FLAGS = regex.DOTALL | regex.MULTILINE
SECRET = "SECRET"
STREET_ADDRESS = "STREET_ADDRESS"

# ---- secrets ----------------------------------------------------------------------------------

_STRONG_KEY = (r"(?i:pass(?:word|wd|phrase|code)|pwd|client[_\- ]?secret|secret(?:[_\- ]?key)?|"
               r"api[_\- ]?key|apikey|access[_\- ]?key|private[_\- ]?key|"
               r"(?:auth|access|refresh|api|bearer)[_\- ]?token)")
_WEAK_KEY = r"(?i:key|token)"
_TOKEN_CHARS = r"[A-Za-z0-9+/_\-.~]"
_VALUE_END = r"[^\s\"'`,;.!?:)\]}]"  # a value does not end on the sentence's punctuation

# (name, pattern, score): every hit is replaced whole, so a look-behind keeps the key's name.
SECRET_PATTERNS: tuple[tuple[str, str, float], ...] = (
    ("private key block", r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", 1.0),
    ("sk- api key", r"\b(?:sk|rk)-[A-Za-z0-9_\-]{16,}", 1.0),
    ("stripe key", r"\b[spr]k_(?:live|test)_[A-Za-z0-9]{10,}", 1.0),
    ("aws access key id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b", 1.0),
    ("github token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})", 1.0),
    ("slack token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", 1.0),
    ("google api key", r"\bAIza[0-9A-Za-z_\-]{35}", 1.0),
    ("jwt", r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}", 1.0),
    # "Authorization: Basic ...", "Bearer ..." / "token ..." followed by something token-like
    ("authorization header", (r"(?<=\b(?i:authorization)\s{0,3}[:=]\s{0,3}(?:(?i:basic|bearer|token|digest)\s{1,3})?)"
                             r"(?!(?i:basic|bearer|token|digest)\s)[^\s\"',;]{6,}"), 1.0),
    ("bearer token", (rf"(?<=\b(?i:bearer|token)\s{{1,3}})(?:(?={_TOKEN_CHARS}*\d){_TOKEN_CHARS}{{8,}}|"
                     rf"{_TOKEN_CHARS}{{20,}})=*"), 0.9),
    # password: x / api_key = "x" / secret_key=x: whatever follows is the secret
    ("named secret", rf"(?<=\b{_STRONG_KEY}[\"']?\s{{0,3}}[:=]\s{{0,3}}[\"'`]?)[^\s\"'`,;]{{2,}}{_VALUE_END}", 1.0),
    # my password is hunter2 / PIN 4821: only a value with a digit (not "password is wrong")
    ("password is", (r"(?<=\b(?i:pass(?:word|wd|phrase|code)|pwd|pin)\s{1,3}(?:(?i:is|was)\s{1,3})?)"
                    rf"(?=[^\s,;]*\d)(?=[^\s,;]{{4}})[^\s,;]*{_VALUE_END}"), 0.9),
    # key: x / token = x / my key is x: only token-like values (a digit and 8+ chars, or 16+ chars)
    ("named key", (rf"(?<=\b{_WEAK_KEY}\s{{0,3}}(?:[:=]|\s(?i:is))\s{{0,3}}[\"'`]?)"
                  rf"(?:(?={_TOKEN_CHARS}*\d)(?={_TOKEN_CHARS}*[A-Za-z]){_TOKEN_CHARS}{{8,}}|{_TOKEN_CHARS}{{16,}})"
                  r"(?<![.~])"), 0.9),
    # anything long and random-looking: 32+ hex digits, or 32+ base64 chars mixing cases and digits
    ("long hex", r"(?<![A-Za-z0-9+/_\-])[0-9a-fA-F]{32,}(?![A-Za-z0-9+/_\-])", 0.8),
    ("long base64", (r"(?<![A-Za-z0-9+/_\-])(?=[A-Za-z0-9+/_\-]*[0-9])(?=[A-Za-z0-9+/_\-]*[a-z])"
                    r"(?=[A-Za-z0-9+/_\-]*[A-Z])[A-Za-z0-9+/_\-]{32,}={0,2}(?![A-Za-z0-9+/_\-])"), 0.8),
)

# ---- street addresses -------------------------------------------------------------------------

_CAP = r"[A-ZÀ-ÖØ-Þ]"  # a capital starts each word of a street's name
_NAME_WORD = rf"{_CAP}[\w'’.\-]*"
_EN_STREET = (r"(?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|square|sq|"
              r"terrace|way|close|crescent|parkway|pkwy|highway|hwy|row|gardens|grove|mews|walk|circle|alley)")
_NUMBER = r"\b\d{1,5}(?:[A-Za-z]\b|-\d{1,5})?"
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
# an address line may go on with ", City", ", ST 12345" (US) or a UK postcode (an abbreviation's
# dot is left: "Downing St." is followed by a sentence as often as by a city)
_TAIL = (rf"(?:,\s{{1,3}}{_CAP}[a-z]+(?:\s{_CAP}[a-z]+)?)?(?:,?\s{{1,3}}[A-Z]{{2}}\s\d{{5}}(?:-\d{{4}})?)?"
         rf"(?:,?\s{{1,3}}{_UK_POSTCODE}\b)?")
# words that, lower-case after a number, mean a quantity rather than a street's name
_NOT_A_NAME = (r"(?:the|a|an|this|that|my|your|our|their|his|her|its|one|same|next|other|each|every|per|more|"
               r"less|few|km|kms|mile|miles|block|blocks|minute|minutes|min|mins|hour|hours|step|steps|metre|"
               r"metres|meter|meters|yard|yards|foot|feet|ft|times|lanes|car|cars|way|ways|people|kids)")

ADDRESS_PATTERNS: tuple[tuple[str, str, float], ...] = (
    # 221B Baker Street / 1600 Pennsylvania Avenue NW, Washington, DC 20500 / 10 Downing St
    ("number name street", (rf"{_NUMBER},?\s{{1,3}}(?:{_NAME_WORD}\s{{1,3}}){{1,4}}{_EN_STREET}\b"
                           rf"(?:\s(?:NW|NE|SW|SE|N|S|E|W)\b)?{_TAIL}"), 0.7),
    # typed lower-case: 221b baker street (one name word, not a quantity: "5 miles down the road" stays)
    ("number name street, lower case", (rf"{_NUMBER}\s{{1,3}}(?!{_NOT_A_NAME}\b)[a-z][a-z'\-]+\s{{1,3}}"
                                       r"(?:street|avenue|road|lane|drive|boulevard)\b"), 0.6),
    # 12 rue de la Paix / 5 bis avenue des Champs-Élysées, 75008 Paris (French order; Italian and
    # Spanish put the number last, below: "sent 2 via DHL" is no address)
    ("number type name", (r"\b\d{1,4}(?:\s?(?:bis|ter)\b)?,?\s{1,3}"
                         r"(?i:rue|avenue|av\.|boulevard|bd|place|quai|allée|allee|impasse|chemin|cours)\s{1,3}"
                         rf"(?:(?i:de la|de l'|de|du|des|la|le|les|l'|d')\s{{0,3}})*"
                         rf"{_NAME_WORD}(?:[\s\-]{_NAME_WORD}){{0,3}}"
                         rf"(?:,?\s{{1,3}}\d{{5}}\s{{1,3}}{_NAME_WORD})?"), 0.7),
    # Hauptstraße 5 / Kurfürstendamm 21 / Keizersgracht 123
    ("name-street number", r"\b" + _CAP + r"[a-zäöüß]+(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ring|"
                                          r"ufer|gracht|laan|plein)\s{1,3}\d{1,4}[a-z]?\b", 0.7),
    # Calle Mayor 10 / Via Roma 5 / Rua Augusta 274 (capital type word: "via email 2" stays)
    ("type name number", (r"\b(?:Calle|Avenida|Via|Viale|Piazza|Corso|Rua|Carrer|Plaza|Paseo)\s{1,3}"
                         rf"(?:(?:de|del|la|di|da|do|dos)\s{{1,3}})*{_NAME_WORD}(?:\s{_NAME_WORD}){{0,3}},?\s{{1,3}}"
                         r"\d{1,4}\b"), 0.7),
)

_SECRET_RES = tuple(regex.compile(pattern, FLAGS) for _, pattern, _ in SECRET_PATTERNS)


def scrub_secrets(text: str) -> str:
    """Every secret pattern's hit replaced by `<SECRET>`, no model needed: for free-text fields
    (feedback comments) that are not worth a Presidio pass."""
    for compiled in _SECRET_RES:
        text = compiled.sub(f"<{SECRET}>", text)
    return text
