"""Turning free-form model output into a clean keyword list."""

from __future__ import annotations

import re

_LABEL = re.compile(r"^\s*(?:here are (?:the )?|the )?(?:\w+\s)?key\s*words?(?: are)?\s*[:\-]\s*", re.IGNORECASE)
_SPLIT = re.compile(r"[,;\n|/•·]+|\s+-\s+|\t")
_BULLET = re.compile(r"^\s*(?:[-*+>]+|\(?\d+[.):]|\(?[a-z][.)])\s+", re.IGNORECASE)
_STRIP = " \t\"'`*_#[](){}<>.:!?\u201c\u201d\u2018\u2019"
_HAS_ALNUM = re.compile(r"\w", re.UNICODE)


def parse_keywords(text: str, *, max_keywords: int = 10, max_words: int = 4, max_chars: int = 40) -> list[str]:
    """Split ``text`` into keywords: trimmed, lower-cased, de-duplicated (first wins), at most ``max_keywords``.

    Handles a leading "Keywords:" label, commas / semicolons / newlines / bullets / numbered lists, quotes and
    markdown emphasis. Pieces longer than ``max_words`` words or ``max_chars`` characters (sentences, not
    keywords) and pieces without a letter or digit are dropped.
    """
    if max_keywords < 1:
        raise ValueError(f"max_keywords must be >= 1, got {max_keywords}")
    text = _LABEL.sub("", text or "", count=1)
    out: list[str] = []
    seen: set[str] = set()
    for piece in _SPLIT.split(text):
        piece = _BULLET.sub("", piece)
        piece = _LABEL.sub("", piece)
        piece = re.sub(r"\s+", " ", piece).strip(_STRIP).strip().lower()
        if not piece or not _HAS_ALNUM.search(piece):
            continue
        if len(piece) > max_chars or len(piece.split()) > max_words:
            continue
        if piece in seen:
            continue
        seen.add(piece)
        out.append(piece)
        if len(out) == max_keywords:
            break
    return out
