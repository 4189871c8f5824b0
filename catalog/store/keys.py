"""Object keys: validated once, the same rules for every backend.

A key is a relative, ``/``-separated path: not empty, at most 1024 bytes of UTF-8, no leading
``/``, no backslash, no control characters (NUL included), and no empty, ``.`` or ``..``
segments — so a key can never climb out of the store's root on the local backend, and means
the same object on local disk and on S3.
"""

from __future__ import annotations

from catalog.store.errors import InvalidKeyError

MAX_KEY_BYTES = 1024


def validate_key(key: object) -> str:
    """Return ``key`` unchanged when it is a valid object key, else raise ``InvalidKeyError``."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"object key must be a str, got {type(key).__name__}")
    shown = ascii(key) if len(key) <= 80 else ascii(key[:80]) + "..."
    if not key:
        raise InvalidKeyError("object key is empty; use a relative path such as 'samples/ab/abc/views.npz'")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"object key {shown} is not valid UTF-8 (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"object key is {size} bytes of UTF-8; the limit is {MAX_KEY_BYTES}: {shown}")
    bad = next((c for c in key if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise InvalidKeyError(f"object key {shown} holds control character {ascii(bad)}; keys are printable paths")
    if "\\" in key:
        raise InvalidKeyError(f"object key {shown} holds a backslash; separate segments with '/'")
    if key.startswith("/"):
        raise InvalidKeyError(f"object key {shown} is absolute; keys are relative to the store (drop the leading '/')")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            what = "an empty" if not segment else f"a {segment!r}"
            raise InvalidKeyError(
                f"object key {shown} has {what} path segment; keys are plain relative paths without '//', '.' or '..'"
            )
    return key


def validate_prefix(prefix: object) -> str:
    """A listing prefix: empty, or a key-like string that may end with '/' (or be any key start)."""
    if prefix == "":
        return ""
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"key prefix must be a str, got {type(prefix).__name__}")
    body = prefix[:-1] if prefix.endswith("/") else prefix
    validate_key(body)
    return prefix
