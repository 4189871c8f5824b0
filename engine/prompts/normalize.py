"""Caption normalisation and prompt ids.

``normalize_text`` gives the display form stored in the catalog (NFKC, HTML/markup/URLs
removed, whitespace collapsed); ``canonical_key`` folds case, punctuation and whitespace so
trivial variants share one ``prompt_id`` (the exact-duplicate key). ``normalize_batch`` is the
plain batch function the local path and Ray Data ``map_batches`` both run.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from typing import Any, Mapping

_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+|\b[\w.-]+\.(?:com|net|org|io|co|shop|store|info|biz)(?:/\S*)?\b", re.I)
_TAG = re.compile(r"<[^>]{0,200}>")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_BBCODE = re.compile(r"\[/?(?:img|url|b|i|u|quote|size|color)[^\]]*\]", re.I)
_MARKUP = re.compile(r"[*_~`|]{2,}|^[#>\-*•·]+\s*|\s[#>]+\s")
_CTRL = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff]")
_WS = re.compile(r"\s+")
_EDGE = re.compile(r"^[\s\"'`“”‘’«»()\[\]{}.,;:!?\-–—/\\]+|[\s\"'`“”‘’«»()\[\]{}.,;:|\-–—/\\]+$")
_KEY_DROP = re.compile(r"[^\w\s'-]+|(?<!\w)['-]|['-](?!\w)|_")


def normalize_text(raw: str) -> str:
    """Display form of a caption: NFKC, no HTML/markup/URLs/control chars, single spaces, trimmed."""
    text = unicodedata.normalize("NFKC", raw)
    text = html.unescape(html.unescape(text)) if "&" in text else text
    text = _TAG.sub(" ", text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _BBCODE.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _CTRL.sub(" ", text)
    text = _MARKUP.sub(" ", text)
    text = _WS.sub(" ", text).strip()
    prev = None
    while prev != text:
        prev = text
        text = _EDGE.sub("", text)
    return text


def canonical_key(text: str) -> str:
    """Case-, punctuation- and whitespace-folded key: 'A Red  Chair!' and 'a red chair' share it."""
    key = _KEY_DROP.sub(" ", text.casefold())
    return _WS.sub(" ", key).strip()


def prompt_id(text: str) -> str:
    """Deterministic id of a normalised caption: 24 hex chars of sha256(canonical_key)."""
    return hashlib.sha256(canonical_key(text).encode("utf-8")).hexdigest()[:24]


def length_reason(text: str, min_chars: int, max_chars: int, max_words: int) -> str:
    """'' when within bounds, else 'empty' / 'too_short' / 'too_long'."""
    if not text:
        return "empty"
    if len(text) < min_chars or not any(ch.isalpha() for ch in text):
        return "too_short"
    if len(text) > max_chars or text.count(" ") + 1 > max_words:
        return "too_long"
    return ""


def normalize_batch(batch: Mapping[str, Any], rules: Any = None) -> dict[str, list]:
    """Batch function: adds ``text`` (normalised), ``prompt_id`` and ``reason`` ('' or a length reason).

    Input columns: ``raw`` plus any pass-through columns (source, source_line, file_index, …).
    """
    from engine.prompts.filter import load_rules

    rules = rules or load_rules()
    bounds = rules["length"]
    out = {k: list(v) for k, v in batch.items()}
    texts, ids, reasons = [], [], []
    for raw in out["raw"]:
        text = normalize_text(str(raw)) if raw is not None else ""
        reason = length_reason(text, bounds["min_chars"], bounds["max_chars"], bounds["max_words"])
        texts.append(text)
        ids.append(prompt_id(text) if text else "")
        reasons.append(reason)
    out["text"], out["prompt_id"], out["reason"] = texts, ids, reasons
    return out
