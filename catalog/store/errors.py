"""Errors of the object store. Each names what was wrong and the setting or input to fix."""

from __future__ import annotations

from catalog.errors import Vf3dError


class StoreError(Vf3dError):
    """Base of every object-store error."""


class InvalidKeyError(StoreError, ValueError):
    """An object key vf3d refuses (``..``, absolute, control characters, too long, ...)."""


class ObjectNotFoundError(StoreError, LookupError):
    """No object under that key."""


class KeyConflictError(StoreError):
    """The local backend cannot hold both ``a`` and ``a/b`` (a file is not a directory)."""


class StoreUnavailableError(StoreError):
    """The S3 endpoint did not answer (connection refused, timeout, 5xx) after the retries."""


class StoreCredentialsError(StoreError):
    """The S3 server refused the access key / secret key."""


class BucketNotFoundError(StoreError):
    """The configured bucket does not exist."""


def one_line(text: object, limit: int = 300) -> str:
    """Squeeze an error message onto one line of bounded length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
