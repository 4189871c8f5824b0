"""The object store: one interface over a local directory (default) and S3 (MinIO, any S3 server).

    store = open_store(settings)               # LocalStore under <root>/objects, or S3Store
    store.put("samples/ab/abc/views.npz", data)  # bytes or a binary stream (multipart on S3)
    store.get(key); store.open(key); store.exists(key); store.list("samples/")
    store.delete(key); store.delete_many(keys); store.presign(key); store.uri_for(key)

Keys are validated (``InvalidKeyError``); transient S3 failures are retried with backoff;
bad settings raise one-line ``StoreError`` subclasses naming the ``VF3D_*`` setting to fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog.store.base import ObjectInfo, ObjectStore
from catalog.store.errors import (
    BucketNotFoundError,
    InvalidKeyError,
    KeyConflictError,
    ObjectNotFoundError,
    StoreCredentialsError,
    StoreError,
    StoreUnavailableError,
)
from catalog.store.keys import MAX_KEY_BYTES, validate_key
from catalog.store.local import LocalStore
from catalog.store.retry import Retry

if TYPE_CHECKING:
    from catalog.settings import Settings


def open_store(settings: "Settings | None" = None, *, check: bool = False, create: bool = False) -> ObjectStore:
    """The store the settings describe: S3 when ``VF3D_S3__ENDPOINT`` is set, else a local directory.

    ``create=True`` creates a missing bucket (never done implicitly); ``check=True`` fails fast
    with a one-line error naming the setting when the endpoint, credentials or bucket are wrong.
    """
    if settings is None:
        from catalog.settings import load_settings

        settings = load_settings()
    store: ObjectStore
    if settings.uses_s3:
        from catalog.store.s3 import S3Store

        store = S3Store.from_settings(settings)
    else:
        store = LocalStore(settings.store.local_dir or settings.root / "objects")
    if create:
        store.ensure_bucket()
    if check:
        store.check()
    return store


def duckdb_secret_sql(settings: "Settings", name: str = "vf3d_s3", *, persistent: bool = False) -> str:
    """``CREATE OR REPLACE SECRET`` for DuckDB httpfs, scoped to ``s3://bucket[/prefix]`` (see s3.py)."""
    from catalog.store.s3 import duckdb_secret_sql as build

    return build(settings, name, persistent=persistent)


__all__ = [
    "open_store", "ObjectStore", "ObjectInfo", "LocalStore", "Retry", "duckdb_secret_sql",
    "validate_key", "MAX_KEY_BYTES",
    "StoreError", "InvalidKeyError", "ObjectNotFoundError", "KeyConflictError",
    "StoreUnavailableError", "StoreCredentialsError", "BucketNotFoundError",
]
