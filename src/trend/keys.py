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


# What the default normalization removes, because it shows nothing and would let one word be many
# keys: Unicode's Default_Ignorable_Code_Point (Unicode 15.1, DerivedCoreProperties.txt; zero-width
# spaces and joiners, the soft hyphen, variation selectors, bidi controls, tags, Hangul fillers), and
# the C0 and C1 controls that are not white space (white space is collapsed to one space instead).
INVISIBLE_RANGES = (
    (0x0000, 0x0008), (0x000E, 0x001B), (0x007F, 0x0084), (0x0086, 0x009F),  # controls
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
_INVISIBLE = re.compile("[" + "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if a != b else "")
                                      for a, b in INVISIBLE_RANGES) + "]")


def _nfkc_casefold(text: str) -> str:
    # Casefolding can denormalize (e.g. "ǰ"), so normalize again; then drop what shows nothing, and trim
    # and collapse white space.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).casefold())
    return _SPACES.sub(" ", _INVISIBLE.sub("", folded)).strip()


def has_invisible(text: str) -> bool:
    """Whether ``text`` holds a character the default normalization removes."""
    return _INVISIBLE.search(text) is not None


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
