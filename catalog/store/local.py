"""The embedded-default backend: objects as files under one directory.

Writes are atomic: data streams into a hidden temp file beside the target, is fsynced, then
``os.replace``d over it — readers see the old object or the new one, never a torn one.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

from catalog.store.base import ObjectInfo, ObjectStore, as_stream
from catalog.store.errors import InvalidKeyError, KeyConflictError, ObjectNotFoundError, StoreError, one_line
from catalog.store.keys import validate_key, validate_prefix

_TMP_RE = re.compile(r"^\..*\.vf3d-tmp-[0-9a-f]{32}$")
_CHUNK = 1 << 20
_MAX_SEGMENT_BYTES = 255  # file-name limit of common filesystems


class LocalStore(ObjectStore):
    """Objects under ``root`` (created when missing); ``uri_for`` gives absolute paths."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                one_line(f"cannot create the local object store {self.root}: {exc.strerror or exc}; "
                         "set VF3D_STORE__LOCAL_DIR (or VF3D_ROOT) to a writable directory")
            ) from None
        self.base_uri = str(self.root)

    # -- paths ---------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        validate_key(key)
        for segment in key.split("/"):
            if len(segment.encode("utf-8")) > _MAX_SEGMENT_BYTES:
                raise InvalidKeyError(
                    f"object key segment {ascii(segment[:40])}... is over {_MAX_SEGMENT_BYTES} bytes, "
                    "too long for a file name on the local backend"
                )
        path = self.root.joinpath(*key.split("/"))
        # validate_key already rules out escapes; this is the belt to its braces.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKeyError(f"object key {ascii(key)} resolves outside the store root")
        return path

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- writes --------------------------------------------------------------------------
    def put(self, key, data, length=None, content_type=None) -> ObjectInfo:
        path = self._path(key)
        stream, known = as_stream(data)
        limit = length if length is not None else known
        for attempt in range(3):  # a concurrent delete may prune the parent dir in between
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.parent / f".{path.name[:200]}.vf3d-tmp-{uuid.uuid4().hex}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
            except (NotADirectoryError, FileExistsError):
                raise KeyConflictError(
                    f"object key {key!r} needs a directory where an object already exists "
                    "(the local backend cannot hold both 'a' and 'a/b'); choose another key"
                ) from None
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while limit is None or size < limit:
                    want = _CHUNK if limit is None else min(_CHUNK, limit - size)
                    chunk = stream.read(want)
                    if not chunk:
                        break
                    out.write(chunk)
                    size += len(chunk)
                if length is not None and size != length:
                    raise StoreError(f"put {key!r}: the stream ended after {size} bytes, {length} were promised")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.replace(tmp, path)
            except IsADirectoryError:
                raise KeyConflictError(
                    f"object key {key!r} is a directory of other objects on the local backend; choose another key"
                ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ObjectInfo(key, size, datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove empty parent directories up to (not including) the root."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    # -- reads ---------------------------------------------------------------------------
    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(f"no object {key!r} in {self.base_uri}") from None

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object {key!r} in {self.base_uri}") from None
        if not path.is_file():
            raise ObjectNotFoundError(f"no object {key!r} in {self.base_uri}")
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        # Walk only the deepest directory the prefix names, then filter by the full prefix.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return
        yield from self._walk(start, prefix)

    def _walk(self, directory: Path, prefix: str) -> Iterator[ObjectInfo]:
        # Sorted so the order matches S3's (lexicographic by key): compare entries by the
        # key they would produce, with directories as 'name/'.
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        items = []
        for entry in entries:
            if _TMP_RE.match(entry.name):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            items.append((entry.name + ("/" if is_dir else ""), entry, is_dir))
        for _, entry, is_dir in sorted(items, key=lambda t: t[0].encode("utf-8")):
            path = Path(entry.path)
            key = self._key(path)
            if is_dir:
                probe = key + "/"
                if probe.startswith(prefix) or prefix.startswith(probe):
                    yield from self._walk(path, prefix)
            elif key.startswith(prefix):
                try:
                    st = entry.stat()
                except FileNotFoundError:  # deleted while listing
                    continue
                yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc))

    def presign(self, key: str, expires_s: int = 3600) -> str:
        return self._path(key).as_uri()

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StoreError(
                f"local object store {self.root} is not writable; set VF3D_STORE__LOCAL_DIR to a writable directory"
            )

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def disk_usage(self) -> int:
        """Bytes held by all objects (helper for `vf3d catalog info`)."""
        return sum(info.size for info in self.list())


__all__ = ["LocalStore"]
