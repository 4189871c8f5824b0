"""The one object-store interface every backend implements."""

from __future__ import annotations

import abc
import io
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Iterable, Iterator

from catalog.store.keys import validate_key


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key (relative to the store), size in bytes, last-modified (UTC)."""

    key: str
    size: int
    modified: datetime


class ObjectStore(abc.ABC):
    """put/get/open/exists/list/delete over a local directory or an S3 bucket.

    Keys are relative ``/`` paths checked by ``catalog.store.keys.validate_key``. ``put``
    accepts bytes or a binary file object (streamed; ``length`` optional). ``uri_for`` gives
    the address DuckDB and pyarrow read (an absolute path, or ``s3://bucket/prefix/key``).
    """

    #: Where the store lives: an absolute directory path, or ``s3://bucket[/prefix]``.
    base_uri: str

    @abc.abstractmethod
    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview | BinaryIO,
        length: int | None = None,
        content_type: str | None = None,
    ) -> ObjectInfo:
        """Store ``data`` under ``key`` (replacing any object there); atomic for readers."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; close it (or use ``with``)."""

    def get(self, key: str) -> bytes:
        """The whole object as bytes."""
        with self.open(key) as stream:
            return stream.read()

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and modification time of one object; ``ObjectNotFoundError`` when absent."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (streamed, not buffered).

        Order is the backend's: lexicographic by key for the local backend, MinIO and AWS;
        SeaweedFS lists directory by directory. Sort if you need an order.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; no error when it is already gone."""

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove many objects (missing ones are fine); returns how many keys were asked for."""
        count = 0
        for key in keys:
            self.delete(key)
            count += 1
        return count

    @abc.abstractmethod
    def presign(self, key: str, expires_s: int = 3600) -> str:
        """A URL that GETs the object without credentials (S3), or a ``file://`` URI (local)."""

    def uri_for(self, key: str) -> str:
        """The object's address for DuckDB/pyarrow: ``<base_uri>/<key>``."""
        return f"{self.base_uri}/{validate_key(key)}"

    def check(self) -> None:
        """Raise a one-line ``StoreError`` naming the setting to fix when the store is unusable."""

    def ensure_bucket(self) -> None:
        """Create the bucket/directory when missing (explicit; never done implicitly)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_uri!r})"


def as_stream(data: bytes | bytearray | memoryview | BinaryIO) -> tuple[BinaryIO, int | None]:
    """bytes-like → (BytesIO, len); file objects pass through with unknown length."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
        return io.BytesIO(buf), len(buf)
    if not callable(getattr(data, "read", None)):
        raise TypeError(f"put() takes bytes or a binary file object, got {type(data).__name__}")
    return data, None
