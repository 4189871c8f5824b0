"""The object store: one test module, run against the local directory AND a live SeaweedFS S3.

Fault injection goes through a real TCP proxy in front of the real server (connection resets,
503 SlowDown answers, a port that is not listening yet) — S3 itself is never mocked.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from catalog.errors import SettingsError, Vf3dError
from catalog.settings import load_settings
from catalog.store import (
    BucketNotFoundError,
    InvalidKeyError,
    LocalStore,
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    Retry,
    StoreCredentialsError,
    StoreUnavailableError,
    duckdb_secret_sql,
    open_store,
    validate_key,
)

MIB = 1 << 20


# -- fixtures ------------------------------------------------------------------------------
def _s3_settings(tmp_path, server, bucket, **s3):
    base = {
        "endpoint": server.endpoint, "bucket": bucket, "prefix": "deploy-a",
        "access_key": server.access_key, "secret_key": server.secret_key,
    }
    base.update(s3)
    return load_settings(root=tmp_path / "root", s3=base, store={"backoff_s": 0.02, "part_size_mb": 5})


def _drop_bucket(server, bucket):
    from minio import Minio
    from minio.deleteobjects import DeleteObject

    client = Minio(server.endpoint, access_key=server.access_key, secret_key=server.secret_key, secure=False)
    if client.bucket_exists(bucket):
        names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
        list(client.remove_objects(bucket, [DeleteObject(n) for n in names]))
        client.remove_bucket(bucket)


@pytest.fixture
def bucket(request):
    return "vf3d-t-" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path, bucket) -> ObjectStore:
    if request.param == "local":
        yield open_store(load_settings(root=tmp_path / "root"), check=True)
        return
    server = request.getfixturevalue("s3_server")
    st_ = open_store(_s3_settings(tmp_path, server, bucket), create=True, check=True)
    yield st_
    _drop_bucket(server, bucket)


class NonSeekable(io.RawIOBase):
    """A forward-only stream (like a socket or a pipe) of ``size`` pseudo-random bytes."""

    def __init__(self, size: int, seed: int = 0, fail_at: int | None = None):
        self._data = memoryview(expected_bytes(size, seed))
        self._pos = 0
        self._fail_at = fail_at

    def readable(self):
        return True

    def seekable(self):
        return False

    def read(self, n=-1):
        if self._fail_at is not None and self._pos >= self._fail_at:
            raise RuntimeError("producer crashed")
        end = len(self._data) if n is None or n < 0 else min(len(self._data), self._pos + n)
        chunk = bytes(self._data[self._pos:end])
        self._pos = end
        return chunk

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def expected_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def http_get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env vars
    with opener.open(url, timeout=30) as resp:
        return resp.read()


# -- the shared behaviour ------------------------------------------------------------------
def test_put_get_roundtrip_and_overwrite(store):
    info = store.put("samples/ab/abc/views.npz", b"hello views")
    assert isinstance(info, ObjectInfo) and info.size == 11
    assert store.get("samples/ab/abc/views.npz") == b"hello views"
    assert store.exists("samples/ab/abc/views.npz")
    assert store.stat("samples/ab/abc/views.npz").size == 11
    store.put("samples/ab/abc/views.npz", bytearray(b"v2"), content_type="application/octet-stream")
    assert store.get("samples/ab/abc/views.npz") == b"v2"
    store.put("empty", b"")
    assert store.get("empty") == b"" and store.exists("empty")
    key = "unicode/naïve ✓ name (1).png"
    store.put(key, b"\x89PNG")
    assert store.get(key) == b"\x89PNG"
    assert [o.key for o in store.list("unicode/")] == [key]


def test_missing_objects(store):
    assert not store.exists("nope/x")
    with pytest.raises(ObjectNotFoundError, match="nope/x"):
        store.get("nope/x")
    with pytest.raises(ObjectNotFoundError):
        store.open("nope/x")
    with pytest.raises(ObjectNotFoundError):
        store.stat("nope/x")
    store.delete("nope/x")  # deleting what is gone is fine
    assert store.delete_many(["nope/a", "nope/b"]) == 2


def test_list_with_prefix(store):
    keys = ["b/2", "a/1", "a-b", "a.txt", "a/0/deep/x", "ab/3", "c"]
    for i, k in enumerate(keys):
        store.put(k, b"x" * i)
    listed = list(store.list())
    assert sorted(o.key for o in listed) == sorted(keys)  # order is the server's (SeaweedFS: dirs first)
    assert {o.key: o.size for o in listed} == {k: i for i, k in enumerate(keys)}
    assert all(o.modified.tzinfo is not None for o in listed)
    assert sorted(o.key for o in store.list("a/")) == ["a/0/deep/x", "a/1"]
    assert sorted(o.key for o in store.list("a")) == ["a-b", "a.txt", "a/0/deep/x", "a/1", "ab/3"]
    assert [o.key for o in store.list("a/0/de")] == ["a/0/deep/x"]
    assert list(store.list("zzz/")) == []


def test_delete_and_delete_many(store):
    keys = [f"batch/{i:03d}/sheet.png" for i in range(25)]
    for k in keys:
        store.put(k, k.encode())
    store.delete(keys[0])
    assert not store.exists(keys[0]) and store.exists(keys[1])
    assert store.delete_many(iter(keys[1:20])) == 19
    assert sorted(o.key for o in store.list("batch/")) == keys[20:]
    store.delete_many(keys)
    assert list(store.list()) == []


def test_streaming_put_multipart_and_open(store):
    """A 12 MiB stream of unknown length: multipart on S3 (5 MiB parts), chunked read back."""
    size = 12 * MIB + 123
    info = store.put("big/stream.bin", NonSeekable(size, seed=7))
    assert info.size == size
    want = hashlib.sha256(expected_bytes(size, seed=7)).hexdigest()
    digest = hashlib.sha256()
    with store.open("big/stream.bin") as stream:
        while chunk := stream.read(1 * MIB):
            digest.update(chunk)
    assert digest.hexdigest() == want
    assert store.stat("big/stream.bin").size == size
    if hasattr(store, "client"):  # S3: the ETag of a multipart upload ends in -<parts>
        stat = store.client.stat_object(store.bucket, store.prefix + "big/stream.bin")
        assert stat.etag.endswith("-3"), stat.etag
    # a seekable file object with an explicit length, streamed from its current position
    buf = io.BytesIO(b"HEADER" + expected_bytes(6 * MIB, seed=1))
    buf.seek(6)
    store.put("big/file.bin", buf, length=6 * MIB)
    assert store.get("big/file.bin") == expected_bytes(6 * MIB, seed=1)


def test_failed_put_leaves_old_object(store):
    store.put("atomic/x", b"old")
    with pytest.raises(RuntimeError, match="producer crashed"):
        store.put("atomic/x", NonSeekable(7 * MIB, fail_at=6 * MIB))
    assert store.get("atomic/x") == b"old"
    assert [o.key for o in store.list()] == ["atomic/x"]
    if isinstance(store, LocalStore):
        assert [p.name for p in (store.root / "atomic").iterdir()] == ["x"]  # no temp files left


def test_presign_and_uri(store, tmp_path):
    data = b"presigned bytes " * 1000
    store.put("media/orbit.mp4", data, content_type="video/mp4")
    url = store.presign("media/orbit.mp4", expires_s=600)
    assert http_get(url) == data  # a plain GET, no credentials
    uri = store.uri_for("media/orbit.mp4")
    if isinstance(store, LocalStore):
        assert url.startswith("file://")
        assert Path(uri).is_absolute() and Path(uri).read_bytes() == data
        assert uri == os.path.join(store.base_uri, "media", "orbit.mp4")
    else:
        assert url.startswith("http://")
        assert uri == f"s3://{store.bucket}/deploy-a/media/orbit.mp4"
        assert store.base_uri == f"s3://{store.bucket}/deploy-a"


BAD_KEYS = [
    "", "/abs/path", "../escape", "a/../../b", "a/..", "..", ".", "a/./b", "a//b", "trailing/",
    "back\\slash", "nul\x00byte", "new\nline", "tab\tkey", "del\x7f", "x" * 1025, "é" * 513,
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_invalid_keys_refused_everywhere(store, key):
    for op in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.exists(key),
               lambda: store.delete(key), lambda: store.presign(key), lambda: store.uri_for(key)):
        with pytest.raises(InvalidKeyError) as err:
            op()
        assert isinstance(err.value, Vf3dError) and "\n" not in str(err.value)
    assert list(store.list()) == []


def test_key_length_bound_is_bytes():
    assert validate_key("x" * 1024) == "x" * 1024
    with pytest.raises(InvalidKeyError, match="1025 bytes"):
        validate_key("x" * 1025)
    with pytest.raises(InvalidKeyError, match="control character"):
        validate_key("a\x00b")
    with pytest.raises(InvalidKeyError, match="absolute"):
        validate_key("/etc/passwd")


_segment = st.one_of(
    st.sampled_from(["..", ".", "", "~", "...", ".hidden", "a b", "%2e%2e", "\\", "/"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)
_keys = st.one_of(
    st.lists(_segment, min_size=1, max_size=6).map("/".join),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_keys)
def test_property_accepted_keys_stay_inside_root(tmp_path, key):
    root = tmp_path / "prop" / "objects"
    store = LocalStore(root)
    try:
        path = store._path(key)
    except InvalidKeyError:
        with pytest.raises(InvalidKeyError):
            store.put(key, b"x")
        return
    real_root = root.resolve()
    assert Path(os.path.realpath(path)).is_relative_to(real_root) and Path(os.path.realpath(path)) != real_root
    store.put(key, b"payload")
    assert store.get(key) == b"payload"
    assert store.uri_for(key).startswith(str(real_root) + os.sep)
    assert key in {o.key for o in store.list()}
    store.delete(key)
    assert not store.exists(key)


def test_local_default_root_and_settings(tmp_path):
    store = open_store(load_settings(root=tmp_path / "r"))
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "r" / "objects").resolve()
    other = open_store(load_settings(root=tmp_path / "r", store={"local_dir": str(tmp_path / "elsewhere")}))
    assert other.base_uri == str((tmp_path / "elsewhere").resolve())


def test_local_key_conflict_is_clear(tmp_path):
    store = LocalStore(tmp_path / "o")
    store.put("a", b"file")
    with pytest.raises(Vf3dError, match="cannot hold both"):
        store.put("a/b", b"nested")
    assert store.get("a") == b"file"


# -- retries against the real server behind a faulty proxy ---------------------------------
class FaultProxy:
    """A TCP proxy to the real S3 server that misbehaves on its first ``failures`` connections.

    mode 'reset': close at once with RST; mode 'slowdown': answer 503 SlowDown; mode 'down':
    the port is bound but not listening (connection refused) until ``up()``.
    """

    SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message></Error>")

    def __init__(self, target: str, mode: str = "reset", failures: int = 0):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.mode, self.failures = mode, failures
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._closed = False
        if mode != "down":
            self.up()

    def up(self):
        self.sock.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self):
        self._closed = True
        self.sock.close()

    def _serve(self):
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.failures and self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
            elif self.connections <= self.failures and self.mode == "slowdown":
                threading.Thread(target=self._slowdown, args=(conn,), daemon=True).start()
            else:
                threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _slowdown(self, conn):
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            body = self.SLOWDOWN
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    def _forward(self, conn):
        upstream = socket.create_connection(self.target)

        def pump(src, dst):
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)


class CountingPool(urllib3.PoolManager):
    """The real HTTP client, counting the requests it sends."""

    def __init__(self):
        super().__init__(timeout=urllib3.Timeout(connect=2, read=30), retries=False)
        self.requests: list[str] = []

    def urlopen(self, method, url, *args, **kwargs):
        self.requests.append(method)
        return super().urlopen(method, url, *args, **kwargs)


def _s3_store(tmp_path, server, bucket, endpoint=None, retry=None, http_client=None, **s3):
    from catalog.store.s3 import S3Store

    settings = _s3_settings(tmp_path, server, bucket, **({"endpoint": endpoint} if endpoint else {}), **s3)
    return S3Store.from_settings(settings, retry=retry or Retry(attempts=6, base_s=0.02, rng=random.Random(0)),
                                 http_client=http_client)


@pytest.fixture
def s3_bucket(s3_server, tmp_path, bucket):
    _s3_store(tmp_path, s3_server, bucket).ensure_bucket()
    yield bucket
    _drop_bucket(s3_server, bucket)


@pytest.mark.s3
@pytest.mark.parametrize("mode", ["reset", "slowdown"])
def test_transient_failures_are_retried(s3_server, s3_bucket, tmp_path, mode):
    proxy = FaultProxy(s3_server.endpoint, mode=mode, failures=3)
    try:
        store = _s3_store(tmp_path, s3_server, s3_bucket, endpoint=proxy.endpoint)
        store.put("retry/a", b"survives " + mode.encode())  # first 3 connections fail, 4th works
        assert proxy.connections >= 4
        proxy.failures = proxy.connections + 2  # the next two connections fail too
        store.http.clear()  # drop pooled keep-alive connections so the proxy sees new ones
        assert store.get("retry/a") == b"survives " + mode.encode()
        proxy.failures = proxy.connections + 2
        store.http.clear()
        big = NonSeekable(11 * MIB, seed=3)  # a multipart stream whose upload is hit mid-way
        store.put("retry/big", big)
        assert hashlib.sha256(store.get("retry/big")).digest() == hashlib.sha256(expected_bytes(11 * MIB, 3)).digest()
    finally:
        proxy.close()


@pytest.mark.s3
def test_endpoint_coming_up_late_is_waited_for(s3_server, s3_bucket, tmp_path):
    proxy = FaultProxy(s3_server.endpoint, mode="down")
    timer = threading.Timer(0.4, proxy.up)
    timer.start()
    try:
        store = _s3_store(tmp_path, s3_server, s3_bucket, endpoint=proxy.endpoint,
                          retry=Retry(attempts=10, base_s=0.1, cap_s=1.0, rng=random.Random(1)))
        store.put("late/x", b"eventually")
        assert store.get("late/x") == b"eventually"
    finally:
        timer.cancel()
        proxy.close()


@pytest.mark.s3
def test_retries_are_bounded(s3_server, s3_bucket, tmp_path):
    proxy = FaultProxy(s3_server.endpoint, mode="reset", failures=10**9)
    sleeps: list[float] = []
    try:
        retry = Retry(attempts=4, base_s=0.05, sleep=sleeps.append, rng=random.Random(2))
        store = _s3_store(tmp_path, s3_server, s3_bucket, endpoint=proxy.endpoint, retry=retry)
        with pytest.raises(StoreUnavailableError) as err:
            store.put("never/x", b"x")
        assert proxy.connections == 4 and len(sleeps) == 3
        assert "VF3D_S3__ENDPOINT" in str(err.value) and "\n" not in str(err.value)
    finally:
        proxy.close()


def test_backoff_is_exponential_with_jitter():
    retry = Retry(attempts=8, base_s=0.1, cap_s=2.0, rng=random.Random(0))
    caps = [min(2.0, 0.1 * 2**i) for i in range(8)]
    for i, cap in enumerate(caps):
        draws = [retry.delay(i) for _ in range(200)]
        assert all(0 <= d <= cap for d in draws)
        assert max(draws) > cap * 0.8  # jittered over the whole window, not a fixed delay
    calls = []

    def flaky():
        calls.append(1)
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        retry.call(flaky, lambda e: False)
    assert len(calls) == 1


@pytest.mark.s3
def test_client_errors_are_never_retried(s3_server, s3_bucket, tmp_path):
    pool = CountingPool()
    store = _s3_store(tmp_path, s3_server, s3_bucket, http_client=pool)
    with pytest.raises(ObjectNotFoundError):
        store.get("absent")
    assert pool.requests == ["GET"]
    pool.requests.clear()
    assert store.exists("absent") is False
    assert pool.requests == ["HEAD"]
    pool.requests.clear()
    denied = _s3_store(tmp_path, s3_server, s3_bucket, http_client=pool, secret_key="wrong-secret")
    with pytest.raises(StoreCredentialsError):
        denied.put("x", b"x")
    assert pool.requests == ["HEAD"]  # the bucket look-up before the first write is refused, once
    pool.requests.clear()
    with pytest.raises(StoreCredentialsError):
        denied.get("x")
    assert pool.requests == ["GET"]


# -- bad settings: one line, naming the setting --------------------------------------------
def _one_line(err: BaseException, setting: str) -> None:
    text = str(err)
    assert isinstance(err, Vf3dError)
    assert "\n" not in text and len(text) < 400, text
    assert setting in text, text



@pytest.mark.s3
def test_bad_settings_name_the_setting(s3_server, s3_bucket, tmp_path):
    import services

    pool = CountingPool()
    dead = f"127.0.0.1:{services.free_port()}"
    settings = _s3_settings(tmp_path, s3_server, s3_bucket, endpoint=dead)
    with pytest.raises(StoreUnavailableError) as err:
        open_store(settings, check=True)
    _one_line(err.value, "VF3D_S3__ENDPOINT")
    from catalog.store.s3 import S3Store

    with pytest.raises(StoreUnavailableError):
        S3Store.from_settings(settings, http_client=pool).check()
    assert len(pool.requests) == 2  # fail fast: one try and one retry, not minutes of backoff

    with pytest.raises(StoreCredentialsError) as err:
        open_store(_s3_settings(tmp_path, s3_server, s3_bucket, access_key="nobody"), check=True)
    _one_line(err.value, "VF3D_S3__ACCESS_KEY")
    with pytest.raises(StoreCredentialsError) as err:
        open_store(_s3_settings(tmp_path, s3_server, s3_bucket, secret_key="wrong"), check=True)
    _one_line(err.value, "VF3D_S3__SECRET_KEY")

    missing = "vf3d-missing-" + uuid.uuid4().hex[:8]
    with pytest.raises(BucketNotFoundError) as err:
        open_store(_s3_settings(tmp_path, s3_server, missing), check=True)
    _one_line(err.value, "VF3D_S3__BUCKET")
    with pytest.raises(BucketNotFoundError) as err:  # without check, the first write says the same
        open_store(_s3_settings(tmp_path, s3_server, missing)).put("x", b"x")
    _one_line(err.value, "VF3D_S3__BUCKET")
    with pytest.raises(BucketNotFoundError):  # and was not created behind our back (SeaweedFS would)
        open_store(_s3_settings(tmp_path, s3_server, missing), check=True)
    try:
        store = open_store(_s3_settings(tmp_path, s3_server, missing), create=True, check=True)
        store.put("x", b"created on request")
        assert store.get("x") == b"created on request"
    finally:
        _drop_bucket(s3_server, missing)

    with pytest.raises(SettingsError) as err:
        open_store(_s3_settings(tmp_path, s3_server, s3_bucket, endpoint="minio:9000/bucket"))
    _one_line(err.value, "VF3D_S3__ENDPOINT")
    with pytest.raises(SettingsError) as err:
        open_store(_s3_settings(tmp_path, s3_server, s3_bucket, secret_key=""))
    _one_line(err.value, "VF3D_S3__SECRET_KEY")
    # a scheme in the endpoint is understood rather than refused
    ok = open_store(_s3_settings(tmp_path, s3_server, s3_bucket, endpoint="http://" + s3_server.endpoint), check=True)
    assert ok.endpoint == s3_server.endpoint and not ok.secure


# -- DuckDB reads and writes the store through httpfs ---------------------------------------
@pytest.mark.s3
def test_duckdb_secret_writes_and_reads_parquet(s3_server, s3_bucket, tmp_path):
    import duckdb
    import duckdb_extension_httpfs

    settings = _s3_settings(tmp_path, s3_server, s3_bucket)
    store = open_store(settings, check=True)
    sql = duckdb_secret_sql(settings)
    assert sql.startswith("CREATE OR REPLACE SECRET vf3d_s3 (TYPE s3")
    assert f"SCOPE 's3://{s3_bucket}/deploy-a'" in sql and "URL_STYLE 'path'" in sql and "USE_SSL false" in sql
    ext = Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    con = duckdb.connect()
    con.execute(f"LOAD '{ext}'")
    con.execute(sql)
    uri = store.uri_for("tables/t.parquet")
    con.execute(f"COPY (SELECT range AS i, 'row ' || range AS s FROM range(1000)) TO '{uri}' (FORMAT parquet)")
    assert con.execute(f"SELECT count(*), sum(i) FROM read_parquet('{uri}')").fetchone() == (1000, 499500)
    assert store.exists("tables/t.parquet") and store.stat("tables/t.parquet").size > 0
    assert con.execute("SELECT name FROM which_secret(?, 's3')", [uri]).fetchone() == ("vf3d_s3",)
    assert con.execute("SELECT name FROM which_secret('s3://some-other-bucket/x', 's3')").fetchone() is None
    with pytest.raises(SettingsError, match="VF3D_S3__ENDPOINT"):
        duckdb_secret_sql(load_settings(root=tmp_path))
