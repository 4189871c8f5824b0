"""S3 backend (MinIO in production, any S3 server; SeaweedFS in tests) via the minio SDK.

Transient failures (connection errors, timeouts, 5xx, SlowDown) are retried with exponential
backoff and full jitter, a bounded number of times; 4xx answers (NoSuchKey, AccessDenied, ...)
never are. urllib3's own retries are off so the two layers do not multiply. Streamed puts use
multipart uploads (``store.part_size_mb`` parts); a non-seekable stream is teed into a spool
file as it is read, so a retried upload can replay it.
"""

from __future__ import annotations

import io
import tempfile
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, Iterator, TypeVar

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from catalog.errors import SettingsError
from catalog.store.base import ObjectInfo, ObjectStore, as_stream
from catalog.store.errors import (
    BucketNotFoundError,
    ObjectNotFoundError,
    StoreCredentialsError,
    StoreError,
    StoreUnavailableError,
    one_line,
)
from catalog.store.keys import validate_key, validate_prefix
from catalog.store.retry import Retry

if TYPE_CHECKING:
    from catalog.settings import Settings

T = TypeVar("T")

_TRANSIENT_CODES = {
    "SlowDown", "SlowDownRead", "SlowDownWrite", "InternalError", "ServiceUnavailable", "RequestTimeout",
    "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "TooManyRequests", "ServerBusy", "OperationAborted",
}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId": "VF3D_S3__ACCESS_KEY",
    "SignatureDoesNotMatch": "VF3D_S3__SECRET_KEY",
    "AccessDenied": "VF3D_S3__ACCESS_KEY / VF3D_S3__SECRET_KEY",
    "InvalidToken": "VF3D_S3__ACCESS_KEY / VF3D_S3__SECRET_KEY",
    "ExpiredToken": "VF3D_S3__ACCESS_KEY / VF3D_S3__SECRET_KEY",
}
_MIB = 1 << 20


def is_transient(exc: BaseException) -> bool:
    """May this failure go away on its own? (network trouble, 5xx, throttling — never 4xx)."""
    if isinstance(exc, S3Error):
        status = getattr(exc.response, "status", 0) or 0
        return exc.code in _TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, ServerError):
        return exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, InvalidResponseError):  # non-XML answer, e.g. a proxy's 502 page
        code = getattr(exc, "_code", 0) or 0
        return code >= 500 or code == 429
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError))


def _reason(exc: BaseException) -> str:
    """A short human reason for a low-level failure."""
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}" if exc.message else str(exc.code)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc)
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        text = text.split(": ", 1)[-1]  # drop '<HTTPConnection object at 0x...>: '
    return one_line(f"{type(exc).__name__}: {text}", 200)


def normalise_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept 'host:port', 'http://host:port' or 'https://host:port[/]'; return (host:port, secure)."""
    ep = endpoint.strip()
    if ep.startswith("http://"):
        ep, secure = ep[len("http://"):], False
    elif ep.startswith("https://"):
        ep, secure = ep[len("https://"):], True
    ep = ep.rstrip("/")
    if not ep or "/" in ep or "?" in ep or " " in ep:
        raise SettingsError(
            f"setting VF3D_S3__ENDPOINT: {endpoint!r} is not host:port (e.g. 'minio.internal:9000'); "
            "put the bucket in VF3D_S3__BUCKET and any path in VF3D_S3__PREFIX"
        )
    return ep, secure


class _Replayable(io.RawIOBase):
    """Reads a forward-only stream while teeing it into a spool file, so it can be rewound."""

    def __init__(self, source: BinaryIO, spool_memory: int):
        self._src = source
        self._spool = tempfile.SpooledTemporaryFile(max_size=spool_memory)
        self._pos = 0
        self._spooled = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._pos < self._spooled:
            self._spool.seek(self._pos)
            want = self._spooled - self._pos if n is None or n < 0 else min(n, self._spooled - self._pos)
            data = self._spool.read(want)
        else:
            data = self._src.read(n if n is not None else -1) or b""
            if data:
                self._spool.seek(self._spooled)
                self._spool.write(data)
                self._spooled += len(data)
        self._pos += len(data)
        return data

    def readinto(self, buf) -> int:  # pragma: no cover - minio uses read()
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def rewind(self) -> None:
        self._pos = 0

    def close(self) -> None:
        self._spool.close()
        super().close()


class _ResponseStream(io.RawIOBase):
    """A GET response as a file object; closing returns the connection to the pool."""

    def __init__(self, response):
        self._resp = response

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return self._resp.read()
        return self._resp.read(n)

    def readinto(self, buf) -> int:
        data = self._resp.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._resp.close()
                self._resp.release_conn()
            finally:
                super().close()


class S3Store(ObjectStore):
    """Objects in ``bucket`` under ``prefix`` on an S3 server; ``uri_for`` gives ``s3://`` URIs."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        access_key: str = "",
        secret_key: str = "",
        region: str = "us-east-1",
        secure: bool = False,
        *,
        retry: Retry | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 120.0,
        part_size: int = 16 * _MIB,
        parallel_uploads: int = 3,
        http_client: urllib3.PoolManager | None = None,
    ):
        if not endpoint:
            raise SettingsError("setting VF3D_S3__ENDPOINT is empty; set it to the S3 server's host:port")
        self.endpoint, self.secure = normalise_endpoint(endpoint, secure)
        if not bucket:
            raise SettingsError("setting VF3D_S3__BUCKET is empty; name the bucket that holds vf3d's objects")
        if bool(access_key) != bool(secret_key):
            missing = "VF3D_S3__SECRET_KEY" if access_key else "VF3D_S3__ACCESS_KEY"
            raise SettingsError(f"setting {missing} is empty while its partner is set; set both S3 keys or neither")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.region = region or "us-east-1"
        self.retry = retry or Retry()
        self.part_size = max(5 * _MIB, int(part_size))
        self.parallel_uploads = max(1, int(parallel_uploads))
        self._bucket_seen = False  # SeaweedFS creates buckets on PUT: look before the first write
        self.base_uri = f"s3://{bucket}/{self.prefix.rstrip('/')}" if self.prefix else f"s3://{bucket}"
        self.http = http_client or urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            maxsize=max(10, self.parallel_uploads * 2),
            retries=False,  # our Retry does it, knowing which S3 errors are transient
        )
        try:
            self.client = Minio(
                self.endpoint,
                access_key=access_key or None,
                secret_key=secret_key or None,
                secure=self.secure,
                region=self.region,
                http_client=self.http,
            )
        except ValueError as exc:
            raise SettingsError(f"setting VF3D_S3__ENDPOINT: {one_line(exc)}") from None

    @classmethod
    def from_settings(cls, settings: "Settings", **kw) -> "S3Store":
        s3, st = settings.s3, settings.store
        kw.setdefault("retry", Retry(attempts=st.max_attempts, base_s=st.backoff_s))
        return cls(
            s3.endpoint, s3.bucket, s3.prefix,
            s3.access_key.get_secret_value(), s3.secret_key.get_secret_value(),
            s3.region, s3.secure,
            connect_timeout_s=st.connect_timeout_s, read_timeout_s=st.read_timeout_s,
            part_size=st.part_size_mb * _MIB, parallel_uploads=st.parallel_uploads, **kw,
        )

    # -- plumbing ------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _call(self, what: str, fn: Callable[[], T], before_retry: Callable[[], None] | None = None,
              key: str | None = None) -> T:
        try:
            return self.retry.call(fn, is_transient, before_retry)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._translate(what, exc, key) from None

    def _translate(self, what: str, exc: BaseException, key: str | None = None,
                   attempts: int | None = None) -> StoreError:
        where = f"{self.base_uri} at {self.endpoint}"
        if isinstance(exc, S3Error):
            if exc.code in ("NoSuchKey", "NoSuchObject") and key is not None:
                return ObjectNotFoundError(f"no object {key!r} in {self.base_uri}")
            if exc.code == "NoSuchBucket":
                return BucketNotFoundError(
                    f"bucket {self.bucket!r} does not exist on {self.endpoint}; fix VF3D_S3__BUCKET "
                    "or create it (`vf3d catalog init` / open_store(..., create=True))"
                )
            if exc.code in _CREDENTIAL_CODES:
                setting = _CREDENTIAL_CODES[exc.code]
                return StoreCredentialsError(
                    f"S3 server {self.endpoint} refused the credentials ({exc.code}) during {what}; "
                    f"check {setting}"
                )
        if is_transient(exc):
            return StoreUnavailableError(
                f"S3 endpoint {self.endpoint} unavailable during {what} after {attempts or self.retry.attempts} "
                f"attempts ({_reason(exc)}); check VF3D_S3__ENDPOINT and that the server is up"
            )
        return StoreError(one_line(f"S3 {what} on {where} failed: {_reason(exc)}"))

    # -- writes --------------------------------------------------------------------------
    def _require_bucket(self) -> None:
        """Refuse to write into a missing bucket (some servers would silently create it)."""
        if self._bucket_seen:
            return
        if not self._call("check bucket", lambda: self.client.bucket_exists(self.bucket)):
            raise self._translate("put", _no_such_bucket(self.bucket))
        self._bucket_seen = True

    def put(self, key, data, length=None, content_type=None) -> ObjectInfo:
        name = self._name(key)
        self._require_bucket()
        stream, known = as_stream(data)
        if length is None:
            length = known
        replay: _Replayable | None = None
        seekable = False
        try:
            seekable = bool(stream.seekable())
        except (AttributeError, OSError, ValueError):
            seekable = False
        if seekable:
            start = stream.tell()
            if length is None:
                end = stream.seek(0, io.SEEK_END)
                stream.seek(start)
                length = end - start
            rewind = lambda: stream.seek(start)  # noqa: E731
            body: BinaryIO = stream
        else:
            replay = _Replayable(stream, self.part_size)
            rewind = replay.rewind
            body = replay  # type: ignore[assignment]

        def upload():
            return self.client.put_object(
                self.bucket, name, body,
                length=-1 if length is None else length,
                content_type=content_type or "application/octet-stream",
                part_size=self.part_size if length is None or length > self.part_size else 0,
                num_parallel_uploads=self.parallel_uploads,
            )

        try:
            self._call(f"put {key!r}", upload, before_retry=rewind, key=key)
        finally:
            if replay is not None:
                replay.close()
        size = length if length is not None else (replay._spooled if replay else 0)
        return ObjectInfo(key, size, datetime.now(timezone.utc))

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._call(f"delete {key!r}", lambda: self.client.remove_object(self.bucket, name), key=key)

    def delete_many(self, keys: Iterable[str]) -> int:
        names = [self._name(k) for k in keys]
        for i in range(0, len(names), 1000):
            chunk = names[i : i + 1000]

            def remove(chunk=chunk):
                errors = list(self.client.remove_objects(self.bucket, [DeleteObject(n) for n in chunk]))
                bad = [e for e in errors if e.code not in ("NoSuchKey", "NoSuchObject")]
                if bad:
                    raise StoreError(one_line(
                        f"S3 delete of {len(bad)} object(s) in {self.base_uri} failed: "
                        f"{bad[0].name}: {bad[0].code} {bad[0].message}"
                    ))

            self._call(f"delete_many ({len(chunk)} keys)", remove)
        return len(names)

    # -- reads ---------------------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        resp = self._call(f"get {key!r}", lambda: self.client.get_object(self.bucket, name), key=key)
        return io.BufferedReader(_ResponseStream(resp), buffer_size=1 << 20)  # type: ignore[return-value]

    def get(self, key: str) -> bytes:
        name = self._name(key)

        def fetch() -> bytes:
            resp = self.client.get_object(self.bucket, name)
            try:
                return resp.read()  # a dropped connection mid-body is retried as a whole
            finally:
                resp.close()
                resp.release_conn()

        return self._call(f"get {key!r}", fetch, key=key)

    def stat(self, key: str) -> ObjectInfo:
        name = self._name(key)
        st = self._call(f"stat {key!r}", lambda: self.client.stat_object(self.bucket, name), key=key)
        return ObjectInfo(key, int(st.size or 0), _utc(st.last_modified))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
            return True
        except ObjectNotFoundError:
            return False

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        full = self.prefix + prefix
        last: str | None = None
        attempt = 0
        while True:
            try:
                for obj in self.client.list_objects(self.bucket, prefix=full or None, recursive=True, start_after=last):
                    name = obj.object_name or ""
                    if name.endswith("/") or not name.startswith(self.prefix):
                        continue  # directory markers some servers report
                    last = name
                    attempt = 0
                    yield ObjectInfo(name[len(self.prefix):], int(obj.size or 0), _utc(obj.last_modified))
                return
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                attempt += 1
                if attempt >= self.retry.attempts or not is_transient(exc):
                    raise self._translate(f"list {prefix!r}", exc) from None
                self.retry.sleep(self.retry.delay(attempt - 1))  # resume after the last key seen

    def presign(self, key: str, expires_s: int = 3600) -> str:
        name = self._name(key)
        return self._call(
            f"presign {key!r}",
            lambda: self.client.presigned_get_object(self.bucket, name, expires=timedelta(seconds=int(expires_s))),
        )

    # -- health --------------------------------------------------------------------------
    def check(self) -> None:
        """Reachable endpoint, accepted credentials, existing bucket — or a one-line error naming the setting.

        Fails fast: one short-timeout try plus one retry, never minutes of backoff.
        """
        quick = Retry(attempts=2, base_s=min(self.retry.base_s, 0.2), sleep=self.retry.sleep)

        def fail(exc: BaseException) -> StoreError:
            return self._translate("check", exc, attempts=quick.attempts)

        try:
            exists = quick.call(lambda: self.client.bucket_exists(self.bucket), is_transient)
        except S3Error as exc:
            if exc.code not in ("AccessDenied", "Forbidden"):
                raise fail(exc) from None
            exists = None  # a HEAD answer has no error body: ask with a GET to learn why
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise fail(exc) from None
        if exists is False:
            raise fail(_no_such_bucket(self.bucket))
        if exists is None:
            try:
                quick.call(
                    lambda: next(iter(self.client.list_objects(self.bucket, prefix=self.prefix or None)), None),
                    is_transient,
                )
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise fail(exc) from None
        self._bucket_seen = True

    def ensure_bucket(self) -> None:
        """Create the bucket when missing (only ever on explicit request)."""

        def make():
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket, location=self.region)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        self._call(f"create bucket {self.bucket!r}", make)
        self._bucket_seen = True


def _no_such_bucket(bucket: str) -> S3Error:
    return S3Error(None, "NoSuchBucket", "bucket does not exist", f"/{bucket}", None, None, bucket)  # type: ignore[arg-type]


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_secret_sql(settings: "Settings", name: str = "vf3d_s3", *, persistent: bool = False) -> str:
    """A ``CREATE OR REPLACE SECRET`` letting DuckDB (httpfs) read/write this store's ``s3://`` URIs.

    Scoped to ``s3://bucket[/prefix]`` so it is used for vf3d's objects only; path-style URLs
    (MinIO/SeaweedFS); ``USE_SSL`` follows ``VF3D_S3__SECURE``. Load httpfs before running it.
    """
    s3 = settings.s3
    if not s3.endpoint:
        raise SettingsError("setting VF3D_S3__ENDPOINT is empty: DuckDB needs an S3 secret only for an S3 store")
    endpoint, secure = normalise_endpoint(s3.endpoint, s3.secure)
    if not name.replace("_", "").isalnum():
        raise ValueError(f"secret name {name!r} must be an identifier")
    prefix = s3.prefix.strip("/")
    scope = f"s3://{s3.bucket}/{prefix}" if prefix else f"s3://{s3.bucket}"
    parts = [
        "TYPE s3",
        "PROVIDER config",
        f"KEY_ID {_sql_str(s3.access_key.get_secret_value())}",
        f"SECRET {_sql_str(s3.secret_key.get_secret_value())}",
        f"REGION {_sql_str(s3.region or 'us-east-1')}",
        f"ENDPOINT {_sql_str(endpoint)}",
        "URL_STYLE 'path'",
        f"USE_SSL {'true' if secure else 'false'}",
        f"SCOPE {_sql_str(scope)}",
    ]
    kind = "PERSISTENT SECRET" if persistent else "SECRET"
    return f"CREATE OR REPLACE {kind} {name} ({', '.join(parts)})"
