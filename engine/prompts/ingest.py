"""Streaming caption readers: .txt, .jsonl, .json, .csv, .tsv, .parquet and their .gz forms.

Readers hold one line (or one Parquet record batch) at a time, so a 10M-line file streams in
constant memory. Problems with a whole file (missing, binary, unknown format, absent column or
field) raise ``BadInputError`` before any line is read — ``check_source`` runs that preflight.
Problems with one line become a ``RawRecord`` with ``error`` set (a machine-readable reason)
and its 1-based line number, and the run goes on.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from catalog.errors import Vf3dError

MAX_LINE_BYTES = 64 * 1024
"""Longest line a reader accepts; longer lines are rejected as ``line_too_long`` (and skipped in bounded memory)."""

TEXT_KEYS = ("caption", "text", "prompt", "alt", "alt_text", "title", "description")
"""Field/column names tried, in order, when ``--field``/``--column`` is not given."""

FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
           ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}

BAD_LINE_REASONS = ("invalid_utf8", "malformed_json", "missing_field", "not_text", "line_too_long", "malformed_row")


class BadInputError(Vf3dError):
    """A caption file vf3d cannot read; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class RawRecord:
    """One caption as read: ``text`` or an ``error`` reason (see ``BAD_LINE_REASONS``)."""

    line: int
    text: str | None
    error: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Source:
    """A checked caption file: its format, compression and the field/column captions come from."""

    path: Path
    fmt: str
    gz: bool
    key: str | None  # jsonl/json field or csv/tsv/parquet column; None for txt / lists of strings


def detect_format(path: Path) -> tuple[str, bool]:
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] in (".gz", ".gzip")
    if gz:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise BadInputError(
            f"{path}: unknown caption format {''.join(path.suffixes) or '(no extension)'}; "
            f"use one of {', '.join(sorted(FORMATS))} (optionally .gz)"
        )
    return fmt, gz


def _open_bytes(path: Path, gz: bool) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if gz else open(path, "rb")  # type: ignore[return-value]


def _head(path: Path, gz: bool, n: int = 8192) -> bytes:
    try:
        with _open_bytes(path, gz) as fh:
            return fh.read(n)
    except (OSError, EOFError, zlib.error) as err:
        raise BadInputError(f"{path}: cannot read it as {'gzip' if gz else 'a file'} ({err}); check the file is complete") from None


def check_source(path: str | Path, field: str | None = None, column: str | None = None) -> Source:
    """Preflight one file; raises ``BadInputError`` naming the problem and the fix."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise BadInputError(f"{path}: is a directory; pass the caption files inside it (e.g. {path}/*.jsonl)")
    fmt, gz = detect_format(path)
    head = _head(path, gz)
    if fmt == "parquet":
        if not head.startswith(b"PAR1"):
            raise BadInputError(f"{path}: not a Parquet file (no PAR1 magic); check the file or its extension")
        return Source(path, fmt, gz, _parquet_column(path, gz, column))
    if b"\x00" in head:
        raise BadInputError(
            f"{path}: looks binary (NUL bytes in the first {len(head)} bytes), not {fmt} text; "
            "pass UTF-8 text captions or a .parquet file"
        )
    if fmt == "txt":
        return Source(path, fmt, gz, None)
    if fmt in ("csv", "tsv"):
        return Source(path, fmt, gz, _csv_column(path, gz, fmt, column or field))
    if fmt == "jsonl":
        return Source(path, fmt, gz, _jsonl_field(path, gz, field or column))
    return Source(path, fmt, gz, field or column)


def _pick(keys: Sequence[str], wanted: str | None, path: Path, what: str, flag: str) -> str:
    if wanted is not None:
        if wanted in keys:
            return wanted
        raise BadInputError(f"{path}: no {what} {wanted!r}; it has {', '.join(map(repr, keys)) or 'none'} — pass {flag} with one of them")
    for key in TEXT_KEYS:
        if key in keys:
            return key
    raise BadInputError(
        f"{path}: no caption {what} found (looked for {', '.join(TEXT_KEYS)}); it has "
        f"{', '.join(map(repr, keys)) or 'none'} — pass {flag} NAME"
    )


def _csv_column(path: Path, gz: bool, fmt: str, column: str | None) -> str:
    with _open_bytes(path, gz) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        header = next(csv.reader(text, delimiter="\t" if fmt == "tsv" else ","), [])
    header = [h.strip().lstrip("\ufeff") for h in header]
    return _pick(header, column, path, "column", "--column")


def _jsonl_field(path: Path, gz: bool, field: str | None) -> str | None:
    keys: list[str] = []
    seen_obj = seen_str = False
    with _open_bytes(path, gz) as fh:
        for _lineno, line, err in _lines(fh, MAX_LINE_BYTES):
            if err or not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(obj, str):
                seen_str = True
            elif isinstance(obj, dict):
                seen_obj = True
                if field is not None and field in obj:
                    return field
                if field is None:
                    for key in TEXT_KEYS:
                        if key in obj:
                            return key
                keys.extend(k for k in obj if k not in keys)
            if len(keys) > 50 or (seen_obj and len(keys) and _lineno > 200):
                break
    if seen_obj:
        return _pick(keys, field, path, "field", "--field")
    if seen_str or not keys:
        return field
    return field


def _parquet_column(path: Path, gz: bool, column: str | None) -> str:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path) if not gz else None
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for broken files
        raise BadInputError(f"{path}: unreadable Parquet ({err}); re-export the file") from None
    if schema is None:
        with _gunzip_tmp(path) as tmp:
            schema = pq.read_schema(tmp)
    return _pick(list(schema.names), column, path, "column", "--column")


class _gunzip_tmp:
    """Parquet needs a seekable file: stream a .parquet.gz into a temporary file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        fd, self.tmp = tempfile.mkstemp(suffix=".parquet")
        with os.fdopen(fd, "wb") as out, gzip.open(self.path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        return self.tmp

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.tmp)


def _lines(fh: Any, max_bytes: int) -> Iterator[tuple[int, bytes, str]]:
    """(line number, bytes without newline, error) — a too-long line is drained in chunks, never held."""
    n = 0
    while True:
        line = fh.readline(max_bytes + 1)
        if not line:
            return
        n += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:
                rest = fh.readline(1 << 16)
                if not rest or rest.endswith(b"\n"):
                    break
            yield n, b"", "line_too_long"
            continue
        yield n, line.rstrip(b"\r\n"), ""


def _decode(line: bytes, lineno: int) -> tuple[str | None, str]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"byte {err.start}: {err.reason}"
    return (text[1:] if lineno == 1 and text.startswith("\ufeff") else text), ""


def iter_records(source: Source, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[RawRecord]:
    """Stream one checked source as ``RawRecord``s (blank lines are skipped)."""
    try:
        if source.fmt == "parquet":
            yield from _iter_parquet(source)
        elif source.fmt == "json":
            yield from _iter_json(source)
        elif source.fmt in ("csv", "tsv"):
            yield from _iter_csv(source, max_line_bytes)
        else:
            yield from _iter_lines(source, max_line_bytes)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise BadInputError(f"{source.path}: truncated or corrupt gzip stream ({err}); re-download or re-compress it") from None


def _iter_lines(source: Source, max_line_bytes: int) -> Iterator[RawRecord]:
    jsonl = source.fmt == "jsonl"
    with _open_bytes(source.path, source.gz) as fh:
        for n, raw, err in _lines(fh, max_line_bytes):
            if err:
                yield RawRecord(n, None, err, f"longer than {max_line_bytes} bytes")
                continue
            if not raw.strip():
                continue
            text, why = _decode(raw, n)
            if text is None:
                yield RawRecord(n, None, "invalid_utf8", why)
                continue
            if not jsonl:
                yield RawRecord(n, text)
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                yield RawRecord(n, None, "malformed_json", str(exc)[:120])
                continue
            yield _from_value(n, obj, source.key)


def _from_value(n: int, obj: Any, key: str | None) -> RawRecord:
    if isinstance(obj, dict):
        if key is None or key not in obj:
            return RawRecord(n, None, "missing_field", f"no field {key!r}")
        obj = obj[key]
    if isinstance(obj, str):
        return RawRecord(n, obj)
    return RawRecord(n, None, "not_text", f"{type(obj).__name__} instead of a string")


def _iter_json(source: Source, max_bytes: int = 512 << 20) -> Iterator[RawRecord]:
    size = source.path.stat().st_size
    if size > max_bytes:
        raise BadInputError(f"{source.path}: a {size >> 20} MiB .json is read whole; convert it to .jsonl (one caption per line) to stream it")
    with _open_bytes(source.path, source.gz) as fh:
        data = fh.read()
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BadInputError(f"{source.path}: invalid UTF-8 at byte {err.start}; re-encode it as UTF-8") from None
    except ValueError as err:
        raise BadInputError(f"{source.path}: malformed JSON ({err}); fix it or use .jsonl so bad lines are skipped one by one") from None
    items: Any = doc
    key = source.key
    if isinstance(doc, dict):
        lists = {k: v for k, v in doc.items() if isinstance(v, list)}
        if key in lists:
            items, key = lists[key], None
        elif len(lists) == 1:
            items = next(iter(lists.values()))
        else:
            raise BadInputError(
                f"{source.path}: a JSON object without one caption list; it has keys {', '.join(map(repr, doc))} — "
                "pass --field with the key holding the list, or use a top-level list / .jsonl"
            )
    if not isinstance(items, list):
        raise BadInputError(f"{source.path}: expected a list of captions, got {type(items).__name__}")
    if key is None and any(isinstance(x, dict) for x in items[:100]):
        keys: list[str] = []
        for x in items[:100]:
            if isinstance(x, dict):
                keys.extend(k for k in x if k not in keys)
        key = _pick(keys, None, source.path, "field", "--field")
    for i, item in enumerate(items, start=1):
        yield _from_value(i, item, key)


def _iter_csv(source: Source, max_line_bytes: int) -> Iterator[RawRecord]:
    csv.field_size_limit(max_line_bytes)
    with _open_bytes(source.path, source.gz) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter="\t" if source.fmt == "tsv" else ",")
        header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
        idx = header.index(source.key) if source.key in header else -1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield RawRecord(reader.line_num, None, "line_too_long" if "larger than field limit" in str(err) else "malformed_row", str(err))
                continue
            if not row or not any(c.strip() for c in row):
                continue
            if idx < 0 or idx >= len(row):
                yield RawRecord(reader.line_num, None, "missing_field", f"row has {len(row)} fields, column {source.key!r} is #{idx + 1}")
                continue
            value = row[idx]
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                yield RawRecord(reader.line_num, None, "invalid_utf8", "undecodable bytes in the caption column")
                continue
            yield RawRecord(reader.line_num, value)


def _iter_parquet(source: Source) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    def rows(path: str | Path) -> Iterator[RawRecord]:
        pf = pq.ParquetFile(path)
        n = 0
        for batch in pf.iter_batches(batch_size=8192, columns=[source.key]):
            for value in batch.column(0).to_pylist():
                n += 1
                if value is None:
                    continue
                if isinstance(value, bytes):
                    try:
                        value = value.decode("utf-8")
                    except UnicodeDecodeError as err:
                        yield RawRecord(n, None, "invalid_utf8", f"byte {err.start}")
                        continue
                if not isinstance(value, str):
                    yield RawRecord(n, None, "not_text", f"{type(value).__name__} instead of a string")
                    continue
                yield RawRecord(n, value)

    if source.gz:
        with _gunzip_tmp(source.path) as tmp:
            yield from rows(tmp)
    else:
        yield from rows(source.path)
