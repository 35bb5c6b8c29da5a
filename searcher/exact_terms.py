"""Whether a query looks up an exact term: a part number, an error code, a code identifier (pure).

Why it matters: an encoder maps a string it has never seen (``AB-1234-C``, ``0x80070005``,
``ORA-00942``) to a vector near other unfamiliar strings, so its top hits for such a query are
noise, while BM25 matches the string itself. The adaptive fusion (``searcher.fusion``) therefore
gives such queries the lexical side's share.

The test is the token's shape alone, as people write identifiers, never a measured threshold:

- letters and digits mixed in one token (``E1234``, ``RTX3080``, ``AB-1234-C``, ``covid-19``),
  except a number with a short suffix (``1st``, ``1990s``, ``100mg``, ``401k``): ordinals, decades
  and quantities are words of ordinary prose;
- or parts joined by ``_`` (``max_length``, ``ERR_TIMEOUT``): code, not prose, writes words so.

Hyphenated words (``well-known``) and plain numbers (``2008``) are prose. It needs no encoder,
so the router fuses as a searcher does.
"""

from __future__ import annotations

import re

# A token: a run of letters and digits, possibly joined by - _ . / (``AB-1234-C``, ``v2.1``).
_TOKEN = re.compile(r"[^\W_]+(?:[-_./][^\W_]+)*")
_NUMBER_WITH_SUFFIX = re.compile(r"\d+(?:[.,]\d+)?[^\W\d_]{1,3}")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")


def is_identifier(token: str) -> bool:
    """True for a token shaped like an identifier (see the module docstring)."""
    if "_" in token:
        return True
    if not (_LETTER.search(token) and _DIGIT.search(token)):
        return False
    return _NUMBER_WITH_SUFFIX.fullmatch(token) is None


def is_exact_term_lookup(query: str) -> bool:
    """True when any token of ``query`` is shaped like an identifier."""
    return any(is_identifier(match.group()) for match in _TOKEN.finditer(query))
