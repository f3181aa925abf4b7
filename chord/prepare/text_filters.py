"""Small text predicates used by the preparation scripts."""

from __future__ import annotations

import re

# Scripts that mark a text as not English. Greek is absent on purpose (math uses it); CJK
# punctuation and full-width forms are included (they appear in Chinese text with ASCII math).
_NON_ENGLISH = re.compile(
    "["
    "\u0400-\u04ff"  # Cyrillic
    "\u3000-\u303f"  # CJK symbols and punctuation
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff00-\uffef"  # full-width and half-width forms
    "]"
)

_INTEGER = re.compile(r"[+-]?\d+")


def has_non_english_script(text: str) -> bool:
    """True if `text` contains CJK, Hangul, kana, full-width forms or Cyrillic characters."""
    return _NON_ENGLISH.search(text) is not None


def integer_answer(answer: str) -> str | None:
    """The canonical integer string of `answer` ("042" -> "42", "$-7$" -> "-7"), or None.

    Accepts only an optionally signed run of digits, possibly wrapped in `$...$` or spaces;
    "1,000", "2.0", "\\frac{4}{2}" or "x=3" are not integer answers here.
    """
    text = answer.strip().strip("$").strip()
    if not _INTEGER.fullmatch(text):
        return None
    return str(int(text))
