"""Key normalization (``TREND_KEY_NORMALIZATION``): one key per thing, however it was typed. Pure.

The same Korean word typed on macOS (NFD) and on Windows (NFC), or ``Umbrella``, ``umbrella `` and
``ｕｍｂｒｅｌｌａ``, become one key. Ingest normalizes on every path before duplicate checks and
markers; queries normalize their ``key`` parameter the same way.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Literal

Normalization = Literal["none", "nfc", "nfkc", "nfkc_casefold"]
NORMALIZATIONS: tuple[Normalization, ...] = ("none", "nfc", "nfkc", "nfkc_casefold")
_SPACES = re.compile(r"\s+")


def _nfkc_casefold(text: str) -> str:
    # Casefolding can denormalize (e.g. "ǰ"), so normalize again; then trim and collapse white space.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return _SPACES.sub(" ", folded).strip()


_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": lambda text: text,
    "nfc": lambda text: unicodedata.normalize("NFC", text),
    "nfkc": lambda text: unicodedata.normalize("NFKC", text),
    "nfkc_casefold": _nfkc_casefold,
}


def normalizer(name: str) -> Callable[[str], str]:
    """The function for a ``TREND_KEY_NORMALIZATION`` value; remembers recent keys, since a stream
    repeats its popular keys far more often than it brings new ones."""
    return functools.lru_cache(maxsize=32_768)(_NORMALIZERS[name])
